"""Remote control over MQTT: the daemon side of ``chair serve`` (INTERFACES §3, docs/mqtt.md).

`MqttBridge` joins a `ControllerAPI` to a broker. It is a guest of the controller, never the
other way round: controller callbacks only append to in-memory queues, commands are validated in
full before anything reaches the controller, and a lost broker only pauses the bridge's own tasks
while sessions carry on.

Pieces, top to bottom:

- `MqttSettings` — broker URL, auth, TLS, topics, rates; from a TOML file, ``CHAIR_*`` environment
  variables and command-line flags (`load_settings`, `add_broker_arguments`, `settings_from_args`).
- `Topics` — the topic tree of one chair.
- `parse_command` — strict validation of a ``<base>/cmd`` payload into a `Command`.
- `discovery_config` — the Home Assistant device-discovery payload.
- `MqttBridge` — connection life cycle, publishing, command execution, idempotency.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import copy
import json
import logging
import math
import os
import random
import re
import socket
import ssl
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from chair import __version__
from chair.api import STATES, CommandError, ControllerAPI
from core_rt.config import ChairConfig, HeatLevel

log = logging.getLogger("chair.mqtt")

MAX_PAYLOAD_BYTES = 4096
"""Commands over 4 KiB are refused unread (``too_large``)."""
IDEMPOTENCY_S = 600.0
"""A command id seen within this window is answered from memory, not executed again."""
IDEMPOTENCY_MAX_IDS = 10_000
"""Memory bound of the id window (oldest forgotten first)."""
MAX_ID_CHARS = 128
MAX_PROGRAM_CHARS = 64
TELEMETRY_STATES = ("scanning", "adjusting", "running", "paused", "settling")
"""States in which telemetry is published (the chair is in a session and may move)."""
HEAT_LEVELS: tuple[str, ...] = get_args(HeatLevel)
_OUT_QUEUE_MAX = 5000
_TOPIC_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")
_NODE_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


# ---- settings ---------------------------------------------------------------------------------


class MqttSettings(BaseModel):
    """How the daemon (and `chair remote`) reach the broker and name their topics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    broker: str = "mqtt://localhost:1883"
    """``mqtt://host[:port]`` (default port 1883) or ``mqtts://host[:port]`` (TLS, default 8883)."""
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    """Read the password from this file (first line); exclusive with `password`."""
    ca_file: Path | None = None
    """CA bundle to verify the broker (TLS); the system's CAs when not given."""
    cert_file: Path | None = None
    """Client certificate (TLS client authentication)."""
    key_file: Path | None = None
    """Private key of `cert_file` when it is not in the same file."""
    prefix: str = "massagechair"
    chair_id: str = "chair1"
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str | None = None
    """MQTT client identifier; default ``<prefix>-<chair_id>`` (one daemon per chair)."""
    telemetry_hz: float = Field(default=10.0, ge=0.0, le=100.0)
    """Telemetry rate while a session is in progress; 0 turns telemetry off."""
    state_interval_s: float = Field(default=1.0, ge=0.0, le=60.0)
    """Least time between two state publications that differ only in clocks and pad temperature
    (`elapsed_s`, `remaining_s`, `heat.temp_c`); every other change is published at once."""
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    keepalive_s: int = Field(default=30, ge=5, le=65535)
    reconnect_min_s: float = Field(default=0.1, gt=0.0, le=60.0)
    reconnect_max_s: float = Field(default=1.5, gt=0.0, le=600.0)

    @model_validator(mode="before")
    @classmethod
    def _read_password_file(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or not data.get("password_file"):
            return data
        if data.get("password"):
            raise ValueError("give either password or password_file, not both")
        path = Path(str(data["password_file"]))
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"password_file {path}: {e.strerror}") from None
        lines = text.splitlines()
        return {**data, "password": lines[0] if lines else ""}

    @model_validator(mode="after")
    def _check(self) -> MqttSettings:
        _split_broker(self.broker)  # raises with a clear message
        for name in ("prefix", "discovery_prefix"):
            value = getattr(self, name)
            levels = value.split("/")
            if not value or value.startswith("$") or not all(_TOPIC_SAFE.match(x) for x in levels):
                raise ValueError(
                    f"{name} {value!r}: topic levels of letters, digits, '_', '-', '.' "
                    "separated by '/', not starting with '$'"
                )
        if not _TOPIC_SAFE.match(self.chair_id) or len(self.chair_id) > 64:
            raise ValueError(
                f"chair_id {self.chair_id!r}: one topic level of 1-64 letters, digits, '_-.'"
            )
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        if (self.ca_file or self.cert_file) and not self.tls:
            raise ValueError("ca_file/cert_file need a TLS broker URL (mqtts://host:port)")
        for name in ("ca_file", "cert_file", "key_file"):
            p = getattr(self, name)
            if p is not None and not Path(p).is_file():
                raise ValueError(f"{name} {p}: no such file")
        return self

    # ---- derived -------------------------------------------------------------------------------

    @property
    def tls(self) -> bool:
        return _split_broker(self.broker)[0]

    @property
    def host(self) -> str:
        return _split_broker(self.broker)[1]

    @property
    def port(self) -> int:
        return _split_broker(self.broker)[2]

    @property
    def v5(self) -> bool:
        return self.protocol == "5"

    @property
    def topics(self) -> Topics:
        return Topics.for_chair(self.prefix, self.chair_id)

    @property
    def node_id(self) -> str:
        """Home Assistant node id of this chair (``<prefix>_<chair_id>``, topic-safe)."""
        return _NODE_UNSAFE.sub("_", f"{self.prefix}_{self.chair_id}")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return ctx

    def client(
        self,
        identifier: str,
        will: aiomqtt.Will | None = None,
        *,
        timeout_s: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> aiomqtt.Client:
        """A fresh aiomqtt client (clean session: nothing queued for us while we were away).
        `tls_context` saves building the context again (`ssl_context()` by default)."""
        kwargs: dict[str, Any] = {}
        if self.v5:
            kwargs["clean_start"] = True
        else:
            kwargs["clean_session"] = True
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password.get_secret_value() if self.password is not None else None,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V5 if self.v5 else aiomqtt.ProtocolVersion.V311,
            will=will,
            keepalive=self.keepalive_s,
            tls_context=tls_context if tls_context is not None else self.ssl_context(),
            timeout=timeout_s,
            max_queued_incoming_messages=10_000,
            # Small packets go out at once: without this, Nagle's algorithm holds a reply behind
            # the PUBACK just sent until the broker's delayed ACK (~40 ms on Linux).
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
            **kwargs,
        )


