"""The independent safety checker: reads a session's telemetry and summary, trusts neither.

It shares no code path with the core's guard: zones are recomputed from the published bands and
each sample's `y_mm`, clearances from the published lateral contact points, limits from the
config. Used by `chair run` (exit code 2 on a violation) and by the test-suite over every
built-in program, body height and intensity.

Manual mode (docs/chair.md §8) is judged from the summary's `manual` history (the settings and
their span over time): the heads press deeper than level 1 only inside the area in force — after
a change, the previous area too until the heads have eased off to light contact (they brake where
they are first). Its zone order and dwell are the user's, not a plan's: the zone order the core
reported must match the telemetry's instead. In every session tapping runs only at a width that
is reached (never while the width moves).

Once the back's contour is scanned, depth caps apply to the press into the tissue (docs/chair.md
§10): the checker computes it as `depth_mm − surface_mm` itself, and holds the telemetry's
`surface_mm` to the contour the summary published: never deeper than it (beyond `SURFACE_TOL_MM`,
the fit's smoothing of the scan's noise), so a surface that would press harder than the press
says is caught too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from chair.lifecycle import SessionState
from chair.programs.model import TECHNIQUE_SPECS
from core_rt.config import ZONES, ChairConfig

HOLD_TECHNIQUES = frozenset(t for t, spec in TECHNIQUE_SPECS.items() if spec.holds)
"""Press-and-hold techniques: they stand still under pressure by design (docs/chair.md §3)."""

EPS = 1e-6
HEAT_GRACE_S = 0.1
"""The heater's target is set on the tick the program starts: a sample may come just before."""
HEAT_END_GRACE_S = 1.0
"""The plan turns the heater off on its last tick; the session enters settling when its event
loop next runs (in real time, on a busy machine, a little later): the last running samples of a
program may show the heater already off."""
AREA_TOL_MM = 0.01
"""The summary publishes a manual area's span to 0.001 mm."""
DEPTH_STILL_MM = 0.01
"""Depth changing less than this between two samples: the heads are not pressing in or out."""
SURFACE_TOL_MM = 3.0
"""The surface the heads follow may lie this much deeper than the scanned contour's points on the
back (the least-squares fit smooths the scan's noise, within 3 mm of the skin there:
docs/chair.md §10)."""
SURFACE_TOL_NECK_MM = 5.0
"""... and above the shoulder line, where the neck's soft tissue begins: the light touch presses
it furthest, and the scan is within 5 mm of the skin there (docs/chair.md §10). On a flat back a
scan saw the skin there 3.07 mm nearer than it is, where the surface rightly lay at the skin."""


def _contour_at(pairs: Sequence[Sequence[float]], y: float) -> float:
    """The published contour at `y`: linear between its points, flat beyond its ends."""
    if y <= pairs[0][0]:
        return float(pairs[0][1])
    for (y0, s0), (y1, s1) in itertools.pairwise(pairs):
        if y <= y1:
            return float(s0 + (s1 - s0) * (y - y0) / (y1 - y0)) if y1 > y0 else float(s1)
    return float(pairs[-1][1])


def zone_at(y: float, zones: Mapping[str, Sequence[float]]) -> str | None:
    """The zone a track position is in: lo ≤ y < hi (the top zone includes its top)."""
    names = [z for z in ZONES if z in zones]
    for i in range(len(names) - 1, -1, -1):
        lo, hi = zones[names[i]]
        if lo <= y <= hi and (y < hi or i == len(names) - 1):
            return names[i]
    return None


