"""The operator's records (docs/fleet-service.md): every chair's sessions, faults and paid starts
in one database, SQLite by default or PostgreSQL for a fleet.

`Records.open(target)` opens (creating) the database and brings its schema up to date; every
failure — an unreachable server, a locked or corrupt file, a newer schema — is a `RecordsError`
with a one-line message (a PostgreSQL password never appears in it). The target is ``--db``,
then ``CHAIR_FLEET_DB``, then ``$XDG_STATE_HOME/massagechair/fleet.db`` (`db_target`): a file
path, or ``postgresql://user[:password]@host[:port]/dbname``.

One interface, two engines: the SQL is written once (``?`` placeholders, ``INSERT ... ON
CONFLICT``, both understood by SQLite ≥ 3.24 and PostgreSQL) and run by `_Sqlite` (aiosqlite,
WAL, a 10 s busy timeout, ``synchronous=FULL``) or `_Postgres` (an asyncpg pool, ``$n``
placeholders). Timestamps are UTC ISO 8601 text on both, as the chairs send them.

**Exactly once.** A session is keyed by (chair, ``session_id``): the chair re-sends a
``session_finished`` whose PUBACK it did not see, and two service instances may race on the same
record, so it is inserted with ``ON CONFLICT DO NOTHING`` and counted once whatever arrives
twice. A fault raised in a session is keyed by (chair, session, code) — the live ``fault``/``estop``
event and the session's record both name it, whichever comes first makes the row; a fault
outside a session (no ``session_id``) has nothing to know it again by and is kept per event.

**Migrations** (`MIGRATIONS`): the ``schema_version`` table holds the schema's version on both
engines; ``MIGRATIONS[i]`` takes a database from version i to i + 1 in one transaction, under a
lock (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's transaction-level advisory lock), so service
instances starting together migrate once. A newer service upgrades an older database at open; an
older one refuses a newer database rather than guess.

- v1: ``chairs``, ``sessions``, ``faults``.
- v2: ``orders`` (paid starts: what was asked of which chair, and its answer); a fault
  remembers when its alert went out (``alerted_at``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import sqlite3
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

import aiosqlite

from chair.store import now_iso

Engine = Literal["sqlite", "postgresql"]
Statement = tuple[str, Sequence[Any]]

ENV_DB = "CHAIR_FLEET_DB"
BUSY_TIMEOUT_S = 10.0
"""How long an SQLite write waits for another process's lock (two service instances, a report)."""
CONNECT_TIMEOUT_S = 10.0
SCHEMA_LOCK = 0x6368_6169_7266_6C74  # "chairflt": PostgreSQL's advisory lock for migrations

