"""The link soak (`make soak`): whole real-time sessions, one after another, against `chair board`.

Issue 13's goal for the board link: no `link_lost` in 50 consecutive 5-minute HIL sessions on a
2-core machine. Each session is the real controller (`Controller.create(hardware="serial:...")`,
the real-time core, the C link loop) against a fresh `chair board --pty` process, with the
built-in programs in turn, heat on, and a different simulated body each time. After each session
it records the end, any fault, the link's counters (SETPOINT gaps, stale episodes, forced stops,
drops) and the board's own view (watchdog trips: the goodbye must leave it READY).

    python -m chair.bench.soak --sessions 50 --minutes 5 [--json out/soak.json]

Exit 0 when every session completed without a fault and the board never tripped; 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from chair.bench import board_process

HEIGHTS_CM = (150.0, 165.0, 175.0, 185.0, 195.0)
HEAT = ("medium", "high", "low")


def steal_ms() -> list[float]:
    """Time each CPU was runnable but not run by the hypervisor (/proc/stat "steal"), ms: on a
    virtual machine a stolen CPU freezes every thread on it, real-time or not."""
    hz = os.sysconf("SC_CLK_TCK")
    out = []
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            parts = line.split()
            if parts[0].startswith("cpu") and parts[0] != "cpu" and len(parts) > 8:
                out.append(int(parts[8]) * 1000.0 / hz)
    return out


async def one_session(i: int, program: str, minutes: float, tmp: Path) -> dict[str, Any]:
    from chair.controller import Controller
    from core_rt.config import ChairConfig
    from sim.board_control import ControlClient

    height = HEIGHTS_CM[i % len(HEIGHTS_CM)]
    control = str(tmp / f"board-{i}.sock")
    args = ("--control", control, "--body-height", str(height), "--seed", str(i))
    with board_process(*args) as spec:
        ctl = Controller.create(ChairConfig(), hardware=spec, pacing="realtime")
        t0 = time.monotonic()
        steal0 = steal_ms()
        async with ctl:
            result = await ctl.run_session(
                program, minutes=minutes, heat=HEAT[i % len(HEAT)], keep_telemetry=False
            )
            link = ctl.link_report() or {}
            loop = ctl.core.loop_stats()
        steal = [b - a for a, b in zip(steal0, steal_ms(), strict=True)]
        wall = time.monotonic() - t0
        b = ControlClient(control).cmd("state")
    return {
        "session": i,
        "program": program,
        "body_height_cm": height,
        "end_reason": result.end_reason,
        "faults": [f.code for f in result.faults],
        "wall_s": round(wall, 1),
        "setpoint_gap_max_ms": link.get("setpoint_gap_ms", {}).get("max"),
        "setpoint_gap_p99_ms": link.get("setpoint_gap_ms", {}).get("p99"),
        "status_gap_max_ms": link.get("status_gap_ms", {}).get("max"),
        "stale_episodes": link.get("stale_episodes"),
        "forced_off": link.get("forced_off"),
        "drops": sum(v for v in link.get("drops", {}).values()),
        "core_latency_max_us": loop.get("latency_max_us"),
        "core_missed_ticks": loop.get("missed"),
        "steal_ms_per_cpu": [round(x) for x in steal],
        "board_max_loop_gap_ms": round(b["counters"]["max_loop_gap_ms"], 1),
        "board_watchdog_trips": b["watchdog"]["trips"],
        "board_outputs": b["outputs"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chair.bench.soak", description=__doc__)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    from chair.programs.model import builtin_programs

    programs = sorted(builtin_programs())
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.sessions):
            row = asyncio.run(one_session(i, programs[i % len(programs)], args.minutes, Path(d)))
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps({"sessions": rows}, indent=2) + "\n")
    bad = [
        r
        for r in rows
        if r["faults"] or r["end_reason"] != "completed" or r["board_watchdog_trips"]
    ]
    gaps = [r["setpoint_gap_max_ms"] for r in rows if r["setpoint_gap_max_ms"] is not None]
    total = {
        "sessions": len(rows),
        "completed_clean": len(rows) - len(bad),
        "link_lost": sum("link_lost" in r["faults"] for r in rows),
        "board_watchdog_trips": sum(r["board_watchdog_trips"] for r in rows),
        "worst_setpoint_gap_ms": max(gaps) if gaps else None,
    }
    print(json.dumps(total), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"sessions": rows, "total": total}, indent=2) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
