"""What a finished session leaves behind: the summary JSON, telemetry JSON Lines, and the plot.

Formats are the public contract of docs/interfaces.md §2; extra fields are additions, never renames.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chair.lifecycle import SessionState
from chair.session import SessionResult
from core_rt.config import ZONES, ChairConfig, Depth

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
            # the scanned back surface (docs/chair.md §10): [y_mm, surface_mm], bottom to top
            "contour": result.contour.as_pairs() if result.contour else [],
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


LEVEL_COLORS = ("#95a5a6", "#2e86de", "#16a085", "#f39c12", "#e74c3c", "#7d3c98")
"""The roller trace's colour at depth levels 0 (retracted) to 5: grey, then cool to hot."""

_EPS = 1e-6


def press_mm(sample: dict[str, Any]) -> float:
    """How far the heads press into the tissue at a telemetry sample: `press_mm` once the back's
    surface is known (docs/chair.md §10), the depth from the heads' home before."""
    press = sample.get("press_mm")
    return float(sample["depth_mm"] if press is None else press)


def depth_level(depth_mm: float, depth: Depth) -> int:
    """The depth level the heads press at: 0 (retracted) at or below `depth.retracted_mm`, else the
    lowest level k with depth_mm ≤ `depth.level_mm(k)` (past the top level: the top level). So
    at a zone cap of level 1 or more, a depth is within the cap exactly when its level is."""
    if depth_mm <= depth.retracted_mm + _EPS:
        return 0
    top = len(depth.levels_mm)
    return next((k for k in range(1, top) if depth_mm <= depth.level_mm(k) + _EPS), top)


def zone_cap_mm(zone: str | None, config: ChairConfig) -> float | None:
    """The depth cap (mm) of `zone` (docs/chair.md §2); None outside every zone."""
    caps = config.body.zone_caps.get(zone) if zone is not None else None
    return None if caps is None else config.depth.level_mm(caps.depth_level)


def _level_label(k: int, depth: Depth) -> str:
    if k == 0:
        return f"0 retracted: ≤ {depth.retracted_mm:g} mm"
    lo = depth.retracted_mm if k == 1 else depth.level_mm(k - 1)
    return f"{k}{' light' if k == 1 else ''}: {lo:g}–{depth.level_mm(k):g} mm"


