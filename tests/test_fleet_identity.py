"""Per-chair identity and its security proof (docs/fleet.md, docs/interfaces.md §7).

A real mosquitto runs with the configurations of docs/fleet.md as they stand on the page (only
the paths and ports are changed, and logging added), and certificates made by `chair provision`
run as a subprocess. Reason codes are read from the wire: paho-mqtt's v2 callbacks (aiomqtt 2.x
returns SUBACK codes but drops the PUBACK's), and the TLS refusals from a raw handshake. Where
the proof is that something is *never* delivered, a later message on the same connection is the
barrier: mosquitto handles one client's packets in order and queues deliveries before it
acknowledges, so a message it had routed would arrive before the barrier.

When the tests run as root, mosquitto drops to its own user as in production: the broker's files
then live in a directory of mode 755 outside pytest's (mode 700) and the key belongs to
``mosquitto``, as docs/fleet.md says to install them.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion

from chair.fleet import identity
from tests.mqtt_broker import MOSQUITTO, free_port, have_mosquitto

pytestmark = [pytest.mark.broker]

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "fleet.md"
DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
MOSQUITTO_CTRL = shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl"
MOSQUITTO_RR = shutil.which("mosquitto_rr") or "/usr/bin/mosquitto_rr"
ADMIN, ADMIN_PASSWORD = "@admin", "fleet-test-admin"
WAIT_S = 15.0
"""Ceiling of every wait on the broker or a client (they normally take milliseconds)."""

GRANTED_QOS1, SUCCESS, NOT_AUTHORIZED = 0x01, 0x00, 0x87
CHAIRS = ("A", "B", "C")
SERVICE = "fleet-1"


# ---- the CLI -------------------------------------------------------------------------------


def provision(*argvs: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """`python -m chair provision ARGS` for each argument list, all at once."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "chair", "provision", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for argv in argvs
    ]
    done = []
    for argv, proc in zip(argvs, procs, strict=True):
        out, err = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    return done


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}: {result.stderr}"
    return result.stdout


@dataclass(frozen=True)
class Identity:
    name: str
    cert: Path
    key: Path


@dataclass(frozen=True)
class Fleet:
    ca_dir: Path
    ca: Path

    def chair(self, name: str) -> Identity:
        d = self.ca_dir / "chairs" / name
        return Identity(name, d / f"{name}.crt", d / f"{name}.key")

    def service(self, name: str = SERVICE) -> Identity:
        d = self.ca_dir / "services" / name
        return Identity(name, d / f"{name}.crt", d / f"{name}.key")

    def rules(self, name: str, revoke: bool = False) -> Path:
        return self.ca_dir / "dynsec" / f"{name}{'.revoke' if revoke else ''}.json"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    """A fleet CA with chairs A, B and C, each issued by its own `chair provision` subprocess,
    all at once (the CA is created by whichever comes first: the others wait on its lock), then
    the service instance fleet-1 and the broker's certificate (the same command, in process)."""
    from chair.cli import main

    ca_dir = tmp_path_factory.mktemp("fleet") / "ca"
    outs = [ok(r) for r in provision(*([c, "--ca", str(ca_dir)] for c in CHAIRS))]
    assert sum("created the fleet CA" in out for out in outs) == 1, outs
    assert main(["provision", SERVICE, "--service", "--ca", str(ca_dir)]) == 0
    assert main(["provision", "--broker", "localhost", "--ca", str(ca_dir)]) == 0
    return Fleet(ca_dir, ca_dir / "ca.crt")


# ---- docs/fleet.md -------------------------------------------------------------------------


def doc_block(first_line: str) -> str:
    """The fenced block of docs/fleet.md whose first line is `first_line`."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)
    found = [b for b in blocks if b.splitlines()[0] == first_line]
    assert len(found) == 1, f"docs/fleet.md: no single block starting {first_line!r}"
    return str(found[0])


# ---- a broker configured as docs/fleet.md says ---------------------------------------------


def _mosquitto_user() -> tuple[int, int] | None:
    """mosquitto's own user when we are root (it drops to it); None otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam("mosquitto")
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


