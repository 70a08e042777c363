"""Jitter benchmark: the real-time core's wake-up latency beside its two baselines.

Three measurements at the same rate, one after the other in the same run (never concurrently, so
they do not disturb each other):

1. the core: `core_factory()` (the lead passes the real core driving the simulated chair) or the
   bare loop `core_rt.rtloop.TimerLoop`, SCHED_FIFO at `priority`;
2. cyclictest (rt-tests), the reference for what this kernel can do: same priority, same
   interval, same number of cycles, memory locked;
3. a plain asyncio loop sleeping to absolute deadlines on the same grid (default scheduling).

Latency is always "woke at - scheduled deadline" in 1 us bins over 0..20 ms, and every percentile
goes through the same rule (`core_rt.rtloop.hist_percentile`), so the three columns compare.
`run()` blocks for about 3 x `seconds`; call it from a thread when inside an event loop.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Callable
from typing import Any, Protocol

from chair.bench import find_tool
from core_rt.rtloop import TimerLoop, check_rate, hist_percentile

HIST_RANGE_US = 20_000  # the core's latency histogram: 1 us bins over [0, 20 ms) + overflow
QUICK_SECONDS = 1.0  # `chair bench --quick`


class RealtimeLoop(Protocol):
    """What the benchmark needs of a core: TimerLoop's start/stop/stats."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def stats(self) -> dict[str, Any]: ...


def run(
    hz: int = 1000,
    seconds: float = 10.0,
    priority: int = 80,
    core_factory: Callable[[], RealtimeLoop] | None = None,
    quick: bool = False,
    cpu: int = -1,
) -> dict[str, Any]:
    """Measure the core, cyclictest and asyncio at `hz` for `seconds` each; the `jitter` section
    of `chair bench --json` (docs/interfaces.md §5) plus details. `quick` caps each part at 1 s."""
    check_rate(hz, priority)
    if quick:
        seconds = min(seconds, QUICK_SECONDS)
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    cycles = max(1, round(hz * seconds))
    period_us = round(1_000_000 / hz)
    cyclictest = find_cyclictest()  # fail before spending `seconds` on the core

    core = measure_core(hz, seconds, priority, core_factory)
    ct = measure_cyclictest(cyclictest, period_us, cycles, priority, cpu)
    aio = measure_asyncio(hz, cycles)

    out: dict[str, Any] = {
        "hz": hz,
        "cycles": cycles,
        "seconds": seconds,
        "priority": priority,
        "cpu": cpu if cpu >= 0 else None,
        "core_p50_us": _r(core.get("latency_p50_us")),
        "core_p99_us": _r(core.get("latency_p99_us")),
        "core_max_us": _r(core.get("latency_max_us")),
        "core_missed": int(core.get("missed", 0)),
        "core_cycles": int(core.get("cycles", 0)),
        "core_skipped": int(core.get("skipped", 0)),
        "core_overruns": int(core.get("overruns", 0)),
        "core_exec_p50_us": _r(core.get("exec_p50_us")),
        "core_exec_p99_us": _r(core.get("exec_p99_us")),
        "core_exec_max_us": _r(core.get("exec_max_us")),
        "core_sched_fifo": bool(core.get("sched_fifo", False)),
        "core_mlocked": bool(core.get("mlocked", False)),
        "core_warning": str(core.get("warning", "")),
        "cyclictest_p50_us": ct["p50_us"],
        "cyclictest_p99_us": ct["p99_us"],
        "cyclictest_max_us": ct["max_us"],
        "cyclictest_over_period": ct["over_period"],
        "cyclictest_samples": ct["samples"],
        "asyncio_p50_us": aio["p50_us"],
        "asyncio_p99_us": aio["p99_us"],
        "asyncio_max_us": aio["max_us"],
        "asyncio_over_period": aio["over_period"],
    }
    out["targets"] = _targets(out)
    return out


