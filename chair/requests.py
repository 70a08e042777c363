"""What a user may ask of a session, checked once for every door (CLI, controller, MQTT).

Each request is a pydantic model validated against the chair's config (passed as the validation
context), so the ranges — session minutes, intensity, heat levels, the shoulder nudge — have one
source, `core_rt.config.ChairConfig`, and one check, here::

    req = parse_request(StartRequest, {"program": "relax", "intensity": 4}, config)
    req.intensity  # 4

A refused field raises `chair.api.CommandError` with a stable code (docs/mqtt.md): ``bad_field``
for a wrong type or an unknown field, ``out_of_range`` for a value outside its range,
``unknown_program`` for a name that cannot be a program, ``unknown_zone`` for a name that is not
one of the body's zones (`core_rt.config.ZONES`). The message names the field and the value.

A user profile (docs/chair.md §9) is checked by `UserProfile`, with the same checks: what
``chair users add/set`` is given, and what is read back from the database before a session
starts from it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from chair.api import CommandError
from core_rt.config import ZONES, ChairConfig

MAX_PROGRAM_CHARS = 64
"""Longest program name a request may carry (a longer one cannot be a program)."""
MAX_USER_CHARS = 32
USER_NAME = re.compile(r"[A-Za-z0-9_-](?:[A-Za-z0-9 _-]*[A-Za-z0-9_-])?")
"""A user's name: 1–32 letters, digits, spaces, ``-`` and ``_``, no space at either end."""


def _config(info: ValidationInfo) -> ChairConfig:
    config = info.context.get("config") if isinstance(info.context, dict) else None
    if not isinstance(config, ChairConfig):
        raise TypeError("validate requests with parse_request(model, data, config)")
    return config


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("bad_field", "must be a number")
    try:
        return float(value)
    except OverflowError:  # an integer too large for a float
        return math.inf


