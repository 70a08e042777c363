"""Static safety verification of massage programs, and of the plans built from them.

`validate_program(program, config, file)` returns every `Issue(file, field, rule, message)` found;
an empty list means the program is safe for every body height the chair accepts (140-200 cm on
the reference chair), every intensity 1-5 and every session length the user may choose (5-30 min).
`check_plan(plan, program, config, file)` verifies one built plan, instant by instant.

Rule ids are stable (docs/programs.md lists them):

===================== ===========================================================================
schema, toml, file,   the file itself: unreadable, not TOML, not a program (`chair.programs.model`);
unknown-program,      zone-or-sweep, sweep-order, share-or-seconds, technique-field and
...                   seconds-sum come from the model's structure checks
zone-cap-depth        depth above the cap of a zone the step (or the plan) is in
zone-cap-tapping      tapping above a zone's cap (none at all on the neck)
zone-cap-kneading     kneading above a zone's cap
rate-limit            kneading rpm / tapping Hz above what the chair's motors do
spine-clearance       head width too narrow: width − 2·e (kneading) − 2·r < 2·(spine + margin)
width-range           head width outside the chair's width range
speed-limit           carriage speed above the carriage's v_max
down-stroke-pressure  gliding strokes pressing downward (pressure only upward, returns ≤ level 1)
session-length        default_minutes outside the chair's session range (30 min is a hard cap)
zone-band             a zone band too short for the carriage to work in, for some body
step-too-short        a step's share of the shortest session cannot hold its passes
plan rules            track-limit, head-limit, tap-width, rate-width, width-rest, depth-rest,
                      axis-overlap, motion-limit, heat-level, heat-held, rest-pressing,
                      plan-end, plan-duration,
                      plan-replay, step-order, step-proportion: see `check_plan`
===================== ===========================================================================

Why checking a finite set of cases is sound (the "every height, every intensity, every length"
claim):

- Zone caps, rates, widths, speeds and stroke directions are judged per zone *name*; which zones
  a step touches does not depend on the body. Intensity only scales depths down
  (`config.session.depth_factor` ≤ 1, exactly 1 at the highest intensity), so checking levels
  at the highest intensity covers them all.
- Zone edges are affine in the shoulder line (and the shoulder line in the body height), clamped
  to the track. A band's length is therefore piecewise affine in height, with kinks only where an
  edge meets a track end: checking every whole cm *and* every such kink height finds its minimum.
- Time: step budgets scale linearly with the session length, and a step holds more passes the
  more time it has, so the shortest session (5 min) is the hardest. `plan.step_time_bounds` bounds
  each step's minimal time over all bodies (distances taken on the longest back, unclamped —
  clamping only shortens them) and all intensities.
- What the scheduler produces is also checked (`check_plan`) at the extreme heights, at
  intensities 1, 3 and 5 and at the shortest, default and longest session.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import core_rt
from chair.programs.model import (
    TECHNIQUE_SPECS,
    Issue,
    Program,
    ProgramError,
    parse_program,
    program_source,
)
from chair.programs.plan import (
    DURATION_TOLERANCE_S,
    MIN_SPAN_MM,
    ZONE_MARGIN_MM,
    PlanError,
    SessionPlan,
    build_plan,
    step_time_bounds,
    zones_touched,
)
from core_rt.config import AXES, POSITION_AXES, RATE_AXES, ZONES, ChairConfig, MotionLimits

__all__ = [
    "Issue",
    "body_heights",
    "check_plan",
    "validate_file",
    "validate_program",
]

EPS = 1e-9


def body_heights(config: ChairConfig) -> list[float]:
    """Heights (cm) at which height-dependent geometry is checked: every whole cm of the chair's
    range, its ends, and every height where a zone edge meets a track end (a kink)."""
    b, c = config.body, config.carriage
    lo, hi = b.height_min_cm, b.height_max_cm
    hs = {lo, hi, *range(math.ceil(lo), math.floor(hi) + 1)}
    for f in b.zone_edges:
        if f == 0:
            continue
        for end in (c.track_min_mm, c.track_max_mm):
            # seat + f·(shoulder(h) − seat) = end, shoulder(h) = seat + k·h·10
            h = (end - c.seat_mm) / (f * b.shoulder_per_height * 10.0)
            if lo < h < hi:
                hs.add(h)
    return sorted(float(h) for h in hs)


def shoulder_for(config: ChairConfig, height_cm: float) -> float:
    """The shoulder line the body scan finds for a body height (clamped like the scan)."""
    return min(config.shoulder_for_height_mm(height_cm), config.body.shoulder_max_mm)


# ---- static checks ---------------------------------------------------------------------------


def _static_issues(program: Program, config: ChairConfig, file: str) -> list[Issue]:
    out: list[Issue] = []
    c = config

    def add(field: str, rule: str, message: str) -> None:
        out.append(Issue(file, field, rule, message))

    sess = c.session
    if not sess.min_minutes <= program.default_minutes <= sess.max_minutes:
        add(
            "default_minutes",
            "session-length",
            f"{program.default_minutes:g} min is outside this chair's session range "
            f"{sess.min_minutes:g}-{sess.max_minutes:g} min",
        )
    caps = c.body.zone_caps
    shoulders = [shoulder_for(c, h) for h in body_heights(c)]
    for i, step in enumerate(program.steps):
        p = f"steps[{i}]"
        s = step.settings(c)
        spec = TECHNIQUE_SPECS[s.technique]
        zs = s.zones
        where = f"{p}.{step.where_field}"

        # depth against every zone the step touches (the highest intensity = the level exactly)
        cap_d = min(caps[z].depth_level for z in zs)
        if s.depth_level > cap_d:
            worst = [z for z in zs if caps[z].depth_level == cap_d]
            add(
                f"{p}.depth",
                "zone-cap-depth",
                f"depth level {s.depth_level} is above the {worst[0]} cap (level {cap_d}); "
                f"a sweep uses the lowest cap of the zones it crosses",
            )
        if spec.light_returns and s.direction != "up" and s.depth_level > 1:
            add(
                f"{p}.depth",
                "down-stroke-pressure",
                f"{s.technique} with direction {s.direction} presses downward at level "
                f"{s.depth_level}; gliding strokes press only upward (downward at level 1)",
            )

        # kneading
        if spec.kneading:
            cap_k = min(caps[z].knead_rpm for z in zs)
            field = f"{p}.knead_rpm" if step.knead_rpm is not None else f"{p}.technique"
            if s.knead_rpm > c.kneading.max_rpm + EPS:
                add(
                    field,
                    "rate-limit",
                    f"{s.knead_rpm:g} rpm is above the kneading motor's {c.kneading.max_rpm:g}",
                )
            if s.knead_rpm > cap_k + EPS:
                worst = [z for z in zs if caps[z].knead_rpm == cap_k]
                add(
                    field,
                    "zone-cap-kneading",
                    f"{s.knead_rpm:g} rpm is above the {worst[0]} cap ({cap_k:g} rpm)",
                )
            elif s.knead_rpm <= 0:
                add(field, "zone-cap-kneading", f"kneading is not allowed on {' / '.join(zs)}")

        # tapping
        if spec.tapping:
            cap_t = min(caps[z].tap_hz for z in zs)
            worst = [z for z in zs if caps[z].tap_hz == cap_t]
            if cap_t <= 0:
                add(
                    where,
                    "zone-cap-tapping",
                    f"{s.technique} needs tapping, not allowed on the {worst[0]} (cap 0 Hz)",
                )
            else:
                field = f"{p}.tap_hz" if step.tap_hz is not None else f"{p}.technique"
                if s.tap_hz > c.tapping.max_hz + EPS:
                    add(
                        field,
                        "rate-limit",
                        f"{s.tap_hz:g} Hz is above the tapping motor's {c.tapping.max_hz:g} Hz",
                    )
                if s.tap_hz > cap_t + EPS:
                    add(
                        field,
                        "zone-cap-tapping",
                        f"{s.tap_hz:g} Hz is above the {worst[0]} cap ({cap_t:g} Hz)",
                    )

        # width: range and spine clearance (with the kneading orbit)
        widths = [s.width_mm]
        if s.friction_width_mm != s.width_mm:
            widths.append(s.friction_width_mm)
        need = c.min_width_mm(spec.kneading)
        for w in widths:
            label = "" if w == s.width_mm else " (friction's alternate width)"
            if not c.width.min_mm - EPS <= w <= c.width.max_mm + EPS:
                add(
                    f"{p}.width",
                    "width-range",
                    f"{w:g} mm{label} is outside the width range "
                    f"{c.width.min_mm:g}-{c.width.max_mm:g} mm",
                )
            if w < need - EPS:
                b = c.body
                orbit = (
                    f" − 2×{c.kneading.eccentricity_mm:g} (kneading orbit)" if spec.kneading else ""
                )
                add(
                    f"{p}.width",
                    "spine-clearance",
                    f"{w:g} mm{label}: {w:g}{orbit} − 2×{b.contact_radius_mm:g} (contact) "
                    f"leaves less than 2×{b.keep_out_mm:g} mm around the spine; "
                    f"{s.technique} needs at least {need:g} mm",
                )

        # carriage speed
        if s.speed_mm_s > c.carriage.limits.v_max + EPS:
            add(
                f"{p}.speed",
                "speed-limit",
                f"{s.speed_mm_s:g} mm/s is above the carriage's {c.carriage.limits.v_max:g} mm/s",
            )

        # every body: the span must exist (zone bands clamped to the track can shrink)
        for sh in shoulders:
            zones = c.zones_for_shoulder(sh)
            length = zones[s.ends[1]][1] - zones[s.ends[0]][0] - 2 * ZONE_MARGIN_MM
            if length < MIN_SPAN_MM - EPS:
                add(
                    where,
                    "zone-band",
                    f"for a shoulder line at {sh:.0f} mm the {'..'.join(dict.fromkeys(s.ends))} "
                    f"band leaves {max(length, 0):.0f} mm to work in (need {MIN_SPAN_MM:g})",
                )
                break
    if out:
        return out

    # time: the shortest session is the hardest (see the module docstring)
    bounds = step_time_bounds(program, c)
    budgets = program.step_budgets(sess.min_minutes)
    for i, (step, bound, budget) in enumerate(zip(program.steps, bounds, budgets, strict=True)):
        if budget + EPS < bound:
            field = "seconds" if step.seconds is not None else "share"
            unit = "pass" if TECHNIQUE_SPECS[step.technique].pattern == "stroke" else "press"
            add(
                f"steps[{i}].{field}",
                "step-too-short",
                f"in a {sess.min_minutes:g} min session this step gets {budget:.1f} s but may "
                f"need up to {bound:.1f} s (walk there, set up, {step.repeat} × {unit}) for the "
                f"tallest body; give it more of the session (or fewer repeats)",
            )
    return out


# ---- plan checks ---------------------------------------------------------------------------------


@dataclass
class _Seg:
    t0: float
    t1: float
    prof: Any
    """plan_move / plan_velocity profile."""
    rate: bool
    end: float
    """The axis's value once the profile is done."""


