"""Commands from every remote (MQTT, the web remote): one parser, one executor
(docs/mqtt.md, "Commands and replies"; docs/web.md).

- `chair.commands.parse` — `parse_command`: strict validation of a payload into a `Command`, or
  a `BadCommand` with a stable code; `ACTIONS` (each action's request model, `chair.requests`).
- `chair.commands.desk` — `CommandDesk`: executes commands on the controller one at a time,
  idempotent by ``id``, and fans state and events out to the remotes.
- `chair.commands.feed` — `dumps`, the JSON every remote sends; `significant`, the part of the
  state that is sent at once when it changes.
"""
