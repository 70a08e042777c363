"""Commands on ``<base>/cmd``: strict validation and the codes of its refusals (docs/mqtt.md,
"Commands and replies" and "Error codes").

`parse_command` turns a payload into a `Command` or raises `BadCommand` with a stable code; nothing
reaches the controller before it has passed. `ACTIONS` lists every action with its fields,
`CommandLimits` the ranges those fields must keep (from the chair's config).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from chair.api import CommandError
from core_rt.config import ChairConfig, HeatLevel

MAX_PAYLOAD_BYTES = 4096
"""Commands over 4 KiB are refused unread (``too_large``)."""
MAX_ID_CHARS = 128
MAX_PROGRAM_CHARS = 64
HEAT_LEVELS: tuple[str, ...] = get_args(HeatLevel)


@dataclass(frozen=True)
class CommandLimits:
    """Ranges a command's fields must keep, from the chair's config (one source of truth)."""

    minutes: tuple[float, float]
    intensity: tuple[int, int]
    heat: tuple[str, ...]
    adjust_mm: float

    @classmethod
    def from_config(cls, config: ChairConfig) -> CommandLimits:
        return cls(
            minutes=(config.session.min_minutes, config.session.max_minutes),
            intensity=(1, len(config.depth.levels_mm)),
            heat=HEAT_LEVELS,
            adjust_mm=config.body.adjust_mm,
        )


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


_Kind = Literal["program", "minutes", "intensity", "heat", "mm"]

ACTIONS: dict[str, tuple[dict[str, _Kind], frozenset[str], bool]] = {
    # action: (fields, required fields, at least one field)
    "start": (
        {"program": "program", "minutes": "minutes", "intensity": "intensity", "heat": "heat"},
        frozenset(),
        False,
    ),
    "pause": ({}, frozenset(), False),
    "resume": ({}, frozenset(), False),
    "stop": ({}, frozenset(), False),
    "estop": ({}, frozenset(), False),
    "reset": ({}, frozenset(), False),
    "set": ({"intensity": "intensity", "heat": "heat"}, frozenset(), True),
    "adjust_shoulder": ({"mm": "mm"}, frozenset({"mm"}), False),
    "status": ({}, frozenset(), False),
    "preset": ({"program": "program", "minutes": "minutes"}, frozenset(), True),
}
"""Every action with its fields. ``preset`` is ours: it remembers the program and minutes for a
``start`` that names none (Home Assistant's program selector and start button use it)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {dup!r}")
    return obj


def _short(value: Any, n: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def parse_command(payload: bytes, limits: CommandLimits) -> Command:
    """Validate a ``<base>/cmd`` payload; raise `BadCommand` with a stable code otherwise.

    Order of checks (the first failing one names the code): size, UTF-8 JSON, object, ``id``,
    ``action`` present, known, unknown fields, each field's type then range, required fields.
    Programs are checked later, against the controller's list.
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
    fields, required, at_least_one = ACTIONS[action]
    unknown = sorted(set(obj) - set(fields) - {"id", "action"})
    if unknown:
        names = ", ".join(_short(k, 24) for k in unknown[:5])
        raise BadCommand("bad_field", f"unknown field(s) for {action}: {names}", cmd_id, action)
    args: dict[str, Any] = {}
    for name, kind in fields.items():
        if name in obj and obj[name] is not None:
            args[name] = _check_field(action, name, kind, obj[name], limits, cmd_id)
    missing = sorted(required - set(args))
    if missing:
        raise BadCommand("bad_field", f"{action} needs {', '.join(missing)}", cmd_id, action)
    if at_least_one and not args:
        raise BadCommand("bad_field", f"{action} needs one of {', '.join(fields)}", cmd_id, action)
    return Command(cmd_id, action, args)


def _check_field(
    action: str, name: str, kind: _Kind, value: Any, limits: CommandLimits, cmd_id: str | None
) -> Any:
    def bad(code: str, what: str) -> BadCommand:
        return BadCommand(code, f"{action}.{name} {what}, got {_short(value)}", cmd_id, action)

    if kind == "program":
        if not isinstance(value, str):
            raise bad("bad_field", "must be a string")
        if not 0 < len(value) <= MAX_PROGRAM_CHARS:
            raise bad("unknown_program", "is not a program name")
        return value
    if kind == "heat":
        if not isinstance(value, str):
            raise bad("bad_field", "must be a string")
        if value not in limits.heat:
            raise bad("out_of_range", f"must be one of {', '.join(limits.heat)}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad("bad_field", "must be a number")
    if kind == "intensity":
        if isinstance(value, float) and not value.is_integer():
            raise bad("bad_field", "must be a whole number")
        lo, hi = limits.intensity
        if not lo <= value <= hi:
            raise bad("out_of_range", f"must be {lo}..{hi}")
        return int(value)
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if kind == "minutes":
        lo_m, hi_m = limits.minutes
        if not lo_m <= number <= hi_m:
            raise bad("out_of_range", f"must be {lo_m:g}..{hi_m:g} min")
        return number
    if not -limits.adjust_mm <= number <= limits.adjust_mm:  # kind == "mm"
        raise bad("out_of_range", f"must be within ±{limits.adjust_mm:g} mm")
    return number