_SERIAL = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgresql": "BIGSERIAL PRIMARY KEY"}

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # v1: what the chairs report
        """CREATE TABLE chairs (
            chair_id TEXT PRIMARY KEY,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            availability TEXT,
            state TEXT
        )""",
        """CREATE TABLE sessions (
            chair_id TEXT NOT NULL,
            session_id TEXT NOT NULL,
            program TEXT,
            user_name TEXT,
            started_at TEXT,
            ended_at TEXT,
            minutes_planned DOUBLE PRECISION,
            seconds_run DOUBLE PRECISION NOT NULL DEFAULT 0,
            minutes DOUBLE PRECISION NOT NULL DEFAULT 0,
            outcome TEXT,
            end_reason TEXT,
            completed INTEGER NOT NULL DEFAULT 0,
            faults INTEGER NOT NULL DEFAULT 0,
            safety_ok INTEGER,
            record TEXT NOT NULL,
            received_at TEXT NOT NULL,
            received_by TEXT,
            PRIMARY KEY (chair_id, session_id)
        )""",
        "CREATE INDEX sessions_ended ON sessions (ended_at)",
        """CREATE TABLE faults (
            id {serial},
            fault_key TEXT NOT NULL UNIQUE,
            chair_id TEXT NOT NULL,
            session_id TEXT,
            code TEXT NOT NULL,
            message TEXT,
            t DOUBLE PRECISION,
            source TEXT NOT NULL,
            raised_at TEXT NOT NULL
        )""",
        "CREATE INDEX faults_chair ON faults (chair_id, session_id)",
    ),
    (  # v2: paid starts, and alerts that survive a crash between the record and the alert
        """CREATE TABLE orders (
            order_id TEXT PRIMARY KEY,
            chair_id TEXT NOT NULL,
            program TEXT NOT NULL,
            minutes DOUBLE PRECISION,
            status TEXT NOT NULL,
            error_code TEXT,
            error_message TEXT,
            session_id TEXT,
            requested_at TEXT NOT NULL,
            replied_at TEXT
        )""",
        "CREATE INDEX orders_chair ON orders (chair_id, requested_at)",
        "ALTER TABLE faults ADD COLUMN alerted_at TEXT",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

ORDER_STATUSES = ("sent", "started", "refused", "no_reply")
"""An order is ``sent`` until the chair answers: ``started`` (its reply was ok), ``refused``
(the chair's error code kept), or ``no_reply`` (none within the wait)."""


class RecordsError(Exception):
    """The database cannot be used: the message is one line naming it and the cause."""


# ---- where the records are -----------------------------------------------------------------

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def db_target(arg: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """``--db``, then ``CHAIR_FLEET_DB``, then ``$XDG_STATE_HOME/massagechair/fleet.db``."""
    env = os.environ if env is None else env
    if arg:
        return arg
    if env.get(ENV_DB):
        return env[ENV_DB]
    state = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(state) / "massagechair" / "fleet.db")


def engine_of(target: str) -> Engine:
    """Which engine a target names; RecordsError for a URL that is neither."""
    if target.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    if _SCHEME.match(target):
        raise RecordsError(
            f"--db {redact(target)}: use a file path (SQLite) or postgresql://user@host:port/dbname"
        )
    return "sqlite"


def redact(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rpartition("@")
        user = netloc[0].partition(":")[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))
    except ValueError:
        return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)


# ---- values from a chair (checked: a chair's payload is never trusted) -----------------------


def _text(v: Any, limit: int = 256) -> str | None:
    return v[:limit] if isinstance(v, str) and v else None


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _flag(v: Any) -> int | None:
    return None if not isinstance(v, bool) else int(v)


_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


def valid_id(v: Any) -> bool:
    """A session or order id: 1–128 printable ASCII characters, no spaces."""
    return isinstance(v, str) and bool(_ID.match(v))


@dataclass(frozen=True)
class Fault:
    """A fault (or emergency stop) of one chair, as kept and alerted."""

    id: int
    chair_id: str
    session_id: str | None
    code: str
    message: str | None
    t: float | None
    source: str
    """``event`` (the chair's live fault/estop event) or ``record`` (its session's record)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "chair_id": self.chair_id,
            "session_id": self.session_id,
            "code": self.code,
            "message": self.message,
            "t": self.t,
            "source": self.source,
        }


@dataclass
class Recorded:
    """What a ``session_finished`` changed."""

    new: bool
    """The session was not known: this is its first (counted) arrival."""
    to_alert: list[Fault] = field(default_factory=list)
    """Faults whose alert has not gone out yet (new ones, or one a crash left unalerted)."""


def session_row(chair_id: str, event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``sessions`` row of a ``session_finished`` event (its ``record``, else its
    ``summary``); None when it names no usable session id."""
    record = event.get("record") if isinstance(event.get("record"), dict) else {}
    summary = event.get("summary") if isinstance(event.get("summary"), dict) else {}
    assert isinstance(record, dict) and isinstance(summary, dict)
    sid = event.get("session_id", record.get("session_id"))
    if not valid_id(sid):
        return None
    seconds = _num(record.get("seconds_run"))
    if seconds is None:
        seconds = _num(summary.get("program_seconds")) or 0.0
    seconds = max(0.0, seconds)
    faults = record.get("faults") if "faults" in record else summary.get("faults")
    completed = event.get("completed")
    return {
        "chair_id": chair_id,
        "session_id": sid,
        "program": _text(record.get("program")) or _text(summary.get("program")),
        "user_name": _text(record.get("user")),
        "started_at": _text(record.get("started_at"), 64),
        "ended_at": _text(record.get("ended_at"), 64),
        "minutes_planned": _num(record.get("minutes_planned")) or _num(summary.get("minutes")),
        "seconds_run": round(seconds, 3),
        "minutes": round(seconds / 60.0, 3),
        "outcome": _text(record.get("outcome"), 32),
        "end_reason": _text(event.get("end_reason"), 64) or _text(record.get("end_reason"), 64),
        "completed": 1 if completed is True else 0,
        "faults": _fault_list(faults),
        "safety_ok": _flag(record.get("safety_ok")),
        "record": json.dumps(record or {"summary": None}, default=str),
    }


