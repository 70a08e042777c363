"""Commands (MQTT ``<base>/cmd``, the web remote's ``/ws``): strict validation and the codes of
its refusals (docs/mqtt.md, "Commands and replies" and "Error codes").

`parse_command` turns a payload into a `Command` or raises `BadCommand` with a stable code; nothing
reaches the controller before it has passed. `ACTIONS` lists every action with the request model
that checks its fields (`chair.requests`: the same check the CLI and the controller use, with the
ranges of the chair's config).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

from chair.api import CommandError
from chair.requests import (
    AdjustRequest,
    InstallProgramRequest,
    MoveRequest,
    PresetRequest,
    RemoveProgramRequest,
    Request,
    SetRequest,
    StartRequest,
    parse_request,
    short_repr,
)
from core_rt.config import ChairConfig

MAX_PAYLOAD_BYTES = 4096
"""Commands over 4 KiB are refused unread (``too_large``)."""
MAX_ID_CHARS = 128


class ActionSpec(NamedTuple):
    """What an action carries: its request model (None: no fields) and whether it needs at
    least one of its fields."""

    request: type[Request] | None = None
    at_least_one: bool = False

    @property
    def fields(self) -> tuple[str, ...]:
        return () if self.request is None else tuple(self.request.model_fields)

    @property
    def required(self) -> frozenset[str]:
        if self.request is None:
            return frozenset()
        return frozenset(n for n, f in self.request.model_fields.items() if f.is_required())


ACTIONS: dict[str, ActionSpec] = {
    "start": ActionSpec(StartRequest),
    "pause": ActionSpec(),
    "resume": ActionSpec(),
    "stop": ActionSpec(),
    "estop": ActionSpec(),
    "reset": ActionSpec(),
    "set": ActionSpec(SetRequest, at_least_one=True),
    "adjust_shoulder": ActionSpec(AdjustRequest),
    "move": ActionSpec(MoveRequest),
    "status": ActionSpec(),
    "users": ActionSpec(),
    "preset": ActionSpec(PresetRequest, at_least_one=True),
    "install_program": ActionSpec(InstallProgramRequest),
    "remove_program": ActionSpec(RemoveProgramRequest),
}
"""Every action with its fields. ``preset`` is ours: it remembers the program, minutes and user
for a ``start`` that names none (Home Assistant's selectors and start button use it). ``users``
answers with the user profiles (docs/chair.md §9). ``install_program`` and ``remove_program``
deliver a program file to the chair and take it back (docs/programs.md, Delivered programs)."""


@dataclass(frozen=True)
class Command:
    """A validated command."""

    id: str | None
    action: str
    args: dict[str, Any]


class BadCommand(CommandError):
    """A payload refused before it reaches the controller; carries what could be read of it."""

    def __init__(self, code: str, message: str, id: str | None = None, action: str | None = None):
        super().__init__(code, message)
        self.id = id
        self.action = action


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {dup!r}")
    return obj


def parse_command(payload: bytes, config: ChairConfig) -> Command:
    """Validate a ``<base>/cmd`` payload against the chair's `config`; raise `BadCommand` with a
    stable code otherwise.

    Order of checks (the first failing one names the code): size, UTF-8 JSON, object, ``id``,
    ``action`` present, known, unknown fields, required fields, each field's type then range (in
    the request model's field order). Programs are checked later, against the controller's
    list.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise BadCommand("too_large", f"payload is {len(payload)} bytes, limit {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BadCommand("bad_json", f"payload is not valid UTF-8 JSON: {e}") from None
    if not isinstance(obj, dict):
        raise BadCommand("not_object", f"payload is a JSON {type(obj).__name__}, not an object")
    cmd_id = obj.get("id")
    if cmd_id is not None and not (isinstance(cmd_id, str) and 0 < len(cmd_id) <= MAX_ID_CHARS):
        raise BadCommand("bad_field", f"id must be a string of 1-{MAX_ID_CHARS} characters")
    if "action" not in obj:
        raise BadCommand("missing_action", "no 'action' field", cmd_id)
    action = obj["action"]
    if not isinstance(action, str):
        raise BadCommand("bad_field", "action must be a string", cmd_id)
    if action not in ACTIONS:
        shown = action if len(action) <= 32 else action[:29] + "..."
        raise BadCommand(
            "unknown_action",
            f"unknown action {shown!r}; one of {', '.join(ACTIONS)}",
            cmd_id,
            shown,
        )
    spec = ACTIONS[action]
    unknown = sorted(set(obj) - set(spec.fields) - {"id", "action"})
    if unknown:
        names = ", ".join(short_repr(k, 24) for k in unknown[:5])
        raise BadCommand("bad_field", f"unknown field(s) for {action}: {names}", cmd_id, action)
    given = {k: obj[k] for k in spec.fields if obj.get(k) is not None}
    missing = sorted(spec.required - set(given))
    if missing:
        raise BadCommand("bad_field", f"{action} needs {', '.join(missing)}", cmd_id, action)
    if spec.at_least_one and not given:
        raise BadCommand(
            "bad_field", f"{action} needs one of {', '.join(spec.fields)}", cmd_id, action
        )
    args: dict[str, Any] = {}
    if spec.request is not None:
        try:
            req = parse_request(spec.request, given, config, prefix=f"{action}.")
        except CommandError as e:
            raise BadCommand(e.code, e.message, cmd_id, action) from None
        args = req.model_dump(exclude_none=True)
    return Command(cmd_id, action, args)
