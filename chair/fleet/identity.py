"""The fleet's certificate authority: one identity per chair (docs/fleet.md, "Identity").

A CA directory holds:

    ca.key        the CA's EC P-256 private key (mode 0600)
    ca.crt        the self-signed CA certificate, CN "massage-chair fleet CA"
    crl.pem       the revocation list signed by the CA: the broker's ``crlfile``
    index.json    every certificate issued (serial, name, kind, validity, revocation)
    dynsec/       for each identity, the mosquitto dynamic-security commands that give it its
                  topics (``NAME.json``) and take them away (``NAME.revoke.json``)
    chairs/ID/    a chair's ``ID.key``, ``ID.crt`` and ``ca.crt`` (`issue_client`'s default)
    services/N/   the same for an operator's service identity
    broker/       the broker's ``server.key``, ``server.crt`` and ``ca.crt`` (`issue_broker`)

A chair's certificate names the chair in its CN (the broker's ``use_identity_as_username``
makes it the MQTT user name the ACL confines to ``<prefix>/<chair_id>/#``), and its id is
checked by the rule the chair itself applies to ``chair_id`` (`chair.mqtt.settings`).

Every change holds an exclusive lock on the directory (``flock``) and replaces ``index.json``
and ``crl.pem`` atomically, so two runs at once lose no record. Every failure is an
`IdentityError` with a one-line message; bad input (a name, the CA directory, ``--days``,
``--out``) is found before anything is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chair.fleet import CLIENT_ID_PREFIX

CA_KEY, CA_CERT, CRL, INDEX = "ca.key", "ca.crt", "crl.pem", "index.json"
CA_CN = "massage-chair fleet CA"
CA_DAYS = 3650
"""The CA's validity; the CRL's ``nextUpdate`` is the CA's expiry (an expired CRL would lock
every chair out of the broker)."""
CLIENT_DAYS = 730
"""Default validity of a chair's (or a service's) certificate: two years."""
BROKER_DAYS = 730
DEFAULT_PREFIX = "massagechair"
SHARE_GROUP = "fleet"
"""The shared-subscription group of the operator's service (docs/interfaces.md §7)."""
INDEX_VERSION = 1
_SKEW = timedelta(minutes=5)
"""Certificates start this much in the past: a chair whose clock is a little behind accepts them."""
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")

Kind = Literal["chair", "service", "broker"]


class IdentityError(Exception):
    """What is wrong, on one line; nothing was changed."""


@dataclass(frozen=True)
class Issued:
    """One certificate just issued and the files written for it."""

    name: str
    kind: Kind
    serial: int
    not_after: datetime
    key: Path
    cert: Path
    ca: Path
    dynsec: Path | None
    """The dynamic-security commands giving the identity its topics (None for the broker)."""
    ca_created: bool
    """The CA was created by this call."""


# ---- names ---------------------------------------------------------------------------------


def check_name(name: str, prefix: str = DEFAULT_PREFIX) -> None:
    """A chair id (or service name) by the chair's own rule for ``chair_id``, and a usable topic
    prefix: IdentityError with the rule otherwise."""
    from chair.mqtt.settings import load_settings

    try:  # env={}: the caller's CHAIR_* variables are not what is being checked
        load_settings(None, env={}, overrides={"chair_id": name, "prefix": prefix})
    except ValueError as e:
        raise IdentityError(str(e)) from None
    if set(name) == {"."}:
        raise IdentityError(f"chair_id {name!r}: not usable as a file name")
    if name == "ca":
        raise IdentityError("chair_id 'ca': reserved (its files would be named like the CA's)")