def _targets(j: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, judged on this run's own numbers."""
    core, ct, aio = j["core_p99_us"], j["cyclictest_p99_us"], j["asyncio_p99_us"]
    vs_ct = core / ct if core is not None and ct else None
    vs_aio = core / aio if core is not None and aio else None
    return {
        "core_p99_over_cyclictest_p99": _r(vs_ct, 3),
        "core_p99_over_asyncio_p99": _r(vs_aio, 3),
        "p99_within_1_5x_cyclictest": vs_ct is not None and vs_ct <= 1.5,
        "p99_within_asyncio_tenth": vs_aio is not None and vs_aio <= 0.1,
        "missed_within_cyclictest_plus_1": j["core_missed"] <= j["cyclictest_over_period"] + 1,
    }


# ---- 1. the core ---------------------------------------------------------------------------


def measure_core(
    hz: int,
    seconds: float,
    priority: int,
    core_factory: Callable[[], RealtimeLoop] | None = None,
) -> dict[str, Any]:
    """Run the core (or the bare TimerLoop) for `seconds`; its own stats() afterwards."""
    core: RealtimeLoop = core_factory() if core_factory else TimerLoop(hz=hz, priority=priority)
    core.start()
    try:
        time.sleep(seconds)
    finally:
        core.stop()
    stats = core.stats()
    if stats.get("hz", hz) != hz:
        raise ValueError(f"the core runs at {stats['hz']} Hz, the benchmark was asked for {hz} Hz")
    return stats


# ---- 2. cyclictest -------------------------------------------------------------------------


def find_cyclictest() -> str:
    """Path of cyclictest, or MissingToolError saying how to install it."""
    return find_tool("cyclictest", "rt-tests", "the jitter baseline")


def cyclictest_command(
    path: str, period_us: int, cycles: int, priority: int, cpu: int = -1
) -> list[str]:
    """`cyclictest -m -q -n -t1 -p<prio> -i<period_us> -l<cycles> -h <range>`; `-n` only where the
    installed version still accepts it (rt-tests 2.x always uses clock_nanosleep and dropped it)."""
    cmd = [path, "-m", "-q"]
    if _accepts_nanosleep_flag(path):
        cmd.append("-n")
    cmd += ["-t1", f"-p{priority}", f"-i{period_us}", f"-l{cycles}", "-h", str(HIST_RANGE_US)]
    if cpu >= 0:
        cmd.append(f"-a{cpu}")  # on the same CPU as the core's loop: a like-for-like baseline
    return cmd


def _accepts_nanosleep_flag(path: str) -> bool:
    proc = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10)
    return re.search(r"^\s*-n\b", proc.stdout + proc.stderr, re.MULTILINE) is not None


def measure_cyclictest(
    path: str, period_us: int, cycles: int, priority: int, cpu: int = -1
) -> dict[str, Any]:
    """Run cyclictest and read its histogram."""
    cmd = cyclictest_command(path, period_us, cycles, priority, cpu)
    timeout = cycles * period_us / 1e6 * 2 + 30
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"cyclictest failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}"
        )
    return parse_cyclictest(proc.stdout, period_us)


def parse_cyclictest(text: str, period_us: int) -> dict[str, Any]:
    """p50/p99/max and the count of wake-ups later than one period from `-h` output (one thread)."""
    hist = [0] * (HIST_RANGE_US + 1)
    max_us: float | None = None
    overflows = 0
    for line in text.splitlines():
        if line.startswith("#"):
            if m := re.match(r"#\s*Max Latencies:\s*(\d+)", line):
                max_us = float(m.group(1))
            elif m := re.match(r"#\s*Histogram Overflows:\s*(\d+)", line):
                overflows = int(m.group(1))
            continue
        if m := re.match(r"\s*(\d+)\s+(\d+)", line):
            b, n = int(m.group(1)), int(m.group(2))
            if b < HIST_RANGE_US:
                hist[b] += n
    hist[-1] += overflows
    samples = sum(hist)
    if samples == 0 or max_us is None:
        raise RuntimeError("cyclictest printed no histogram (was -h given?)")
    return {
        "p50_us": _r(min(hist_percentile(hist, 1.0, 0.50), max_us)),
        "p99_us": _r(min(hist_percentile(hist, 1.0, 0.99), max_us)),
        "max_us": max_us,
        "over_period": sum(hist[period_us:]),
        "samples": samples,
    }


# ---- 3. asyncio ----------------------------------------------------------------------------


def measure_asyncio(hz: int, cycles: int) -> dict[str, Any]:
    """A plain asyncio loop sleeping to absolute deadlines at `hz`, `cycles` wake-ups."""
    period_ns = round(1e9 / hz)
    lat_ns = asyncio.run(_asyncio_latencies(period_ns, cycles))
    hist = [0] * (HIST_RANGE_US + 1)
    for v in lat_ns:
        hist[min(v // 1000, HIST_RANGE_US)] += 1
    max_us = max(lat_ns) / 1000
    return {
        "p50_us": _r(min(hist_percentile(hist, 1.0, 0.50), max_us)),
        "p99_us": _r(min(hist_percentile(hist, 1.0, 0.99), max_us)),
        "max_us": _r(max_us),
        "over_period": sum(1 for v in lat_ns if v >= period_ns),
    }


async def _asyncio_latencies(period_ns: int, cycles: int) -> list[int]:
    lat: list[int] = []
    deadline = time.monotonic_ns() + period_ns
    while len(lat) < cycles:
        delay = deadline - time.monotonic_ns()
        if delay > 0:
            await asyncio.sleep(delay / 1e9)
        woke = time.monotonic_ns()
        lat.append(max(0, woke - deadline))
        deadline += period_ns
        if woke >= deadline:  # late: keep the phase, like the core and cyclictest
            deadline += ((woke - deadline) // period_ns + 1) * period_ns
    return lat


def _r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(float(x), nd)
