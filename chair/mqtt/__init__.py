"""Remote control over MQTT: the daemon side of ``chair serve`` and what ``chair remote`` shares
with it (docs/mqtt.md).

One idea per module:

- `chair.mqtt.settings` — `MqttSettings` (broker URL, auth, TLS, topic names, rates) from a TOML
  file, ``CHAIR_*`` environment variables and flags (`load_settings`, `add_broker_arguments`,
  `settings_from_args`).
- `chair.mqtt.topics` — `Topics`, the topic tree of one chair.
- `chair.mqtt.commands` — `parse_command`: strict validation of a ``<base>/cmd`` payload into a
  `Command`, or a `BadCommand` with a stable code; `ACTIONS` (each action's request model,
  `chair.requests`).
- `chair.mqtt.discovery` — `discovery_config`, the Home Assistant device-discovery message.
- `chair.mqtt.bridge` — `MqttBridge`: connection life, reconnection, command execution, replies,
  idempotency, state, telemetry and events.

The names below are re-exported here; code of this project imports them from their own module.
"""

from chair.mqtt.bridge import (
    IDEMPOTENCY_MAX_IDS,
    IDEMPOTENCY_S,
    MqttBridge,
    dumps,
)
from chair.mqtt.commands import (
    ACTIONS,
    MAX_ID_CHARS,
    MAX_PAYLOAD_BYTES,
    ActionSpec,
    BadCommand,
    Command,
    parse_command,
)
from chair.mqtt.discovery import discovery_config
from chair.mqtt.settings import (
    ENV_PREFIX,
    MqttSettings,
    add_broker_arguments,
    load_settings,
    settings_from_args,
)
from chair.mqtt.topics import Topics

__all__ = [
    "ACTIONS",
    "ENV_PREFIX",
    "IDEMPOTENCY_MAX_IDS",
    "IDEMPOTENCY_S",
    "MAX_ID_CHARS",
    "MAX_PAYLOAD_BYTES",
    "ActionSpec",
    "BadCommand",
    "Command",
    "MqttBridge",
    "MqttSettings",
    "Topics",
    "add_broker_arguments",
    "discovery_config",
    "dumps",
    "load_settings",
    "parse_command",
    "settings_from_args",
]
