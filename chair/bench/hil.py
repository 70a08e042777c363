"""Benchmark of the board link (HIL): round trip, frame rates and SETPOINT gaps against a real
`chair board`, the link's C loop beside its baseline, quiet and under a GIL hog.

A `chair board --pty` subprocess (the simulated board at its own real-time pace) and, in this
process, the real-time core driving it through the board link driver, exactly as `chair serve
--hardware serial:...` does. Four windows, one after the other on the same board:

- ``c`` / ``python``: the link's I/O in C without the GIL (`core_rt/include/board_io.h`, what the
  controller uses) and the baseline, the same loop in a Python thread (`chair.bench.pylink`, the
  link as it was before protocol 2);
- ``quiet`` / ``gil_hog``: nothing else running, or a Python thread in the controller's process
  that holds the GIL for tens of ms at a time (sorting a 200 000-float list in a loop, as a big
  summary or telemetry write would).

Each window reports the SETPOINT gaps (p50/p99/max: the board's watchdog trips at 100 ms and the
core's link_lost needs 80 ms without a round trip), gaps over 5 ms, the STATUS gaps, stale ticks,
and the core's own wake-up latency (p99, max) in the same window. The top-level keys
(``rtt_*``, frame rates, drops) are the C link's quiet window, as before.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from chair.bench import board_process

GAP_LATE_MS = 5.0
"""A SETPOINT gap above this breaks the protocol's "at least every 5 ms"."""


def _gil_hog(stop: threading.Event) -> None:
    """Hold the GIL in long stretches until `stop`: list.sort of floats never releases it."""
    data = [random.random() for _ in range(200_000)]
    while not stop.is_set():
        sorted(data)


def _hist_window(before: list[int], after: list[int], bin_us: float) -> dict[str, Any]:
    from core_rt.rtloop import hist_percentile

    h = [b - a for a, b in zip(before, after, strict=True)]
    n = sum(h)
    late = sum(h[int(GAP_LATE_MS * 1000 / bin_us) :])

    def pct(q: float) -> float | None:
        v = hist_percentile(h, bin_us, q)
        return None if v != v else round(v / 1e3, 3)

    return {
        "samples": n,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "over_5ms": late,
    }


def _window(kind: str, spec: str, seconds: float, hog: bool) -> dict[str, Any]:
    """One window: a fresh link of `kind` and a fresh real-time core on the board at `spec`."""
    from chair.bench.pylink import PythonLink
    from core_rt.board.link import open_board_link
    from core_rt.config import ChairConfig
    from core_rt.core import Core

    config = ChairConfig()
    link: Any
    if kind == "c":
        link = open_board_link(spec, config)
    else:
        link = PythonLink(spec)
        link.start()
    core = Core(config, link)
    outcome = core.start_realtime(config.loop.rt_priority)
    stop = threading.Event()
    hog_thread = threading.Thread(target=_gil_hog, args=(stop,), daemon=True) if hog else None
    try:
        time.sleep(0.3)  # warm-up: both sides settled into their periods
        if kind == "c":
            bin_us, sp0, _ = link.io_gap_histograms()
        else:
            bin_us, sp0 = 10.0, list(link.sp_gaps)
        c0 = link.counters()
        if hog_thread is not None:
            hog_thread.start()
        t0 = time.monotonic()
        stop.wait(seconds)
        t1 = time.monotonic()
        stop.set()
        c1 = link.counters()
        sp1 = link.io_gap_histograms()[1] if kind == "c" else list(link.sp_gaps)
        loop = core.loop_stats()
    finally:
        stop.set()
        if hog_thread is not None:
            hog_thread.join()
        core.stop_realtime()
        link.close()
    dt = t1 - t0
    return {
        "setpoint_gap": {
            **_hist_window(sp0, sp1, bin_us),
            "max_ms": round(c1["max_setpoint_gap_ms"], 2),  # this link's whole life (~window)
        },
        "setpoints_per_s": round((c1["setpoints_out"] - c0["setpoints_out"]) / dt, 1),
        "statuses_per_s": round((c1["statuses_in"] - c0["statuses_in"]) / dt, 1),
        "stale_exchanges": c1["tick"]["stale_exchanges"] - c0["tick"]["stale_exchanges"],
        "core_latency_p99_us": loop.get("latency_p99_us"),
        "core_latency_max_us": loop.get("latency_max_us"),
        "link_sched_fifo": c1["sched_fifo"],
        "core_sched_fifo": bool(outcome.get("sched_fifo")),
        "_counters": (c0, c1, dt),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark (about 5 s quick, 25 s full) and return its numbers."""
    seconds = 1.0 if quick else 5.0
    windows: dict[str, dict[str, Any]] = {"c": {}, "python": {}}
    with board_process() as spec:
        for kind in ("c", "python"):
            for load in ("quiet", "gil_hog"):
                windows[kind][load] = _window(kind, spec, seconds, hog=load == "gil_hog")
    c0, c1, dt = windows["c"]["quiet"]["_counters"]
    for w in windows.values():
        for v in w.values():
            v.pop("_counters")
    out: dict[str, Any] = {
        "seconds": round(dt, 3),
        "rtt_p50_ms": c1["rtt_p50_ms"] and round(c1["rtt_p50_ms"], 3),
        "rtt_p99_ms": c1["rtt_p99_ms"] and round(c1["rtt_p99_ms"], 3),
        "setpoints_per_s": windows["c"]["quiet"]["setpoints_per_s"],
        "statuses_per_s": windows["c"]["quiet"]["statuses_per_s"],
        "bytes_out_per_s": round((c1["bytes_out"] - c0["bytes_out"]) / dt),
        "bytes_in_per_s": round((c1["bytes_in"] - c0["bytes_in"]) / dt),
        "stale_exchanges": windows["c"]["quiet"]["stale_exchanges"],
        "max_status_gap_ms": round(c1["max_status_gap_ms"], 3),
        "drops": {k: c1["drops"][k] - c0["drops"][k] for k in c1["drops"]},
        "link_sched_fifo": c1["sched_fifo"],
        "core_sched_fifo": windows["c"]["quiet"]["core_sched_fifo"],
        "link": windows,
    }
    hog_c = windows["c"]["gil_hog"]["setpoint_gap"]["max_ms"]
    hog_py = windows["python"]["gil_hog"]["setpoint_gap"]["max_ms"]
    if hog_c and hog_py:
        out["gil_hog_max_gap_python_over_c"] = round(hog_py / hog_c, 1)
    return out


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
