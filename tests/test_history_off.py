"""A database that fails — locked by another process, full — turns history off: one clear log
line, the state says so, and the session still runs and finishes safely (docs/chair.md §9).
A full disk and a read-only filesystem are real ones (a small tmpfs in a private mount namespace,
where the machine allows it); a corrupt file: tests/test_users_history.py.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from chair.store import Store, StoreError
from chair.testing import TestingController
from core_rt.config import ChairConfig


async def _run_one(ctl: TestingController) -> None:
    await ctl.start("quick", minutes=5)
    await ctl.wait_session()


async def test_a_database_locked_by_another_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "chair.db"
    await (await Store.open(db)).close()  # the schema exists
    ctl = TestingController.create(ChairConfig(), speed=6000, db=db)
    await ctl.open()
    ctl.serve()
    other = sqlite3.connect(db, isolation_level=None)
    try:
        assert ctl.state()["history"]["on"] is True
        other.execute("BEGIN EXCLUSIVE")  # another writer holds the lock and keeps it
        await _run_one(ctl)
        summary = ctl.last_summary
        assert summary is not None and summary["completed"], summary
        assert summary["safety"]["ok"], (summary["safety"]["violations"][:5], summary["faults"])
        history = ctl.state()["history"]
        assert history["on"] is False and "locked" in history["error"]
        await _run_one(ctl)  # and the next one too, without waiting for the lock again
        assert ctl.last_summary is not None and ctl.last_summary["completed"]
    finally:
        other.close()
        await ctl.close()
    said = [r.getMessage() for r in caplog.records if "history off" in r.getMessage()]
    assert len(said) == 1 and str(db) in said[0]


async def _fill_with_records(store: Store) -> str:
    """Write session records like the chair's own until the database is full; the error."""
    i = 0
    while True:
        i += 1
        try:
            await store.begin_session(
                {"session_id": f"{uuid.uuid4().hex[:8]}-{i}", "user": None, "program": "quick",
                 "minutes_planned": 5.0, "intensity": 3, "heat": "off"}
            )  # fmt: skip
        except StoreError as e:
            return str(e)


async def test_a_full_database(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "chair.db"
    ctl = TestingController.create(ChairConfig(), speed=6000, db=db)
    await ctl.open()
    ctl.serve()
    try:
        assert ctl.store is not None
        # a size-limited file (SQLite's own limit: the file cannot grow), filled with records
        async with ctl.store._conn.execute("PRAGMA page_count") as cur:
            row = await cur.fetchone()
        assert row is not None
        await ctl.store._conn.execute(f"PRAGMA max_page_count = {int(row[0]) + 1}")
        assert "full" in await _fill_with_records(ctl.store)
        assert "full" in await _fill_with_records(ctl.store)  # not one more record fits
        await _run_one(ctl)
        summary = ctl.last_summary
        assert summary is not None and summary["completed"], summary
        assert summary["safety"]["ok"], (summary["safety"]["violations"][:5], summary["faults"])
        history = ctl.state()["history"]
        assert history["on"] is False and "full" in history["error"]
    finally:
        await ctl.close()
    said = [r.getMessage() for r in caplog.records if "history off" in r.getMessage()]
    assert len(said) == 1


# ---- real filesystems: a small tmpfs, filled up or remounted read-only -------------------------


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(
    not _can_mount(), reason="needs a private mount namespace (unshare -m, root)"
)


def _on_tmpfs(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    """`script` in its own mount namespace with a fresh 256 KiB tmpfs at $D, a user Ann and her
    first session's record in $D/chair.db; `chair` is this Python's chair."""
    d = tmp_path / "mnt"
    d.mkdir()
    chair = f"{shlex.quote(sys.executable)} -m chair"
    setup = (
        f"set -e; D={shlex.quote(str(d))}; mount -t tmpfs -o size=256k tmpfs $D; "
        f"{chair} users add Ann --intensity 4 --db $D/chair.db >/dev/null; "
        f"{chair} run quick --minutes 5 --fast --quiet --user Ann --db $D/chair.db >/dev/null; "
        "set +e; "
    )
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", setup + script.replace("chair ", chair + " ")],
        capture_output=True,
        text=True,
        timeout=120,
    )


RUN = "chair run quick --minutes 5 --fast --quiet --json --user Ann --db $D/chair.db"


def _ran_safely(out: str) -> None:
    summary = json.loads(out)
    assert summary["completed"] and summary["safety"]["ok"]


@needs_mount
def test_a_full_disk(tmp_path: Path) -> None:
    p = _on_tmpfs(
        tmp_path,
        f"dd if=/dev/zero of=$D/fill bs=1k 2>/dev/null; {RUN}; echo rc=$?; "
        "chair history --db $D/chair.db >&2; echo rc=$?",
    )
    out, rcs = p.stdout.rsplit("rc=", 2)[0], p.stdout.split("rc=")[1:]
    assert [r.strip() for r in rcs] == ["0", "1"], p.stderr
    _ran_safely(out)
    said = [line for line in p.stderr.splitlines() if line.startswith("history off:")]
    assert len(said) == 1 and "the disk is full" in said[0], p.stderr
    assert "chair history: error:" in p.stderr and "the disk is full" in p.stderr


@needs_mount
def test_a_read_only_filesystem(tmp_path: Path) -> None:
    p = _on_tmpfs(
        tmp_path,
        f"mount -o remount,ro $D; {RUN}; echo rc=$?; "
        "chair users add Bob --db $D/chair.db >&2; echo rc=$?",
    )
    out, rcs = p.stdout.rsplit("rc=", 2)[0], p.stdout.split("rc=")[1:]
    assert [r.strip() for r in rcs] == ["0", "1"], p.stderr
    _ran_safely(out)
    said = [line for line in p.stderr.splitlines() if line.startswith("history off:")]
    assert len(said) == 1 and "a read-only filesystem" in said[0], p.stderr
    assert "chair users: error:" in p.stderr and "a read-only filesystem" in p.stderr
