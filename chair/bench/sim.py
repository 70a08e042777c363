"""Simulation speed: whole sessions in virtual time (`--fast`), the guard and watchdogs on.

The `sim` section of `chair bench --json` (docs/interfaces.md §5): a 15-minute session at 1 kHz,
and how wall time grows with session length (5, 15, 30 min). The baseline is real time itself: the
realtime factor is simulated seconds per wall second.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from core_rt.config import ChairConfig

PROGRAM = "relax"


def run_session(
    config: ChairConfig,
    minutes: float,
    program: str = PROGRAM,
    keep_telemetry: bool = False,
    back: str | None = None,
) -> dict[str, Any]:
    """One fast session; wall time covers the whole session (scan, program, settle). `back`: a
    contoured back (`sim.back.BACK_SHAPES`), pressed relative to its scanned surface."""
    from chair.controller import Controller

    controller = Controller.create(config, pacing="fast", seed=1, back=back)

    async def main() -> Any:
        async with controller:
            session = controller._make_session(program, minutes=minutes, intensity=3, heat="medium")
            session.keep_telemetry = keep_telemetry
            controller.session = session
            return await controller._run_session(session)

    t0 = time.perf_counter()
    result = asyncio.run(main())
    wall = time.perf_counter() - t0
    return {
        "session_minutes": minutes,
        "completed": result.completed,
        "sim_seconds": round(result.sim_seconds, 2),
        "program_seconds": round(result.program_seconds, 2),
        "wall_seconds": round(wall, 4),
        "realtime_factor": round(result.sim_seconds / wall, 1),
        "ticks": round(result.sim_seconds * config.loop.tick_hz),
        "ns_per_tick": round(wall / (result.sim_seconds * config.loop.tick_hz) * 1e9, 1),
    }


def run(config: ChairConfig | None = None, quick: bool = False) -> dict[str, Any]:
    config = config or ChairConfig()
    run_session(config, 5)  # warm-up: imports, first-call costs
    main = min(
        (run_session(config, 15) for _ in range(1 if quick else 3)), key=lambda r: r["wall_seconds"]
    )
    growth = [run_session(config, m) for m in ((5, 30) if not quick else (5,))]
    by_len = sorted([*growth, main], key=lambda r: r["session_minutes"])
    # the contour scan and the depth following a contoured back (docs/chair.md §10), beside the
    # same back with fixed depths, 15 minutes each
    fixed = config.model_copy(
        update={"contour": config.contour.model_copy(update={"press_relative": False})}
    )
    contour = {
        name: min(
            (run_session(cfg, 15, back="normal") for _ in range(1 if quick else 2)),
            key=lambda r: r["wall_seconds"],
        )
        for name, cfg in (("following", config), ("fixed_depth", fixed))
    }
    return {
        "session_minutes": 15,
        "wall_seconds": main["wall_seconds"],
        "realtime_factor": main["realtime_factor"],
        "sim_seconds": main["sim_seconds"],
        "ns_per_tick": main["ns_per_tick"],
        "tick_hz": config.loop.tick_hz,
        "by_length": [
            {k: r[k] for k in ("session_minutes", "sim_seconds", "wall_seconds", "realtime_factor")}
            for r in by_len
        ],
        "target_wall_seconds": 0.45,
        "contoured_back": {
            name: {k: r[k] for k in ("completed", "sim_seconds", "wall_seconds", "realtime_factor")}
            for name, r in contour.items()
        },
    }
