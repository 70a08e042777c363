"""User memory and session history (docs/chair.md §9) on a real SQLite file in tmp_path.

Sessions run in virtual time (``--fast``, or the paced testing controller); the crash test runs
`chair run` as a real process and SIGKILLs it mid-session.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from chair.api import CommandError
from chair.cli import main
from chair.lifecycle import SessionState
from chair.testing import TestingController
from core_rt.config import ChairConfig


def chair(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys: pytest.CaptureFixture[str], db: Path, *argv: str) -> dict[str, Any]:
    rc, out, err = chair(capsys, "run", *argv, "--fast", "--json", "--db", str(db))
    assert rc == 0, err
    summary: dict[str, Any] = json.loads(out)
    return summary


def user(capsys: pytest.CaptureFixture[str], db: Path, name: str) -> dict[str, Any]:
    rc, out, err = chair(capsys, "users", "show", name, "--json", "--db", str(db))
    assert rc == 0, err
    profile: dict[str, Any] = json.loads(out)
    return profile


def history(capsys: pytest.CaptureFixture[str], db: Path, *argv: str) -> list[dict[str, Any]]:
    rc, out, err = chair(capsys, "history", "--json", "--db", str(db), *argv)
    assert rc == 0, err
    records: list[dict[str, Any]] = json.loads(out)
    return records


def test_a_session_starts_from_the_users_memory_and_updates_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "chair.db"
    rc, _, err = chair(
        capsys,
        "users", "add", "Ann B", "--db", str(db),
        "--shoulder-offset", "-20", "--intensity", "4", "--heat", "low",
        "--zone-intensity", "lumbar=1", "--program", "quick", "--minutes", "6",
    )  # fmt: skip
    assert rc == 0, err
    plain = run_json(capsys, db, "quick", "--minutes", "6")
    # no PROGRAM: the user's favourite, for the user's minutes
    s = run_json(capsys, db, "--user", "Ann B")
    assert (s["user"], s["program"], s["minutes"]) == ("Ann B", "quick", 6.0)
    assert (s["intensity"], s["heat"], s["zone_intensity"]) == (4, "low", {"lumbar": 1})
    # the adjust window opened at the remembered offset: the same body, 20 mm lower
    assert s["body"]["shoulder_mm"] == pytest.approx(plain["body"]["shoulder_mm"] - 20, abs=0.2)
    assert s["completed"] and s["safety"]["ok"]
    (rec,) = history(capsys, db, "--user", "Ann B", "--limit", "5")
    assert rec["session_id"] == s["session_id"]
    assert (rec["outcome"], rec["user"], rec["intensity"]) == ("completed", "Ann B", 4)
    assert rec["minutes_run"] == pytest.approx(6.0, abs=0.05) and rec["safety_ok"] is True

    # explicit options win, and a completed session leaves them in the memory
    s = run_json(capsys, db, "relax", "--user", "Ann B", "--intensity", "2", "--heat", "off",
                 "--minutes", "5")  # fmt: skip
    assert (s["program"], s["minutes"], s["intensity"], s["heat"]) == ("relax", 5.0, 2, "off")
    assert s["zone_intensity"] == {"lumbar": 1}  # not given: the memory's
    ann = user(capsys, db, "ann b")
    assert (ann["program"], ann["minutes"], ann["intensity"], ann["heat"]) == (
        "relax",
        5.0,
        2,
        "off",
    )
    assert ann["shoulder_offset_mm"] == -20.0


def test_an_unknown_user_is_an_error_not_a_new_profile(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "chair.db"
    rc, _, err = chair(capsys, "run", "relax", "--fast", "--user", "Nobody", "--db", str(db))
    assert rc == 1 and "no user 'Nobody'" in err and "Traceback" not in err
    rc, _, err = chair(capsys, "run", "relax", "--fast", "--user", "bad/name", "--db", str(db))
    assert rc == 1 and "letters, digits" in err
    rc, _, err = chair(capsys, "users", "add", "x" * 33, "--db", str(db))
    assert rc == 1 and "1-32" in err
    rc, _, err = chair(capsys, "users", "add", "Bo", "--intensity", "9", "--db", str(db))
    assert rc == 1 and "--intensity must be 1..5" in err
    rc, out, _ = chair(capsys, "users", "list", "--json", "--db", str(db))
    assert rc == 0 and json.loads(out) == []
    assert history(capsys, db) == []


@pytest.mark.parametrize(
    ("fault", "outcome", "reason"),
    [
        ("estop@90s", "estop", "estop"),  # in the program (the body scan is over by then)
        ("stall:carriage@120s", "fault", "fault"),
        ("occupant_leaves@200s", "stopped", "occupant_left"),
    ],
)
def test_history_after_faults_estops_and_stops(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fault: str, outcome: str, reason: str
) -> None:
    db = tmp_path / "chair.db"
    chair(capsys, "run", "relax", "--fast", "--quiet", "--fault", fault, "--db", str(db))
    (rec,) = history(capsys, db)
    assert (rec["outcome"], rec["end_reason"]) == (outcome, reason)
    assert 0 < rec["seconds_run"] < rec["minutes_planned"] * 60
    assert rec["ended_at"] >= rec["started_at"]
    if outcome != "stopped":
        assert rec["faults"] and rec["faults"][0]["code"] in ("estop", "stall")


async def test_a_stopped_session_and_a_tampered_profile(tmp_path: Path) -> None:
    db = tmp_path / "chair.db"
    ctl = TestingController.create(ChairConfig(), speed=600, db=db)
    await ctl.open()
    ctl.serve()
    try:
        assert ctl.state()["history"] == {"on": True, "error": None}
        assert ctl.store is not None
        await ctl.store.add_user("Cy", {"intensity": 4})
        # a value no request may carry, written behind the chair's back: not used
        with sqlite3.connect(db) as conn:
            conn.execute(
                "UPDATE users SET intensity = 99, shoulder_offset_mm = 9999, "
                "zone_intensity = '{\"neck\": 2'"
            )
        with pytest.raises(CommandError) as e:
            await ctl.start("relax", minutes=5, user="Nobody")
        assert e.value.code == "unknown_user"
        await ctl.start("relax", minutes=5, user="Cy")
        assert ctl.state()["user"] == "Cy"
        assert ctl.state()["intensity"] == 3  # the program's default, not 99
        assert ctl.state()["zone_intensity"] == {}  # not half a JSON object's
        await ctl.advance_until(SessionState.RUNNING)
        ctl.release()
        await ctl.stop()
        await ctl.wait_session()
        (rec,) = await ctl.store.history()
        assert (rec["outcome"], rec["end_reason"], rec["user"]) == ("stopped", "stopped", "Cy")
        cy = await ctl.store.user("Cy")
        assert cy is not None and cy["intensity"] == 99  # a stop does not update the memory
    finally:
        await ctl.close()


async def test_a_corrupt_database_turns_history_off_and_sessions_still_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "chair.db"
    db.write_bytes(os.urandom(8192))
    ctl = TestingController.create(ChairConfig(), speed=6000, db=db)
    await ctl.open()
    ctl.serve()
    try:
        history_state = ctl.state()["history"]
        assert history_state["on"] is False and "corrupt" in history_state["error"]
        await ctl.start("quick", minutes=5, user="Ann")  # no memory to be had: runs without
        await ctl.wait_session()
        assert ctl.last_summary is not None and ctl.last_summary["completed"]
        assert ctl.last_summary["safety"]["ok"]
    finally:
        await ctl.close()
    said = [r for r in caplog.records if "history off" in r.getMessage()]
    assert len(said) == 1 and "\n" not in said[0].getMessage()


def _open_record(db: Path) -> float | None:
    """The run time of the open record (None while there is none yet)."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT seconds_run FROM sessions WHERE ended_at IS NULL").fetchone()
    except sqlite3.OperationalError:  # the schema is being created
        return None
    return None if row is None else float(row[0])


def test_a_killed_chair_run_is_closed_as_interrupted_at_the_next_start(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "chair.db"
    env = {**os.environ, "CHAIR_DB": str(db)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chair", "run", "relax", "--minutes", "5", "--speed", "30",
         "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while (ran := _open_record(db)) is None or ran <= 0:  # a step has started and been kept
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the session never recorded its progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    (rec,) = history(capsys, db)
    assert rec["outcome"] is None  # still open: nobody has started since
    run_json(capsys, db, "quick", "--minutes", "5")
    new, old = history(capsys, db)
    assert (old["outcome"], old["end_reason"]) == ("interrupted", "interrupted")
    assert old["seconds_run"] > 0 and old["ended_at"] is not None
    assert new["outcome"] == "completed"