def _split_broker(url: str) -> tuple[bool, str, int]:
    """(tls, host, port) of a broker URL; ValueError with the reason otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"broker URL {url!r}: {e}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"broker URL {url!r}: use mqtt://host:port or mqtts://host:port")
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r}: no host")
    if parts.username or parts.password:
        raise ValueError(f"broker URL {url!r}: give credentials with username/password options")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker URL {url!r}: nothing may follow host:port")
    tls = parts.scheme == "mqtts"
    return tls, parts.hostname, port if port is not None else (8883 if tls else 1883)


ENV_PREFIX = "CHAIR_"
_ENV_NAMES: dict[str, str] = {
    name: ("CHAIR_ID" if name == "chair_id" else ENV_PREFIX + name.upper())
    for name in MqttSettings.model_fields
}
"""Environment variable of every setting: ``CHAIR_<FIELD>`` (``CHAIR_ID`` for `chair_id`)."""


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> MqttSettings:
    """Settings from, in rising priority: defaults, a TOML file (top level or an ``[mqtt]`` table),
    ``CHAIR_*`` environment variables, then `overrides` (command-line flags; None = not given).
    Raises ValueError with a readable message."""
    data: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ValueError(f"{path}: cannot read: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML: {e}") from None
        table = doc.get("mqtt", doc)
        if not isinstance(table, dict):
            raise ValueError(f"{path}: [mqtt] must be a table")
        data.update(table)
    environ = os.environ if env is None else env
    for name, var in _ENV_NAMES.items():
        if environ.get(var):
            data[name] = environ[var]
    for name, value in (overrides or {}).items():
        if value is not None:
            data[name] = value
    # A password given at a higher level replaces a password file from a lower one and vice versa.
    if overrides and overrides.get("password_file") is not None:
        data.pop("password", None)
    elif overrides and overrides.get("password") is not None:
        data.pop("password_file", None)
    if "protocol" in data:
        data["protocol"] = str(data["protocol"])
    try:
        return MqttSettings.model_validate(data)
    except ValidationError as e:
        raise ValueError(_validation_message(e)) from None


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        where = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    """The broker options shared by ``chair serve`` and ``chair remote``."""
    g = parser.add_argument_group("broker")
    g.add_argument("--broker", metavar="URL", help="mqtt://host:port or mqtts://host:port")
    g.add_argument("--username", metavar="U")
    pw = g.add_mutually_exclusive_group()
    pw.add_argument("--password", metavar="P", help="prefer --password-file or $CHAIR_PASSWORD")
    pw.add_argument("--password-file", metavar="F", help="file whose first line is the password")
    g.add_argument("--ca-file", metavar="PATH", help="CA bundle to verify a TLS broker")
    g.add_argument("--cert-file", metavar="PATH", help="client certificate (TLS)")
    g.add_argument("--key-file", metavar="PATH", help="client key (TLS)")
    g.add_argument("--chair-id", metavar="ID", help="this chair's topic level (default chair1)")
    g.add_argument("--prefix", metavar="P", help="topic prefix (default massagechair)")
    g.add_argument("--mqtt-version", choices=("5", "3.1.1"), help="protocol (default 5)")
    g.add_argument("--config-file", metavar="TOML", help="MQTT settings file ([mqtt] table)")


def settings_from_args(args: argparse.Namespace, **extra: Any) -> MqttSettings:
    """Settings for a parsed command line (flags over environment over file)."""
    overrides = {
        "broker": args.broker,
        "username": args.username,
        "password": args.password,
        "password_file": args.password_file,
        "ca_file": args.ca_file,
        "cert_file": args.cert_file,
        "key_file": args.key_file,
        "chair_id": args.chair_id,
        "prefix": args.prefix,
        "protocol": args.mqtt_version,
        **extra,
    }
    return load_settings(args.config_file, overrides=overrides)


# ---- topics -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topics:
    """The topic tree of one chair (INTERFACES §3)."""

    base: str
    availability: str
    state: str
    telemetry: str
    event: str
    cmd: str
    reply: str

    @classmethod
    def for_chair(cls, prefix: str, chair_id: str) -> Topics:
        base = f"{prefix}/{chair_id}"
        return cls(
            base=base,
            availability=f"{base}/availability",
            state=f"{base}/state",
            telemetry=f"{base}/telemetry",
            event=f"{base}/event",
            cmd=f"{base}/cmd",
            reply=f"{base}/reply",
        )


# ---- commands ---------------------------------------------------------------------------------


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


# ---- Home Assistant discovery -----------------------------------------------------------------


def discovery_config(
    settings: MqttSettings, programs: list[str], config: ChairConfig
) -> tuple[str, dict[str, Any]]:
    """(topic, payload) of the Home Assistant device-based discovery message for this chair."""
    t = settings.topics
    node = settings.node_id
    avail = {"availability_topic": t.availability}

    def cmp(key: str, platform: str, name: str, **options: Any) -> tuple[str, dict[str, Any]]:
        return key, {"p": platform, "name": name, "unique_id": f"{node}_{key}", **avail, **options}

    def button(key: str, name: str, icon: str) -> tuple[str, dict[str, Any]]:
        payload = json.dumps({"action": key}, separators=(",", ":"))
        return cmp(key, "button", name, command_topic=t.cmd, payload_press=payload, icon=icon)

    def preset(field_name: str, value: str) -> str:  # a Jinja template rendering our JSON
        return '{"action":"preset","' + field_name + '":' + value + "}"

    lo_i, hi_i = 1, len(config.depth.levels_mm)
    session = config.session
    components = dict(
        [
            cmp(
                "program",
                "select",
                "Program",
                command_topic=t.cmd,
                command_template=preset("program", "{{ value | tojson }}"),
                state_topic=t.state,
                value_template=(
                    "{{ value_json.program if value_json.program else value_json.preset.program }}"
                ),
                options=list(programs),
                icon="mdi:playlist-play",
            ),
            cmp(
                "minutes",
                "number",
                "Session length",
                command_topic=t.cmd,
                command_template=preset("minutes", "{{ value | int }}"),
                state_topic=t.state,
                value_template=(
                    "{{ value_json.preset.minutes if value_json.preset.minutes is not none "
                    f"else {session.default_minutes:g} }}}}"
                ),
                min=session.min_minutes,
                max=session.max_minutes,
                step=1,
                mode="slider",
                unit_of_measurement="min",
                icon="mdi:timer-outline",
            ),
            cmp(
                "intensity",
                "number",
                "Intensity",
                command_topic=t.cmd,
                command_template='{"action":"set","intensity":{{ value | int }}}',
                state_topic=t.state,
                value_template="{{ value_json.intensity }}",
                min=lo_i,
                max=hi_i,
                step=1,
                mode="slider",
                icon="mdi:gauge",
            ),
            cmp(
                "heat",
                "select",
                "Heat",
                command_topic=t.cmd,
                command_template='{"action":"set","heat":"{{ value }}"}',
                state_topic=t.state,
                value_template="{{ value_json.heat.level }}",
                options=list(HEAT_LEVELS),
                icon="mdi:heat-wave",
            ),
            button("start", "Start", "mdi:play"),
            button("pause", "Pause", "mdi:pause"),
            button("resume", "Resume", "mdi:play-pause"),
            button("stop", "Stop", "mdi:stop"),
            button("estop", "Emergency stop", "mdi:alert-octagon"),
            button("reset", "Reset", "mdi:restore"),
            cmp(
                "state",
                "sensor",
                "State",
                state_topic=t.state,
                value_template="{{ value_json.state }}",
                device_class="enum",
                options=list(STATES),
                icon="mdi:sofa-single",
            ),
            cmp(
                "zone",
                "sensor",
                "Zone",
                state_topic=t.state,
                value_template="{{ value_json.zone if value_json.zone else 'none' }}",
                icon="mdi:human-handsdown",
            ),
            cmp(
                "remaining",
                "sensor",
                "Remaining time",
                state_topic=t.state,
                value_template=("{{ (value_json.remaining_s or 0) | round(0) | int }}"),
                device_class="duration",
                unit_of_measurement="s",
            ),
            cmp(
                "pad_temperature",
                "sensor",
                "Pad temperature",
                state_topic=t.state,
                value_template="{{ value_json.heat.temp_c }}",
                device_class="temperature",
                state_class="measurement",
                unit_of_measurement="°C",
                suggested_display_precision=1,
            ),
            cmp(
                "fault",
                "binary_sensor",
                "Fault",
                state_topic=t.state,
                value_template="{{ 'ON' if value_json.fault else 'OFF' }}",
                device_class="problem",
                json_attributes_topic=t.state,
                json_attributes_template="{{ (value_json.fault or {}) | tojson }}",
            ),
        ]
    )
    payload = {
        "dev": {
            "ids": [node],
            "name": f"Massage chair {settings.chair_id}",
            "mf": "massage-chair",
            "mdl": config.name,
            "sw": __version__,
        },
        "o": {"name": "massage-chair", "sw": __version__},
        "cmps": components,
        "availability_topic": t.availability,
        "state_topic": t.state,
        "command_topic": t.cmd,
        "qos": 1,
    }
    return f"{settings.discovery_prefix}/device/{node}/config", payload


# ---- the bridge -------------------------------------------------------------------------------


def dumps(obj: Any) -> bytes:
    """Compact JSON; non-finite floats become null (JSON has no NaN)."""
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        text = json.dumps(_finite(obj), separators=(",", ":"), default=str)
    return text.encode("utf-8")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _significant(state: Mapping[str, Any]) -> dict[str, Any]:
    """The state without what changes continuously (clocks, pad temperature)."""
    view = {k: v for k, v in state.items() if k not in ("elapsed_s", "remaining_s")}
    heat = view.get("heat")
    if isinstance(heat, dict):
        view["heat"] = {k: v for k, v in heat.items() if k != "temp_c"}
    return view


@dataclass
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    properties: Properties | None = None


@dataclass
class _Seen:
    """A command id within the idempotency window: its reply, once known."""

    t: float
    reply: dict[str, Any] | None = None
    waiters: list[tuple[str | None, bytes | None]] = field(default_factory=list)


class MqttBridge:
    """The chair on the broker: availability, state, telemetry, events, commands and replies.

    ``await bridge.run()`` connects and serves until `stop()`; it reconnects on its own after any
    broker loss. The controller is never blocked: its callbacks only queue work for this loop.
    """

    def __init__(
        self,
        controller: ControllerAPI,
        settings: MqttSettings,
        *,
        config: ChairConfig | None = None,
    ) -> None:
        self.controller = controller
        self.settings = settings
        self.config = config if config is not None else ChairConfig()
        self.topics = settings.topics
        self.limits = CommandLimits.from_config(self.config)
        self.connected = asyncio.Event()
        """Set while connected and announced (subscribed, availability ``online`` published)."""
        self.connections = 0
        """Successful connections so far (1 + reconnects)."""
        self._client: aiomqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._out: collections.deque[_Outgoing] = collections.deque()
        self._out_ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._seen: collections.OrderedDict[str, _Seen] = collections.OrderedDict()
        self._busy = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._latest_state: dict[str, Any] | None = None
        self._last_sig: dict[str, Any] | None = None
        self._last_state_payload: bytes | None = None
        self._last_state_t = 0.0
        self._minor_timer: asyncio.TimerHandle | None = None
        self._telemetry_next: _Outgoing | None = None
        self._preset: dict[str, Any] = {}
        self._started = False

    # ---- life cycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until `stop()`: connect, announce, serve, and reconnect with back-off."""
        if self._started:
            raise RuntimeError("MqttBridge.run() is not reentrant")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._init_preset()
        self.controller.on_change(self._on_change)
        self.controller.on_event(self._on_event)
        s = self.settings
        will = aiomqtt.Will(self.topics.availability, b"offline", qos=1, retain=True)
        identifier = s.client_id or f"{s.prefix.replace('/', '-')}-{s.chair_id}"
        tls_context = s.ssl_context()  # a bad certificate or key fails here, once, clearly
        failures = 0
        while not self._stopping.is_set():
            attempt = asyncio.create_task(
                self._connection(s.client(identifier, will, tls_context=tls_context), failures)
            )
            stopping = asyncio.create_task(self._stopping.wait())
            try:
                await asyncio.wait({attempt, stopping}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # run() itself cancelled: take the attempt along
                attempt.cancel()
                raise
            finally:
                stopping.cancel()
            if not attempt.done() and not self.connected.is_set():
                attempt.cancel()  # still connecting: nothing to say goodbye to
            try:
                up_s = await attempt
            except asyncio.CancelledError:
                if not self._stopping.is_set():
                    raise
                break
            if self._stopping.is_set():
                break
            if up_s is not None and up_s > 10.0:
                failures = 0  # a long-lived connection ends the back-off streak
            delay = min(s.reconnect_max_s, s.reconnect_min_s * 2.0**failures)
            failures += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay * random.uniform(0.8, 1.0))
        log.info("stopped")

    async def _connection(self, client: aiomqtt.Client, failures: int) -> float | None:
        """One connection, from connect to loss; how long it was up (None: never)."""
        s = self.settings
        up_since: float | None = None
        try:
            async with client:
                up_since = time.monotonic()
                self.connections += 1
                if failures:
                    log.info("reconnected to %s:%d", s.host, s.port)
                else:
                    log.info("connected to %s:%d as %s", s.host, s.port, client.identifier)
                await self._serve(client)
        except aiomqtt.MqttError as e:
            what = "lost the broker" if up_since is not None else "cannot reach the broker"
            if failures == 0 or up_since is not None:
                log.warning("%s (%s:%d): %s; retrying", what, s.host, s.port, e)
        except Exception:  # a bug in the bridge must not take the daemon (or a session) down
            log.exception("MQTT bridge error; reconnecting")
        finally:
            self._client = None
            self.connected.clear()
        return None if up_since is None else time.monotonic() - up_since

    async def stop(self, timeout_s: float = 3.0) -> None:
        """Publish ``offline``, disconnect and make `run()` return."""
        self._stopping.set()
        client = self._client
        if client is not None and self.connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await client.publish(
                    self.topics.availability, b"offline", qos=1, retain=True, timeout=timeout_s
                )
        self._out_ready.set()

    async def _serve(self, client: aiomqtt.Client) -> None:
        t, s = self.topics, self.settings
        if s.v5:
            # Retained commands are stale: never sent to us, and flagged when published live.
            options = SubscribeOptions(
                qos=1,
                retainAsPublished=True,
                retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND,
            )
            await client.subscribe(t.cmd, options=options)
        else:
            await client.subscribe(t.cmd, qos=1)
        if s.discovery:
            await client.subscribe(f"{s.discovery_prefix}/status", qos=1)
        self._client = client
        # Fresh announcement: whatever was queued for the last connection is stale except
        # replies and events.
        self._out = collections.deque(o for o in self._out if o.retain is False)
        self._telemetry_next = None
        for item in self._announcement():
            await client.publish(item.topic, item.payload, item.qos, item.retain)
        self.connected.set()
        tasks = [
            asyncio.create_task(self._read(client), name="mqtt-read"),
            asyncio.create_task(self._send(client), name="mqtt-send"),
            asyncio.create_task(self._stopping.wait(), name="mqtt-stop"),
        ]
        if s.telemetry_hz > 0:
            tasks.append(asyncio.create_task(self._telemetry(), name="mqtt-telemetry"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._client = None
            self._out_ready.set()  # wakes the sender to see it
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.connected.clear()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if self._stopping.is_set():
            # stop() published offline already when it could; say it again in case a reply or
            # state was in flight, then leave cleanly (no last will after a clean disconnect).
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(t.availability, b"offline", qos=1, retain=True, timeout=2.0)

    def _announcement(self) -> list[_Outgoing]:
        """Discovery, state, then availability: when ``online`` arrives, all else is in place."""
        items = []
        if self.settings.discovery:
            topic, payload = discovery_config(self.settings, self._programs(), self.config)
            items.append(_Outgoing(topic, dumps(payload), 1, retain=True))
        state = self._state_payload()
        self._last_state_payload = dumps(state)
        self._last_sig = _significant(state)
        self._last_state_t = time.monotonic()
        items.append(_Outgoing(self.topics.state, self._last_state_payload, 1, retain=True))
        items.append(_Outgoing(self.topics.availability, b"online", 1, retain=True))
        return items

    # ---- inbound -------------------------------------------------------------------------------

    async def _read(self, client: aiomqtt.Client) -> None:
        ha_status = f"{self.settings.discovery_prefix}/status"
        async for msg in client.messages:
            topic = msg.topic.value
            try:
                if topic == self.topics.cmd:
                    self._on_command(msg)
                elif topic == ha_status and msg.payload == b"online" and not msg.retain:
                    log.info("Home Assistant is online: discovery sent again")
                    for item in self._announcement():
                        self._enqueue(item)
            except Exception:  # a bug here must not end the connection or the session
                log.exception("while handling a message on %s", topic)

    def _on_command(self, msg: aiomqtt.Message) -> None:
        if msg.retain:
            log.warning("ignored a retained command on %s (stale by definition)", msg.topic)
            return
        payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
        response_topic, correlation = self._response_props(msg)
        try:
            cmd = parse_command(payload, self.limits)
        except BadCommand as e:
            log.debug("refused command (%s): %s", e.code, e.message)  # a flood must not flood logs
            self._send_reply(self._reply(e.id, e.action, e), response_topic, correlation)
            return
        if cmd.action == "status":
            self._send_reply(self._reply(cmd.id, cmd.action), response_topic, correlation)
            return
        if cmd.id is not None:
            self._forget_old()
            seen = self._seen.get(cmd.id)
            if seen is not None:
                log.info("command id %r seen before: not executed again", cmd.id)
                if seen.reply is None:
                    seen.waiters.append((response_topic, correlation))
                else:
                    self._send_reply(seen.reply, response_topic, correlation)
                return
        # An e-stop is never refused as busy; a preset only touches the bridge.
        exclusive = cmd.action not in ("estop", "preset")
        if exclusive and self._busy:
            error = CommandError("busy", "another command is being executed; try again")
            self._send_reply(self._reply(cmd.id, cmd.action, error), response_topic, correlation)
            return
        if cmd.id is not None:
            self._seen[cmd.id] = _Seen(time.monotonic(), waiters=[(response_topic, correlation)])
        if exclusive:
            self._busy = True
        task = asyncio.create_task(
            self._execute(cmd, exclusive, response_topic, correlation), name=f"cmd-{cmd.action}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(
        self,
        cmd: Command,
        exclusive: bool,
        response_topic: str | None,
        correlation: bytes | None,
    ) -> None:
        error: CommandError | None = None
        try:
            await self._dispatch(cmd)
        except CommandError as e:
            error = e
        except Exception as e:
            log.exception("controller failed on %s", cmd.action)
            error = CommandError("internal", f"{cmd.action} failed: {type(e).__name__}: {e}")
        finally:
            if exclusive:
                self._busy = False
        if error is None:
            log.info("command %s done (id %s)", cmd.action, cmd.id)
        else:
            log.info("command %s refused (%s): %s", cmd.action, error.code, error.message)
        reply = self._reply(cmd.id, cmd.action, error)
        seen = self._seen.get(cmd.id) if cmd.id is not None else None
        if seen is None:
            self._send_reply(reply, response_topic, correlation)
            return
        seen.reply = reply
        waiters, seen.waiters = seen.waiters, []
        for rt, cd in waiters:
            self._send_reply(reply, rt, cd)

    async def _dispatch(self, cmd: Command) -> None:
        ctl, a = self.controller, cmd.args
        match cmd.action:
            case "start":
                program = a.get("program") or self._preset.get("program")
                if not program:
                    raise CommandError("bad_field", "start needs a program (none preset)")
                self._check_program(program)
                await ctl.start(
                    program,
                    minutes=a.get("minutes", self._preset.get("minutes")),
                    intensity=a.get("intensity"),
                    heat=a.get("heat"),
                )
            case "pause":
                await ctl.pause()
            case "resume":
                await ctl.resume()
            case "stop":
                await ctl.stop()
            case "estop":
                await ctl.estop()
            case "reset":
                await ctl.reset()
            case "set":
                await ctl.set(intensity=a.get("intensity"), heat=a.get("heat"))
            case "adjust_shoulder":
                await ctl.adjust_shoulder(a["mm"])
            case "preset":
                if "program" in a:
                    self._check_program(a["program"])
                self._preset.update(a)
                self._state_changed(ctl.state())
            case _:  # parse_command admits only ACTIONS
                raise CommandError("unknown_action", f"unknown action {cmd.action!r}")

    def _check_program(self, program: str) -> None:
        programs = self._programs()
        if program not in programs:
            raise CommandError(
                "unknown_program",
                f"no program {_short(program)}; one of {', '.join(programs)}",
            )

    def _programs(self) -> list[str]:
        try:
            return list(self.controller.programs())
        except Exception:
            log.exception("controller.programs() failed")
            return []

    def _forget_old(self) -> None:
        horizon = time.monotonic() - IDEMPOTENCY_S
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if oldest.t >= horizon and len(self._seen) < IDEMPOTENCY_MAX_IDS:
                break
            if oldest.reply is None and oldest.t >= horizon:
                break  # still executing: keep it
            self._seen.popitem(last=False)

    def _response_props(self, msg: aiomqtt.Message) -> tuple[str | None, bytes | None]:
        props = msg.properties
        if props is None:
            return None, None
        topic = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        if topic is not None and not self._response_topic_ok(topic):
            log.warning("ignored response topic %s", _short(topic, 80))
            topic = None
        return topic, bytes(correlation) if correlation is not None else None

    def _response_topic_ok(self, topic: str) -> bool:
        """A client's own topic, or one under ``<base>/reply/``; never one of ours to clobber."""
        t = self.topics
        if not topic or len(topic) > 256 or topic.startswith("$"):
            return False
        if any(c in topic for c in "+#\0"):
            return False
        if topic == t.reply:
            return False  # the reply goes there anyway
        if topic.startswith(t.base + "/") and not topic.startswith(t.reply + "/"):
            return False
        return not topic.startswith(self.settings.discovery_prefix + "/")

    # ---- outbound ------------------------------------------------------------------------------

    def _reply(
        self, cmd_id: str | None, action: str | None, error: CommandError | None = None
    ) -> dict[str, Any]:
        return {
            "id": cmd_id,
            "action": action,
            "ok": error is None,
            "state": self._state_payload(),
            "error": None if error is None else {"code": error.code, "message": error.message},
        }

    def _send_reply(
        self, reply: dict[str, Any], response_topic: str | None, correlation: bytes | None
    ) -> None:
        payload = dumps(reply)
        props = None
        if self.settings.v5 and correlation is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.CorrelationData = correlation
        self._enqueue(_Outgoing(self.topics.reply, payload, 1, properties=props))
        if response_topic is not None:
            self._enqueue(_Outgoing(response_topic, payload, 1, properties=props))

    def _enqueue(self, item: _Outgoing) -> None:
        if len(self._out) >= _OUT_QUEUE_MAX:
            dropped = self._out.popleft()
            log.warning("outgoing queue full: dropped a message for %s", dropped.topic)
        self._out.append(item)
        self._out_ready.set()

    async def _send(self, client: aiomqtt.Client) -> None:
        # Ends when the connection does (`self._client` moves on), not only by cancellation:
        # Python 3.11's asyncio.wait_for (inside aiomqtt's publish) can swallow a cancel.
        while True:
            while not self._out and self._telemetry_next is None and self._client is client:
                self._out_ready.clear()
                await self._out_ready.wait()
            if self._client is not client:
                return
            if self._telemetry_next is not None:
                item, self._telemetry_next = self._telemetry_next, None
            else:
                item = self._out.popleft()
            try:
                await client.publish(
                    item.topic, item.payload, item.qos, item.retain, properties=item.properties
                )
            except aiomqtt.MqttCodeError as e:  # e.g. over the broker's packet size: drop it
                log.warning("publish to %s failed: %s", item.topic, e)

    def _state_payload(self, state: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if state is None:
            try:
                state = self.controller.state()
            except Exception:
                log.exception("controller.state() failed")
                state = self._latest_state or {"state": None}
        return {**state, "preset": dict(self._preset)}

    def _init_preset(self) -> None:
        """Until told otherwise, a ``start`` without a program starts the first one, for the
        program's own default length."""
        programs = self._programs()
        self._preset = {"program": programs[0] if programs else None, "minutes": None}

    # ---- controller callbacks (may come from any thread; never block) --------------------------

    def _post(self, fn: Callable[..., Any], arg: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            fn(arg)
        else:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody to tell
                loop.call_soon_threadsafe(fn, copy.deepcopy(arg))

    def _on_change(self, state: dict[str, Any]) -> None:
        try:
            self._post(self._state_changed, state)
        except Exception:
            log.exception("on_change")

    def _on_event(self, event: dict[str, Any]) -> None:
        try:
            self._post(self._event, event)
        except Exception:
            log.exception("on_event")

    def _event(self, event: dict[str, Any]) -> None:
        self._enqueue(_Outgoing(self.topics.event, dumps(event), 1))

    def _state_changed(self, state: dict[str, Any]) -> None:
        """Publish at once when something but the clocks changed; clocks at most every
        `state_interval_s`."""
        self._latest_state = state
        payload = self._state_payload(state)
        sig = _significant(payload)
        if sig != self._last_sig:
            self._last_sig = sig
            self._publish_state(payload)
            return
        if self._minor_timer is None and self._loop is not None:
            wait = self._last_state_t + self.settings.state_interval_s - time.monotonic()
            self._minor_timer = self._loop.call_later(max(0.0, wait), self._publish_latest)

    def _publish_latest(self) -> None:
        self._minor_timer = None
        if self._latest_state is not None:
            self._publish_state(self._state_payload(self._latest_state))

    def _publish_state(self, payload: dict[str, Any]) -> None:
        if self._minor_timer is not None:
            self._minor_timer.cancel()
            self._minor_timer = None
        data = dumps(payload)
        if data == self._last_state_payload:
            return
        self._last_state_payload = data
        self._last_state_t = time.monotonic()
        if self._client is not None:  # else the state goes out with the next announcement
            self._enqueue(_Outgoing(self.topics.state, data, 1, retain=True))

    async def _telemetry(self) -> None:
        period = 1.0 / self.settings.telemetry_hz
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        last_key: tuple[Any, Any] | None = None
        last_active = False
        while True:
            next_t += period
            now = loop.time()
            if next_t < now - period:
                next_t = now  # fell behind (busy machine): skip, don't burst
            await asyncio.sleep(max(0.0, next_t - now))
            try:
                sample = self.controller.telemetry()
            except Exception:
                log.exception("controller.telemetry() failed")
                continue
            if sample is None:
                continue
            key = (sample.get("t"), sample.get("state"))
            active = sample.get("state") in TELEMETRY_STATES
            if key == last_key or not (active or last_active):
                continue
            last_key, last_active = key, active
            if self._client is not None:
                # One slot, sent ahead of the queue: a flood of replies cannot delay telemetry,
                # and a slow link drops samples rather than piling them up.
                self._telemetry_next = _Outgoing(self.topics.telemetry, dumps(sample), 0)
                self._out_ready.set()