class FleetBroker:
    """mosquitto with setup 1 (`dynsec`) or setup 2 (`acl`) of docs/fleet.md."""

    def __init__(self, fleet: Fleet, setup: str, service_ca: Path | None = None) -> None:
        """`service_ca`: with setup 1, the service's own listener too (its CA's files)."""
        self.fleet = fleet
        self.setup = setup
        self.service_ca = service_ca
        self.dir = Path(tempfile.mkdtemp(prefix="fleet-broker-"))
        self.dir.chmod(0o755)
        self.port, self.admin_port = free_port(), free_port()
        self.service_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "mosquitto.log"
        try:
            self._configure()
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _configure(self) -> None:
        fleet, setup = self.fleet, self.setup
        owner = _mosquitto_user()
        etc = self.dir / "etc"  # /etc/mosquitto/fleet
        state = self.dir / "state"  # /var/lib/mosquitto
        for d in (etc, state):
            d.mkdir(mode=0o755)
            d.chmod(0o755)
        # the install commands of docs/fleet.md
        broker = fleet.ca_dir / "broker"
        for src in (broker / "ca.crt", broker / "server.crt", fleet.ca_dir / "crl.pem"):
            self.install(src, etc / src.name, 0o644)
        self.install(broker / "server.key", etc / "server.key", 0o600, owner)
        if owner is not None:
            os.chown(state, *owner)
        if setup == "dynsec":
            doc = doc_block("# /etc/mosquitto/conf.d/fleet.conf")
            dynsec = state / "dynamic-security.json"
            subprocess.run(
                [MOSQUITTO_CTRL, "dynsec", "init", str(dynsec), ADMIN, ADMIN_PASSWORD],
                check=True,
                capture_output=True,
                timeout=30,
            )
            dynsec.chmod(0o600)
            if owner is not None:
                os.chown(dynsec, *owner)
        else:
            doc = doc_block("# /etc/mosquitto/conf.d/fleet-acl.conf")
            acl = doc_block("# /etc/mosquitto/fleet/acl")
            (etc / "acl").write_text(acl, encoding="utf-8")
            (etc / "acl").chmod(0o644)
        if self.service_ca is not None:  # the service's listener: its CA's files
            (etc / "service").mkdir(mode=0o755)
            (etc / "service").chmod(0o755)
            svc = self.service_ca
            for src in (svc / "broker" / "ca.crt", svc / "broker" / "server.crt", svc / "crl.pem"):
                self.install(src, etc / "service" / src.name, 0o644)
            self.install(
                svc / "broker" / "server.key", etc / "service" / "server.key", 0o600, owner
            )
            doc += doc_block("# /etc/mosquitto/conf.d/fleet-service-listener.conf").replace(
                "\nlistener 8884\n", f"\nlistener {self.service_port} 127.0.0.1\n"
            )
        conf = (
            doc.replace("/etc/mosquitto/fleet/", f"{etc}/")
            .replace("/var/lib/mosquitto/", f"{state}/")
            .replace("\nlistener 8883\n", f"\nlistener {self.port} 127.0.0.1\n")
            .replace("\nlistener 1884 127.0.0.1\n", f"\nlistener {self.admin_port} 127.0.0.1\n")
        )
        settings = [x for x in conf.splitlines() if not x.startswith("#")]
        assert f"listener {self.port} 127.0.0.1" in settings, conf
        assert not any("/etc/mosquitto" in x or "/var/lib" in x for x in settings), conf
        test_only = ["persistence false", "log_dest stderr", "log_type all"]
        if os.geteuid() == 0 and owner is None:
            test_only.append(f"user {getpass.getuser()}")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(test_only) + "\n" + conf, encoding="utf-8")

    @staticmethod
    def install(src: Path, dst: Path, mode: int, owner: tuple[int, int] | None = None) -> None:
        shutil.copyfile(src, dst)
        dst.chmod(mode)
        if owner is not None:
            os.chown(dst, *owner)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        ports = [self.port] + ([self.admin_port] if self.setup == "dynsec" else [])
        ports += [self.service_port] if self.service_ca is not None else []
        for port in ports:

            def up(port: int = port) -> bool:
                return _listening(port) or self._died()

            wait_until(up, f"mosquitto on port {port}")
        assert self.proc.poll() is None, self.log_tail()

    def _died(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"mosquitto exited: {self.log_tail()}")
        return False

    def reload(self) -> None:
        """SIGHUP, and wait until mosquitto has reloaded: it logs "Reloading config." and then,
        in the same step of its single-threaded loop, reads the certificates and the CRL again."""
        assert self.proc is not None
        before = self.log_text().count("Reloading config.")
        self.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.log_text().count("Reloading config.") > before, "the reload")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def apply(self, rules: Path) -> list[dict[str, Any]]:
        """The identity's dynamic-security rules, applied as docs/fleet.md does (mosquitto_rr on
        the administration listener); every command must succeed."""
        r = subprocess.run(
            [MOSQUITTO_RR, "-h", "127.0.0.1", "-p", str(self.admin_port), "-u", ADMIN,
             "-P", ADMIN_PASSWORD, "-t", "$CONTROL/dynamic-security/v1",
             "-e", "$CONTROL/dynamic-security/v1/response", "-m", rules.read_text(), "-W", "10"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert r.returncode == 0, f"mosquitto_rr: {r.stderr}\n{self.log_tail()}"
        responses: list[dict[str, Any]] = json.loads(r.stdout)["responses"]
        assert responses and all("error" not in x for x in responses), responses
        return responses


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_until(cond: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll `cond` (for what has no event of its own: a port, a log line) until it holds."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def brokers(fleet: Fleet) -> Iterator[Callable[..., FleetBroker]]:
    made: list[FleetBroker] = []

    def make(setup: str, service_ca: Path | None = None) -> FleetBroker:
        if not have_mosquitto():
            pytest.skip("mosquitto is not installed")
        if setup == "dynsec" and not (DYNSEC_PLUGIN.exists() and os.access(MOSQUITTO_RR, os.X_OK)):
            pytest.skip("mosquitto's dynamic-security plugin or mosquitto_rr is not installed")
        b = FleetBroker(fleet, setup, service_ca)
        made.append(b)
        b.start()
        return b

    yield make
    for b in made:
        b.stop()
        shutil.rmtree(b.dir, ignore_errors=True)


# ---- clients -------------------------------------------------------------------------------


class Peer:
    """One MQTT 5 client over TLS (paho, in its own thread): the reason codes of its CONNACK,
    SUBACKs and PUBACKs, and the messages it receives."""

    def __init__(self, fleet: Fleet, port: int, who: Identity, client_id: str) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.port = port
        ctx = ssl.create_default_context(cafile=str(fleet.ca))
        ctx.load_cert_chain(str(who.cert), str(who.key))
        self.client.tls_set_context(ctx)
        self.cond = threading.Condition()
        self.connack: int | None = None
        self.subacks: dict[int, list[int]] = {}
        self.pubacks: dict[int, int] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.disconnected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        with self.cond:
            self.connack = int(rc.value)
            self.cond.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, rcs: list[Any], _p: Any) -> None:
        with self.cond:
            self.subacks[mid] = [int(rc.value) for rc in rcs]
            self.cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self.cond:
            self.pubacks[mid] = int(rc.value)
            self.cond.notify_all()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self.cond:
            self.messages.append((str(msg.topic), bytes(msg.payload)))
            self.cond.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        self.disconnected.set()

    def _wait(self, cond: Callable[[], bool], what: str) -> None:
        with self.cond:
            assert self.cond.wait_for(cond, WAIT_S), f"timed out waiting for {what}"

    def connect(self) -> int:
        """The CONNACK's reason code."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        self._wait(lambda: self.connack is not None, "CONNACK")
        assert self.connack is not None
        return self.connack

    def subscribe(self, topic: str) -> int:
        """The SUBACK's reason code (the QoS granted, or a refusal >= 0x80)."""
        rc, mid = self.client.subscribe(topic, qos=1)
        assert rc == mqtt.MQTT_ERR_SUCCESS and mid is not None
        self._wait(lambda: mid in self.subacks, f"SUBACK {topic}")
        return self.subacks[mid][0]

    def publish(self, topic: str, payload: bytes) -> int:
        """QoS 1: the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos=1)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
        self._wait(lambda: info.mid in self.pubacks, f"PUBACK {topic}")
        return self.pubacks[info.mid]

    def wait_message(self, payload: bytes) -> str:
        """Wait for a message with this payload; its topic."""
        self._wait(lambda: any(p == payload for _, p in self.messages), f"message {payload!r}")
        return next(t for t, p in self.messages if p == payload)

    def payloads(self) -> list[bytes]:
        with self.cond:
            return [p for _, p in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers(fleet: Fleet) -> Iterator[Callable[..., Peer]]:
    made: list[Peer] = []

    def make(port: int, who: Identity, client_id: str | None = None) -> Peer:
        p = Peer(fleet, port, who, client_id or f"test-{who.name}")
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def _connect_packet(client_id: str, username: str | None = None) -> bytes:
    """An MQTT 5 CONNECT: clean start, keep-alive 60 s, no properties, a user name but no
    password when `username` is given."""
    cid, user = client_id.encode(), (username or "").encode()
    flags = 0x02 | (0x80 if username is not None else 0)
    body = b"\x00\x04MQTT\x05" + bytes([flags]) + b"\x00\x3c\x00"
    body += len(cid).to_bytes(2, "big") + cid
    if username is not None:
        body += len(user).to_bytes(2, "big") + user
    return bytes([0x10, len(body)]) + body


def mqtt_attempt(
    port: int,
    ca: Path | None,
    cert: Path | None = None,
    key: Path | None = None,
    username: str | None = None,
) -> str:
    """A raw MQTT 5 CONNECT (over TLS when `ca` is given): "connack 0xNN" (its reason code), or
    "refused: <why>" (the TLS alert the broker sent, or the connection closed without a
    CONNACK). TLS 1.2: the broker then judges the client's certificate inside the handshake, so
    its alert always reaches us (with TLS 1.3 it comes after the handshake, and a close can
    overtake it)."""
    head = b""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as raw:
        try:
            if ca is None:
                s: socket.socket = raw
            else:
                ctx = ssl.create_default_context(cafile=str(ca))
                ctx.maximum_version = ssl.TLSVersion.TLSv1_2
                if cert is not None:
                    ctx.load_cert_chain(str(cert), str(key) if key else None)
                s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            s.sendall(_connect_packet("raw-attempt", username))
            while len(head) < 4:
                chunk = s.recv(4 - len(head))
                if not chunk:
                    break
                head += chunk
        except (ssl.SSLError, OSError) as e:
            return f"refused: {e}"
    if len(head) == 4 and head[0] == 0x20:  # CONNACK: type, length, flags, reason code
        return f"connack {head[3]:#04x}"
    return f"refused: closed without a CONNACK ({head!r})"


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# ---- the certificates ------------------------------------------------------------------------


def test_provision_issues_one_identity_per_chair(fleet: Fleet) -> None:
    ca = load_cert(fleet.ca)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == identity.CA_CN
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert (fleet.ca_dir / "ca.key").stat().st_mode & 0o777 == 0o600
    serials = set()
    for name in CHAIRS:
        me = fleet.chair(name)
        cert = load_cert(me.cert)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        cert.verify_directly_issued_by(ca)
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert timedelta(days=700) < cert.not_valid_after_utc - datetime.now(UTC)
        assert me.key.stat().st_mode & 0o777 == 0o600
        assert (me.cert.parent / "ca.crt").read_bytes() == fleet.ca.read_bytes()
        serials.add(cert.serial_number)
    assert len(serials) == len(CHAIRS) and min(serials).bit_length() > 64  # random, not 1, 2, 3
    server = load_cert(fleet.ca_dir / "broker" / "server.crt")
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    crl = x509.load_pem_x509_crl((fleet.ca_dir / "crl.pem").read_bytes())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    index = json.loads((fleet.ca_dir / "index.json").read_text())
    kinds = {(r["name"], r["kind"]) for r in index["certificates"]}
    assert {("A", "chair"), (SERVICE, "service"), ("localhost", "broker")} <= kinds


# ---- setup 1: the dynamic-security plugin ---------------------------------------------------


def test_dynsec_confines_each_chair_to_its_own_base(
    fleet: Fleet, brokers: Callable[[str], FleetBroker], peers: Callable[..., Peer]
) -> None:
    broker = brokers("dynsec")
    for name in ("A", "B", SERVICE):
        broker.apply(fleet.rules(name))
    # C's certificate is valid but its rules were never applied: connected, allowed nothing
    c = peers(broker.port, fleet.chair("C"))
    assert c.connect() == SUCCESS
    assert c.subscribe("massagechair/C/#") == NOT_AUTHORIZED
    assert c.publish("massagechair/C/state", b"c") == NOT_AUTHORIZED

    a = peers(broker.port, fleet.chair("A"))
    b = peers(broker.port, fleet.chair("B"))
    svc = peers(broker.port, fleet.service())
    assert a.connect() == b.connect() == svc.connect() == SUCCESS

    # (a) under its own base a chair publishes and subscribes; the service reads and commands it
    assert a.subscribe("massagechair/A/#") == GRANTED_QOS1
    assert b.subscribe("massagechair/B/#") == GRANTED_QOS1
    assert svc.subscribe("$share/fleet/massagechair/#") == GRANTED_QOS1
    assert a.publish("massagechair/A/state", b"a-state") == SUCCESS
    assert a.wait_message(b"a-state") == "massagechair/A/state"
    assert svc.wait_message(b"a-state") == "massagechair/A/state"
    assert svc.publish("massagechair/A/cmd", b"svc-cmd") == SUCCESS
    assert a.wait_message(b"svc-cmd") == "massagechair/A/cmd"
    assert svc.publish("massagechair/A/state", b"svc-forged") == NOT_AUTHORIZED
    # the service's own topics (its status, alerts) are its own
    assert svc.subscribe("massagechair-fleet/#") == GRANTED_QOS1
    assert svc.publish("massagechair-fleet/service/fleet/fleet-1", b"online") == SUCCESS
    svc.wait_message(b"online")

    # (b) anywhere else the broker refuses with 0x87: publish and subscribe alike
    assert a.publish("massagechair/B/cmd", b"forged-by-a") == NOT_AUTHORIZED
    for topic in ("massagechair/B/#", "massagechair/B/state", "massagechair/#", "#",
                  "$share/fleet/massagechair/#", "massagechair-fleet/#",
                  "homeassistant/status"):  # fmt: skip
        assert a.subscribe(topic) == NOT_AUTHORIZED, topic
    # ... and nothing got through: the service's later command to B is B's next message
    assert svc.publish("massagechair/B/cmd", b"barrier-b") == SUCCESS
    b.wait_message(b"barrier-b")
    assert b"forged-by-a" not in b.payloads()
    assert b.publish("massagechair/B/event", b"b-secret") == SUCCESS
    svc.wait_message(b"b-secret")
    assert a.publish("massagechair/A/event", b"barrier-a") == SUCCESS
    a.wait_message(b"barrier-a")
    assert b"b-secret" not in a.payloads()

    # the client id is the certificate's CN: A claiming B's daemon's client id replaces only A
    a2 = peers(broker.port, fleet.chair("A"), client_id="massagechair-B")
    assert a2.connect() == SUCCESS
    assert a.disconnected.wait(WAIT_S)
    a.close()  # or paho reconnects it, and the two take turns throwing each other off
    assert b.publish("massagechair/B/state", b"b-still-here") == SUCCESS
    b.wait_message(b"b-still-here")
    assert not b.disconnected.is_set()


def test_no_fleet_certificate_no_connection(
    tmp_path: Path, fleet: Fleet, brokers: Callable[[str], FleetBroker]
) -> None:
    """(c) Without a certificate, or with one from another CA (even named like the fleet's CA and
    carrying a chair's CN), the TLS handshake fails; a chair's name cannot log in on the
    administration listener either (it has no password there)."""
    broker = brokers("dynsec")
    broker.apply(fleet.rules("B"))
    refused = mqtt_attempt(broker.port, fleet.ca)
    assert refused.startswith("refused:") and "alert" in refused.lower(), refused
    rogue_cert, rogue_key = _rogue_chair(tmp_path, "B")
    refused = mqtt_attempt(broker.port, fleet.ca, rogue_cert, rogue_key)
    # a TLS alert: "decrypt error" here (the fleet CA's name, not its signature)
    assert refused.startswith("refused:") and "alert" in refused.lower(), refused
    b = fleet.chair("B")
    assert mqtt_attempt(broker.port, fleet.ca, b.cert, b.key) == "connack 0x00"
    assert mqtt_attempt(broker.admin_port, None, username="B") == f"connack {NOT_AUTHORIZED:#04x}"


def _rogue_chair(directory: Path, cn: str) -> tuple[Path, Path]:
    """A CA of its own (with the fleet CA's name) and a client certificate for `cn` from it."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.CA_CN)])
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "rogue.crt", directory / "rogue.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_revoked_chair_is_refused_and_the_others_are_not(
    fleet: Fleet,
    brokers: Callable[[str], FleetBroker],
    peers: Callable[..., Peer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """(d) docs/fleet.md, Revoking a chair: `chair provision --revoke`, the new crl.pem installed,
    a reload (SIGHUP), the revoke rules; then issued again."""
    broker = brokers("dynsec")
    for name in ("B", "C"):
        broker.apply(fleet.rules(name))
    c_id, b_id = fleet.chair("C"), fleet.chair("B")
    old_serial = load_cert(c_id.cert).serial_number
    c, b = peers(broker.port, c_id), peers(broker.port, b_id)
    assert c.connect() == b.connect() == SUCCESS
    assert c.subscribe("massagechair/C/#") == b.subscribe("massagechair/B/#") == GRANTED_QOS1

    out = ok(provision(["--revoke", "C", "--ca", str(fleet.ca_dir)])[0])
    assert f"revoked C: serial {old_serial:x}" in out
    assert old_serial in identity.revoked_serials(fleet.ca_dir)
    FleetBroker.install(fleet.ca_dir / "crl.pem", broker.dir / "etc" / "crl.pem", 0o644)
    broker.reload()
    refused = mqtt_attempt(broker.port, fleet.ca, c_id.cert, c_id.key)
    assert refused.startswith("refused:") and "revoked" in refused.lower(), refused
    # the reload leaves open connections alone (docs/fleet.md): C's is still there, B's too ...
    assert c.publish("massagechair/C/state", b"c-after-reload") == SUCCESS
    c.wait_message(b"c-after-reload")
    assert b.publish("massagechair/B/state", b"b-after-reload") == SUCCESS
    b.wait_message(b"b-after-reload")
    # ... until C's client is deleted, which closes C's connection and nobody else's
    broker.apply(fleet.rules("C", revoke=True))
    assert c.disconnected.wait(WAIT_S)
    c.close()
    assert b.publish("massagechair/B/state", b"b-undisturbed") == SUCCESS
    b.wait_message(b"b-undisturbed")
    assert not b.disconnected.is_set()
    # B connects anew (last: with use_username_as_clientid a new B replaces the open one)
    b.close()
    assert mqtt_attempt(broker.port, fleet.ca, b_id.cert, b_id.key) == "connack 0x00"
    from chair.cli import main

    capsys.readouterr()
    assert main(["provision", "--revoke", "C", "--ca", str(fleet.ca_dir)]) == 0
    assert capsys.readouterr().out.startswith("C: already revoked; nothing changed")

    # issued again: a new key and serial, which the CRL does not list
    ok(provision(["C", "--ca", str(fleet.ca_dir)])[0])
    new_serial = load_cert(c_id.cert).serial_number
    assert new_serial != old_serial
    assert identity.revoked_serials(fleet.ca_dir) == {old_serial}
    broker.apply(fleet.rules("C"))
    c2 = peers(broker.port, c_id)
    assert c2.connect() == SUCCESS
    assert c2.subscribe("massagechair/C/#") == GRANTED_QOS1
    assert c2.publish("massagechair/C/state", b"c-again") == SUCCESS
    c2.wait_message(b"c-again")


def test_dynsec_service_listener_keeps_the_services_client_ids(
    tmp_path: Path, fleet: Fleet, brokers: Callable[..., FleetBroker], peers: Callable[..., Peer]
) -> None:
    """docs/fleet.md, The service on a listener of its own, beside setup 1: certificates from a
    second CA (the service's) log in there and keep the client id they ask for (so a live
    instance can take over a dead one's session: its drain), and hear the chairs through the
    shared subscription; neither CA's certificates log in on the other's listener."""
    from chair.cli import main

    svc_dir = tmp_path / "service-ca"
    for argv in (["fleet-a", "--service"], ["fleet-b", "--service"], ["--broker", "localhost"]):
        assert main(["provision", *argv, "--ca", str(svc_dir)]) == 0
    service = Fleet(svc_dir, svc_dir / "ca.crt")
    broker = brokers("dynsec", service_ca=svc_dir)
    broker.apply(fleet.rules("A"))
    for name in ("fleet-a", "fleet-b"):
        broker.apply(service.rules(name))
    a = peers(broker.port, fleet.chair("A"))
    assert a.connect() == SUCCESS
    drained_id = "chair-fleet-fleet-fleet-b"  # instance fleet-b's (chair.fleet.service)
    first = Peer(service, broker.service_port, service.service("fleet-b"), drained_id)
    drainer = Peer(service, broker.service_port, service.service("fleet-a"), drained_id)
    try:
        assert first.connect() == SUCCESS
        assert first.subscribe("$share/fleet/massagechair/+/event") == GRANTED_QOS1
        assert a.publish("massagechair/A/event", b"a-event") == SUCCESS
        assert first.wait_message(b"a-event") == "massagechair/A/event"
        # fleet-a under fleet-b's client id: the broker takes the id as given and hands it the
        # connection (on the chairs' listener it would have been fleet-a's own CN)
        assert drainer.connect() == SUCCESS
        assert first.disconnected.wait(WAIT_S)
        first.close()
        assert drainer.subscribe("$share/fleet/massagechair/+/event") == GRANTED_QOS1
        assert a.publish("massagechair/A/event", b"a-again") == SUCCESS
        drainer.wait_message(b"a-again")
    finally:
        first.close()
        drainer.close()
    chair_a, fleet_a = fleet.chair("A"), service.service("fleet-a")
    refused = mqtt_attempt(broker.service_port, service.ca, chair_a.cert, chair_a.key)
    assert refused.startswith("refused:") and "alert" in refused.lower(), refused
    refused = mqtt_attempt(broker.port, fleet.ca, fleet_a.cert, fleet_a.key)
    assert refused.startswith("refused:") and "alert" in refused.lower(), refused


# ---- setup 2: the static ACL file -------------------------------------------------------------


def test_acl_file_confines_publishing_and_never_delivers_others_topics(
    fleet: Fleet, brokers: Callable[[str], FleetBroker], peers: Callable[..., Peer]
) -> None:
    """(b) with setup 2: a publish elsewhere gets 0x87; a subscription elsewhere is *granted*
    (mosquitto 2.0's ACL file does not check subscriptions) and never delivers anything."""
    broker = brokers("acl")
    a = peers(broker.port, fleet.chair("A"))
    b = peers(broker.port, fleet.chair("B"))
    svc = peers(broker.port, fleet.service())
    assert a.connect() == b.connect() == svc.connect() == SUCCESS
    assert svc.subscribe("massagechair/#") == GRANTED_QOS1
    assert a.subscribe("massagechair/A/#") == GRANTED_QOS1
    for topic in ("massagechair/B/#", "massagechair/#"):
        assert a.subscribe(topic) == GRANTED_QOS1, topic  # granted, as docs/fleet.md says
    # (a) its own base round-trips
    assert a.publish("massagechair/A/state", b"a-state") == SUCCESS
    a.wait_message(b"a-state")
    svc.wait_message(b"a-state")
    # (b) publishing elsewhere: 0x87
    assert a.publish("massagechair/B/cmd", b"forged-by-a") == NOT_AUTHORIZED
    assert svc.publish("massagechair/A/state", b"svc-forged") == NOT_AUTHORIZED
    # B's message reaches the service (it was routed) and never A, which subscribed to it
    assert b.publish("massagechair/B/event", b"b-secret") < 0x80
    svc.wait_message(b"b-secret")
    assert a.publish("massagechair/A/event", b"barrier-a") == SUCCESS
    a.wait_message(b"barrier-a")
    assert b"b-secret" not in a.payloads()
    assert b"forged-by-a" not in svc.payloads()
    assert svc.publish("massagechair/B/cmd", b"svc-cmd") < 0x80
    svc.wait_message(b"svc-cmd")


# ---- the CLI's errors --------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file and directory under `root`: mode, modification time and content hash."""
    snap: dict[str, tuple[int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            snap[str(p.relative_to(root))] = (st.st_mode, st.st_mtime_ns, digest)
    return snap


def test_cli_errors_are_one_line_and_change_nothing(
    tmp_path: Path, fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    """(e) A bad chair id, a revocation of a name never issued, an unusable CA directory: exit
    1, one line on stderr, nothing written. The first cases run `python -m chair provision` as
    a subprocess; the rest call the same entry point in this process (a second each saved)."""
    from chair.cli import main

    ca = str(fleet.ca_dir)
    not_a_dir = tmp_path / "ca-file"
    not_a_dir.write_text("not a CA\n")
    not_a_ca = tmp_path / "somebody-else"
    not_a_ca.mkdir()
    (not_a_ca / "notes.txt").write_text("mine\n")
    missing = tmp_path / "no-such-ca"
    in_subprocess = {
        "chair_id 'living/room': one topic level": ["living/room", "--ca", ca],
        f"no certificate was issued to 'Z' by the CA in {ca}": ["--revoke", "Z", "--ca", ca],
    }
    in_process = {
        f"CA directory {not_a_dir}: not a directory": ["A", "--ca", str(not_a_dir)],
        f"CA directory {missing}: no such directory": ["--revoke", "A", "--ca", str(missing)],
        "chair_id '..': not usable as a file name": ["..", "--ca", ca],
        "chair_id '" + "x" * 65: ["x" * 65, "--ca", ca],
        "chair_id 'bad/id'": ["--revoke", "bad/id", "--ca", ca],
        "chair_id 'chair-fleet-fleet-a': reserved": ["chair-fleet-fleet-a", "--ca", ca],
        f"'{SERVICE}' is the fleet's service identity": [SERVICE, "--ca", ca],
        f"CA directory {not_a_ca}: not a fleet CA": ["A", "--ca", str(not_a_ca)],
        "--days 0: must be 1..3650": ["A", "--ca", str(missing), "--days", "0"],
        "broker host 'bad host'": ["--broker", "bad host", "--ca", ca],
        "give one of CHAIR_ID, --revoke NAME or --broker": ["A", "--revoke", "B", "--ca", ca],
    }
    before = {p: _snapshot(p) for p in (fleet.ca_dir, not_a_ca)}
    not_a_dir_text = not_a_dir.read_text()
    outcomes: list[tuple[str, list[str], int, str, str]] = []
    for (expected, argv), r in zip(
        in_subprocess.items(), provision(*in_subprocess.values()), strict=True
    ):
        outcomes.append((expected, argv, r.returncode, r.stdout, r.stderr))
    capsys.readouterr()
    for expected, argv in in_process.items():
        rc = main(["provision", *argv])
        out, err = capsys.readouterr()
        outcomes.append((expected, argv, rc, out, err))
    for expected, argv, rc, out, err in outcomes:
        assert rc == 1, (argv, out, err)
        assert out == "", (argv, out)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("chair provision: error: "), (argv, lines)
        assert expected in lines[0], (argv, lines[0])
    assert {p: _snapshot(p) for p in before} == before
    assert not_a_dir.read_text() == not_a_dir_text
    assert not missing.exists()
