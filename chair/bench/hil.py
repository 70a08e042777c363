"""Benchmark of the board link (HIL): round trip and frame rates against a real `chair board`.

A `chair board --pty` subprocess (the simulated board at its own real-time pace) and, in this
process, the real-time core driving it through the board link driver, exactly as `chair serve
--hardware serial:...` does. Measured over a window after a short warm-up:

- ``rtt_p50_ms`` / ``rtt_p99_ms`` / ``rtt_max_ms``: a SETPOINT written to the line → the first
  STATUS echoing its seq read back (the I/O thread's clock, CLOCK_MONOTONIC);
- ``setpoints_per_s`` / ``statuses_per_s``: the frame rates each way (the protocol asks ≥ 200);
- ``stale_exchanges``: ticks that saw no fresh status (0 expected), and the drop counters.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # the checkout, for the board's PYTHONPATH


def _percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark (about 3 s quick, 11 s full) and return its numbers."""
    from core_rt.board.link import open_board_link
    from core_rt.config import ChairConfig
    from core_rt.core import Core

    seconds = 2.0 if quick else 10.0
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    board = subprocess.Popen(
        [sys.executable, "-m", "chair", "board", "--pty"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert board.stdout is not None
        path = board.stdout.readline().strip()
        if not path:
            raise RuntimeError(f"chair board did not start (exit {board.wait()})")
        config = ChairConfig()
        link = open_board_link(f"serial:{path}", config)
        core = Core(config, link)
        outcome = core.start_realtime(config.loop.rt_priority)
        try:
            time.sleep(0.5)  # warm-up: both sides settled into their periods
            c0 = link.counters()
            n0 = len(link.rtt_ms())
            t0 = time.monotonic()
            time.sleep(seconds)
            t1 = time.monotonic()
            c1 = link.counters()
            rtt = link.rtt_ms()[n0:]
        finally:
            core.stop_realtime()
            link.close()
    finally:
        board.terminate()
        try:
            board.wait(5)
        except subprocess.TimeoutExpired:
            board.kill()
            board.wait()
        if board.stdout is not None:
            board.stdout.close()
    dt = t1 - t0
    return {
        "seconds": round(dt, 3),
        "rtt_p50_ms": round(_percentile(rtt, 0.50), 3),
        "rtt_p99_ms": round(_percentile(rtt, 0.99), 3),
        "rtt_max_ms": round(max(rtt), 3) if rtt else float("nan"),
        "rtt_samples": len(rtt),
        "setpoints_per_s": round((c1["setpoints_out"] - c0["setpoints_out"]) / dt, 1),
        "statuses_per_s": round((c1["statuses_in"] - c0["statuses_in"]) / dt, 1),
        "bytes_out_per_s": round((c1["bytes_out"] - c0["bytes_out"]) / dt),
        "bytes_in_per_s": round((c1["bytes_in"] - c0["bytes_in"]) / dt),
        "stale_exchanges": c1["tick"]["stale_exchanges"] - c0["tick"]["stale_exchanges"],
        "max_status_gap_ms": round(c1["max_status_gap_ms"], 3),
        "drops": {k: c1["drops"][k] - c0["drops"][k] for k in c1["drops"]},
        "link_sched_fifo": c1["sched_fifo"],
        "core_sched_fifo": bool(outcome.get("sched_fifo")),
    }


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
