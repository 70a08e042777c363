"""The chair's database (docs/chair.md §9): WAL, versioned migrations, the path, clear errors.

Every test uses a real SQLite file in tmp_path.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from chair.store import SCHEMA_VERSION, Store, StoreError, db_path
from chair.store.schema import migrate


async def _v1_database(path: Path) -> None:
    """A database made by the first schema, with a user and a closed session in it."""
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        assert await migrate(conn, upto=1) == 0
        await conn.execute(
            "INSERT INTO users (name, intensity, heat, zone_intensity, created_at, updated_at) "
            "VALUES ('Ann', 4, 'low', '{\"neck\": 1}', 't', 't')"
        )
        await conn.execute(
            "INSERT INTO sessions (session_id, user, program, minutes_planned, intensity, heat, "
            "started_at, ended_at, outcome, end_reason, seconds_run, faults) VALUES "
            "('old-1', 'Ann', 'relax', 5, 4, 'low', '2026-01-01T00:00:00Z', "
            "'2026-01-01T00:05:00Z', 'completed', 'completed', 300, '[]')"
        )


async def test_a_v1_database_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "chair.db"
    await _v1_database(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    store = await Store.open(path)
    try:
        assert await store.version() == SCHEMA_VERSION >= 2
        ann = await store.user("ann")  # names are case-insensitive
        assert ann is not None and ann["intensity"] == 4 and ann["zone_intensity"] == {"neck": 1}
        (old,) = await store.history()
        assert old["session_id"] == "old-1" and old["outcome"] == "completed"
        assert old["zone_seconds"] == {} and old["safety_ok"] is None  # v2's columns
        assert await store.outbox("any") == []  # v2's table
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "chair.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this chair"):
        await Store.open(path)


async def test_a_corrupt_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "chair.db"
    path.write_bytes(b"this is not a database" * 200)
    with pytest.raises(StoreError) as e:
        await Store.open(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert "corrupt" in str(e.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
async def test_a_read_only_directory_is_a_clear_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(StoreError, match=str(ro)):
            await Store.open(ro / "chair.db")
    finally:
        ro.chmod(0o700)


async def test_history_outbox_and_interrupted_records(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "chair.db")
    try:
        await store.begin_session(
            {"session_id": "s1", "user": None, "program": "relax", "minutes_planned": 5}
        )
        await store.progress("s1", 42.0)
        await store.begin_session(
            {"session_id": "s2", "user": None, "program": "quick", "minutes_planned": 5}
        )
        oid = await store.finish_session(
            "s2", {"outcome": "stopped", "seconds_run": 10}, event={"x": 1}, topic="t/event"
        )
        assert oid is not None
        assert await store.outbox("t/event") == [(oid, {"x": 1})]
        assert await store.outbox("other") == []
        await store.outbox_done(oid)
        assert await store.outbox("t/event") == []
        assert await store.close_interrupted() == []  # s1's process (this one) still runs
        with sqlite3.connect(tmp_path / "chair.db") as conn:  # as if written by one now gone
            conn.execute("UPDATE sessions SET owner = 'another-boot:1:1' WHERE session_id = 's1'")
        assert await store.close_interrupted() == ["s1"]
        s1 = await store.record("s1")
        assert s1 is not None
        assert (s1["outcome"], s1["seconds_run"]) == ("interrupted", 42.0)
        assert s1["ended_at"] is not None
        assert [r["session_id"] for r in await store.history(limit=1)] == ["s2"]
    finally:
        await store.close()


async def test_what_was_changed_behind_the_chairs_back_still_reads(tmp_path: Path) -> None:
    """JSON columns that are not JSON, a run time that is not a number, an outbox event that
    does not parse: read back as they are (the request model judges a profile), and the event
    is sent from its record instead — no read raises, no record is lost."""
    path = tmp_path / "chair.db"
    store = await Store.open(path)
    try:
        await store.add_user("Cy", {"intensity": 4, "zone_intensity": {"neck": -1}})
        await store.begin_session(
            {"session_id": "s1", "user": "Cy", "program": "relax", "minutes_planned": 5}
        )
        oid = await store.finish_session(
            "s1", {"outcome": "completed", "end_reason": "completed", "seconds_run": 300},
            event={"event": "session_finished", "session_id": "s1"}, topic="t/event",
        )  # fmt: skip
        await store.add_outbox("t/event", "gone", {"event": "session_finished"})
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE users SET zone_intensity = '{neck: -1'")
            conn.execute("UPDATE sessions SET faults = '[', seconds_run = 'lots'")
            conn.execute("UPDATE outbox SET payload = '{\"event\": '")
        cy = await store.user("Cy")
        assert cy is not None and cy["zone_intensity"] == "{neck: -1"
        (rec,) = await store.history()
        assert (rec["faults"], rec["minutes_run"]) == ("[", None)
        ((got, event),) = await store.outbox("t/event")  # "gone" has neither event nor record
        assert got == oid and event["session_id"] == "s1" and event["summary"] is None
        assert (event["completed"], event["record"]["outcome"]) == (True, "completed")
    finally:
        await store.close()


def test_the_path_comes_from_db_then_chair_db_then_xdg(tmp_path: Path) -> None:
    env = {"CHAIR_DB": str(tmp_path / "env.db"), "XDG_STATE_HOME": str(tmp_path / "state")}
    assert db_path("x.db", env) == Path("x.db")
    assert db_path(None, env) == tmp_path / "env.db"
    del env["CHAIR_DB"]
    assert db_path(None, env) == tmp_path / "state" / "massagechair" / "chair.db"
    assert db_path(None, {}) == Path.home() / ".local/state/massagechair/chair.db"


async def test_concurrent_writes_take_turns(tmp_path: Path) -> None:
    """The session's progress, the bridge's acknowledgements and a closing record may write at
    once on the one connection: each gets its own transaction."""
    import asyncio

    store = await Store.open(tmp_path / "chair.db")
    try:
        await store.begin_session(
            {"session_id": "s", "user": None, "program": "relax", "minutes_planned": 5}
        )
        ids = await asyncio.gather(*(store.add_outbox("t", f"s{i}", {"i": i}) for i in range(30)))
        await asyncio.gather(
            *(store.progress("s", float(i)) for i in range(30)),
            *(store.outbox_done(oid) for oid in ids[:20]),
        )
        assert [e["i"] for _, e in await store.outbox("t")] == list(range(20, 30))
    finally:
        await store.close()


async def test_only_records_whose_process_is_gone_are_closed_as_interrupted(
    tmp_path: Path,
) -> None:
    """`chair run` beside `chair serve` on one database: the second to start must not close
    the first one's running session (schema v3's owner); a killed process's record is closed."""
    import subprocess
    import sys

    from chair.store import owner_alive, process_owner

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert owner_alive(process_owner()) and not owner_alive(process_owner(gone.pid))
    assert not owner_alive(None) and not owner_alive("another-boot:1:1")
    store = await Store.open(tmp_path / "chair.db")
    try:
        record = {"program": "relax", "minutes_planned": 15.0}
        await store.begin_session({**record, "session_id": "running-here"})
        await store.begin_session({**record, "session_id": "killed"})
        await store.begin_session({**record, "session_id": "before-v3"})
        with sqlite3.connect(tmp_path / "chair.db") as conn:
            conn.execute(
                "UPDATE sessions SET owner = ? WHERE session_id = 'killed'",
                (process_owner(gone.pid),),
            )
            conn.execute("UPDATE sessions SET owner = NULL WHERE session_id = 'before-v3'")
        assert sorted(await store.close_interrupted()) == ["before-v3", "killed"]
        outcomes = {r["session_id"]: r["outcome"] for r in await store.history()}
        assert outcomes == {
            "running-here": None,
            "killed": "interrupted",
            "before-v3": "interrupted",
        }
    finally:
        await store.close()


async def test_a_write_cancelled_at_any_point_leaves_the_database_usable(tmp_path: Path) -> None:
    """The MQTT bridge's publisher is cancelled when the broker goes away, possibly while it marks
    an outbox event done. A write cancelled at any await still ends its transaction (commit or
    rollback), so the next write does not meet "cannot start a transaction within a transaction"
    (which turned history off mid-run)."""
    import asyncio

    store = await Store.open(tmp_path / "chair.db")
    try:
        await store.begin_session(
            {"session_id": "s", "user": None, "program": "relax", "minutes_planned": 5}
        )
        for yields in range(40):  # cancel after 0, 1, 2, ... turns of the loop
            task = asyncio.ensure_future(store.progress("s", float(yields)))
            for _ in range(yields):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await store.progress("s", 1000.0 + yields)  # raised StoreError before the fix
            assert (await store.record("s") or {})["seconds_run"] == 1000.0 + yields
    finally:
        await store.close()