def _fault_list(faults: Any) -> list[dict[str, Any]]:
    out = []
    for f in faults if isinstance(faults, list) else []:
        if isinstance(f, dict) and _text(f.get("code"), 64):
            out.append(
                {
                    "code": f["code"][:64],
                    "message": _text(f.get("message"), 512),
                    "t": _num(f.get("t")),
                }
            )
    return out


# ---- the engines ------------------------------------------------------------------------------


class _Backend(ABC):
    engine: ClassVar[Engine]

    def __init__(self, display: str) -> None:
        self.display = display

    def error(self, e: BaseException) -> RecordsError:
        text = (str(e) or type(e).__name__).splitlines()[0]
        return RecordsError(f"database {self.display}: {text}")

    @abstractmethod
    async def transaction(self, statements: Sequence[Statement]) -> list[int]:
        """Run `statements` in one transaction; each one's row count."""

    @abstractmethod
    async def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def migrate(self, upto: int) -> int:
        """Bring the schema to version `upto`; the version before."""

    @abstractmethod
    async def close(self) -> None: ...

    @staticmethod
    def check_version(version: int) -> None:
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"schema version {version} is newer than this service's ({SCHEMA_VERSION}): "
                "upgrade the service"
            )

    def migration(self, version: int) -> list[str]:
        return [sql.format(serial=_SERIAL[self.engine]) for sql in MIGRATIONS[version]]


