"""What a finished session leaves behind: the summary JSON, telemetry JSON Lines, and the plot.

Formats are the public contract of docs/interfaces.md §2; extra fields are additions, never renames.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chair.lifecycle import SessionState
from chair.session import SessionResult
from core_rt.config import ZONES, ChairConfig

TELEMETRY_KEYS = (
    "t",
    "state",
    "step",
    "technique",
    "zone",
    "y_mm",
    "v_mm_s",
    "a_mm_s2",
    "width_mm",
    "left_x_mm",
    "right_x_mm",
    "depth_mm",
    "knead_rpm",
    "tap_hz",
    "heat_target_c",
    "heat_c",
    "fault",
)


def build_summary(
    result: SessionResult,
    config: ChairConfig,
    *,
    session_id: str,
    program: str,
    minutes: float,
    intensity: int,
    heat: str,
    body_height_cm: float | None,
    ticks: int,
    wall_seconds: float,
    user: str | None = None,
    violations: Sequence[str] = (),
) -> dict[str, Any]:
    """The summary JSON (docs/interfaces.md §2) of a finished session. ``safety.ok`` holds the
    guard's verdict and `violations` (the independent checker's, `chair.checker`)."""
    st = result.stats
    plan = result.plan
    planned = plan.zone_seconds if plan is not None else {}
    zone_seconds = {
        z: {"planned": round(planned.get(z, 0.0), 3), "actual": round(st["zone_seconds"][z], 3)}
        for z in ZONES
    }
    b = config.body
    guard_ok = not result.faults or all(f.code == "estop" for f in result.faults)
    return {
        "session_id": session_id,
        "user": user,
        "program": program,
        "minutes": minutes,
        "intensity": intensity,
        "heat": heat,
        "completed": result.completed,
        "end_reason": result.end_reason,
        "tick_hz": config.loop.tick_hz,
        "ticks": ticks,
        "wall_seconds": round(wall_seconds, 4),
        "sim_seconds": round(result.sim_seconds, 3),
        "program_seconds": round(result.program_seconds, 3),
        "body": {
            "height_cm": body_height_cm,
            "seat_mm": config.carriage.seat_mm,
            "shoulder_mm": None if result.shoulder_mm is None else round(result.shoulder_mm, 2),
            "zones": {z: [round(lo, 2), round(hi, 2)] for z, (lo, hi) in result.zones.items()},
            "spine_half_width_mm": b.spine_half_width_mm,
            "spine_margin_mm": b.spine_margin_mm,
            "contact_radius_mm": b.contact_radius_mm,
        },
        "zone_order_planned": list(plan.zone_order) if plan is not None else [],
        "zone_order_observed": result.zone_order_observed,
        "zone_seconds": zone_seconds,
        "safety": {
            "ok": guard_ok and not violations,
            "spine_clearance_min_mm": _r(st["spine_clearance_min_mm"]),
            "max_heat_c": _r(st["max_heat_c"]),
            "max_speed_mm_s": _r(st["max_speed_mm_s"]),
            "max_accel_mm_s2": _r(st["max_accel_mm_s2"]),
            "violations": list(violations),
        },
        "faults": [f.as_dict() for f in result.faults],
        "notes": result.notes,
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def write_telemetry(path: str | Path, samples: Sequence[dict[str, Any]]) -> int:
    """Write the session's samples (recorded by the core at `--telemetry-hz`) as JSON Lines."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with p.open("w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps({k: _round(s[k]) for k in TELEMETRY_KEYS}, separators=(",", ":")))
            f.write("\n")
            n += 1
    return n


def _round(x: Any) -> Any:
    if isinstance(x, float):
        return round(x, 4)
    return x


def write_plot(
    path: str | Path,
    samples: Sequence[dict[str, Any]],
    summary: dict[str, Any],
    result: SessionResult,
    trip_c: float,
    retracted_mm: float,
) -> None:
    """A PNG: roller over the zone bands with the steps, lateral contact vs the spine band, heat."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in samples]
    fig, (ax1, ax2, ax3) = plt.subplots(
        3, 1, figsize=(13, 10), sharex=True, gridspec_kw={"height_ratios": [3, 1.4, 1.2]}
    )
    colors = ["#e8d5c4", "#f2e2ba", "#d9ead3", "#cfe2f3", "#d9d2e9", "#f4cccc", "#fff2cc"]
    for (z, (lo, hi)), c in zip(summary["body"]["zones"].items(), colors, strict=False):
        ax1.axhspan(lo, hi, color=c, alpha=0.8, lw=0)
        ax1.text(t[-1] if t else 0, (lo + hi) / 2, f" {z}", va="center", fontsize=8)
    ax1.plot(t, [s["y_mm"] for s in samples], color="#1f3b73", lw=0.7, label="roller y")
    pressing = [s["y_mm"] if s["depth_mm"] > retracted_mm else None for s in samples]
    ax1.plot(t, pressing, color="#c0392b", lw=0.9, label=f"pressing (depth > {retracted_mm:g} mm)")
    if result.plan is not None and samples:
        t_start = next((s["t"] for s in samples if s["state"] == SessionState.RUNNING), 0.0)
        for st in result.plan.steps:
            x = t_start + st.start_s
            ax1.axvline(x, color="grey", lw=0.5, ls=":")
            ax1.text(
                x,
                summary["body"]["zones"]["neck"][1] + 15,
                f"{st.index}:{st.technique}",
                rotation=90,
                fontsize=7,
                va="bottom",
            )
    ax1.set_ylabel("track y (mm)")
    ax1.set_title(
        f"{summary['program']} — {summary['minutes']:g} min, body "
        f"{summary['body']['height_cm']:g} cm, shoulder "
        f"{summary['body']['shoulder_mm']} mm — {summary['end_reason']}"
    )
    ax1.legend(loc="lower left", fontsize=8)
    keep = summary["body"]["spine_half_width_mm"] + summary["body"]["spine_margin_mm"]
    r = summary["body"]["contact_radius_mm"]
    ax2.axhspan(-keep, keep, color="#f4cccc", label="spine keep-out band")
    lx = [s["left_x_mm"] for s in samples]
    rx = [s["right_x_mm"] for s in samples]
    ax2.plot(t, [x + r for x in lx], color="#1f77b4", lw=0.6, label="left patch inner edge")
    ax2.plot(t, [x - r for x in rx], color="#2ca02c", lw=0.6, label="right patch inner edge")
    ax2.set_ylabel("lateral x (mm)")
    ax2.legend(loc="upper right", fontsize=7)
    ax3.plot(t, [s["heat_c"] for s in samples], color="#d35400", lw=0.8, label="pad °C")
    ax3.plot(
        t,
        [s["heat_target_c"] or None for s in samples],
        color="black",
        lw=0.8,
        ls="--",
        label="target",
    )
    hottest = max((s["heat_c"] for s in samples), default=trip_c)
    ax3.axhline(trip_c, color="red", lw=0.6, ls=":", label="trip")
    ax3.set_ylim(20, max(trip_c, hottest) + 2)
    ax3.set_ylabel("heat (°C)")
    ax3.set_xlabel("session time (s)")
    ax3.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)
