"""The chair's own data on its own flash: user profiles, session history and the MQTT outbox
(docs/chair.md §9), in one SQLite file through aiosqlite.

`Store.open(path)` opens (creating) the database in WAL mode and brings its schema up to date
(`chair.store.schema`); every failure — a locked, read-only, full or corrupt file — is a
`StoreError` with a one-line message, and the chair then runs its sessions without history.
The path comes from ``--db``, then ``CHAIR_DB``, then ``$XDG_STATE_HOME/massagechair/chair.db``
(`db_path`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiosqlite

from chair.lifecycle import SessionEvent
from chair.store.schema import SCHEMA_VERSION, migrate

log = logging.getLogger("chair.store")

BUSY_TIMEOUT_S = 2.0
"""How long a write waits for another process's lock before the database counts as locked."""

USER_FIELDS = (
    "height_cm",
    "shoulder_offset_mm",
    "intensity",
    "heat",
    "zone_intensity",
    "program",
    "minutes",
)
"""What a user profile remembers (besides its name), in the order `chair users show` lists it."""

OUTCOMES = ("completed", "stopped", "fault", "estop", "interrupted")


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat field 22); "" when
    there is no such process (or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]  # fields after "(comm)" start at field 3


def process_owner(pid: int | None = None) -> str:
    """Who runs a session: ``boot id:pid:start time`` — unique to one process on one boot, so
    neither a reboot nor a reused pid makes a dead owner look alive."""
    pid = os.getpid() if pid is None else pid
    return f"{_boot_id()}:{pid}:{_start_ticks(pid)}"


def owner_alive(owner: str | None) -> bool:
    """Whether the process that wrote `owner` still runs (False when unknown: a record from
    before v3, another boot, a pid that now names another process, or no /proc)."""
    if not owner:
        return False
    boot, _, rest = owner.partition(":")
    pid, _, start = rest.partition(":")
    if not boot or boot != _boot_id() or not pid.isdigit() or not start:
        return False
    return _start_ticks(int(pid)) == start


def _decoded(text: Any, empty: Any) -> Any:
    """A JSON column read back: `empty` for none, the stored value itself when it is not JSON
    (a file changed behind the chair's back; whoever uses it checks it — a profile through its
    request model — so nothing read back raises here)."""
    if text is None or text == "":
        return empty
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def minutes_run(seconds_run: Any) -> float | None:
    """A record's ``minutes_run``: its ``seconds_run`` / 60 to 0.001 (None when it is not a
    number: changed behind the chair's back)."""
    try:
        return round(float(seconds_run or 0.0) / 60.0, 3)
    except (TypeError, ValueError):
        return None


