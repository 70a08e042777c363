"""The real-time loop machinery: SPSC rings, the fixed-period loop, the eventfd wake-up path and
the jitter benchmark's plumbing. No assertion here is on a latency value: only rates and counts,
with tolerances wide enough for a loaded two-core machine, and the presence of statistics."""

from __future__ import annotations

import asyncio
import errno
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chair.bench import MissingToolError
from chair.bench import jitter as bench_jitter
from core_rt.rtloop import Ring, TimerLoop, hist_percentile, ring_stress
from tests.core_helpers import wait_cycles

ROOT = Path(__file__).resolve().parents[1]


def _i64(v: int) -> bytes:
    return struct.pack("<q", v)


# ---- rings -----------------------------------------------------------------------------------


def test_ring_pops_in_push_order() -> None:
    r = Ring(8)
    for v in (3, 1, 4, 1, 5):
        assert r.push(_i64(v))
    assert len(r) == 5
    assert [struct.unpack("<q", r.pop())[0] for _ in range(5)] == [3, 1, 4, 1, 5]
    assert len(r) == 0


def test_empty_ring_pops_none() -> None:
    r = Ring(4)
    assert r.pop() is None
    r.push(_i64(7))
    r.pop()
    assert r.pop() is None


def test_full_ring_refuses_and_counts_dropped() -> None:
    r = Ring(4)
    assert all(r.push(_i64(i)) for i in range(4))
    assert not r.push(_i64(99))
    assert not r.push(_i64(100))
    assert r.dropped == 2
    assert len(r) == 4
    # what was refused never appears: the oldest four are kept
    assert [struct.unpack("<q", r.pop())[0] for _ in range(4)] == [0, 1, 2, 3]
    assert r.push(_i64(5))  # room again after popping


def test_ring_copies_whole_elements_of_any_size() -> None:
    r = Ring(2, elem_size=40)
    a, b = bytes(range(40)), bytes(reversed(range(40)))
    r.push(a)
    r.push(b)
    assert (r.pop(), r.pop()) == (a, b)
    with pytest.raises(ValueError):
        r.push(b"short")


@pytest.mark.parametrize(("capacity", "elem_size"), [(0, 8), (1, 8), (3, 8), (1000, 8), (8, 0)])
def test_ring_rejects_bad_shape(capacity: int, elem_size: int) -> None:
    with pytest.raises(ValueError):
        Ring(capacity, elem_size)


@settings(max_examples=200, deadline=None)
@given(
    cap_exp=st.integers(min_value=1, max_value=5),
    ops=st.lists(st.one_of(st.just("pop"), st.integers(-(2**63), 2**63 - 1)), max_size=300),
)
def test_ring_behaves_like_a_bounded_fifo(cap_exp: int, ops: list[object]) -> None:
    cap = 2**cap_exp
    r, model, dropped = Ring(cap), deque[int](), 0
    for op in ops:
        if op == "pop":
            got = r.pop()
            want = model.popleft() if model else None
            assert (None if got is None else struct.unpack("<q", got)[0]) == want
        else:
            assert isinstance(op, int)
            ok = r.push(_i64(op))
            assert ok == (len(model) < cap)
            if ok:
                model.append(op)
            else:
                dropped += 1
        assert len(r) == len(model)
    assert r.dropped == dropped


def test_ring_between_two_native_threads_delivers_everything_in_order_intact() -> None:
    # a tiny ring forces constant full/empty hand-offs and index wrap-around
    res = ring_stress(300_000, capacity=8)
    assert res["received"] == 300_000
    assert res["out_of_order"] == 0
    assert res["corrupt"] == 0
    assert res["left"] == 0


# ---- percentile rule -------------------------------------------------------------------------


def test_hist_percentile_interpolates_inside_the_bin() -> None:
    hist = [0, 0, 100, 0]  # 100 samples in [2, 3) us
    assert hist_percentile(hist, 1.0, 0.5) == pytest.approx(2.5)
    assert hist_percentile(hist, 1.0, 0.0) == pytest.approx(2.0)
    assert hist_percentile(hist, 1.0, 1.0) == pytest.approx(3.0)
    assert hist_percentile([0, 10, 0, 10], 0.1, 0.25) == pytest.approx(0.15)


