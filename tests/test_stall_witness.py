"""The stall witness and the HIL tests' second attempt (tests/conftest.py, tests/stall_witness.py):
a stall is seen and timed, a HIL test that failed while the machine stalled runs again (and
passes, with a warning that says why), one that failed without a stall is not run again, and one
that keeps failing through stalls fails after `HIL_ATTEMPTS` with the stalls in its report.

The stall is made by stopping a witness process (SIGSTOP) for 120 ms: to the witness it is what a
host taking its CPU away is."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.stall_witness import SLEEP_S, StallWitness, stall

pytestmark = [pytest.mark.serial]  # its witness runs at SCHED_FIFO 99 (a few µs a wake-up)

ROOT = Path(__file__).resolve().parents[1]


def test_the_witness_sees_a_cpu_taken_away_and_times_it(tmp_path: Path) -> None:
    witness = StallWitness(tmp_path)
    if not witness.start():
        pytest.skip("SCHED_FIFO is not permitted here: the witness cannot run")
    try:
        began = time.monotonic()
        stall(witness)
        [seen] = witness.stalls(began, time.monotonic(), 50)
        assert 115 <= seen.gap_ms <= 1000, seen
        # it starts at the witness's last wake-up before the stop: at most one sleep before it
        assert began - 2 * SLEEP_S <= seen.start_s <= seen.end_s <= time.monotonic()
        assert not witness.stalls(time.monotonic(), time.monotonic() + 1, 50)  # not after it
    finally:
        witness.stop()


INNER_CONFTEST = """
import pytest
from tests.conftest import pytest_runtest_protocol, pytest_sessionfinish  # noqa: F401

def pytest_configure(config):
    config.addinivalue_line("markers", "hil: hardware in the loop")
"""

INNER_TESTS = """
import json, pathlib
import pytest
import tests.conftest as plumbing
from tests.stall_witness import stall

RUNS = pathlib.Path(__file__).with_name("runs.jsonl")

def ran(name):
    with RUNS.open("a") as f:
        f.write(json.dumps(name) + "\\n")
    return sum(1 for line in RUNS.read_text().splitlines() if json.loads(line) == name)

@pytest.mark.hil
def test_stalled_twice_then_passes():
    if ran("twice") <= 2:
        stall(plumbing._witness)
        assert False, "link_lost (the machine stalled)"

@pytest.mark.hil
def test_fails_without_a_stall():
    ran("plain")
    assert False, "link_lost (the product's fault)"

@pytest.mark.hil
def test_stalls_every_time():
    ran("always")
    stall(plumbing._witness)
    assert False, "link_lost again"
"""


def test_a_hil_test_runs_again_only_after_a_witnessed_stall(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = StallWitness(pytester.path / "probe")
    if not probe.start():
        pytest.skip("SCHED_FIFO is not permitted here: no HIL test is run again")
    probe.stop()
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner=INNER_TESTS)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", "-rA")
    out = result.stdout.str()
    runs = [line.strip('"') for line in (pytester.path / "runs.jsonl").read_text().split()]
    assert runs.count("twice") == 3, (runs, out)
    assert runs.count("plain") == 1, (runs, out)  # no stall: reported at once
    assert runs.count("always") == 3, (runs, out)  # HIL_ATTEMPTS, then reported
    result.assert_outcomes(passed=1, failed=2, warnings=1)
    assert "PASSED test_inner.py::test_stalled_twice_then_passes" in out
    assert "run again after the machine stalled: attempt 1 failed (call) while cpu" in out
    assert "attempt 3 failed (call) while cpu" in out  # the last attempt's stall, in its report
    assert "stall witness" in out
