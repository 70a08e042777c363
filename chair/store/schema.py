"""The database's schema and its migrations (docs/chair.md §9).

``PRAGMA user_version`` is the schema's version: 0 is an empty file, ``MIGRATIONS[i]`` takes a
database from version i to i + 1, each in its own transaction. A newer chair opens an older
database and upgrades it; an older chair refuses a newer one rather than guess.

- v1: ``users`` (the profiles) and ``sessions`` (the history).
- v2: the MQTT ``outbox`` (events kept until the broker acknowledged them); a session record
  keeps its safety verdict, seconds per zone and when it was last seen running.
- v3: a session record names the process that runs it (``owner``: boot id, pid, the process's
  start time), so a chair starting beside another one on the same database closes as
  ``interrupted`` only the records whose process is gone.
- v4: ``settings``, the chair's own values that must survive a restart (the web remote's pairing
  token, docs/web.md).
- v5: ``programs``, the program files delivered to the chair (docs/programs.md, Delivered
  programs): their text as received, its SHA-256, when it came.
"""

from __future__ import annotations

import aiosqlite

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # v1
        """CREATE TABLE users (
            name TEXT PRIMARY KEY COLLATE NOCASE,
            height_cm REAL,
            shoulder_offset_mm REAL,
            intensity INTEGER,
            heat TEXT,
            zone_intensity TEXT NOT NULL DEFAULT '{}',
            program TEXT,
            minutes REAL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE sessions (
            session_id TEXT PRIMARY KEY,
            user TEXT,
            program TEXT NOT NULL,
            minutes_planned REAL NOT NULL,
            intensity INTEGER,
            heat TEXT,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            outcome TEXT,
            end_reason TEXT,
            seconds_run REAL NOT NULL DEFAULT 0,
            faults TEXT NOT NULL DEFAULT '[]'
        )""",
        "CREATE INDEX sessions_started ON sessions (started_at)",
        "CREATE INDEX sessions_user ON sessions (user, started_at)",
    ),
    (  # v2
        "ALTER TABLE sessions ADD COLUMN safety_ok INTEGER",
        "ALTER TABLE sessions ADD COLUMN zone_seconds TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE sessions ADD COLUMN seen_at TEXT",
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            topic TEXT NOT NULL,
            session_id TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
    ),
    ("ALTER TABLE sessions ADD COLUMN owner TEXT",),  # v3
    ("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",),  # v4
    (  # v5
        """CREATE TABLE programs (
            name TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            installed_at TEXT NOT NULL
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


async def migrate(conn: aiosqlite.Connection, upto: int = SCHEMA_VERSION) -> int:
    """Bring the database to version `upto` (default: the latest); its version before."""
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    before = int(row[0]) if row is not None else 0
    if before > SCHEMA_VERSION:
        raise ValueError(
            f"schema version {before} is newer than this chair's ({SCHEMA_VERSION}): "
            "upgrade the chair"
        )
    for version in range(before, upto):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for sql in MIGRATIONS[version]:
                await conn.execute(sql)
            await conn.execute(f"PRAGMA user_version = {version + 1}")
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
    return before