class _Sqlite(_Backend):
    engine = "sqlite"
    _ERRORS = (sqlite3.Error, OSError, ValueError)

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        super().__init__(str(path))
        self._conn = conn
        self._tx = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> _Sqlite:
        conn: aiosqlite.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A file that cannot be opened fails here, plainly: aiosqlite's worker thread, after
            # a failed connect, may outlive a short-lived event loop (a CLI's asyncio.run).
            await asyncio.to_thread(_probe, path)
            conn = await aiosqlite.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.row_factory = sqlite3.Row
            async with conn.execute("PRAGMA journal_mode=WAL") as cur:
                row = await cur.fetchone()
            if row is None or str(row[0]).lower() != "wal":
                raise sqlite3.OperationalError("cannot switch to WAL")
            await conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            await conn.execute("PRAGMA synchronous=FULL")  # a record acknowledged is on disk
        except cls._ERRORS as e:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error, OSError):
                    await conn.close()
            raise RecordsError(f"database {path}: {_sqlite_why(e)}") from None
        return cls(conn, path)

    def error(self, e: BaseException) -> RecordsError:
        return RecordsError(f"database {self.display}: {_sqlite_why(e)}")

    async def transaction(self, statements: Sequence[Statement]) -> list[int]:
        # Shielded, as the chair's store does: a cancelled caller leaves, the transaction still
        # ends in COMMIT or ROLLBACK (aiosqlite's thread runs a statement whatever happens).
        task = asyncio.ensure_future(self._locked(statements))
        task.add_done_callback(_consume)
        return await asyncio.shield(task)

    async def _locked(self, statements: Sequence[Statement]) -> list[int]:
        try:
            async with self._tx:
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    counts = []
                    for sql, args in statements:
                        cur = await self._conn.execute(sql, tuple(args))
                        counts.append(cur.rowcount)
                        await cur.close()
                    await self._conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        await self._conn.execute("ROLLBACK")
                    raise
                return counts
        except self._ERRORS as e:
            raise self.error(e) from None

    async def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            async with self._tx, self._conn.execute(sql, tuple(args)) as cur:
                return [dict(r) for r in await cur.fetchall()]
        except self._ERRORS as e:
            raise self.error(e) from None

    async def _version(self) -> int | None:
        async with self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ) as cur:
            if await cur.fetchone() is None:
                return None
        async with self._conn.execute("SELECT version FROM schema_version") as cur:
            row = await cur.fetchone()
        return None if row is None else int(row[0])

    async def migrate(self, upto: int) -> int:
        try:
            async with self._tx:
                before = await self._version()
                if before is not None:
                    self.check_version(before)
                    if before >= upto:
                        return before
                while True:  # one transaction per version, each under the write lock
                    await self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        await self._conn.execute(
                            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
                        )
                        version = await self._version()
                        if version is None:
                            await self._conn.execute("INSERT INTO schema_version VALUES (0)")
                            version = 0
                        self.check_version(version)
                        if before is None:
                            before = version
                        if version >= upto:
                            await self._conn.execute("COMMIT")
                            return before
                        for sql in self.migration(version):
                            await self._conn.execute(sql)
                        await self._conn.execute(
                            "UPDATE schema_version SET version = ?", (version + 1,)
                        )
                        await self._conn.execute("COMMIT")
                    except BaseException:
                        with contextlib.suppress(sqlite3.Error):
                            await self._conn.execute("ROLLBACK")
                        raise
        except self._ERRORS as e:
            raise self.error(e) from None

    async def close(self) -> None:
        with contextlib.suppress(sqlite3.Error, OSError):
            await self._conn.close()


def _probe(path: Path) -> None:
    sqlite3.connect(path, timeout=BUSY_TIMEOUT_S).close()


def _sqlite_why(e: BaseException) -> str:
    text = (str(e) or type(e).__name__).splitlines()[0]
    if "not a database" in text:
        text += " (corrupt, or not a SQLite file)"
    return text


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


_PLACEHOLDER = re.compile(r"\?")