def session_figure(
    samples: Sequence[dict[str, Any]],
    summary: dict[str, Any],
    result: SessionResult,
    config: ChairConfig,
) -> Figure:
    """The session plot, four panels on one time axis: the roller over the zone bands with the
    steps, coloured by the depth level the heads press at; the depth against the cap of the zone
    the carriage is in; the lateral contact against the spine band; the heat. Beside the roller,
    on the same track axis, the back's contour as the body scan measured it."""
    import numpy as np
    from matplotlib.collections import LineCollection
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    dep = config.depth
    trip_c = config.heater.trip_c
    t = [s["t"] for s in samples]
    fig = Figure(figsize=(14.5, 13.5))
    grid = fig.add_gridspec(4, 2, height_ratios=[3, 1.6, 1.3, 1.1], width_ratios=[8, 1])
    ax1 = fig.add_subplot(grid[0, 0])
    axd, ax2, ax3 = (fig.add_subplot(grid[i, 0], sharex=ax1) for i in (1, 2, 3))
    for ax in (ax1, axd, ax2):
        ax.tick_params(labelbottom=False)
    axc = fig.add_subplot(grid[0, 1], sharey=ax1)
    colors = ["#e8d5c4", "#f2e2ba", "#d9ead3", "#cfe2f3", "#d9d2e9", "#f4cccc", "#fff2cc"]
    for (z, (lo, hi)), c in zip(summary["body"]["zones"].items(), colors, strict=False):
        ax1.axhspan(lo, hi, color=c, alpha=0.8, lw=0)
        ax1.text(t[-1] if t else 0, (lo + hi) / 2, f" {z}", va="center", fontsize=8)
    # the roller y, each stretch in the colour of the depth level the heads press at
    levels = [depth_level(press_mm(s), dep) for s in samples]
    n_levels = len(dep.levels_mm) + 1
    points = np.column_stack([t, [s["y_mm"] for s in samples]]).reshape(-1, 1, 2)
    trace = LineCollection(
        list(np.concatenate([points[:-1], points[1:]], axis=1)),
        cmap=ListedColormap(LEVEL_COLORS[:n_levels]),
        norm=BoundaryNorm(np.arange(n_levels + 1) - 0.5, n_levels),
        linewidths=[0.7 if k == 0 else 1.3 for k in levels[:-1]],
        gid="roller-depth-level",
    )
    trace.set_array(np.asarray(levels[:-1], dtype=float))
    ax1.add_collection(trace)
    ax1.autoscale_view()
    lo, hi = ax1.get_ylim()
    ax1.set_ylim(lo - 0.12 * (hi - lo), hi)  # a strip under the zones for the level legend
    if result.plan is not None and samples:
        t_start = next((s["t"] for s in samples if s["state"] == SessionState.RUNNING), 0.0)
        for st in result.plan.steps:
            x = t_start + st.start_s
            for ax in (ax1, axd):
                ax.axvline(x, color="grey", lw=0.5, ls=":")
            ax1.text(
                x,
                summary["body"]["zones"]["neck"][1] + 15,
                f"{st.index}:{st.technique}",
                rotation=90,
                fontsize=7,
                va="bottom",
            )
    ax1.set_ylabel("track y (mm)")
    _contour_panel(axc, summary, config)
    ax1.set_title(
        f"{summary['program']} — {summary['minutes']:g} min, body "
        f"{summary['body']['height_cm']:g} cm, shoulder "
        f"{summary['body']['shoulder_mm']} mm — {summary['end_reason']}"
    )
    ax1.legend(
        handles=[
            Line2D(
                [], [], color=LEVEL_COLORS[k], lw=0.7 if k == 0 else 2, label=_level_label(k, dep)
            )
            for k in range(n_levels)
        ],
        title="roller y, coloured by depth level",
        title_fontsize=8,
        loc="lower left",
        ncols=n_levels,
        fontsize=7,
    )
    # the press against the cap of the zone the carriage is in (none outside the zones)
    depth = [press_mm(s) for s in samples]
    caps = [zone_cap_mm(s["zone"], config) for s in samples]
    cap_line = [math.nan if c is None else c for c in caps]
    light = dep.level_mm(1)
    axd.axhspan(dep.retracted_mm, light, color=LEVEL_COLORS[1], alpha=0.15, lw=0)
    axd.plot(
        t,
        depth,
        color="#1f3b73",
        lw=0.8,
        label="press into the tissue (from home before the scan)",
        gid="depth",
    )
    axd.plot(
        t,
        cap_line,
        color="#c0392b",
        lw=1.3,
        ls="--",
        drawstyle="steps-post",
        label="cap of the zone the carriage is in (zones: from the body scan on)",
        gid="zone-cap",
    )
    over = [c is not None and d > c + _EPS for d, c in zip(depth, caps, strict=True)]
    if any(over):
        axd.fill_between(
            t,
            cap_line,
            depth,
            where=over,
            color="red",
            alpha=0.6,
            label="over the cap",
            gid="over-cap",
        )
    top = dep.level_mm(len(dep.levels_mm))
    axd.set_yticks(
        [0.0, *dep.levels_mm],
        ["0", *(f"{mm:g}  L{k}" for k, mm in enumerate(dep.levels_mm, start=1))],
    )
    axd.set_ylim(0, max(top, max(depth, default=0.0)) + 3)
    axd.grid(axis="y", color="#bbbbbb", lw=0.4)
    axd.set_ylabel("depth (mm)")
    axd.set_title(
        f"heads' depth against the cap of the zone the carriage is in (shaded: light, "
        f"≤ {light:g} mm)",
        fontsize=9,
        loc="left",
    )
    axd.legend(loc="lower right", bbox_to_anchor=(1, 1), ncols=2, fontsize=7, frameon=False)
    keep = summary["body"]["spine_half_width_mm"] + summary["body"]["spine_margin_mm"]
    r = summary["body"]["contact_radius_mm"]
    ax2.axhspan(-keep, keep, color="#f4cccc", label="spine keep-out band")
    lx = [s["left_x_mm"] for s in samples]
    rx = [s["right_x_mm"] for s in samples]
    ax2.plot(t, [x + r for x in lx], color="#1f77b4", lw=0.6, label="left patch inner edge")
    ax2.plot(t, [x - r for x in rx], color="#2ca02c", lw=0.6, label="right patch inner edge")
    ax2.set_ylabel("lateral x (mm)")
    ax2.set_title("contact patches against the spine", fontsize=9, loc="left")
    ax2.legend(loc="upper right", fontsize=7)
    ax3.plot(t, [s["heat_c"] for s in samples], color="#d35400", lw=0.8, label="pad °C")
    ax3.plot(
        t,
        [s["heat_target_c"] or math.nan for s in samples],  # off: no line
        color="black",
        lw=0.8,
        ls="--",
        label="target",
    )
    hottest = max((s["heat_c"] for s in samples), default=trip_c)
    ax3.axhline(trip_c, color="red", lw=0.6, ls=":", label="trip")
    ax3.set_ylim(20, max(trip_c, hottest) + 2)
    ax3.set_ylabel("heat (°C)")
    ax3.set_title("lumbar pad", fontsize=9, loc="left")
    ax3.set_xlabel("session time (s)")
    ax3.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return fig


def _contour_panel(ax: Any, summary: dict[str, Any], config: ChairConfig) -> None:
    """The scanned back in profile beside the track: where the skin is on the depth axis (the
    heads' home at 0, on the left) at every y the scan touched it."""
    contour = summary["body"].get("contour") or []
    ax.set_title("back contour\n(body scan)", fontsize=8)
    ax.set_xlabel("skin on the depth axis (mm)", fontsize=7)
    ax.tick_params(labelleft=False, labelsize=7)
    ax.set_xlim(config.depth.min_mm, config.depth.max_mm)
    ax.grid(color="#dddddd", lw=0.4)
    if not contour:
        ax.text(
            0.5,
            0.5,
            "no contour\nscanned",
            ha="center",
            va="center",
            fontsize=8,
            transform=ax.transAxes,
        )
        return
    ys = [p[0] for p in contour]
    surface = [p[1] for p in contour]
    ax.fill_betweenx(ys, surface, config.depth.max_mm, color="#f2d0b5", lw=0)
    ax.plot(surface, ys, color="#8e5b3a", lw=1.0, gid="contour")


def write_plot(
    path: str | Path,
    samples: Sequence[dict[str, Any]],
    summary: dict[str, Any],
    result: SessionResult,
    *,
    config: ChairConfig | None = None,
) -> None:
    """Save `session_figure` as a PNG. The chair's numbers (depth levels, zone caps, heat trip)
    come from `config` (default: the reference chair)."""
    cfg = config if config is not None else ChairConfig()
    fig = session_figure(samples, summary, result, cfg)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
