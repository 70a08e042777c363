"""How the daemon and ``chair remote`` reach the broker (docs/mqtt.md, "Settings" and
"Authentication, TLS and ACLs").

`MqttSettings` holds the broker URL, credentials, TLS files, topic names and rates, and makes the
aiomqtt client and its TLS context. It is read, in rising priority, from defaults, a TOML file,
``CHAIR_*`` environment variables and command-line flags (`load_settings`, `add_broker_arguments`,
`settings_from_args`).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import aiomqtt
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from chair.mqtt.topics import Topics

_TOPIC_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")
_NODE_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


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
    outbox_until: Literal["broker", "service"] = "broker"
    """How long a finished session's record stays in the chair's outbox (docs/mqtt.md, Users and
    session records): until the broker's PUBACK (``broker``: a chair on its own), or until the
    operator's service acknowledges it on ``<base>/ack`` once it has the record in its database
    (``service``: a chair in a fleet, docs/fleet-service.md), re-sent until then."""
    outbox_resend_s: float = Field(default=30.0, gt=0.0, le=86400.0)
    """With ``outbox_until = "service"``: a record not acknowledged this long after its PUBACK is
    sent again, the wait doubling each time up to `outbox_resend_max_s` (and every record not
    acknowledged is sent again after each reconnection)."""
    outbox_resend_max_s: float = Field(default=3600.0, gt=0.0, le=86400.0)

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
        if self.outbox_resend_s > self.outbox_resend_max_s:
            raise ValueError("outbox_resend_s must not exceed outbox_resend_max_s")
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


def add_broker_arguments(parser: argparse.ArgumentParser, *, one_chair: bool = True) -> None:
    """The broker options shared by ``chair serve``, ``chair remote`` and (``one_chair=False``:
    no ``--chair-id``, no ``--mqtt-version``, as they speak for many chairs in MQTT 5)
    ``chair fleet``."""
    g = parser.add_argument_group("broker")
    g.add_argument("--broker", metavar="URL", help="mqtt://host:port or mqtts://host:port")
    g.add_argument("--username", metavar="U")
    pw = g.add_mutually_exclusive_group()
    pw.add_argument("--password", metavar="P", help="prefer --password-file or $CHAIR_PASSWORD")
    pw.add_argument("--password-file", metavar="F", help="file whose first line is the password")
    g.add_argument("--ca-file", metavar="PATH", help="CA bundle to verify a TLS broker")
    g.add_argument("--cert-file", metavar="PATH", help="client certificate (TLS)")
    g.add_argument("--key-file", metavar="PATH", help="client key (TLS)")
    if one_chair:
        g.add_argument("--chair-id", metavar="ID", help="this chair's topic level (default chair1)")
        g.add_argument("--prefix", metavar="P", help="topic prefix (default massagechair)")
        g.add_argument("--mqtt-version", choices=("5", "3.1.1"), help="protocol (default 5)")
    else:
        g.add_argument(
            "--prefix", metavar="P", help="the chairs' topic prefix (default massagechair)"
        )
    g.add_argument("--config-file", metavar="TOML", help="MQTT settings file ([mqtt] table)")


def add_outbox_argument(parser: argparse.ArgumentParser) -> None:
    """``--outbox-until``, for the commands that run chairs (`chair serve`, `chair fleet-sim`)."""
    parser.add_argument(
        "--outbox-until",
        choices=("broker", "service"),
        help="keep a finished session's record until the broker's PUBACK (default) or until the "
        "fleet service acknowledges it (a chair in a fleet; docs/fleet-service.md)",
    )


def settings_from_args(args: argparse.Namespace, **extra: Any) -> MqttSettings:
    """Settings for a parsed command line (flags over environment over file); `extra` overrides
    the flags (``chair fleet`` fixes ``chair_id`` and ``protocol``: it has no such flags)."""
    overrides = {
        "broker": args.broker,
        "username": args.username,
        "password": args.password,
        "password_file": args.password_file,
        "ca_file": args.ca_file,
        "cert_file": args.cert_file,
        "key_file": args.key_file,
        "chair_id": getattr(args, "chair_id", None),
        "prefix": args.prefix,
        "protocol": getattr(args, "mqtt_version", None),
        "outbox_until": getattr(args, "outbox_until", None),
        **extra,
    }
    return load_settings(args.config_file, overrides=overrides)