def _hosts(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for host in hosts:
        try:
            name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            if not _DNS_NAME.match(host) or len(host) > 253:
                raise IdentityError(f"broker host {host!r}: not a DNS name or IP address") from None
            name = x509.DNSName(host.lower())
        if name not in names:
            names.append(name)
    return names


# ---- the CA directory ----------------------------------------------------------------------


@dataclass
class _CA:
    dir: Path
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    index: dict[str, Any]
    created: bool = False

    @property
    def records(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self.index["certificates"]
        return records


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@contextlib.contextmanager
def _open_ca(directory: Path, *, create: bool) -> Iterator[_CA]:
    """The CA of `directory`, under an exclusive lock (flock on the directory) for the block;
    created first when `create` and the directory is new or empty."""
    where = f"CA directory {directory}"
    if directory.exists() and not directory.is_dir():
        raise IdentityError(f"{where}: not a directory")
    if not directory.exists():
        if not create:
            raise IdentityError(f"{where}: no such directory")
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise IdentityError(f"{where}: cannot create it: {e.strerror}") from None
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise IdentityError(f"{where}: cannot open it: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield _load_or_create(directory, create=create)
    finally:
        os.close(fd)  # releases the lock


def _load_or_create(directory: Path, *, create: bool) -> _CA:
    where = f"CA directory {directory}"
    try:
        entries = {p.name for p in directory.iterdir()}
    except OSError as e:
        raise IdentityError(f"{where}: cannot read it: {e.strerror}") from None
    needed = (CA_KEY, CA_CERT, INDEX)
    present = [n for n in needed if n in entries]
    if not present:
        if not create:
            raise IdentityError(f"{where}: no fleet CA here (no {CA_CERT})")
        if entries:
            raise IdentityError(
                f"{where}: not a fleet CA (no {CA_CERT}) and not empty: give a new or empty "
                "directory to create one"
            )
        return _create_ca(directory)
    missing = [n for n in needed if n not in entries]
    if missing:
        raise IdentityError(f"{where}: incomplete CA: {', '.join(missing)} missing")

    def read(name: str) -> bytes:
        try:
            return (directory / name).read_bytes()
        except OSError as e:
            raise IdentityError(f"{where}: cannot read {name}: {e.strerror}") from None

    try:
        key = serialization.load_pem_private_key(read(CA_KEY), password=None)
    except (ValueError, TypeError):
        raise IdentityError(f"{where}: {CA_KEY} is not an unencrypted PEM private key") from None
    try:
        cert = x509.load_pem_x509_certificate(read(CA_CERT))
    except ValueError:
        raise IdentityError(f"{where}: {CA_CERT} is not a PEM certificate") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise IdentityError(f"{where}: {CA_KEY} is not the key of {CA_CERT}")
    try:
        index = json.loads(read(INDEX))
    except ValueError:
        raise IdentityError(f"{where}: {INDEX} is not JSON") from None
    if (
        not isinstance(index, dict)
        or index.get("version") != INDEX_VERSION
        or not isinstance(index.get("certificates"), list)
    ):
        raise IdentityError(f"{where}: {INDEX} is not a fleet CA index (version {INDEX_VERSION})")
    return _CA(directory, key, cert, index)


def _create_ca(directory: Path) -> _CA:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_CN)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    ca = _CA(
        directory,
        key,
        cert,
        {"version": INDEX_VERSION, "crl_number": 0, "crl_last_update": None, "certificates": []},
        created=True,
    )
    _write_atomic(directory / CA_KEY, _key_pem(key), 0o600)
    _write_atomic(directory / CA_CERT, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write_crl(ca)  # an empty one: the broker's crlfile must exist from the start
    _write_index(ca)  # last: a CA directory is complete once its index is there
    return ca


def _key_usage(*, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """`data` into `path` by rename: readers see the old file or the new one, never a part;
    the file has `mode` from its first byte (a key is never readable by others)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _write_index(ca: _CA) -> None:
    _write_atomic(ca.dir / INDEX, (json.dumps(ca.index, indent=2) + "\n").encode(), 0o600)


def _crl_time(previous: str | None) -> datetime:
    """Now, and strictly later than the previous CRL's ``lastUpdate``: a broker that reloads
    the CRL on SIGHUP keeps the old one in its store, and OpenSSL takes the newest of equals
    (by ``lastUpdate``, to the second). Waits for the next second when one CRL follows another
    within the same second."""
    now = _now()
    if previous is None:
        return now
    after = datetime.fromisoformat(previous) + timedelta(seconds=1)
    while now < after:
        time.sleep(max(0.01, (after - datetime.now(UTC)).total_seconds()))
        now = _now()
    return now


def _write_crl(ca: _CA) -> None:
    """crl.pem from the index's revoked certificates, with the next CRL number."""
    last_update = _crl_time(ca.index.get("crl_last_update"))
    number = int(ca.index.get("crl_number", 0)) + 1
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(last_update)
        .next_update(ca.cert.not_valid_after_utc)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    for rec in ca.records:
        if rec.get("revoked_at"):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(int(rec["serial"], 16))
                .revocation_date(datetime.fromisoformat(rec["revoked_at"]))
                .build()
            )
    crl = builder.sign(ca.key, hashes.SHA256())
    _write_atomic(ca.dir / CRL, crl.public_bytes(serialization.Encoding.PEM), 0o644)
    ca.index["crl_number"] = number
    ca.index["crl_last_update"] = last_update.isoformat()


# ---- issuing -------------------------------------------------------------------------------


def _check_days(days: int) -> None:
    if not 1 <= days <= CA_DAYS:
        raise IdentityError(f"--days {days}: must be 1..{CA_DAYS}")


def _validity(ca: _CA, days: int) -> tuple[datetime, datetime]:
    now = _now()
    not_after = now + timedelta(days=days)
    if not_after > ca.cert.not_valid_after_utc:
        raise IdentityError(
            f"--days {days}: past the CA's own expiry ({ca.cert.not_valid_after_utc:%Y-%m-%d})"
        )
    return now - _SKEW, not_after


def _prepare_out(out: Path) -> None:
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise IdentityError(f"--out {out}: not a directory") from None
    except OSError as e:
        raise IdentityError(f"--out {out}: cannot create it: {e.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise IdentityError(f"--out {out}: not writable")


def _check_out(out: Path | None) -> None:
    if out is not None and out.exists() and not out.is_dir():
        raise IdentityError(f"--out {out}: not a directory")


def _record(ca: _CA, name: str, kind: Kind, cert: x509.Certificate, **extra: Any) -> None:
    ca.records.append(
        {
            "serial": format(cert.serial_number, "x"),
            "name": name,
            "kind": kind,
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "revoked_at": None,
            **extra,
        }
    )


def _builder(
    ca: _CA, cn: str, key: ec.EllipticCurvePrivateKey, days: int
) -> x509.CertificateBuilder:
    not_before, not_after = _validity(ca, days)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )


def issue_client(
    ca_dir: Path,
    name: str,
    *,
    kind: Literal["chair", "service"] = "chair",
    out_dir: Path | None = None,
    days: int = CLIENT_DAYS,
    prefix: str = DEFAULT_PREFIX,
) -> Issued:
    """A key and a client certificate (CN = `name`, clientAuth) for one chair or one instance of
    the operator's service, signed by the CA in `ca_dir` (created there when the directory is
    new or empty). Writes ``NAME.key`` (0600), ``NAME.crt`` and ``ca.crt`` into `out_dir`
    (default ``CA/chairs/NAME`` or ``CA/services/NAME``) and the identity's dynamic-security
    commands into ``CA/dynsec/NAME.json``. A name already issued gets a new key and a new
    serial; its earlier certificates stay valid until revoked."""
    check_name(name, prefix)
    if kind == "chair" and name.startswith(CLIENT_ID_PREFIX):
        raise IdentityError(
            f"chair_id {name!r}: reserved (the operator's service's client ids begin "
            f"{CLIENT_ID_PREFIX!r})"
        )
    _check_days(days)
    _check_out(out_dir)
    with _open_ca(ca_dir, create=True) as ca:
        for rec in ca.records:
            if rec["name"] == name and rec["kind"] != kind:
                raise IdentityError(
                    f"{name!r} is the fleet's {rec['kind']} identity, not a {kind}: "
                    "give another name"
                )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            _builder(ca, name, key, days)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca.key, hashes.SHA256())
        )
        out = out_dir or ca.dir / ("chairs" if kind == "chair" else "services") / name
        dynsec_dir = ca.dir / "dynsec"
        _prepare_out(out)
        _prepare_out(dynsec_dir)
        _record(ca, name, kind, cert, prefix=prefix)
        _write_index(ca)
        dynsec = dynsec_dir / f"{name}.json"
        issued = Issued(
            name=name,
            kind=kind,
            serial=cert.serial_number,
            not_after=cert.not_valid_after_utc,
            key=out / f"{name}.key",
            cert=out / f"{name}.crt",
            ca=out / CA_CERT,
            dynsec=dynsec,
            ca_created=ca.created,
        )
        _write_atomic(issued.key, _key_pem(key), 0o600)
        _write_atomic(issued.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        _write_atomic(issued.ca, ca.cert.public_bytes(serialization.Encoding.PEM), 0o644)
        _write_json(dynsec, dynsec_commands(name, kind, prefix))
        _write_json(dynsec_dir / f"{name}.revoke.json", dynsec_revoke_commands(name, kind))
        return issued


def issue_broker(
    ca_dir: Path,
    hosts: Sequence[str],
    *,
    out_dir: Path | None = None,
    days: int = BROKER_DAYS,
) -> Issued:
    """The broker's key and server certificate (serverAuth; CN = the first host; SAN = IP
    127.0.0.1 and every host, each an IP address or a DNS name), signed by the CA in `ca_dir`.
    Writes ``server.key`` (0600), ``server.crt`` and ``ca.crt`` into `out_dir` (default
    ``CA/broker``)."""
    hosts = [h.strip() for h in hosts if h.strip()]
    if not hosts:
        raise IdentityError("--broker: give at least one host name or IP address")
    sans = _hosts(hosts)
    _check_days(days)
    _check_out(out_dir)
    with _open_ca(ca_dir, create=True) as ca:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            _builder(ca, hosts[0], key, days)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca.key, hashes.SHA256())
        )
        out = out_dir or ca.dir / "broker"
        _prepare_out(out)
        _record(ca, hosts[0], "broker", cert, hosts=[str(n.value) for n in sans])
        _write_index(ca)
        issued = Issued(
            name=hosts[0],
            kind="broker",
            serial=cert.serial_number,
            not_after=cert.not_valid_after_utc,
            key=out / "server.key",
            cert=out / "server.crt",
            ca=out / CA_CERT,
            dynsec=None,
            ca_created=ca.created,
        )
        _write_atomic(issued.key, _key_pem(key), 0o600)
        _write_atomic(issued.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        _write_atomic(issued.ca, ca.cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return issued


# ---- revoking ------------------------------------------------------------------------------


def revoke(ca_dir: Path, name: str) -> list[int]:
    """Revoke every certificate issued to `name` that is not revoked yet and rewrite crl.pem;
    returns their serials ([] when all were revoked before: nothing changes). A name the CA
    never issued to is an IdentityError."""
    with _open_ca(ca_dir, create=False) as ca:
        records = [r for r in ca.records if r["name"] == name]
        if not records:
            check_name(name)  # a name no chair can have: the rule it breaks
            raise IdentityError(f"no certificate was issued to {name!r} by the CA in {ca.dir}")
        fresh = [r for r in records if not r.get("revoked_at")]
        if not fresh:
            return []
        when = _now().isoformat()
        for rec in fresh:
            rec["revoked_at"] = when
        _write_crl(ca)  # first: the revocation takes effect even if the index write fails
        _write_index(ca)
        return [int(r["serial"], 16) for r in fresh]


def revoked_serials(ca_dir: Path) -> set[int]:
    """The serials crl.pem lists (read from the CRL itself)."""
    try:
        crl = x509.load_pem_x509_crl((ca_dir / CRL).read_bytes())
    except OSError as e:
        raise IdentityError(f"CA directory {ca_dir}: cannot read {CRL}: {e.strerror}") from None
    except ValueError:
        raise IdentityError(f"CA directory {ca_dir}: {CRL} is not a PEM CRL") from None
    return {r.serial_number for r in crl}


# ---- the broker's access rules (mosquitto dynamic-security plugin) --------------------------


def role_name(name: str, kind: Kind) -> str:
    """The identity's own dynamic-security role: ``chair-<id>`` or ``service-<name>``."""
    return f"{kind}-{name}"


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True}


def dynsec_commands(name: str, kind: Kind, prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    """The commands for mosquitto's dynamic-security plugin (published to
    ``$CONTROL/dynamic-security/v1``) that let this identity in with its own topics: a role of
    its own and a client (user name = the certificate's CN) holding it. A chair publishes,
    subscribes and unsubscribes under ``<prefix>/<id>/#`` and nowhere else: every other
    publish and subscribe is refused with reason 0x87 (not merely left undelivered). A service
    instance reads every chair (directly or as the shared subscription ``$share/fleet/...``),
    writes every chair's ``cmd`` and ``ack``, and has the service's own topics
    ``<prefix>-fleet/#`` (its status and last will, alerts: `chair.fleet.service`)."""
    if kind == "chair":
        base = f"{prefix}/{name}/#"
        acls = [_acl(t, base) for t in ("publishClientSend", "subscribePattern")]
        acls.append(_acl("unsubscribePattern", base))
        text = f"chair {name}: its own base topic only"
    elif kind == "service":
        everything, own = f"{prefix}/#", f"{prefix}-fleet/#"
        acls = [
            _acl("subscribePattern", everything),
            _acl("subscribePattern", f"$share/{SHARE_GROUP}/{everything}"),
            _acl("unsubscribePattern", everything),
            _acl("unsubscribePattern", f"$share/{SHARE_GROUP}/{everything}"),
            _acl("publishClientSend", f"{prefix}/+/cmd"),
            _acl("publishClientSend", f"{prefix}/+/ack"),
            _acl("publishClientSend", own),
            _acl("subscribePattern", own),
            _acl("unsubscribePattern", own),
        ]
        text = f"fleet service {name}: reads every chair, commands any"
    else:
        raise IdentityError("the broker's own certificate has no access rules")
    role = role_name(name, kind)
    return {
        "commands": [
            {"command": "createRole", "rolename": role, "textname": text, "acls": acls},
            {"command": "createClient", "username": name, "roles": [{"rolename": role}]},
        ]
    }


def dynsec_revoke_commands(name: str, kind: Kind) -> dict[str, Any]:
    """Take the identity's access away: deleting its client also disconnects it at once (a
    revoked certificate is refused only at the next TLS handshake)."""
    return {
        "commands": [
            {"command": "deleteClient", "username": name},
            {"command": "deleteRole", "rolename": role_name(name, kind)},
        ]
    }


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    _write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode(), 0o644)