def check_session(
    telemetry: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    config: ChairConfig,
    *,
    dwell_rel: float = 0.05,
    minutes_tol_s: float = 2.0,
) -> list[str]:
    """Every violation found, as a readable line; an empty list means the session was safe."""
    v: list[str] = []
    body = summary["body"]
    zones: dict[str, Sequence[float]] = body["zones"]
    keep_out = body["spine_half_width_mm"] + body["spine_margin_mm"]
    r = body["contact_radius_mm"]
    neck_top = zones["neck"][1] if "neck" in zones else config.carriage.track_max_mm
    shoulder = float(body.get("shoulder_mm") or config.carriage.track_max_mm)
    car, dep = config.carriage, config.depth
    lim = car.limits
    caps = config.body.zone_caps
    contour = body.get("contour") or []

    def once(msg: str) -> None:
        if msg not in v:
            v.append(msg)

    heat_target = 0.0
    heat_settled = False
    # Heat is the session's: when its level is not off, the pad's target holds from the
    # program's start to the settle (docs/chair.md §3).
    levels = [
        (float(t), str(lv)) for t, lv in summary.get("heat_levels") or [[0.0, summary["heat"]]]
    ]
    level_i = 0
    # Strokes never stand still under pressure: outside the holds, at most this long at a time.
    light_mm = dep.level_mm(1)
    rest_max_s = config.session.max_rest_pressing_s
    rest_v = config.session.rest_speed_mm_s
    rest_since: float | None = None
    program_t0: float | None = None
    program_t1 = max((s["t"] for s in telemetry if s["state"] == SessionState.RUNNING), default=0.0)
    last_depth: float | None = None  # the roller rests when neither the carriage nor the depth move
    running_order: list[str] = []
    # The chair starts where it was found (docs/core.md, Starting from where the chair is). Found
    # pressing, the heads must come back first: until they are retracted the carriage and the
    # width stay put, the depth only goes back and nothing turns. Where they were found is not a
    # zone or neck violation (nobody commanded it); any other motion then is a violation.
    # manual mode: the areas in force over time (docs/chair.md §8)
    manual_rows = [(float(t), row) for t, row in summary.get("manual") or []]
    manual_i = -1
    areas: list[tuple[float, float]] = []  # the area in force, then earlier ones not yet left
    last_width: float | None = None
    last_tap = 0.0
    found = bool(telemetry) and telemetry[0]["depth_mm"] > dep.retracted_mm + EPS
    if found:
        found_y, found_width, found_depth = (
            telemetry[0][k] for k in ("y_mm", "width_mm", "depth_mm")
        )
    for s in telemetry:
        t = s["t"]
        y = s["y_mm"]
        depth = s["depth_mm"]
        knead = abs(s["knead_rpm"])
        tap = abs(s["tap_hz"])
        surface = s.get("surface_mm")
        if surface is not None and not contour:
            once(f"t={t:.2f}s: a surface {surface:.2f} mm without a scanned contour")
        elif surface is not None and surface - _contour_at(contour, y) > (
            SURFACE_TOL_NECK_MM if y > shoulder + EPS else SURFACE_TOL_MM
        ):
            # deeper than the scanned skin, the heads would press harder than the press says
            # (a surface nearer than the skin, as over the neck's curve, presses lighter)
            once(
                f"t={t:.2f}s: surface {surface:.2f} mm at {y:.1f} mm lies deeper than the "
                f"scanned contour's {_contour_at(contour, y):.2f} mm"
            )
        # how far the heads press into the tissue (from home where no surface is known)
        press = depth if surface is None else depth - surface
        pressing = press > dep.retracted_mm + EPS or knead > 0 or tap > 0
        if found and depth <= dep.retracted_mm + EPS:
            found = False  # retracted: every rule applies from here on
        if found:
            if abs(y - found_y) > EPS or abs(s["width_mm"] - found_width) > EPS:
                once(
                    f"t={t:.2f}s: carriage or width moving before the heads found pressing "
                    "were retracted"
                )
            if depth > found_depth + EPS:
                once(f"t={t:.2f}s: depth {depth:.2f} mm pressing further in before retracting")
            if knead > 0 or tap > 0:
                once(
                    f"t={t:.2f}s: kneading or tapping before the heads found pressing were "
                    "retracted"
                )
            found_depth = depth
        if not (car.track_min_mm - EPS <= y <= car.track_max_mm + EPS):
            once(f"t={t:.2f}s: carriage {y:.1f} mm off the track")
        if abs(s["v_mm_s"]) > lim.v_max * (1 + 1e-9) + EPS:
            once(f"t={t:.2f}s: carriage speed {s['v_mm_s']:.3f} mm/s over {lim.v_max:g}")
        a_lim = lim.estop_a_max if s["state"] in ("estop",) else lim.a_max
        if abs(s["a_mm_s2"]) > a_lim * (1 + 1e-9) + EPS:
            once(f"t={t:.2f}s: carriage acceleration {s['a_mm_s2']:.3f} mm/s² over {a_lim:g}")
        if pressing:
            clearance = min(abs(s["left_x_mm"]), abs(s["right_x_mm"])) - r - keep_out
            if clearance < -EPS:
                once(f"t={t:.2f}s: spine clearance {clearance:.2f} mm < 0")
        if pressing and not found:
            if y > neck_top + EPS:
                once(f"t={t:.2f}s: pressing at {y:.1f} mm above the neck top {neck_top:.1f}")
            z = zone_at(y, zones)
            if z is not None:
                cap = caps[z]
                # the contour scan follows the skin at a light touch by its load before any
                # surface is known (its depth is the skin's, not a press: docs/core.md)
                following = contour and s["state"] == SessionState.SCANNING
                if press > dep.level_mm(cap.depth_level) + EPS and not following:
                    once(f"t={t:.2f}s: depth {press:.2f} mm over the {z} cap")
                if tap > cap.tap_hz + EPS:
                    once(f"t={t:.2f}s: tapping {tap:.2f} Hz over the {z} cap")
                if knead > cap.knead_rpm + EPS:
                    once(f"t={t:.2f}s: kneading {knead:.2f} rpm over the {z} cap")
        # heat: never at the trip point; within target + band once it has reached the target
        hc = s["heat_c"]
        if hc is not None and hc >= config.heater.trip_c:
            once(f"t={t:.2f}s: pad {hc:.2f} °C at or above the trip point")
        tgt = s["heat_target_c"] or 0.0
        if tgt != heat_target:
            heat_target = tgt
            heat_settled = False
        if heat_target > 0 and hc is not None:
            if hc >= heat_target - 0.5:
                heat_settled = True
            if heat_settled and hc > heat_target + config.heater.steady_band_c + EPS:
                once(f"t={t:.2f}s: pad {hc:.2f} °C above target {heat_target:g} + band")
        running = s["state"] == SessionState.RUNNING
        if running and program_t0 is None:
            program_t0 = t
        width = s["width_mm"]
        # tapping on at both ends of an interval in which the width moved (a sample alone cannot
        # tell a tap that started after the width was reached from one that did not: at 10 Hz the
        # width's last approach and the tap's start can fall between the same two samples)
        if tap > 0 and last_tap > 0 and last_width is not None and abs(width - last_width) > EPS:
            once(f"t={t:.2f}s: tapping at {tap:.2f} Hz while the width moves (not yet reached)")
        last_width, last_tap = width, tap
        while manual_i + 1 < len(manual_rows) and manual_rows[manual_i + 1][0] <= t:
            manual_i += 1
            lo, hi = manual_rows[manual_i][1]["span_mm"]
            areas = [(float(lo), float(hi)), *areas]
        if areas and s["state"] in (SessionState.RUNNING, SessionState.PAUSED):
            if press <= light_mm + EPS:
                if last_depth is None or press <= last_depth + EPS:
                    # eased off (not pressing in through light contact when the change came:
                    # the heads brake where they are first): only the area in force counts
                    areas = areas[:1]
            elif not any(lo - AREA_TOL_MM <= y <= hi + AREA_TOL_MM for lo, hi in areas):
                lo, hi = areas[0]
                once(
                    f"t={t:.2f}s: pressing {press:.2f} mm at {y:.1f} mm outside the manual "
                    f"area {lo:.1f}-{hi:.1f} mm"
                )
        while level_i + 1 < len(levels) and levels[level_i + 1][0] <= t:
            level_i += 1
        since, level = levels[level_i]
        level_c = config.heater.target_c(level) if level in config.heater.level_names else 0.0
        if (
            running
            and level_c > 0
            and abs(tgt - level_c) > EPS
            and program_t0 is not None
            and t - max(program_t0, since) > HEAT_GRACE_S
            and not (tgt == 0.0 and program_t1 - t <= HEAT_END_GRACE_S)
        ):
            once(f"t={t:.2f}s: heat target {tgt:g} °C in the program, not the {level} level's "
                 f"{level_c:g} °C")  # fmt: skip
        resting = (
            running
            and s["technique"] not in HOLD_TECHNIQUES
            and abs(s["v_mm_s"]) < rest_v
            and last_depth is not None
            and abs(press - last_depth) <= DEPTH_STILL_MM
            and press > light_mm + EPS
        )
        last_depth = press
        if not resting:
            rest_since = None
        elif rest_since is None:
            rest_since = t
        elif t - rest_since > rest_max_s + EPS:
            once(
                f"t={t:.2f}s: standing still pressing {press:.2f} mm (deeper than level 1) "
                f"for more than {rest_max_s:g} s in {s['technique']}"
            )
        if running:
            z = zone_at(y, zones)
            if z is not None and (not running_order or running_order[-1] != z):
                running_order.append(z)

    planned = list(summary["zone_order_planned"])
    observed = list(summary["zone_order_observed"])
    if summary.get("completed") and manual_rows:
        # manual mode: the user steers where the heads go; the core's zone reports and the
        # telemetry must still tell the same story
        if _collapse(running_order) != observed:
            v.append(f"zone order in telemetry {_collapse(running_order)} differs from the "
                     f"core's {observed}")  # fmt: skip
    elif summary.get("completed"):
        if observed != planned:
            v.append(f"zone order observed {observed} differs from planned {planned}")
        if _collapse(running_order) != planned:
            v.append(f"zone order in telemetry {_collapse(running_order)} differs from planned")
        for z, d in summary["zone_seconds"].items():
            p, a = d["planned"], d["actual"]
            if abs(a - p) > dwell_rel * p + 0.05:
                v.append(f"zone {z}: dwell {a:.2f} s vs planned {p:.2f} s (> {dwell_rel:.0%})")
        prog_s = summary.get("program_seconds")
        if prog_s is None or abs(prog_s - summary["minutes"] * 60) > minutes_tol_s:
            v.append(
                f"program time {prog_s} s differs from {summary['minutes']} min "
                f"by more than {minutes_tol_s:g} s"
            )
        if telemetry:
            last = telemetry[-1]
            if not (
                abs(last["y_mm"] - car.park_mm) < 0.5
                and abs(last["v_mm_s"]) < EPS
                and last["depth_mm"] <= dep.retracted_mm
                and last["knead_rpm"] == 0
                and last["tap_hz"] == 0
                and not last["heat_target_c"]
            ):
                v.append("the session did not end settled at park")
    return v


def _collapse(seq: Iterable[str]) -> list[str]:
    out: list[str] = []
    for z in seq:
        if not out or out[-1] != z:
            out.append(z)
    return out
