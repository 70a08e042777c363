"""core_rt — the chair's real-time core (Cython).

The ground floor of the house: jerk-limited motion profiles, the per-tick guard, the fixed-period
loop and the lock-free hand-off to asyncio. It imports nothing of ours above it.

Public API (INTERFACES §4)::

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


def __getattr__(name: str) -> Any:  # the compiled planner is imported on first use
    if name in ("Move", "plan_move", "plan_brake", "plan_velocity"):
        from core_rt import motion

        return getattr(motion, name)
    raise AttributeError(name)