def check_program(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PydanticCustomError("bad_field", "must be a string")
    if not 0 < len(value) <= MAX_PROGRAM_CHARS:
        raise PydanticCustomError("unknown_program", "is not a program name")
    return value


def _within(value: Any, lo: float, hi: float, unit: str) -> float:
    """A number within lo..hi (`unit` names it in the message)."""
    x = _number(value)
    if not lo <= x <= hi:
        raise PydanticCustomError(
            "out_of_range",
            "must be {lo}..{hi} {unit}",
            {"lo": f"{lo:g}", "hi": f"{hi:g}", "unit": unit},
        )
    return x


def check_minutes(value: Any, config: ChairConfig) -> float | None:
    if value is None:
        return None
    return _within(value, config.session.min_minutes, config.session.max_minutes, "min")


def check_intensity(value: Any, config: ChairConfig) -> int | None:
    if value is None:
        return None
    _number(value)
    if isinstance(value, float) and not value.is_integer():
        raise PydanticCustomError("bad_field", "must be a whole number")
    s = config.session
    if not s.min_intensity <= value <= s.max_intensity:
        raise PydanticCustomError(
            "out_of_range", "must be {lo}..{hi}", {"lo": s.min_intensity, "hi": s.max_intensity}
        )
    return int(value)


def check_heat(value: Any, config: ChairConfig) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PydanticCustomError("bad_field", "must be a string")
    levels = config.heater.level_names
    if value not in levels:
        raise PydanticCustomError(
            "out_of_range", "must be one of {levels}", {"levels": ", ".join(levels)}
        )
    return value


def check_zone(value: Any) -> str:
    """One of the body's zones (docs/chair.md §2)."""
    if not isinstance(value, str):
        raise PydanticCustomError("bad_field", "must be a zone name (a string)")
    if value not in ZONES:
        raise PydanticCustomError(
            "unknown_zone",
            "is not a zone; one of {zones}",
            {"zones": ", ".join(ZONES)},
        )
    return value


def check_zone_intensity(value: Any, config: ChairConfig) -> dict[str, int] | None:
    """Per-zone strength (docs/chair.md §8): {zone: whole offset in depth levels, within the
    chair's ±`session.max_zone_offset`}."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PydanticCustomError("bad_field", "must be an object {zone: offset}")
    out: dict[str, int] = {}
    lim = config.session.max_zone_offset
    for zone, offset in value.items():
        try:
            check_zone(zone)
        except PydanticCustomError as e:
            why = {"key": zone, "why": e.message()}
            raise PydanticCustomError(e.type, "{key}: {why}", why) from None
        try:
            _number(offset)
        except PydanticCustomError:
            raise PydanticCustomError(
                "bad_field", "{zone} must be a number", {"zone": zone}
            ) from None
        if isinstance(offset, float) and not offset.is_integer():
            raise PydanticCustomError("bad_field", "{zone} must be a whole number", {"zone": zone})
        if not -lim <= offset <= lim:
            raise PydanticCustomError(
                "out_of_range", "{zone} must be -{lim}..{lim}", {"zone": zone, "lim": lim}
            )
        out[zone] = int(offset)
    return out


def check_user(value: Any) -> str | None:
    """A user's name (docs/chair.md §9): 1–32 ASCII letters, digits, spaces, - and _."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise PydanticCustomError("bad_field", "must be a string")
    if not 0 < len(value) <= MAX_USER_CHARS or not USER_NAME.fullmatch(value):
        raise PydanticCustomError(
            "bad_field",
            "must be 1-{n} letters, digits, spaces, - or _ (no space at either end)",
            {"n": MAX_USER_CHARS},
        )
    return value


def check_height(value: Any, config: ChairConfig) -> float | None:
    """A body height hint in cm, within what the chair fits."""
    if value is None:
        return None
    return _within(value, config.body.height_min_cm, config.body.height_max_cm, "cm")


def _word(value: Any, words: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("bad_field", "must be a string")
    if value not in words:
        raise PydanticCustomError(
            "out_of_range", "must be one of {words}", {"words": ", ".join(words)}
        )
    return value


def check_manual(value: Any, config: ChairConfig) -> dict[str, Any] | None:
    """Manual mode's settings (docs/chair.md §8), any subset: technique, area, zone, tempo,
    width. Unknown words are `out_of_range` (like a heat level), an unknown zone `unknown_zone`,
    an unknown key `bad_field`."""
    from chair.programs.manual import AREAS, FIELDS, MANUAL_TECHNIQUES, WIDTHS

    if value is None:
        return None
    if not isinstance(value, dict):
        raise PydanticCustomError("bad_field", "must be an object {technique, area, zone, ...}")
    out: dict[str, Any] = {}
    for key, v in value.items():
        try:
            if key == "technique":
                out[key] = _word(v, MANUAL_TECHNIQUES)
            elif key == "area":
                out[key] = _word(v, AREAS)
            elif key == "width":
                out[key] = _word(v, WIDTHS)
            elif key == "zone":
                out[key] = check_zone(v)
            elif key == "tempo":
                _number(v)
                if isinstance(v, float) and not v.is_integer():
                    raise PydanticCustomError("bad_field", "must be a whole number")
                tempos = config.manual.tempos
                if not tempos[0] <= v <= tempos[-1]:
                    raise PydanticCustomError(
                        "out_of_range", "must be {lo}..{hi}", {"lo": tempos[0], "hi": tempos[-1]}
                    )
                out[key] = int(v)
            else:
                raise PydanticCustomError(
                    "bad_field", "is not a setting; one of {f}", {"f": ", ".join(FIELDS)}
                )
        except PydanticCustomError as e:
            raise PydanticCustomError(
                e.type, "{key} {why}", {"key": short_repr(key, 24).strip("'"), "why": e.message()}
            ) from None
    return out


def _signed_mm(value: Any, lim: float) -> float:
    """A distance in mm within ±`lim`."""
    mm = _number(value)
    if not -lim <= mm <= lim:
        raise PydanticCustomError("out_of_range", "must be within ±{lim} mm", {"lim": f"{lim:g}"})
    return mm


def check_move_mm(value: Any, config: ChairConfig) -> float:
    """Manual mode's `move`: the area's centre, up (+) or down, at most a remote's long press."""
    return _signed_mm(value, config.manual.move_max_mm)


def check_adjust_mm(value: Any, config: ChairConfig) -> float:
    """The adjust window's shoulder nudge."""
    return _signed_mm(value, config.body.adjust_mm)


class Request(BaseModel):
    """Every field of every request has one check, whichever request carries it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("program", mode="before", check_fields=False)
    @classmethod
    def _program(cls, v: Any) -> str | None:
        return check_program(v)

    @field_validator("minutes", mode="before", check_fields=False)
    @classmethod
    def _minutes(cls, v: Any, info: ValidationInfo) -> float | None:
        return check_minutes(v, _config(info))

    @field_validator("intensity", mode="before", check_fields=False)
    @classmethod
    def _intensity(cls, v: Any, info: ValidationInfo) -> int | None:
        return check_intensity(v, _config(info))

    @field_validator("heat", mode="before", check_fields=False)
    @classmethod
    def _heat(cls, v: Any, info: ValidationInfo) -> str | None:
        return check_heat(v, _config(info))

    @field_validator("zone_intensity", mode="before", check_fields=False)
    @classmethod
    def _zone_intensity(cls, v: Any, info: ValidationInfo) -> dict[str, int] | None:
        return check_zone_intensity(v, _config(info))

    @field_validator("user", "name", mode="before", check_fields=False)
    @classmethod
    def _user(cls, v: Any) -> str | None:
        return check_user(v)

    @field_validator("manual", mode="before", check_fields=False)
    @classmethod
    def _manual(cls, v: Any, info: ValidationInfo) -> dict[str, Any] | None:
        return check_manual(v, _config(info))


class StartRequest(Request):
    """Start a session: a program (None: the preset one) and what the user chose; what is None
    falls back to what a `set` chose between sessions, then to the program's default."""

    program: str | None = None
    minutes: float | None = None
    intensity: int | None = None
    heat: str | None = None
    zone_intensity: dict[str, int] | None = None
    manual: dict[str, Any] | None = None
    """Manual mode's settings (program ``manual`` only; the rest are its defaults)."""
    user: str | None = None
    """Start from this user's memory and update it when the session completes (docs/chair.md
    §9)."""


class SetRequest(Request):
    """Change a session's intensity, heat and/or per-zone strength (between sessions: the next
    session's). A `zone_intensity` replaces the offsets of the zones it names (0 clears one)."""

    intensity: int | None = None
    heat: str | None = None
    zone_intensity: dict[str, int] | None = None
    manual: dict[str, Any] | None = None
    """Manual mode's settings to change (a manual session only)."""


class PresetRequest(Request):
    """Remember a program and minutes for a later ``start`` that names none (Home Assistant)."""

    program: str | None = None
    minutes: float | None = None
    user: str | None = None
    """The user a ``start`` that names none is for; ``""`` forgets it."""

    @field_validator("user", mode="before")
    @classmethod
    def _user(cls, v: Any) -> str | None:
        return "" if v == "" else check_user(v)


class UserProfile(Request):
    """What a user profile remembers (docs/chair.md §9); every field but the name may be unset.
    `shoulder_offset_mm` is the adjust window's nudge, within its ±`body.adjust_mm`."""

    name: str
    height_cm: float | None = None
    shoulder_offset_mm: float | None = None
    intensity: int | None = None
    heat: str | None = None
    zone_intensity: dict[str, int] | None = None
    program: str | None = None
    minutes: float | None = None

    @field_validator("height_cm", mode="before")
    @classmethod
    def _height(cls, v: Any, info: ValidationInfo) -> float | None:
        return check_height(v, _config(info))

    @field_validator("shoulder_offset_mm", mode="before")
    @classmethod
    def _offset(cls, v: Any, info: ValidationInfo) -> float | None:
        return None if v is None else check_adjust_mm(v, _config(info))


class AdjustRequest(Request):
    """Nudge the scanned shoulder line during the adjusting window."""

    mm: float

    @field_validator("mm", mode="before")
    @classmethod
    def _mm(cls, v: Any, info: ValidationInfo) -> float:
        return check_adjust_mm(v, _config(info))


class MoveRequest(Request):
    """Manual mode: move the area's centre up (+) or down (−), kept on the body."""

    mm: float

    @field_validator("mm", mode="before")
    @classmethod
    def _mm(cls, v: Any, info: ValidationInfo) -> float:
        return check_move_mm(v, _config(info))


class InstallProgramRequest(Request):
    """A program file delivered to the chair (docs/programs.md, Delivered programs): its TOML
    text. What it says is checked by `chair validate`'s full verification before anything is
    kept."""

    toml: str

    @field_validator("toml", mode="before")
    @classmethod
    def _toml(cls, v: Any) -> str:
        if not isinstance(v, str):
            raise PydanticCustomError("bad_field", "must be a string (the program file's text)")
        if not v.strip():
            raise PydanticCustomError("bad_field", "is empty")
        return v


class RemoveProgramRequest(Request):
    """Forget a delivered program (built-ins stay)."""

    program: str


R = TypeVar("R", bound="Request")


def short_repr(value: Any, n: int = 40) -> str:
    """`value`'s repr cut to `n` characters (for messages that echo what was sent)."""
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def parse_request(
    model: type[R], data: Mapping[str, Any], config: ChairConfig, *, prefix: str = ""
) -> R:
    """`data` as a `model` checked against `config`; the first refused field raises CommandError
    (its message starts with `prefix` + the field's name, e.g. ``start.intensity``)."""
    try:
        return model.model_validate(dict(data), context={"config": config})
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        name = ".".join(str(p) for p in err["loc"]) or "request"
        code = err["type"]
        if code == "extra_forbidden":
            raise CommandError("bad_field", f"unknown field {prefix}{name}") from None
        if code == "missing":
            raise CommandError("bad_field", f"{prefix}{name} is required") from None
        if code not in ("bad_field", "out_of_range", "unknown_program", "unknown_zone"):
            code = "bad_field"
        msg = f"{prefix}{name} {err['msg']}, got {short_repr(err.get('input'))}"
        raise CommandError(code, msg) from None
