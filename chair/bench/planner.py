"""Planner benchmark: our closed-form double-S against ruckig on the same rest-to-rest moves.

Both planners are driven from Python, so the numbers include each binding's call overhead, which is
what tooling pays. Durations must agree (ruckig is the time-optimal reference)::

    PYTHONPATH=. .venv/bin/python -m chair.bench.planner
"""

from __future__ import annotations

import json
import random
import time

import ruckig

from core_rt.motion import plan_move

# Random moves over the ranges a chair axis can ask for (mm, mm/s, mm/s², mm/s³). Limits are drawn
# log-uniformly so that every case of the double-S (amax and/or vmax reached or not) is well mixed.
_DISTANCE_MM = (0.1, 1200.0)
_V_MAX = (1.0, 200.0)
_A_MAX = (10.0, 2000.0)
_J_MAX = (100.0, 50000.0)


def _log_uniform(rng: random.Random, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    return float(lo * (hi / lo) ** rng.random())


def _moves(count: int, seed: int) -> list[tuple[float, float, float, float, float]]:
    rng = random.Random(seed)
    moves = []
    for _ in range(count):
        distance = _log_uniform(rng, _DISTANCE_MM)
        start = rng.uniform(0.0, 1200.0)
        goal = start + distance if rng.random() < 0.5 else start - distance
        moves.append(
            (
                start,
                goal,
                _log_uniform(rng, _V_MAX),
                _log_uniform(rng, _A_MAX),
                _log_uniform(rng, _J_MAX),
            )
        )
    return moves


def run(moves: int = 20000, seed: int = 1) -> dict[str, float | int]:
    """Plan ``moves`` random moves with both planners; time each loop and compare durations."""
    problems = _moves(moves, seed)

    ours: list[float] = []
    t0 = time.perf_counter_ns()
    for start, goal, v_max, a_max, j_max in problems:
        ours.append(plan_move(start, goal, v_max, a_max, j_max).duration)
    ours_ns = time.perf_counter_ns() - t0

    otg = ruckig.Ruckig(1)
    inp = ruckig.InputParameter(1)
    trajectory = ruckig.Trajectory(1)
    inp.current_velocity = [0.0]
    inp.current_acceleration = [0.0]
    inp.target_velocity = [0.0]
    inp.target_acceleration = [0.0]
    theirs: list[float] = []
    results = []
    t0 = time.perf_counter_ns()
    for start, goal, v_max, a_max, j_max in problems:
        inp.current_position = [start]
        inp.target_position = [goal]
        inp.max_velocity = [v_max]
        inp.max_acceleration = [a_max]
        inp.max_jerk = [j_max]
        results.append(otg.calculate(inp, trajectory))
        theirs.append(trajectory.duration)
    ruckig_ns = time.perf_counter_ns() - t0
    failed = sum(
        result not in (ruckig.Result.Working, ruckig.Result.Finished) for result in results
    )
    if failed:
        raise RuntimeError(f"ruckig failed on {failed} of {len(problems)} moves")

    max_rel = max(abs(a - b) / b for a, b in zip(ours, theirs, strict=True)) if problems else 0.0
    count = max(len(problems), 1)
    return {
        "moves": len(problems),
        "ours_us_per_move": ours_ns / count / 1e3,
        "ruckig_us_per_move": ruckig_ns / count / 1e3,
        "max_duration_rel_diff": max_rel,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