def finished_event(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ``session_finished`` event of a record with no summary at hand (a session found
    interrupted, an outbox event that no longer reads back)."""
    return {
        "event": SessionEvent.SESSION_FINISHED,
        "session_id": record["session_id"],
        "completed": record.get("outcome") == "completed",
        "end_reason": record.get("end_reason"),
        "summary": None,
        "record": dict(record),
    }


class StoreError(Exception):
    """The database cannot be used: the message is one line naming the file and the cause."""


def db_path(
    arg: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """``--db``, then ``CHAIR_DB``, then ``$XDG_STATE_HOME/massagechair/chair.db``
    (``~/.local/state/massagechair/chair.db``)."""
    env = os.environ if env is None else env
    if arg:
        return Path(arg)
    if env.get("CHAIR_DB"):
        return Path(env["CHAIR_DB"])
    state = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "massagechair" / "chair.db"


def outcome_of(end_reason: str) -> str:
    """A session's outcome (completed, stopped, fault, estop) from its end reason."""
    if end_reason in ("completed", "estop"):
        return end_reason
    if end_reason in ("stopped", "occupant_left", "no_occupant", "plan_error", "scan_failed"):
        return "stopped"
    return "fault"


def now_iso() -> str:
    """Now, UTC, to the millisecond (``2026-12-04T05:15:40.151Z``), from one reading of the
    clock: the seconds and the milliseconds read apart could straddle a second's turn and say a
    time up to a second early."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


FULL_BELOW_BYTES = 64 * 1024
"""Free space under which an I/O error of the database is reported as a full disk (SQLite's
WAL index alone needs 32 KiB)."""


def _free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _why(e: BaseException, path: Path) -> str:
    """One line: SQLite's words, and what they mean when they are vague."""
    text = str(e) or type(e).__name__
    if isinstance(e, sqlite3.DatabaseError):
        code = getattr(e, "sqlite_errorname", "") or ""
        if "not a database" in text:
            text += " (corrupt, or not a SQLite file)"
        elif code.startswith("SQLITE_IOERR"):
            free = _free_bytes(path)
            if free is not None and free < FULL_BELOW_BYTES:  # SQLite says only "I/O error"
                text += f" ({code}: the disk is full, {free} bytes free)"
            else:
                text += f" ({code})"
        elif code.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY")):
            text += f" ({code}{_unwritable(path)})"
    return text.splitlines()[0]


def _unwritable(path: Path) -> str:
    """Why SQLite cannot write beside `path` (its WAL files live there), if it is that."""
    try:
        if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
            return ": a read-only filesystem"
    except OSError:
        return ""
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return ": the file or its directory is not writable"
    return ""


def _consume_outcome(task: asyncio.Future[Any]) -> None:
    """A shielded write whose caller was cancelled: its error (if any) has no one to go to."""
    if not task.cancelled():
        task.exception()


class Store:
    """An open database. Every method raises `StoreError` when the database fails."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._tx = asyncio.Lock()
        """One transaction at a time on the one connection (the session's writes, the MQTT
        bridge's acknowledgements and the CLI may ask at once)."""

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> Store:
        p = Path(path)
        conn: aiosqlite.Connection | None = None
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(p, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.row_factory = sqlite3.Row
            mode = await cls._one(conn, "PRAGMA journal_mode=WAL")
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch to WAL (journal mode {mode})")
            await conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            await conn.execute("PRAGMA synchronous=FULL")  # a record survives a power loss
            await migrate(conn)
        except (sqlite3.Error, OSError, ValueError) as e:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error, OSError):  # a broken file
                    await conn.close()
            raise StoreError(f"database {p}: {_why(e, p)}") from None
        return cls(conn, p)

    @staticmethod
    async def _one(conn: aiosqlite.Connection, sql: str, args: tuple[Any, ...] = ()) -> Any:
        async with conn.execute(sql, args) as cur:
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def close(self) -> None:
        try:
            await self._conn.close()
        except (sqlite3.Error, OSError) as e:  # pragma: no cover
            raise StoreError(f"database {self.path}: {_why(e, self.path)}") from None

    async def version(self) -> int:
        return int(await self._q1("PRAGMA user_version"))

    # ---- plumbing ------------------------------------------------------------------------------

    async def _q1(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        try:
            return await self._one(self._conn, sql, args)
        except (sqlite3.Error, OSError, ValueError) as e:
            raise StoreError(f"database {self.path}: {_why(e, self.path)}") from None

    async def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        try:
            async with self._conn.execute(sql, args) as cur:
                return [dict(r) for r in await cur.fetchall()]
        except (sqlite3.Error, OSError, ValueError) as e:
            raise StoreError(f"database {self.path}: {_why(e, self.path)}") from None

    async def _write(self, *statements: tuple[str, tuple[Any, ...]]) -> int:
        """Run `statements` in one transaction; the last one's rowcount (or lastrowid for an
        INSERT).

        The transaction runs in a task of its own, shielded: a caller cancelled mid-write (the
        MQTT bridge's publisher when the broker goes away) leaves, but the transaction still ends
        in COMMIT or ROLLBACK. Cancelling the await of a statement does not stop aiosqlite's
        thread from running it, so an unshielded BEGIN could be left open on the connection and
        every later write would fail."""
        task = asyncio.ensure_future(self._locked_transaction(statements))
        task.add_done_callback(_consume_outcome)
        return await asyncio.shield(task)

    async def _locked_transaction(self, statements: tuple[tuple[str, tuple[Any, ...]], ...]) -> int:
        try:
            async with self._tx:
                return await self._transaction(statements)
        except sqlite3.IntegrityError:
            raise
        except (sqlite3.Error, OSError, ValueError) as e:
            raise StoreError(f"database {self.path}: {_why(e, self.path)}") from None

    async def _transaction(self, statements: tuple[tuple[str, tuple[Any, ...]], ...]) -> int:
        await self._conn.execute("BEGIN IMMEDIATE")
        try:
            result = 0
            for sql, args in statements:
                cur = await self._conn.execute(sql, args)
                is_insert = sql.lstrip().upper().startswith("INSERT")
                result = (cur.lastrowid or 0) if is_insert else cur.rowcount
                await cur.close()
            await self._conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # no transaction left to roll back
                await self._conn.execute("ROLLBACK")
            raise
        return result

    # ---- users ---------------------------------------------------------------------------------

    @staticmethod
    def _user(row: dict[str, Any]) -> dict[str, Any]:
        row["zone_intensity"] = _decoded(row.get("zone_intensity"), {})
        return row

    async def users(self) -> list[dict[str, Any]]:
        rows = await self._rows(
            f"SELECT name, {', '.join(USER_FIELDS)}, updated_at FROM users ORDER BY name"
        )
        return [self._user(r) for r in rows]

    async def user(self, name: str) -> dict[str, Any] | None:
        rows = await self._rows(
            f"SELECT name, {', '.join(USER_FIELDS)}, updated_at FROM users WHERE name = ?",
            (name,),
        )
        return self._user(rows[0]) if rows else None

    async def add_user(self, name: str, fields: Mapping[str, Any]) -> bool:
        """A new profile; False when a user of that name (any case) exists."""
        values = {k: fields.get(k) for k in USER_FIELDS}
        values["zone_intensity"] = json.dumps(values["zone_intensity"] or {})
        cols = ", ".join(["name", *USER_FIELDS, "created_at", "updated_at"])
        marks = ", ".join("?" * (len(USER_FIELDS) + 3))
        t = now_iso()
        try:
            await self._write(
                (f"INSERT INTO users ({cols}) VALUES ({marks})", (name, *values.values(), t, t))
            )
        except sqlite3.IntegrityError:
            return False
        return True

    async def update_user(self, name: str, fields: Mapping[str, Any]) -> bool:
        """Change the fields given (None clears one); False when there is no such user."""
        changes = {k: v for k, v in fields.items() if k in USER_FIELDS}
        if "zone_intensity" in changes:
            changes["zone_intensity"] = json.dumps(changes["zone_intensity"] or {})
        sets = ", ".join(f"{k} = ?" for k in [*changes, "updated_at"])
        n = await self._write(
            (f"UPDATE users SET {sets} WHERE name = ?", (*changes.values(), now_iso(), name))
        )
        return n > 0

    async def remove_user(self, name: str) -> bool:
        return await self._write(("DELETE FROM users WHERE name = ?", (name,))) > 0

    # ---- history -------------------------------------------------------------------------------

    async def begin_session(self, record: Mapping[str, Any]) -> None:
        """The record of a session that starts (closed by `finish_session`)."""
        await self._write(
            (
                "INSERT INTO sessions (session_id, user, program, minutes_planned, intensity, "
                "heat, started_at, seconds_run, owner) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
                (
                    record["session_id"],
                    record.get("user"),
                    record["program"],
                    record["minutes_planned"],
                    record.get("intensity"),
                    record.get("heat"),
                    record.get("started_at") or now_iso(),
                    process_owner(),
                ),
            )
        )

    async def progress(self, session_id: str, seconds_run: float) -> None:
        """What an open session has run so far (an interrupted record keeps it)."""
        await self._write(
            (
                "UPDATE sessions SET seconds_run = ?, seen_at = ? "
                "WHERE session_id = ? AND ended_at IS NULL",
                (round(seconds_run, 3), now_iso(), session_id),
            )
        )

    async def finish_session(
        self,
        session_id: str,
        fields: Mapping[str, Any],
        *,
        event: Mapping[str, Any] | None = None,
        topic: str | None = None,
    ) -> int | None:
        """Close the record with `fields` (outcome, end_reason, seconds_run, intensity, heat,
        faults, safety_ok, zone_seconds); with `event` and `topic`, queue the event in the
        outbox in the same transaction and return its outbox id."""
        f = dict(fields)
        statements: list[tuple[str, tuple[Any, ...]]] = [
            (
                "UPDATE sessions SET ended_at = ?, outcome = ?, end_reason = ?, seconds_run = ?, "
                "intensity = ?, heat = ?, faults = ?, safety_ok = ?, zone_seconds = ? "
                "WHERE session_id = ?",
                (
                    f.get("ended_at") or now_iso(),
                    f["outcome"],
                    f.get("end_reason"),
                    round(float(f.get("seconds_run") or 0.0), 3),
                    f.get("intensity"),
                    f.get("heat"),
                    json.dumps(f.get("faults") or []),
                    None if f.get("safety_ok") is None else int(bool(f["safety_ok"])),
                    json.dumps(f.get("zone_seconds") or {}),
                    session_id,
                ),
            )
        ]
        if event is not None and topic is not None:
            statements.append(
                (
                    "INSERT INTO outbox (topic, session_id, payload, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (topic, session_id, json.dumps(dict(event), default=str), now_iso()),
                )
            )
        result = await self._write(*statements)
        return result if event is not None and topic is not None else None

    async def close_interrupted(self) -> list[str]:
        """Close every record left open by a process that is gone (the chair lost power or was
        killed mid-session) as ``interrupted``, with what it had run; their session ids. A
        record whose process still runs (a `chair run` beside `chair serve` on one database)
        stays open: that session is running."""
        rows = await self._rows("SELECT session_id, owner FROM sessions WHERE ended_at IS NULL")
        open_ids = [r["session_id"] for r in rows if not owner_alive(r["owner"])]
        for sid in open_ids:
            await self._write(
                (
                    "UPDATE sessions SET outcome = 'interrupted', end_reason = 'interrupted', "
                    "ended_at = COALESCE(seen_at, started_at) "
                    "WHERE session_id = ? AND ended_at IS NULL",
                    (sid,),
                )
            )
        return open_ids

    @staticmethod
    def _record(row: dict[str, Any]) -> dict[str, Any]:
        row["faults"] = _decoded(row.get("faults"), [])
        row["zone_seconds"] = _decoded(row.get("zone_seconds"), {})
        if row.get("safety_ok") is not None:
            row["safety_ok"] = bool(row["safety_ok"])
        row["minutes_run"] = minutes_run(row.get("seconds_run"))
        row.pop("seen_at", None)
        return row

    _RECORD_COLS = (
        "session_id, user, program, minutes_planned, intensity, heat, started_at, ended_at, "
        "outcome, end_reason, seconds_run, faults, safety_ok, zone_seconds, seen_at"
    )

    async def record(self, session_id: str) -> dict[str, Any] | None:
        rows = await self._rows(
            f"SELECT {self._RECORD_COLS} FROM sessions WHERE session_id = ?", (session_id,)
        )
        return self._record(rows[0]) if rows else None

    async def history(
        self, user: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Session records, newest first."""
        where, args = ("WHERE user = ?", (user,)) if user is not None else ("", ())
        sql = (
            f"SELECT {self._RECORD_COLS} FROM sessions {where} ORDER BY started_at DESC, rowid DESC"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._record(r) for r in await self._rows(sql, args)]

    # ---- the MQTT outbox -----------------------------------------------------------------------

    # ---- the chair's own settings ---------------------------------------------------------------

    async def setting(self, key: str) -> str | None:
        """A value kept across restarts (the web remote's pairing token), None when unset."""
        value = await self._q1("SELECT value FROM settings WHERE key = ?", (key,))
        return None if value is None else str(value)

    async def put_setting(self, key: str, value: str) -> None:
        await self._write(
            (
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        )

    # ---- delivered programs ------------------------------------------------------------------

    async def programs(self) -> dict[str, str]:
        """The delivered programs: name → the file's text as received."""
        rows = await self._rows("SELECT name, source FROM programs")
        return {r["name"]: r["source"] for r in rows}

    async def put_program(self, name: str, source: str, sha256: str) -> bool:
        """Keep a delivered program (replacing one of the same name); whether it replaced one."""
        had = await self._q1("SELECT 1 FROM programs WHERE name = ?", (name,))
        await self._write(
            (
                "INSERT INTO programs (name, source, sha256, installed_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET source = excluded.source, "
                "sha256 = excluded.sha256, installed_at = excluded.installed_at",
                (name, source, sha256, now_iso()),
            )
        )
        return had is not None

    async def remove_program(self, name: str) -> bool:
        return await self._write(("DELETE FROM programs WHERE name = ?", (name,))) > 0

    async def add_outbox(self, topic: str, session_id: str, event: Mapping[str, Any]) -> int:
        return await self._write(
            (
                "INSERT INTO outbox (topic, session_id, payload, created_at) VALUES (?, ?, ?, ?)",
                (topic, session_id, json.dumps(dict(event), default=str), now_iso()),
            )
        )

    async def outbox(self, topic: str) -> list[tuple[int, dict[str, Any]]]:
        """The events for `topic` not yet acknowledged (by the broker or the service), oldest
        first. An event that no longer reads back is rebuilt from its session's record (without
        the summary); one with no record either is left where it is, with a warning."""
        rows = await self._rows(
            "SELECT id, session_id, payload FROM outbox WHERE topic = ? ORDER BY id", (topic,)
        )
        out: list[tuple[int, dict[str, Any]]] = []
        for r in rows:
            event = _decoded(r["payload"], None)
            if not isinstance(event, dict):
                record = await self.record(r["session_id"])
                if record is None:
                    log.warning("outbox: event %s (session %s) is unreadable and has no record",
                                r["id"], r["session_id"])  # fmt: skip
                    continue
                log.warning("outbox: event %s is unreadable: sent again from its record", r["id"])
                event = finished_event(record)
            out.append((int(r["id"]), event))
        return out

    async def outbox_done(self, outbox_id: int) -> None:
        await self._write(("DELETE FROM outbox WHERE id = ?", (outbox_id,)))

    async def outbox_received(self, topic: str, session_id: str) -> bool:
        """The operator's service has the record of `session_id`: forget its event for `topic`;
        whether there was one."""
        sql = "DELETE FROM outbox WHERE topic = ? AND session_id = ?"
        return await self._write((sql, (topic, session_id))) > 0


__all__ = [
    "OUTCOMES",
    "SCHEMA_VERSION",
    "USER_FIELDS",
    "Store",
    "StoreError",
    "db_path",
    "finished_event",
    "minutes_run",
]