def _limits(config: ChairConfig) -> dict[str, MotionLimits]:
    return {
        "carriage": config.carriage.limits,
        "width": config.width.limits,
        "depth": config.depth.limits,
        "kneading": config.kneading.limits,
        "tapping": config.tapping.limits,
    }


def check_plan(
    plan: SessionPlan,
    program: Program,
    config: ChairConfig,
    file: str = "<plan>",
    label: str = "",
) -> list[Issue]:
    """Verify a built plan against the chair's rules, replaying its actions on their own
    profiles (plan_move / plan_velocity). Between any two action boundaries each axis is at rest
    or in one monotone profile, so its range over the interval is spanned by its values at the
    interval's ends: the checks below hold at *every* instant, not only at samples.

    Issues name the step (``steps[i]``) and one of the plan rules: track-limit, head-limit,
    zone-cap-depth, zone-cap-kneading, zone-cap-tapping, spine-clearance, tap-width (tapping
    during a width move), rate-width (kneading during a width move), width-rest / depth-rest
    (width or depth moving while the carriage moves), down-stroke-pressure, axis-overlap,
    motion-limit, rate-limit, heat-level, heat-held (the session's heat from the program's
    start to its end), rest-pressing (the roller standing still deeper than level 1 for more than
    `config.session.max_rest_pressing_s` outside the press-and-hold techniques), plan-end,
    plan-duration, plan-replay (an action's from_value is not where the axis is), step-order,
    step-proportion.
    """
    c = config
    lims = _limits(c)
    issues: list[Issue] = []
    seen: set[tuple[str, str]] = set()
    ctx = f"{label}: " if label else ""

    def add(step: int | None, rule: str, message: str) -> None:
        field = f"steps[{step}]" if step is not None else "-"
        if (field, rule) in seen:
            return
        seen.add((field, rule))
        issues.append(Issue(file, field, rule, ctx + message))

    # session and steps
    dur = plan.minutes * 60.0
    # a manual-mode segment is shorter than a session by design (docs/chair.md §8); the
    # session it belongs to is held to the session range by the request models
    too_short = plan.minutes < c.session.min_minutes - EPS and not plan.segment
    if plan.minutes > c.session.max_minutes + EPS or too_short:
        add(None, "session-length", f"{plan.minutes:g} min is outside the chair's session range")
    if abs(plan.duration_s - dur) > DURATION_TOLERANCE_S:
        add(None, "plan-duration", f"plan lasts {plan.duration_s:.2f} s, not {dur:.2f} s")
    budgets = program.step_budgets(plan.minutes)
    if [s.index for s in plan.steps] != list(range(len(program.steps))):
        add(None, "step-order", "plan steps are not the program's steps in order")
    else:
        t = 0.0
        for s, b in zip(plan.steps, budgets, strict=True):
            if abs(s.start_s - t) > 1e-6:
                add(s.index, "step-order", f"starts at {s.start_s:.3f} s, not {t:.3f} s")
            if abs((s.end_s - s.start_s) - b) > DURATION_TOLERANCE_S:
                add(
                    s.index,
                    "step-proportion",
                    f"lasts {s.end_s - s.start_s:.2f} s, its share is {b:.2f} s",
                )
            t = s.end_s
        if abs(t - plan.duration_s) > 1e-6:
            add(None, "step-order", f"steps end at {t:.3f} s, the plan at {plan.duration_s:.3f} s")

    def step_at(t: float) -> int | None:
        for s in plan.steps:
            if s.start_s - EPS <= t < s.end_s:
                return s.index
        return plan.steps[-1].index if plan.steps and t <= plan.duration_s + EPS else None

    # replay the actions into per-axis profiles
    start = {
        "carriage": plan.start_y_mm,
        "width": plan.start_width_mm,
        "depth": plan.start_depth_mm,
        "kneading": 0.0,
        "tapping": 0.0,
    }
    value = dict(start)
    busy = dict.fromkeys(AXES, 0.0)
    segs: dict[str, list[_Seg]] = {a: [] for a in AXES}
    heat = 0.0
    heat_ok = {0.0, plan.heat_target_c}
    expected_heat = c.heater.target_c(plan.heat_level)
    if plan.heat_target_c != expected_heat:
        add(
            None,
            "heat-level",
            f"heater target {plan.heat_target_c:g} °C is not the {plan.heat_level} level",
        )
    last_t = -math.inf
    for a in plan.actions:
        if a.t_s < last_t - EPS:
            add(a.step, "step-order", f"t={a.t_s:.2f} s: actions are not in time order")
        last_t = a.t_s
        if a.t_s > plan.duration_s + EPS or a.t_s < -EPS:
            add(a.step, "plan-end", f"t={a.t_s:.2f} s: action outside the session")
        if a.kind == "heat":
            if a.value not in heat_ok or a.value < 0:
                add(a.step, "heat-level", f"t={a.t_s:.2f} s: heater target {a.value:g} °C")
            if a.value != (plan.heat_target_c if a.t_s < plan.duration_s - EPS else 0.0):
                add(
                    a.step,
                    "heat-held",
                    f"t={a.t_s:.2f} s: heater target {a.value:g} °C; the session's heat holds "
                    f"{plan.heat_target_c:g} °C from the program's start to its end",
                )
            heat = a.value
            continue
        ax = a.axis
        if ax not in AXES or (a.kind == "move") != (ax in POSITION_AXES):
            add(a.step, "motion-limit", f"t={a.t_s:.2f} s: {a.kind} on {ax}")
            continue
        lim = lims[ax]
        if a.t_s < busy[ax] - 1e-6:
            add(
                a.step,
                "axis-overlap",
                f"t={a.t_s:.3f} s: {ax} {a.kind} starts before its previous one ends "
                f"({busy[ax]:.3f} s)",
            )
        if a.kind == "move":
            if (
                a.v_max > lim.v_max * (1 + EPS)
                or a.a_max > lim.a_max * (1 + EPS)
                or a.j_max > lim.j_max * (1 + EPS)
                or min(a.v_max, a.a_max, a.j_max) <= 0
            ):
                add(
                    a.step,
                    "motion-limit" if ax != "carriage" else "speed-limit",
                    f"t={a.t_s:.2f} s: {ax} move limits v={a.v_max:g} a={a.a_max:g} "
                    f"j={a.j_max:g} exceed the axis's {lim.v_max:g}/{lim.a_max:g}/{lim.j_max:g}",
                )
            if abs(a.from_value - value[ax]) > 1e-6:
                add(
                    a.step,
                    "plan-replay",
                    f"t={a.t_s:.2f} s: {ax} move from {a.from_value:g}, "
                    f"but the axis is at {value[ax]:g}",
                )
            prof = core_rt.plan_move(value[ax], a.value, a.v_max, a.a_max, a.j_max)
            segs[ax].append(_Seg(a.t_s, a.t_s + prof.duration, prof, False, a.value))
            busy[ax] = a.t_s + prof.duration + a.hold_s
        else:
            top = c.kneading.max_rpm if ax == "kneading" else c.tapping.max_hz
            if abs(a.value) > top + EPS or (ax == "tapping" and a.value < 0):
                add(a.step, "rate-limit", f"t={a.t_s:.2f} s: {ax} {a.value:g} beyond {top:g}")
            # the core ramps a rate within the axis's own limits (its plan_velocity)
            prof = core_rt.plan_velocity(0.0, value[ax], 0.0, a.value, lim.a_max, lim.j_max)
            segs[ax].append(_Seg(a.t_s, a.t_s + prof.duration, prof, True, a.value))
            busy[ax] = a.t_s + prof.duration
        value[ax] = a.value
    for ax in AXES:
        if busy[ax] > plan.duration_s + 1e-6:
            add(None, "plan-end", f"{ax} still moving at the end ({busy[ax]:.2f} s)")
    for ax in RATE_AXES:
        if value[ax] != 0.0:
            add(None, "plan-end", f"{ax} still at {value[ax]:g} at the end")
    if heat != 0.0:
        add(None, "plan-end", "heater still on at the end")
    heats = [a for a in plan.actions if a.kind == "heat"]
    if not heats or heats[0].t_s > EPS:
        add(None, "heat-held", "the session's heat is not set at the program's start")

    # the instant-by-instant checks, per interval between boundaries
    cuts = {0.0, plan.duration_s}
    for ax in AXES:
        for sg in segs[ax]:
            cuts.add(sg.t0)
            cuts.add(sg.t1)
    for s in plan.steps:
        cuts.add(s.start_s)
    times = sorted(cuts)
    idx = dict.fromkeys(AXES, 0)
    zones = plan.zones
    body_lo, body_hi = zones[ZONES[0]][0], zones[ZONES[-1]][1]
    caps = c.body.zone_caps
    cap_mm = {z: c.depth.level_mm(caps[z].depth_level) for z in ZONES}
    level1 = c.depth.level_mm(1)
    track = (c.carriage.track_min_mm, c.carriage.track_max_mm)
    need_knead, need_plain = c.min_width_mm(True), c.min_width_mm(False)

    def at(ax: str, u: float, v: float) -> tuple[float, float, bool]:
        """(value at u, value at v, moving) of an axis over [u, v]."""
        lst = segs[ax]
        k = idx[ax]
        while k < len(lst) and lst[k].t1 <= u + 1e-12:
            k += 1
        idx[ax] = k
        if k < len(lst) and lst[k].t0 <= u + 1e-12:
            sg = lst[k]
            j = 1 if sg.rate else 0
            return sg.prof.state(u - sg.t0)[j], sg.prof.state(v - sg.t0)[j], True
        # at rest: the goal of the last finished profile (or the start value)
        val = lst[k - 1].end if k > 0 else start[ax]
        return val, val, False

    rest_max = c.session.max_rest_pressing_s
    rest_since: float | None = None  # the roller standing still deeper than level 1 since
    for u, v in itertools.pairwise(times):
        if v - u <= 1e-12:
            continue
        mid = 0.5 * (u + v)
        si = step_at(mid)
        y0, y1, mc = at("carriage", u, v)
        w0, w1, mw = at("width", u, v)
        d0, d1, md = at("depth", u, v)
        if (
            not mc
            and not md
            and min(d0, d1) > level1 + 1e-9
            and si is not None
            and not TECHNIQUE_SPECS[plan.steps[si].technique].holds
        ):
            rest_since = u if rest_since is None else rest_since
            if v - rest_since > rest_max + 1e-6:
                add(
                    si,
                    "rest-pressing",
                    f"t={rest_since:.2f}-{v:.2f} s: the roller stands still at "
                    f"{min(d0, d1):.1f} mm (deeper than level 1) for more than {rest_max:g} s",
                )
        else:
            rest_since = None
        k0, k1, _ = at("kneading", u, v)
        t0, t1, _ = at("tapping", u, v)
        ylo, yhi = min(y0, y1), max(y0, y1)
        dmax, wmin = max(d0, d1), min(w0, w1)
        kmax, tmax = max(abs(k0), abs(k1)), max(t0, t1)
        when = f"t={u:.2f}-{v:.2f} s"
        pressing = dmax > c.depth.retracted_mm + 1e-9 or kmax > 1e-9 or tmax > 1e-9
        if ylo < track[0] - 1e-6 or yhi > track[1] + 1e-6:
            add(si, "track-limit", f"{when}: carriage at {ylo:.1f}-{yhi:.1f} mm, off the track")
        if pressing and yhi > body_hi + 1e-6:
            add(
                si,
                "head-limit",
                f"{when}: carriage at {yhi:.1f} mm, above the neck's top {body_hi:.1f} mm",
            )
        if pressing and ylo < body_lo - 1e-6:
            add(
                si,
                "track-limit",
                f"{when}: carriage at {ylo:.1f} mm, below the glutes' bottom {body_lo:.1f} mm",
            )
        zs = zones_touched(zones, ylo, yhi)
        if zs:
            zd = min(zs, key=lambda z: cap_mm[z])
            if dmax > cap_mm[zd] + 1e-9:
                add(
                    si,
                    "zone-cap-depth",
                    f"{when}: depth {dmax:.1f} mm in the {zd} (cap {cap_mm[zd]:g} mm)",
                )
            zk = min(zs, key=lambda z: caps[z].knead_rpm)
            if kmax > caps[zk].knead_rpm + 1e-9:
                add(
                    si,
                    "zone-cap-kneading",
                    f"{when}: kneading {kmax:g} rpm in the {zk} (cap {caps[zk].knead_rpm:g})",
                )
            zt = min(zs, key=lambda z: caps[z].tap_hz)
            if tmax > caps[zt].tap_hz + 1e-9:
                add(
                    si,
                    "zone-cap-tapping",
                    f"{when}: tapping {tmax:g} Hz in the {zt} (cap {caps[zt].tap_hz:g})",
                )
        need = need_knead if kmax > 1e-9 else need_plain
        if wmin < need - 1e-9:
            add(si, "spine-clearance", f"{when}: width {wmin:.1f} mm < {need:g} mm")
        if mw and tmax > 1e-9:
            add(si, "tap-width", f"{when}: tapping at {tmax:g} Hz while the width moves")
        if mw and kmax > 1e-9:
            add(si, "rate-width", f"{when}: kneading at {kmax:g} rpm while the width moves")
        if mw and mc:
            add(si, "width-rest", f"{when}: width moves while the carriage moves")
        if md and mc:
            add(si, "depth-rest", f"{when}: depth moves while the carriage moves")
        if (
            mc
            and y1 < y0 - 1e-9
            and si is not None
            and TECHNIQUE_SPECS[plan.steps[si].technique].light_returns
            and dmax > level1 + 1e-9
        ):
            add(
                si,
                "down-stroke-pressure",
                f"{when}: {plan.steps[si].technique} moving down at {dmax:.1f} mm "
                f"(level 1 is {level1:g} mm)",
            )
    return issues


