"""The conformance kit (`chair board-check`) against `chair board`: the real emulator passes every
check, and each rule the emulator can break on purpose (`chair board --break RULE`) is caught by
the check written for it (docs/board-protocol.md, Conformance kit).

One board process serves the break modes: the control channel's ``break RULE`` switches a rule
off and ``break none`` on again, and each mode runs only the check that must catch it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import chair.cli.board
from chair.board_check import CHECK_NAMES, CHECKS, FAIL, PASS, SKIP, run
from core_rt.config import ChairConfig
from sim.board import BREAKS
from tests.board_helpers import ROOT, Board, board, child_env

pytestmark = [pytest.mark.hil]  # wall-clock: run alone (tests/conftest.py)

CAUGHT_BY: dict[str, str] = {
    "wrong-nonce": "handshake",
    "ack-their-version": "version-mismatch",
    "no-version-check": "version-mismatch",
    "stale-echo": "echo-after-hello",
    "slow-status": "status-rate",
    "set-link-lost-bit": "status-fields",
    "energise-from-safe": "safe-state",
    "hello-keeps-on": "hello-in-on",
    "accept-sentinels": "sentinels",
    "echo-invalid": "invalid-setpoints",
    "invalid-feeds-watchdog": "sentinels",
    "no-watchdog": "watchdog-trip",
    "slow-watchdog": "watchdog-trip",
    "auto-resume": "watchdog-clear",
    "sticky-trip": "watchdog-clear",
    "trip-on-goodbye": "goodbye",
    "no-disconnect-trip": "disconnect",
    "ignore-crc": "corruption",
    "accept-duplicates": "corruption",
    "load-flag-unkept": "status-fields",
}
"""Each break mode of the emulator → the check that must report FAIL for it."""


def board_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chair", "board-check", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        timeout=120,
    )


@pytest.fixture(scope="module")
def sim_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    with board(tmp_path_factory.mktemp("board-check")) as b:
        yield b


def test_chair_board_passes_every_check_from_the_command_line(sim_board: Board) -> None:
    proc = board_check("--tcp", f"127.0.0.1:{sim_board.where}", "--json")
    out = json.loads(proc.stdout)
    # the kit is honest about itself: when this machine cannot let it send 1000 SETPOINT/s it
    # says so (SKIP, not a verdict on the board); every other check must pass
    busy = [
        c
        for c in out["checks"]
        if c["name"] == "setpoint-1khz" and c["verdict"] != PASS and "too busy" in c["reason"]
    ]
    if busy:
        print("setpoint-1khz skipped:", busy[0]["reason"])
    not_passed = [
        (c["name"], c["reason"]) for c in out["checks"] if c["verdict"] != PASS and c not in busy
    ]
    assert not not_passed, not_passed
    assert proc.returncode == 0, proc.stderr
    assert out["passed"] is True and out["board_id"] == "chair-sim"
    assert [c["name"] for c in out["checks"]] == list(CHECK_NAMES)
    assert sum(c["seconds"] for c in out["checks"]) < 15.0


def test_every_break_mode_has_the_check_that_catches_it() -> None:
    assert set(CAUGHT_BY) == set(BREAKS)
    assert set(CAUGHT_BY.values()) <= set(CHECKS)


@pytest.mark.parametrize("rule", list(CAUGHT_BY))
def test_the_kit_catches_a_board_that_breaks(sim_board: Board, rule: str) -> None:
    check = CAUGHT_BY[rule]
    assert sim_board.cmd(f"break {rule}")["breaks"] == [rule]
    try:
        report = run(sim_board.spec, ChairConfig(), [check])
    finally:
        sim_board.cmd("break none")
    (result,) = report.results
    assert result.verdict == FAIL, f"--break {rule}: {check} said {result.verdict}: {result.reason}"
    assert not report.passed


def test_the_break_flag_and_the_failing_exit_status(tmp_path: Path) -> None:
    with board(tmp_path, "--break", "no-watchdog") as b:
        assert b.state()["breaks"] == ["no-watchdog"]
        proc = board_check(
            "--tcp", f"127.0.0.1:{b.where}", "--only", "handshake", "watchdog-trip", "--json"
        )
    out = json.loads(proc.stdout)
    assert proc.returncode == 2, proc.stderr  # a check failed (1 is a usage error)
    assert [(c["name"], c["verdict"]) for c in out["checks"]] == [
        ("handshake", PASS),
        ("watchdog-trip", FAIL),
    ]
    assert "no watchdog" in out["checks"][1]["reason"]


@pytest.mark.alone  # on the pty (tests/board_helpers.py)
def test_a_serial_board_skips_only_the_disconnect(tmp_path: Path) -> None:
    with board(tmp_path, over="pty") as b:  # a serial line cannot hang up
        report = run(b.spec, ChairConfig(), ["handshake", "watchdog-trip", "disconnect"])
    assert [r.verdict for r in report.results] == [PASS, PASS, SKIP], report.results
    assert report.passed  # a SKIP is no failure


def test_the_table_names_every_check(sim_board: Board) -> None:
    proc = board_check("--tcp", f"127.0.0.1:{sim_board.where}", "--only", "handshake")
    assert proc.returncode == 0, proc.stderr
    assert "PASS handshake" in proc.stdout and "conforms" in proc.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--tcp", "nonsense"], "bad hardware"),
        (["--tcp", "127.0.0.1:1"], "cannot open"),
        (["--serial", "/nonexistent/tty"], "cannot open"),
        (["--tcp", "127.0.0.1:1", "--only", "nothing"], "invalid choice"),
        ([], "one of the arguments --tcp --serial is required"),
    ],
)
def test_usage_errors_exit_1_with_one_line(args: list[str], says: str) -> None:
    proc = board_check(*args)
    assert proc.returncode == 1
    assert says in proc.stderr and "Traceback" not in proc.stderr


def test_the_board_usage_lists_every_break_mode() -> None:
    doc = chair.cli.board.__doc__ or ""
    listed = dict(
        re.findall(r"^    ([a-z-]+) {2,}(.+)$", doc.split("breaks one rule:", 1)[1], re.M)
    )
    assert listed == BREAKS