def _pg_sql(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...`` (our SQL has no ``?`` in literals)."""
    n = 0

    def number(_: re.Match[str]) -> str:
        nonlocal n
        n += 1
        return f"${n}"

    return _PLACEHOLDER.sub(number, sql)


class _Postgres(_Backend):
    engine = "postgresql"

    def __init__(self, pool: Any, display: str) -> None:
        super().__init__(display)
        self._pool = pool

    @classmethod
    def errors(cls) -> tuple[type[BaseException], ...]:
        import asyncpg

        return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError, ValueError)

    @classmethod
    async def open(cls, url: str) -> _Postgres:
        import asyncpg

        display = redact(url)
        try:
            pool = await asyncpg.create_pool(
                url, min_size=1, max_size=4, timeout=CONNECT_TIMEOUT_S, command_timeout=60
            )
        except cls.errors() as e:
            raise RecordsError(f"database {display}: cannot connect: {_pg_why(e)}") from None
        return cls(pool, display)

    def error(self, e: BaseException) -> RecordsError:
        return RecordsError(f"database {self.display}: {_pg_why(e)}")

    async def transaction(self, statements: Sequence[Statement]) -> list[int]:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                counts = []
                for sql, args in statements:
                    status = await conn.execute(_pg_sql(sql), *args)
                    tail = str(status).rsplit(" ", 1)[-1]
                    counts.append(int(tail) if tail.isdigit() else 0)
                return counts
        except self.errors() as e:
            raise self.error(e) from None

    async def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            async with self._pool.acquire() as conn:
                return [dict(r) for r in await conn.fetch(_pg_sql(sql), *args)]
        except self.errors() as e:
            raise self.error(e) from None

    async def migrate(self, upto: int) -> int:
        before: int | None = None
        try:
            async with self._pool.acquire() as conn:
                while True:
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
                        await conn.execute(
                            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
                        )
                        version = await conn.fetchval("SELECT version FROM schema_version")
                        if version is None:
                            await conn.execute("INSERT INTO schema_version VALUES (0)")
                            version = 0
                        self.check_version(int(version))
                        if before is None:
                            before = int(version)
                        if version >= upto:
                            return before
                        for sql in self.migration(int(version)):
                            await conn.execute(sql)
                        await conn.execute("UPDATE schema_version SET version = $1", version + 1)
        except self.errors() as e:
            raise self.error(e) from None

    async def close(self) -> None:
        with contextlib.suppress(*self.errors()):
            await asyncio.wait_for(self._pool.close(), 10)


def _pg_why(e: BaseException) -> str:
    text = (str(e) or type(e).__name__).splitlines()[0]
    if isinstance(e, TimeoutError):
        text = "timed out"
    return text


# ---- the records ------------------------------------------------------------------------------


class Records:
    """An open database of the fleet's records. Every method raises `RecordsError` when the
    database fails."""

    def __init__(self, backend: _Backend) -> None:
        self._db = backend

    @classmethod
    async def open(cls, target: str | os.PathLike[str], *, upto: int = SCHEMA_VERSION) -> Records:
        """Open `target` (a file path or a ``postgresql://`` URL) and migrate it to version
        `upto` (default: the latest; tests make older databases with less)."""
        text = os.fspath(target)
        backend: _Backend
        if engine_of(text) == "postgresql":
            backend = await _Postgres.open(text)
        else:
            backend = await _Sqlite.open(Path(text))
        try:
            await backend.migrate(upto)
        except BaseException:
            await backend.close()
            raise
        return cls(backend)

    @property
    def engine(self) -> Engine:
        return self._db.engine

    @property
    def display(self) -> str:
        """The database's path or URL, without a password."""
        return self._db.display

    async def close(self) -> None:
        await self._db.close()

    async def version(self) -> int:
        rows = await self._db.rows("SELECT version FROM schema_version")
        return int(rows[0]["version"]) if rows else 0

    # ---- chairs ----------------------------------------------------------------------------

    @staticmethod
    def _chair(
        chair_id: str, availability: str | None = None, state: str | None = None
    ) -> Statement:
        t = now_iso()
        return (
            "INSERT INTO chairs (chair_id, first_seen, last_seen, availability, state) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (chair_id) DO UPDATE SET "
            "last_seen = excluded.last_seen, "
            "availability = COALESCE(excluded.availability, chairs.availability), "
            "state = COALESCE(excluded.state, chairs.state)",
            (chair_id, t, t, availability, state),
        )

    async def saw_chair(
        self, chair_id: str, *, availability: str | None = None, state: str | None = None
    ) -> None:
        """The chair is there (its availability or state changed)."""
        await self._db.transaction([self._chair(chair_id, availability, state)])

    async def chairs(self) -> list[dict[str, Any]]:
        return await self._db.rows(
            "SELECT chair_id, first_seen, last_seen, availability, state FROM chairs "
            "ORDER BY chair_id"
        )

    # ---- sessions and faults ---------------------------------------------------------------

    @staticmethod
    def fault_key(chair_id: str, session_id: str | None, code: str) -> str:
        """A session's fault is one per code (the live event and the record name the same
        one); a fault outside a session gets a key of its own (kept per event)."""
        if session_id is None:
            return f"{chair_id}/-/{uuid.uuid4().hex}"
        return f"{chair_id}/{session_id}/{code}"

    @staticmethod
    def _fault(
        key: str,
        chair_id: str,
        session_id: str | None,
        code: str,
        message: str | None,
        t: float | None,
        source: str,
    ) -> Statement:
        return (
            "INSERT INTO faults (fault_key, chair_id, session_id, code, message, t, source, "
            "raised_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fault_key) DO NOTHING",
            (key, chair_id, session_id, code, message, t, source, now_iso()),
        )

    _FAULT_COLS = "id, chair_id, session_id, code, message, t, source"

    @staticmethod
    def _faults_of(rows: list[dict[str, Any]]) -> list[Fault]:
        return [
            Fault(
                int(r["id"]),
                r["chair_id"],
                r["session_id"],
                r["code"],
                r["message"],
                None if r["t"] is None else float(r["t"]),
                r["source"],
            )
            for r in rows
        ]

    async def record_session(
        self, chair_id: str, event: Mapping[str, Any], *, received_by: str | None = None
    ) -> Recorded | None:
        """Keep a ``session_finished`` (its session once, whatever arrives twice) and the
        faults its record names; None when the event names no usable session id."""
        row = session_row(chair_id, event)
        if row is None:
            return None
        faults = row.pop("faults")
        row["faults"] = len(faults)
        row["received_at"] = now_iso()
        row["received_by"] = received_by
        cols = ", ".join(row)
        marks = ", ".join("?" * len(row))
        statements: list[Statement] = [
            self._chair(chair_id),
            (
                f"INSERT INTO sessions ({cols}) VALUES ({marks}) "
                "ON CONFLICT (chair_id, session_id) DO NOTHING",
                tuple(row.values()),
            ),
        ]
        sid = row["session_id"]
        statements += [
            self._fault(
                self.fault_key(chair_id, sid, f["code"]),
                chair_id,
                sid,
                f["code"],
                f["message"],
                f["t"],
                "record",
            )
            for f in faults
        ]
        counts = await self._db.transaction(statements)
        to_alert = await self._unalerted(chair_id, sid) if faults else []
        return Recorded(new=counts[1] > 0, to_alert=to_alert)

    async def record_fault(
        self, chair_id: str, event: Mapping[str, Any], *, received_by: str | None = None
    ) -> list[Fault]:
        """Keep a ``fault`` or ``estop`` event; the faults to alert (this one when it is new,
        or when its alert has not gone out yet)."""
        kind = event.get("event")
        raw_sid = event.get("session_id")
        sid: str | None = raw_sid if valid_id(raw_sid) else None
        code: str
        message: str | None
        if kind == "estop":
            code, message = "estop", "emergency stop"
        else:
            code = _text(event.get("code"), 64) or "unknown"
            message = _text(event.get("message"), 512)
        key = self.fault_key(chair_id, sid, code)
        await self._db.transaction(
            [
                self._chair(chair_id),
                self._fault(key, chair_id, sid, code, message, _num(event.get("t")), "event"),
            ]
        )
        rows = await self._db.rows(
            f"SELECT {self._FAULT_COLS} FROM faults WHERE fault_key = ? AND alerted_at IS NULL",
            (key,),
        )
        return self._faults_of(rows)

    async def _unalerted(self, chair_id: str, session_id: str) -> list[Fault]:
        rows = await self._db.rows(
            f"SELECT {self._FAULT_COLS} FROM faults WHERE chair_id = ? AND session_id = ? "
            "AND alerted_at IS NULL ORDER BY id",
            (chair_id, session_id),
        )
        return self._faults_of(rows)

    async def alerted(self, fault_id: int) -> None:
        """The fault's alert went out (the broker acknowledged it)."""
        await self._db.transaction(
            [("UPDATE faults SET alerted_at = ? WHERE id = ?", (now_iso(), fault_id))]
        )

    async def sessions(self, chair_id: str | None = None) -> list[dict[str, Any]]:
        where, args = ("WHERE chair_id = ?", (chair_id,)) if chair_id else ("", ())
        rows = await self._db.rows(
            "SELECT chair_id, session_id, program, user_name, started_at, ended_at, "
            "minutes_planned, seconds_run, minutes, outcome, end_reason, completed, faults, "
            f"safety_ok, received_at, received_by FROM sessions {where} "
            "ORDER BY chair_id, ended_at, session_id",
            args,
        )
        for r in rows:
            r["completed"] = bool(r["completed"])
            if r["safety_ok"] is not None:
                r["safety_ok"] = bool(r["safety_ok"])
        return rows

    async def faults(self, chair_id: str | None = None) -> list[dict[str, Any]]:
        where, args = ("WHERE chair_id = ?", (chair_id,)) if chair_id else ("", ())
        return await self._db.rows(
            f"SELECT {self._FAULT_COLS}, raised_at, alerted_at FROM faults {where} ORDER BY id",
            args,
        )

    # ---- orders (paid starts) --------------------------------------------------------------

    async def add_order(
        self, order_id: str, chair_id: str, program: str, minutes: float | None
    ) -> bool:
        """An order about to be sent (status ``sent``); False when that id is known already
        (a retry: the chair runs a command id once, and answers it again)."""
        counts = await self._db.transaction(
            [
                (
                    "INSERT INTO orders (order_id, chair_id, program, minutes, status, "
                    "requested_at) VALUES (?, ?, ?, ?, 'sent', ?) "
                    "ON CONFLICT (order_id) DO NOTHING",
                    (order_id, chair_id, program, minutes, now_iso()),
                )
            ]
        )
        return counts[0] > 0

    async def finish_order(
        self,
        order_id: str,
        status: str,
        *,
        session_id: str | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        if status not in ORDER_STATUSES:
            raise ValueError(f"order status {status!r}")
        await self._db.transaction(
            [
                (
                    "UPDATE orders SET status = ?, session_id = ?, error_code = ?, "
                    "error_message = ?, replied_at = ? WHERE order_id = ?",
                    (status, session_id, error_code, error_message, now_iso(), order_id),
                )
            ]
        )

    async def order(self, order_id: str) -> dict[str, Any] | None:
        rows = await self._db.rows(
            "SELECT order_id, chair_id, program, minutes, status, error_code, error_message, "
            "session_id, requested_at, replied_at FROM orders WHERE order_id = ?",
            (order_id,),
        )
        return rows[0] if rows else None

    async def orders(self) -> list[dict[str, Any]]:
        return await self._db.rows(
            "SELECT order_id, chair_id, program, minutes, status, error_code, error_message, "
            "session_id, requested_at, replied_at FROM orders ORDER BY requested_at, order_id"
        )

    # ---- the report --------------------------------------------------------------------------

    async def report(self) -> dict[str, Any]:
        """``chair fleet report --json`` (docs/interfaces.md §7): {chairs, sessions, minutes,
        faults, by_chair: {id: {sessions, minutes, faults}}}, every chair the service knows."""
        by: dict[str, dict[str, Any]] = {}

        def chair(cid: str) -> dict[str, Any]:
            return by.setdefault(cid, {"sessions": 0, "minutes": 0.0, "faults": 0})

        for r in await self._db.rows("SELECT chair_id FROM chairs"):
            chair(r["chair_id"])
        for r in await self._db.rows(
            "SELECT chair_id, COUNT(*) AS n, COALESCE(SUM(minutes), 0) AS m FROM sessions "
            "GROUP BY chair_id"
        ):
            c = chair(r["chair_id"])
            c["sessions"], c["minutes"] = int(r["n"]), round(float(r["m"]), 3)
        for r in await self._db.rows(
            "SELECT chair_id, COUNT(*) AS n FROM faults GROUP BY chair_id"
        ):
            chair(r["chair_id"])["faults"] = int(r["n"])
        by_chair = dict(sorted(by.items()))
        return {
            "chairs": len(by_chair),
            "sessions": sum(c["sessions"] for c in by_chair.values()),
            "minutes": round(sum(c["minutes"] for c in by_chair.values()), 3),
            "faults": sum(c["faults"] for c in by_chair.values()),
            "by_chair": by_chair,
        }


__all__ = [
    "ENV_DB",
    "MIGRATIONS",
    "ORDER_STATUSES",
    "SCHEMA_VERSION",
    "Fault",
    "Recorded",
    "Records",
    "RecordsError",
    "db_target",
    "engine_of",
    "redact",
    "session_row",
    "valid_id",
]