def test_hist_percentile_in_overflow_reports_the_range_and_empty_is_nan() -> None:
    assert hist_percentile([1, 0, 0, 99], 1.0, 0.99) == pytest.approx(3.0)
    assert math.isnan(hist_percentile([0, 0, 0], 1.0, 0.5))


# ---- loop: arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hz": 249},
        {"hz": 2001},
        {"hz": 0},
        {"priority": 0},
        {"priority": 100},
        {"record_every": 0},
        {"ring_capacity": 1000},
    ],
)
def test_invalid_loop_arguments_raise_value_error(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        TimerLoop(**kwargs)


def test_fileno_without_eventfd_is_an_error() -> None:
    with pytest.raises(ValueError, match="eventfd=True"):
        TimerLoop().fileno()


def test_stats_before_start_have_no_samples() -> None:
    s = TimerLoop(hz=500).stats()
    assert s["hz"] == 500
    assert s["period_ns"] == 2_000_000
    assert s["cycles"] == 0
    assert s["latency_p50_us"] is None
    assert s["running"] is False


# ---- loop: real time -------------------------------------------------------------------------


def _run_for(t: TimerLoop, seconds: float) -> float:
    """Run the loop for about `seconds`; the time between the first armed deadline and stop."""
    t.start()  # returns once the first deadline is armed (after mlockall and thread set-up)
    t0 = time.monotonic()
    time.sleep(seconds)
    t1 = time.monotonic()
    t.stop()
    return t1 - t0


@pytest.mark.realtime
@pytest.mark.parametrize("hz", [250, 1000, 2000])
def test_loop_ticks_at_the_configured_rate_and_produces_statistics(hz: int) -> None:
    t = TimerLoop(hz=hz)
    elapsed = _run_for(t, 0.5)
    s = t.stats()
    expected = hz * elapsed
    # every deadline of the run is either ticked or counted as skipped
    assert abs(s["cycles"] + s["skipped"] - expected) <= 0.1 * expected + 3
    assert s["cycles"] >= 0.5 * expected
    assert s["latency_histogram_samples"] == s["cycles"]
    assert s["exec_histogram_samples"] == s["cycles"]
    for key in (
        "latency_p50_us",
        "latency_p99_us",
        "latency_max_us",
        "exec_p50_us",
        "exec_p99_us",
        "exec_max_us",
    ):
        assert s[key] is not None and math.isfinite(s[key]), key
    assert s["latency_p50_us"] <= s["latency_p99_us"] <= s["latency_max_us"]
    assert s["running"] is False


@pytest.mark.realtime
def test_stats_are_readable_while_running_and_restart_starts_afresh() -> None:
    t = TimerLoop(hz=1000)
    with t:
        time.sleep(0.1)
        first = t.stats()
        time.sleep(0.1)
        second = t.stats()
        assert first["running"] and second["running"]
        assert second["cycles"] > first["cycles"] > 0
        with pytest.raises(RuntimeError):
            t.start()
    t.stop()  # idempotent
    total = t.stats()["cycles"]
    t.start()
    time.sleep(0.05)
    t.stop()
    assert 0 < t.stats()["cycles"] < total


def _take_the_cpu(cpu: int, priority: int, ms: int, refused: list[OSError]) -> None:
    """Run on `cpu` at SCHED_FIFO `priority` and spin for `ms`: the CPU taken away, as a stalled
    machine takes it."""
    try:
        os.sched_setaffinity(0, {cpu})
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as e:
        refused.append(e)
        return
    # the GIL is not handed on while it spins: at the default 5 ms switch interval another
    # thread's request made it sleep for the GIL, and the loop ran in the gap (traced)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    try:
        end = time.monotonic_ns() + ms * 1_000_000
        while time.monotonic_ns() < end:
            pass
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.realtime
def test_a_tick_after_a_late_wake_up_runs_at_the_latest_passed_deadline() -> None:
    # docs/core.md, The loop: the CPU taken away for 10 periods makes the loop wake up to 10 periods
    # late. The deadlines in between are skipped before the tick, not after it: the tick runs with
    # the latest deadline at or before its wake-up, so its time is never a period or more behind
    # the clock (the guard's debounces measure time from it). Ticking the missed deadline instead
    # gives a lag of as many periods.
    cpu = max(os.sched_getaffinity(0))
    t = TimerLoop(hz=1000, cpu=cpu)
    refused: list[OSError] = []
    with t:
        wait_cycles(t.stats, 20, timeout_s=10.0)
        before = t.stats()["cycles"]
        taker = threading.Thread(target=_take_the_cpu, args=(cpu, t.priority + 10, 10, refused))
        taker.start()
        taker.join()
        wait_cycles(t.stats, before + 20, timeout_s=10.0)
    if refused:
        pytest.skip(f"cannot take a CPU at SCHED_FIFO here: {refused[0]}")
    s = t.stats()
    if not (s["sched_fifo"] and s["pinned"]):
        pytest.skip(f"the loop is not pinned at SCHED_FIFO here: {s['warning']}")
    period_us = s["period_ns"] / 1000
    assert s["latency_max_us"] >= 4 * period_us, s  # the loop did wake late ...
    assert s["skipped"] >= 4, s  # ... and skipped the deadlines it missed
    assert s["tick_lag_max_us"] < 2 * period_us, s  # but no tick ran with one of them


@pytest.mark.realtime
def test_records_drained_in_time_arrive_contiguous_with_no_loss() -> None:
    t = TimerLoop(hz=2000, record_every=1, ring_capacity=1024)
    got: list[int] = []
    with t:
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            got += t.drain()
            time.sleep(0.02)  # 40 records per drain, far below the capacity
    got += t.drain()
    s = t.stats()
    assert s["ring_dropped"] == 0
    assert got == list(range(len(got)))
    assert len(got) == s["cycles"]


@pytest.mark.realtime
def test_full_ring_keeps_the_oldest_records_and_counts_the_rest() -> None:
    t = TimerLoop(hz=2000, record_every=1, ring_capacity=16)
    _run_for(t, 0.1)
    s = t.stats()
    assert t.drain() == list(range(16))
    assert s["ring_dropped"] == s["cycles"] - 16


@pytest.mark.realtime
async def test_eventfd_wakes_an_asyncio_reader() -> None:
    loop = asyncio.get_running_loop()
    t = TimerLoop(hz=1000, eventfd=True, record_every=5)
    records: list[int] = []
    wakes = 0
    enough = asyncio.Event()

    def on_wake() -> None:  # the only path by which records reach this test
        nonlocal wakes
        wakes += 1
        os.eventfd_read(t.fileno())
        records.extend(t.drain())
        if len(records) >= 40:
            enough.set()

    loop.add_reader(t.fileno(), on_wake)
    try:
        with t:
            await asyncio.wait_for(enough.wait(), timeout=10)
    finally:
        loop.remove_reader(t.fileno())
    assert wakes >= 1
    assert records[:40] == list(range(40))
    assert t.stats()["wakeups"] >= wakes


def _fifo_threads() -> list[int]:
    """Priorities of this process's SCHED_FIFO threads, read from the kernel."""
    prios = []
    for tid in os.listdir("/proc/self/task"):
        try:
            if os.sched_getscheduler(int(tid)) == os.SCHED_FIFO:
                prios.append(os.sched_getparam(int(tid)).sched_priority)
        except OSError:
            pass
    return prios


@pytest.mark.realtime
def test_reported_scheduling_matches_the_kernel_and_the_warning() -> None:
    t = TimerLoop(hz=1000, priority=42)
    with t:
        time.sleep(0.05)
        kernel_fifo = 42 in _fifo_threads()
        s = t.stats()
    assert s["sched_fifo"] == kernel_fifo
    if s["sched_fifo"]:
        assert s["sched_errno"] == 0
        assert "SCHED_FIFO" not in s["warning"]
    else:
        assert s["sched_errno"] != 0
        assert "SCHED_FIFO" in s["warning"]
    assert s["mlocked"] == (s["mlock_errno"] == 0)
    assert s["mlocked"] or "mlockall failed" in s["warning"]


_FALLBACK_CHILD = """
import json, resource, time
resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
from core_rt.rtloop import TimerLoop
t = TimerLoop(hz=1000, priority=80)
t.start(); time.sleep(0.2); t.stop()
print(json.dumps(t.stats()))
"""


@pytest.mark.realtime
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to take CAP_SYS_NICE away from a child",
)
def test_refused_sched_fifo_falls_back_and_says_what_to_do() -> None:
    # a child without CAP_SYS_NICE and with RLIMIT_RTPRIO 0: the kernel refuses SCHED_FIFO (EPERM)
    cmd = [
        "setpriv",
        "--bounding-set=-sys_nice",
        "--inh-caps=-sys_nice",
        sys.executable,
        "-c",
        _FALLBACK_CHILD,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=True)
    s = json.loads(proc.stdout)
    assert s["sched_fifo"] is False
    assert s["sched_errno"] == errno.EPERM
    assert "SCHED_FIFO not permitted (EPERM)" in s["warning"]
    assert "CAP_SYS_NICE" in s["warning"]
    assert s["cycles"] > 0  # it still runs, just without real-time priority


