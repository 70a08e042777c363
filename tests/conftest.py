"""Suite-wide test plumbing.

Tests that depend on the wall clock — the real-time loop, HIL with its board process, the MQTT
daemon against mosquitto, the browser — are marked `serial`: `make test` runs them after the
CPU-bound rest, which it spreads over the machine's cores. They spend their time waiting on real
time, not computing (a load of about 0.5 on this suite's 2 cores), so `make test` runs them two
at a time: the HIL tests one after another on one worker (`xdist_group("hil")`: never two board
processes at once), the broker and browser tests on the other. They wait on events with
generous ceilings and must pass beside a CPU hog anyway (`stress-ng --cpu 1`, README, Tests).
The few that measure the real-time loop's own timing are also marked `alone` and run by
themselves at the end, and so are the HIL tests on the pty: a pty's bytes wait for a nice-0
kernel worker, which a hog and the other worker can hold off both CPUs (tests/board_helpers.py).

A HIL test that fails while the machine itself stalled — a CPU taken away for half the link's
deadline or more, seen by the stall witness (tests/stall_witness.py) — is run again, at most
`HIL_ATTEMPTS` times in all; the report says so (a warning, and a section on a failure). A
failure without such a stall is reported at once.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
from _pytest.runner import runtestprotocol

import chair  # noqa: F401  (first: the chair's one BLAS thread, chair/__init__.py, before any numpy)
from core_rt.config import ChairConfig
from tests.stall_witness import StallWitness

pytest_plugins = ("pytester",)  # tests/test_stall_witness.py runs a suite of its own


@pytest.fixture(autouse=True)
def _a_database_of_its_own(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test's chair — in process or a `chair run`/`chair serve` child — keeps its users and
    history in a fresh state directory, never the machine's ~/.local/state/massagechair/chair.db
    (docs/chair.md §9): a record one test's killed chair left open, or an event still in its
    outbox, would otherwise be closed and published by the next test's chair."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    monkeypatch.delenv("CHAIR_DB", raising=False)


SERIAL_MARKS = ("realtime", "hil", "broker")
SERIAL_FILES = ("test_mqtt", "test_hil", "test_rtloop", "test_web", "test_doc_web")
HEAVY_FILES = ("test_fleet_proof.py",)
"""Wall-clock tests that load both cores for most of a minute (the fleet proof: 200 chairs) and
wait with generous ceilings: they run first in the CPU-bound part, never beside the HIL tests —
beside them, its disk and CPU load stalled a board process for 178 ms (link_lost)."""
ALONE_FILES = ("test_rtloop.py", "test_core.py")
"""Their wall-clock tests measure the real-time loop itself (its rate, latency, pinning)."""


def pytest_itemcollected(item: pytest.Item) -> None:
    if item.get_closest_marker("hil"):
        # one board process at a time: a board runs its 1 kHz loop at SCHED_FIFO, and two of
        # them beside two controllers starve a 2-core machine (link_lost, stall). Marked as each
        # test is collected: xdist reads the group into the node ids in its own
        # pytest_collection_modifyitems, which may run before ours (it did: the group was lost
        # and two boards ran at once)
        item.add_marker(pytest.mark.xdist_group("hil"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = item.path.name
        if name in HEAVY_FILES:
            continue
        if name.startswith(SERIAL_FILES) or any(item.get_closest_marker(m) for m in SERIAL_MARKS):
            item.add_marker(pytest.mark.serial)
            if name in ALONE_FILES:
                item.add_marker(pytest.mark.alone)
    # the longest first, so that two workers finish together: the heavy tests in the CPU-bound
    # part, the HIL sessions in the wall-clock part (a stable sort: every file keeps its order)
    items.sort(
        key=lambda item: (
            0 if item.path.name in HEAVY_FILES else 1 if item.get_closest_marker("hil") else 2
        )
    )


def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """`--dist loadgroup` must keep the HIL tests on one worker. pytest 9.2 silently broke it
    with pytest-xdist 3.8 (the group never reaches the node ids: pytest-dev/pytest-xdist#1386;
    pyproject.toml pins pytest below 9.2): then two board processes ran at once and a CI run
    failed on link_lost. Say so and stop rather than run the HIL tests two at a time."""
    hil = [i for i in ids if "/test_hil" in i]
    ungrouped = [i for i in hil if not i.endswith("@hil")]
    if ungrouped and any("@" in i for i in ids) is False and _loadgroup(node):
        raise pytest.UsageError(
            f"xdist's loadgroup did not group {ungrouped[0]} (and {len(ungrouped) - 1} more HIL "
            "tests): this pytest and pytest-xdist do not work together "
            "(pytest-dev/pytest-xdist#1386); install what pyproject.toml pins (make install)"
        )


def _loadgroup(node: object) -> bool:
    config = getattr(node, "config", None)
    return config is not None and config.getvalue("dist") == "loadgroup"


PLATFORM_STALL_MS = ChairConfig().link.deadline_ms / 2
"""A CPU taken away this long (half the link's deadline, docs/board-protocol.md) is the
platform's failure to serve a real-time test, not the product's."""
HIL_ATTEMPTS = 3
"""A HIL test is run at most this often, and again only after a failure with a witnessed stall."""

_witness: StallWitness | None = None


def _stall_witness() -> StallWitness | None:
    """The worker's witness, started with its first HIL test; None where it cannot run."""
    global _witness
    if _witness is None:
        _witness = StallWitness(Path(tempfile.mkdtemp(prefix="chair-stall-witness-")))
        _witness.start()
    return _witness if _witness.available else None


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _witness is not None:
        _witness.stop(remove=True)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """A HIL test: run again when it failed while the machine stalled (module docstring)."""
    if not item.get_closest_marker("hil") or not isinstance(item, pytest.Function):
        return None
    witness = _stall_witness()
    if witness is None:
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    excused: list[str] = []
    for attempt in range(1, HIL_ATTEMPTS + 1):
        began = time.monotonic()
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
        failed = [r for r in reports if r.failed]
        stalls = witness.stalls(began, time.monotonic(), PLATFORM_STALL_MS) if failed else []
        if stalls:
            seen = "; ".join(str(s) for s in stalls)
            excused.append(f"attempt {attempt} failed ({failed[0].when}) while {seen}")
        if not stalls or attempt == HIL_ATTEMPTS:
            if failed and not stalls:
                # the shorter stalls the witness saw (it writes down REPORT_MS and more): a
                # failure beside them says which loops of the test's own were late with them
                shorter = witness.stalls(began, time.monotonic(), 0.0)
                said = "\n".join(str(x) for x in shorter) or "none"
                for r in failed:
                    r.sections.append(("stall witness (below the rerun threshold)", said))
            break
        item._initrequest()  # fresh fixtures for the next attempt
    if excused and not failed:
        said = "; ".join(excused)
        item.warn(pytest.PytestWarning(f"run again after the machine stalled: {said}"))
    for r in failed:
        if excused:
            r.sections.append(("stall witness", "\n".join(excused)))
    for r in reports:
        item.ihook.pytest_runtest_logreport(report=r)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