# ---- whole programs --------------------------------------------------------------------------


def validate_program(
    program: Program,
    config: ChairConfig,
    file: str = "<program>",
    *,
    plan_heights: tuple[float, ...] | None = None,
    plan_intensities: tuple[int, ...] = (1, 3, 5),
    plan_minutes: tuple[float, ...] | None = None,
    heat_level: str = "high",
) -> list[Issue]:
    """Every issue of a loaded program (empty list: valid). Static checks first; if they pass,
    plans are built and checked for `plan_heights` (default: the chair's extremes) ×
    `plan_intensities` × `plan_minutes` (default: shortest, default and longest session)."""
    issues = _static_issues(program, config, file)
    if issues:
        return issues
    b, sess = config.body, config.session
    heights = plan_heights or (b.height_min_cm, b.height_max_cm)
    minutes = plan_minutes or tuple(
        dict.fromkeys((sess.min_minutes, program.default_minutes, sess.max_minutes))
    )
    for h in heights:
        sh = shoulder_for(config, h)
        for m in minutes:
            for i in plan_intensities:
                label = f"plan for {h:g} cm, intensity {i}, {m:g} min"
                try:
                    plan = build_plan(program, config, sh, m, i, heat_level)
                except PlanError as e:
                    issues.append(
                        Issue(file, f"steps[{e.step}].{e.field}", e.rule, f"{label}: {e.message}")
                    )
                    return issues
                found = check_plan(plan, program, config, file, label)
                if found:
                    return issues + found
    return issues


def validate_file(path_or_name: str | Path, config: ChairConfig) -> list[Issue]:
    """Load (a built-in name or a path) and validate; loading problems are issues too."""
    try:
        file, text = program_source(path_or_name)
        program = parse_program(text, file)
    except ProgramError as e:
        return e.issues
    return validate_program(program, config, file)