# ---- jitter benchmark ------------------------------------------------------------------------

_CYCLICTEST_OUT = """\
# /dev/cpu_dma_latency set to 0us
000000 000000
000001 000010
000002 000080
000003 000005
001000 000002
001500 000001
# Histogram
# Total: 000000100
# Min Latencies: 00001
# Avg Latencies: 00002
# Max Latencies: 25000
# Histogram Overflows: 00002
# Histogram Overflow at cycle number:
# Thread 0: 00010 00042
"""


def test_cyclictest_histogram_is_read_with_the_same_percentile_rule() -> None:
    r = bench_jitter.parse_cyclictest(_CYCLICTEST_OUT, period_us=1000)
    assert r["samples"] == 100
    assert r["max_us"] == 25000
    assert r["p50_us"] == pytest.approx(2 + (50 - 10) / 80)
    assert r["over_period"] == 5  # bins >= 1000 us plus the two overflows


def test_cyclictest_command_uses_the_same_priority_interval_and_cycles() -> None:
    cmd = bench_jitter.cyclictest_command("/bin/true", period_us=500, cycles=4000, priority=70)
    for arg in ("-m", "-q", "-t1", "-p70", "-i500", "-l4000", "-h"):
        assert arg in cmd


def test_missing_cyclictest_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(MissingToolError, match="apt-get install rt-tests"):
        bench_jitter.run(quick=True)


@pytest.mark.realtime
@pytest.mark.skipif(shutil.which("cyclictest") is None, reason="needs rt-tests (cyclictest)")
def test_quick_bench_reports_every_jitter_field() -> None:
    j = bench_jitter.run(hz=1000, seconds=0.3)
    assert j["hz"] == 1000 and j["cycles"] == 300
    for key in (
        "core_p50_us",
        "core_p99_us",
        "core_max_us",
        "cyclictest_p50_us",
        "cyclictest_p99_us",
        "cyclictest_max_us",
        "asyncio_p50_us",
        "asyncio_p99_us",
        "asyncio_max_us",
        "core_exec_p99_us",
    ):
        assert isinstance(j[key], float) and math.isfinite(j[key]), key
    for key in ("core_missed", "cyclictest_over_period"):
        assert isinstance(j[key], int), key
    assert isinstance(j["core_sched_fifo"], bool)
    assert j["cyclictest_samples"] == 300
    json.dumps(j)  # plain data
