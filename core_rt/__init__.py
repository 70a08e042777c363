"""core_rt — the chair's real-time core (Cython).

The ground floor of the house: jerk-limited motion profiles, the per-tick guard, the fixed-period
loop and the lock-free hand-off to asyncio. It imports nothing of ours above it.

Public API (docs/interfaces.md §4)::

    move = core_rt.plan_move(start, goal, v_max, a_max, j_max)
    move.duration          # s, time-optimal under the three limits
    move.state(t)          # -> (p, v, a, j)
"""

from typing import Any

from core_rt.config import ZONES, ChairConfig, load_config

__all__ = [
    "ZONES",
    "ChairConfig",
    "Move",
    "load_config",
    "plan_brake",
    "plan_move",
    "plan_velocity",
]


_PLANNER = ("Move", "plan_move", "plan_brake", "plan_velocity")


def __getattr__(name: str) -> Any:
    """The compiled planner is imported on first use, then kept in the module's namespace, so
    every later `core_rt.plan_move` is a plain attribute read (module `__getattr__` only runs for
    names not found there)."""
    if name in _PLANNER:
        from core_rt import motion

        for planner_name in _PLANNER:
            globals()[planner_name] = getattr(motion, planner_name)
        return globals()[name]
    raise AttributeError(f"module 'core_rt' has no attribute {name!r}")
