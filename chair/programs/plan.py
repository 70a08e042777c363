"""The session plan: a program's steps turned into the exact timeline the real-time core executes.

`build_plan(program, config, shoulder_mm, minutes, intensity, heat_level)` is pure and
deterministic. It lays the steps end to end, each in its time budget (the program's proportions
scaled to `minutes`), and fills each budget with whole passes (or presses) whose durations come
from the core's own planner (`core_rt.plan_move` for position moves, `core_rt.plan_velocity` for
the rate ramps). What is left of a budget never becomes a halt under pressure (docs/chair.md §3,
"strokes never stand still under pressure"): a stroke step plays as many passes as fit and then
slows them all just enough to fill the budget; a press step adds it to its holds (trigger point,
friction) or to the light pause between points (shiatsu). So every step lasts exactly its budget
and the plan exactly ``minutes·60`` s.

The timeline is a list of `Action`s, in time order:

- ``move``: a rest-to-rest move of a position axis (carriage, width, depth) starting at ``t_s``
  under ``v_max/a_max/j_max``, then ``hold_s`` at rest. Moves on one axis never overlap.
- ``rate``: kneading (signed rpm, + = cw) or tapping (Hz) ramps to ``value`` from ``t_s``, within
  the rate axis's limits (the core's ramp; ``duration_s`` is its length).
- ``heat``: heater target °C (0 = off) from ``t_s``: the session's level from the program's start
  to its end, in every program (docs/chair.md §3: heat is the user's choice for the whole session).

Safety rules the plan follows by construction (and `chair.programs.validate.check_plan` verifies):
width and depth only move with the carriage at rest and both rates at 0; rates start after the
width and depth of a step are reached; tapping never runs during a width move; the carriage
travels between steps at light contact (level 1 or less, and below every cap on the way); a depth
is never above the cap of any zone the carriage is in while it holds that depth; gliding strokes
(effleurage, rolling) press only upward; the carriage stays inside the body's zones (5 mm in from
the outer edges); the plan ends with every axis at rest and both rates at 0.

The timeline (every action's time slot, kind and axis) is the same for every intensity, per-zone
strength (`zone_intensity`, docs/chair.md §8) and heat level; only values differ: depth moves get
a time slot long enough for any intensity and any per-zone offset (even when they change between
two actions), and the two heat actions (program start, program end) are there at every level
(target 0 when the session's heat is off). A session can therefore swap in the plan of a new
intensity, per-zone strength or heat level for the actions it has not sent yet. A depth move
pressing in starts late in its slot (`Action.lead_s`: it waits at the lighter depth), so the
heads never wait pressed in for the time another variant would need.

Per-zone strength: a step's working depth gets the offset of the zones where it presses, clamped
to the lowest cap of those zones, to the technique's deepest level and to level 1: a pass that
crosses zones takes the softest (minimum) offset of the zones it touches (safe and simple), a
press at a point its point's zone's offset. Light contact (level 1: returns, travel) never
changes with it.

Rates ramp while the carriage starts its pass (a kneading reversal between two passes, the
kneading or tapping start of a stroke), never with the roller standing still pressing: outside the
press-and-hold techniques the roller rests deeper than level 1 for at most
`config.session.max_rest_pressing_s` at a time (the depth moving in or out does not count as a
rest; `chair.programs.validate.check_plan` and the independent checker both judge it).

A short guard gap (`GUARD_GAP_S`) follows every move and ramp, so that a next action that must wait
for it (a width move after tapping stopped, a depth move after the carriage stopped) never meets
it on the same tick of the 1 kHz core.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import core_rt
from chair.programs.model import TECHNIQUE_SPECS, TRAVEL_SPEED_FRACTION, Program, StepSettings
from core_rt.config import RATE_AXES, ZONES, ChairConfig, MotionLimits

if TYPE_CHECKING:
    from chair.surface import PressSurface

HEATER = "heater"

ZONE_MARGIN_MM = 5.0
"""The carriage keeps this far inside a zone's band when working in it (and inside the body)."""
MIN_SPAN_MM = 10.0
"""Shortest span a step may work over (a zone band must be at least this + 2 margins)."""
GUARD_GAP_S = 0.05
"""Rest after every move and ramp before the next action (tick quantisation headroom)."""
MIN_STROKE_SPEED_FRACTION = 0.05
"""Slowest a stroke is played to fill its step (× the carriage's v_max): still a stroke."""
FILL_TOLERANCE_S = 0.002
"""How close the slowed passes must end to the step's end (the rest is a light pause)."""
DURATION_TOLERANCE_S = 0.5
HEAT_OFF_C = 0.0


Depths = tuple[float, ...]
"""A depth (mm) at each variant a session may switch to: every intensity
(`config.session.intensities`) × every per-zone offset (`config.session.zone_offsets`)."""
_Snap = tuple[
    int,
    float,
    dict[str, float],
    dict[str, float],
    int,
    Depths,
    dict[str, float],
    int,
    tuple[float, float],
    float,
]


@dataclass(frozen=True, slots=True)
class DepthGoal:
    """A depth the plan moves to: at every variant (sizes the move's time slot) and this
    session's own (intensity and the per-zone offset where it presses)."""

    variants: Depths
    mm: float


@dataclass(frozen=True, slots=True)
class Action:
    """One command of the timeline (see the module docstring)."""

    t_s: float
    kind: str
    """"move", "rate" or "heat"."""
    axis: str
    """carriage, width, depth (move); kneading, tapping (rate); heater (heat)."""
    value: float
    """Goal (mm), target rate (rpm signed / Hz) or heater target (°C, 0 = off)."""
    v_max: float
    a_max: float
    j_max: float
    hold_s: float
    """Rest on this axis after the move before its next move may start."""
    step: int
    """Index of the program step this action belongs to."""
    duration_s: float = 0.0
    """The move's (plan_move) or ramp's (plan_velocity) duration; 0 for heat."""
    from_value: float = 0.0
    """The axis's value when the action starts."""
    lead_s: float = 0.0
    """A depth move pressing in waits this long at the start of its time slot (at the lighter
    depth) so that it ends as late as any variant's would: ``t_s - lead_s`` is the slot's start,
    the same at every intensity and per-zone strength (see the module docstring)."""

    @property
    def slot_s(self) -> float:
        """When the action's time slot starts (the timeline every variant shares)."""
        return self.t_s - self.lead_s


@dataclass(frozen=True, slots=True)
class StepPlan:
    index: int
    technique: str
    zones: tuple[str, ...]
    start_s: float
    end_s: float


@dataclass
class SessionPlan:
    """A whole programmed session, ready to be executed by the core."""

    program: str
    minutes: float
    intensity: int
    heat_level: str
    shoulder_mm: float
    start_y_mm: float
    start_width_mm: float
    start_depth_mm: float
    actions: list[Action]
    steps: list[StepPlan]
    zone_seconds: dict[str, float]
    """Planned seconds the carriage spends in each zone (every zone listed)."""
    zone_order: list[str]
    """Zones entered, in time order, consecutive repeats collapsed."""
    duration_s: float
    zones: dict[str, tuple[float, float]]
    """Zone bands [lo, hi] in track mm for this shoulder line, bottom to top."""
    heat_target_c: float = 0.0
    """The heater target of the session's heat level (used by steps with heat)."""
    settings: list[StepSettings] = field(default_factory=list)
    zone_intensity: dict[str, int] = field(default_factory=dict)
    """The per-zone strength offsets the plan's depths were built with (docs/chair.md §8)."""
    segment: bool = False
    """A manual-mode segment (`build_segment`): shorter than a session, ends with its passes."""
    surface: PressSurface | None = None
    """The scanned surface the depths press relative to (docs/chair.md §10); None: depths from
    the heads' home."""

    def moves(self, axis: str) -> list[Action]:
        """The actions of one axis, in time order."""
        return [a for a in self.actions if a.axis == axis]

    def step_at(self, t_s: float) -> int | None:
        """Index of the step running at `t_s` (None outside the plan)."""
        for s in self.steps:
            if s.start_s <= t_s < s.end_s:
                return s.index
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        return {
            "program": self.program,
            "minutes": self.minutes,
            "intensity": self.intensity,
            "heat_level": self.heat_level,
            "shoulder_mm": self.shoulder_mm,
            "duration_s": self.duration_s,
            "zones": {z: list(b) for z, b in self.zones.items()},
            "zone_order": list(self.zone_order),
            "zone_seconds": dict(self.zone_seconds),
            "steps": [
                {
                    "index": s.index,
                    "technique": s.technique,
                    "zones": list(s.zones),
                    "start_s": s.start_s,
                    "end_s": s.end_s,
                }
                for s in self.steps
            ],
            "actions": [
                {
                    "t_s": a.t_s,
                    "kind": a.kind,
                    "axis": a.axis,
                    "value": a.value,
                    "v_max": a.v_max,
                    "a_max": a.a_max,
                    "j_max": a.j_max,
                    "hold_s": a.hold_s,
                    "step": a.step,
                    "duration_s": a.duration_s,
                }
                for a in self.actions
            ],
        }


class PlanError(ValueError):
    """A step cannot be planned (e.g. its time budget cannot hold one pass)."""

    def __init__(self, step: int, field: str, rule: str, message: str) -> None:
        super().__init__(f"steps[{step}].{field}: {rule}: {message}")
        self.step = step
        self.field = field
        self.rule = rule
        self.message = message


# ---- geometry -----------------------------------------------------------------------------------


def zone_of(zones: dict[str, tuple[float, float]], y: float) -> str | None:
    """The zone of a carriage position, as the core decides it (bands [lo, hi), top one closed)."""
    lo_all = zones[ZONES[0]][0]
    hi_all = zones[ZONES[-1]][1]
    if y < lo_all or y > hi_all:
        return None
    for z in reversed(ZONES):
        if y >= zones[z][0]:
            return z
    return None


def zones_touched(zones: dict[str, tuple[float, float]], y0: float, y1: float) -> list[str]:
    """Zones whose band meets the closed interval between y0 and y1 (bottom to top)."""
    lo, hi = min(y0, y1), max(y0, y1)
    return [z for z in ZONES if zones[z][0] <= hi and lo <= zones[z][1]]


def step_span(zones: dict[str, tuple[float, float]], s: StepSettings) -> tuple[float, float]:
    """[a, b]: where the carriage works for a step (its zones, ZONE_MARGIN_MM inside), or the
    step's explicit span when it has one (manual mode's area, docs/chair.md §8)."""
    if s.span_mm is not None:
        return s.span_mm
    return zones[s.ends[0]][0] + ZONE_MARGIN_MM, zones[s.ends[1]][1] - ZONE_MARGIN_MM


def point_positions(a: float, b: float, spacing_mm: float, n: int | None = None) -> list[float]:
    """Press points from a to b: `n` evenly spread (one in the middle if n == 1), or by default
    as many as keep them at most `spacing_mm` apart (one in the middle of a shorter span)."""
    length = b - a
    if n is None:
        n = 1 if length < spacing_mm else math.ceil(length / spacing_mm - 1e-9) + 1
    if n <= 1:
        return [0.5 * (a + b)]
    return [a + length * i / (n - 1) for i in range(n)]


# ---- durations (always from the core's planner) ------------------------------------------------


def move_duration(start: float, goal: float, v_max: float, lim: MotionLimits) -> float:
    if start == goal:
        return 0.0
    return float(core_rt.plan_move(start, goal, v_max, lim.a_max, lim.j_max).duration)


def ramp_duration(r0: float, r1: float, lim: MotionLimits) -> float:
    if r0 == r1:
        return 0.0
    return float(core_rt.plan_velocity(0.0, r0, 0.0, r1, lim.a_max, lim.j_max).duration)


# ---- the builder ---------------------------------------------------------------------------------


class _Builder:
    """Appends actions one after the other with a time cursor; every wait is explicit."""

    def __init__(
        self,
        config: ChairConfig,
        zones: dict[str, tuple[float, float]],
        intensity: int,
        y: float,
        width: float,
        depth: float,
        zone_intensity: Mapping[str, int] | None = None,
        surface: PressSurface | None = None,
    ) -> None:
        self.cfg = config
        self.zones = zones
        self.surface = surface
        """Pressing relative to the scanned surface (docs/chair.md §10): depths are presses,
        and the carriage strokes within what the depth's following allows."""
        s = config.session
        self.intensity = intensity
        self.zone_intensity = dict(zone_intensity or {})
        self.variants = [(i, o) for i in s.intensities for o in s.zone_offsets]
        self.t = 0.0
        self.pos = {"carriage": y, "width": width}
        # depth is tracked at every variant (intensity × per-zone offset) at once: the timeline
        # is sized for all of them; `depth_now` is this session's
        self.depth: Depths = (depth,) * len(self.variants)
        self.depth_now = depth
        self.rate_now = {"kneading": 0.0, "tapping": 0.0}
        self.rate_busy = {"kneading": 0.0, "tapping": 0.0}
        """When each rate axis's last ramp (and its guard gap) ends."""
        self.paced_moves = 0
        """Carriage moves made at the step's pass speed (the ones slowed to fill a step)."""
        self.last_pass = (0.0, 0.0)
        """Start and end of the last of those moves."""
        self.heat_now = HEAT_OFF_C
        self.actions: list[Action] = []
        self.step = 0
        self.pads: list[tuple[int, int | None]] = []
        self.lim: dict[str, MotionLimits] = {
            "carriage": config.carriage.limits,
            "width": config.width.limits,
            "depth": config.depth.limits,
            "kneading": config.kneading.limits,
            "tapping": config.tapping.limits,
        }

    # primitives
    def move_depth(
        self,
        goal: DepthGoal,
        hold: float = 0.0,
        v_max: float | None = None,
        *,
        press_early: bool = False,
    ) -> int:
        """Append a depth move (goal given at every variant). Its time slot fits the longest
        move between any variant's start and any variant's goal, so the timeline is the same at
        every intensity and per-zone strength, and stays valid when either changes
        mid-session. A move pressing in starts late in its slot (it waits at the lighter depth)
        and ends as late as a move from any variant's start would: the heads never wait
        pressed in for the slot's spare time, and a move from another variant's depth (after a
        change mid-session) still ends inside the slot.

        `press_early` (shiatsu's pulses): a move pressing in starts at its slot's start instead,
        so the slot's spare time is spent pressed (a longer press) rather than at the lighter
        depth. A move releasing must start at its slot's start whatever the variant (it may
        begin from any variant's depth), so its spare time is always spent light: pressing
        early is what keeps a pulse's release short (docs/chair.md §8)."""
        cur = self.depth
        g = goal.variants
        if all(abs(a - c) <= 1e-9 for a, c in zip(g, cur, strict=True)):
            if hold > 0:
                self.t += hold
            return -1
        lim = self.lim["depth"]
        v = lim.v_max if v_max is None else min(v_max, lim.v_max)
        reach = max(max(cur) - min(g), max(g) - min(cur))
        slot = move_duration(0.0, reach, v, lim)
        now, to = self.depth_now, goal.mm
        d = move_duration(now, to, v, lim)
        lead = 0.0
        if to > now + 1e-9 and not press_early:
            worst = max(abs(to - min(cur)), abs(max(cur) - to))
            lead = max(0.0, slot - move_duration(0.0, worst, v, lim))
        self.actions.append(
            Action(self.t + lead, "move", "depth", to, v, lim.a_max, lim.j_max, hold,
                   self.step, d, now, lead)
        )  # fmt: skip
        self.t += slot + hold + GUARD_GAP_S
        self.depth = g
        self.depth_now = to
        return len(self.actions) - 1

    def levels(self, level: int, zones: Sequence[str] = (), max_level: int = 5) -> DepthGoal:
        """A depth level's mm at every variant, and this session's. With `zones` (where the
        heads press with it), each variant's per-zone offset is added to the level, clamped to
        the lowest cap of those zones, to `max_level` and to level 1 (docs/chair.md §8); the
        session's offset is the softest of those zones' (a pass crossing zones takes the
        minimum). Without zones (light contact) no offset applies."""
        c = self.cfg
        s = c.session
        hi = min([c.body.zone_caps[z].depth_level for z in zones] + [max_level])
        out = []
        for i, o in self.variants:
            lv = max(1, min(hi, level + o)) if zones and level >= 1 else level
            out.append(c.depth.level_mm(lv) * s.depth_factor(i))
        if self.surface is not None and zones:
            # a press never deeper than the depth's range reaches over the deepest surface there
            reach = self.surface.reach_mm(
                c, min(self.zones[z][0] for z in zones), max(self.zones[z][1] for z in zones)
            )
            out = [min(mm, reach) for mm in out]
        off = min((self.zone_intensity.get(z, 0) for z in zones), default=0) if zones else 0
        return DepthGoal(tuple(out), out[self.variants.index((self.intensity, off))])

    def light_goal(self, top: float | None = None) -> DepthGoal:
        """Level 1 (or the current depth, or `top`, whichever is lighter) at every variant."""
        light = self.levels(1)
        cap = math.inf if top is None else top
        return DepthGoal(
            tuple(min(d, lt, cap) for d, lt in zip(self.depth, light.variants, strict=True)),
            min(self.depth_now, light.mm, cap),
        )

    def move(self, axis: str, goal: float, v_max: float | None = None, hold: float = 0.0) -> int:
        """Append a carriage or width move; returns its index (-1 if the axis is already there)."""
        start = self.pos[axis]
        if abs(goal - start) <= 1e-9:
            if hold > 0:
                self.t += hold
            return -1
        lim = self.lim[axis]
        v = lim.v_max if v_max is None else min(v_max, lim.v_max)
        if axis == "carriage":
            v, lim = self.carriage_limits(start, goal, v)
        d = move_duration(start, goal, v, lim)
        self.actions.append(
            Action(self.t, "move", axis, goal, v, lim.a_max, lim.j_max, hold, self.step, d, start)
        )
        self.t += d + hold + GUARD_GAP_S
        self.pos[axis] = goal
        return len(self.actions) - 1

    def carriage_limits(self, lo: float, hi: float, v: float) -> tuple[float, MotionLimits]:
        """The speed and limits of a carriage move over [lo, hi] at up to `v`: the carriage's
        own, lowered where the heads follow a steep surface (`PressSurface.follow_limits`)."""
        lim = self.lim["carriage"]
        if self.surface is None:
            return v, lim
        v, a, j = self.surface.follow_limits(self.cfg, lo, hi, v)
        if a >= lim.a_max and j >= lim.j_max:
            return v, lim
        return v, lim.model_copy(update={"a_max": a, "j_max": j})

    def rate(self, axis: str, value: float, *, with_next: bool = False) -> None:
        """Ramp a rate to `value`. `with_next`: the ramp runs while the next action (a carriage
        pass) starts, instead of before it; a later ramp of the same axis still waits for it."""
        r0 = self.rate_now[axis]
        if value == r0:
            return
        self.t = max(self.t, self.rate_busy[axis])
        lim = self.lim[axis]
        d = ramp_duration(r0, value, lim)
        a = Action(self.t, "rate", axis, value, lim.v_max, lim.a_max, lim.j_max, 0.0, self.step)
        self.actions.append(_replace(a, duration_s=d, from_value=r0))
        self.rate_busy[axis] = self.t + d + GUARD_GAP_S
        if not with_next:
            self.t = self.rate_busy[axis]
        self.rate_now[axis] = value

    def rates_off(self) -> None:
        for axis in RATE_AXES:
            self.rate(axis, 0.0)

    def rates_off_cost(self) -> float:
        busy = max(self.rate_busy.values())
        return max(busy - self.t, 0.0) + sum(
            ramp_duration(r, 0.0, self.lim[a]) + GUARD_GAP_S
            for a, r in self.rate_now.items()
            if r != 0.0
        )

    def heat(self, target_c: float) -> None:
        a = Action(self.t, "heat", HEATER, target_c, 0.0, 0.0, 0.0, 0.0, self.step)
        self.actions.append(_replace(a, from_value=self.heat_now))
        self.heat_now = target_c

    def pad_here(self, attach: int | None) -> None:
        """A place where the step's leftover time may be spent as a dwell (added to the hold of
        action `attach` if given)."""
        self.pads.append(
            (len(self.actions), attach if attach is not None and attach >= 0 else None)
        )

    def snapshot(self) -> _Snap:
        return (len(self.actions), self.t, dict(self.pos), dict(self.rate_now), len(self.pads),
                self.depth, dict(self.rate_busy), self.paced_moves, self.last_pass,
                self.depth_now)  # fmt: skip

    def restore(self, snap: _Snap) -> None:
        n, self.t, pos, rate_now, npads, self.depth, busy, self.paced_moves, self.last_pass = snap[
            :9
        ]
        self.depth_now = snap[9]
        self.pos, self.rate_now, self.rate_busy = dict(pos), dict(rate_now), dict(busy)
        del self.actions[n:]
        del self.pads[npads:]

    # depths
    def cap_mm(self, zones: list[str]) -> float:
        caps = self.cfg.body.zone_caps
        return min((self.cfg.depth.level_mm(caps[z].depth_level) for z in zones), default=0.0)

    def travel(self, y: float) -> None:
        """Walk the carriage to `y` at light contact (rates are 0 here)."""
        y0 = self.pos["carriage"]
        if abs(y - y0) <= 1e-9:
            return
        top = min(self.cap_mm(zones_touched(self.zones, y0, y)), self.cfg.depth.level_mm(1))
        if zone_of(self.zones, y0) is None or zone_of(self.zones, y) is None:
            top = min(top, self.cfg.depth.retracted_mm)  # outside the body: not pressing
        self.move_depth(self.light_goal(top))
        self.move("carriage", y, self.cfg.carriage.limits.v_max * TRAVEL_SPEED_FRACTION)

    def setup(self, y: float, width: float, depth: DepthGoal, *, pause_here: bool = False) -> None:
        """Bring the heads to a step's start: rates off, carriage, width, then depth.
        `pause_here`: the step's leftover time may be spent here, before pressing in (a pause
        at light contact, never a rest under pressure)."""
        self.rates_off()
        self.travel(y)
        if abs(width - self.pos["width"]) > 1e-9:  # the width changes at light contact
            self.move_depth(self.light_goal())
        self.move("width", width)
        light = self.levels(1).variants
        if any(d > lt + 1e-9 for d, lt in zip(self.depth, light, strict=True)) and any(
            abs(g - c) > 1e-9 for g, c in zip(depth.variants, self.depth, strict=True)
        ):
            # a step presses in from light contact: its depth slot fits every variant, and the
            # heads wait for it at level 1, never pressed in (docs/chair.md §3)
            self.move_depth(self.light_goal())
        if pause_here:
            self.pad_here(None)
        self.move_depth(depth)

    def paced(self, goal: float, speed_mm_s: float) -> int:
        """A pass of the carriage at the step's pass speed (slowed to fill the step)."""
        self.paced_moves += 1
        t0 = self.t
        i = self.move("carriage", goal, speed_mm_s)
        if i >= 0:
            self.last_pass = (t0, t0 + self.actions[i].duration_s)
        return i

    def rates_fade(self) -> None:
        """Ramp the rates down so that they reach 0 as the last pass ends (as late as they can
        start, never before the pass does), not with the roller standing still after it."""
        t_start, t_end = self.last_pass
        starts = []
        for axis in RATE_AXES:
            r0 = self.rate_now[axis]
            if r0 != 0.0:
                d = ramp_duration(r0, 0.0, self.lim[axis])
                starts.append((max(self.rate_busy[axis], t_start, t_end - d), axis))
        cursor = self.t
        for t, axis in sorted(starts):
            self.t = t
            self.rate(axis, 0.0, with_next=True)
        self.t = max(cursor, *self.rate_busy.values())


def _max_level(s: StepSettings) -> int:
    """The deepest level the step's technique presses (vibration is shallow)."""
    return TECHNIQUE_SPECS[s.technique].max_depth


def _knead_sign(s: StepSettings, k: int) -> float:
    if s.knead_direction == "ccw":
        return -1.0
    if s.knead_direction == "alternate" and k % 2 == 1:
        return -1.0
    return 1.0


def _stroke_units(
    b: _Builder, s: StepSettings, span: tuple[float, float], speed_mm_s: float
) -> Iterator[None]:
    """Setup, then one working pass per iteration, every pass at `speed_mm_s`. Rates ramp as the
    pass starts (a therapist's hands never stop to change their rhythm, seed 004: "smooth,
    continuous motion"), so the roller never stands still under pressure between passes."""
    a, z = span
    # a pass crosses the span: the softest per-zone offset of the zones it touches
    work = b.levels(s.depth_level, zones_touched(b.zones, a, z), _max_level(s))
    light = b.levels(min(1, s.depth_level))
    y = b.pos["carriage"]
    if s.direction == "up":
        start = a
    elif s.direction == "down":
        start = z
    else:
        start = a if abs(y - a) <= abs(y - z) else z
    other = z if start == a else a
    b.setup(start, s.width_mm, work, pause_here=True)

    def rates_on(k: int) -> None:
        if s.knead_rpm:
            b.rate("kneading", _knead_sign(s, k) * s.knead_rpm, with_next=True)
        if s.tap_hz:
            b.rate("tapping", s.tap_hz, with_next=True)

    k = 0
    while True:
        if k == 0:
            rates_on(0)
        elif s.direction == "up_down":
            rates_on(k)  # a new kneading direction on alternate passes, else nothing
        else:
            # one-way: a light return to the start end, no rates (pressure only one way)
            b.rates_fade()
            b.move_depth(light)
            b.paced(start, speed_mm_s)
            b.move_depth(work)
            rates_on(k)
        end = other if (s.direction != "up_down" or k % 2 == 0) else start
        b.paced(end, speed_mm_s)
        yield
        k += 1


def _point_units(
    b: _Builder, s: StepSettings, span: tuple[float, float], npoints: int
) -> Iterator[None]:
    """Setup, then one press (move to the point, press, hold, release) per iteration."""
    pts = point_positions(span[0], span[1], s.spacing_mm, npoints)
    n = len(pts)
    # a press at a point takes its point's zone's offset (both zones' softest on a boundary)
    works = [b.levels(s.depth_level, zones_touched(b.zones, p, p), _max_level(s)) for p in pts]
    light = b.levels(min(1, s.depth_level))
    y = b.pos["carriage"]
    if s.direction == "up":
        order = list(range(n))
    elif s.direction == "down":
        order = list(range(n - 1, -1, -1))
    else:
        up = list(range(n)) + list(range(n - 2, 0, -1))
        order = up if abs(y - pts[0]) <= abs(y - pts[-1]) else up[n - 1 :] + up[: n - 1]
        if n == 1:
            order = [0]
    b.setup(pts[order[0]], s.width_mm, light)
    k = 0
    while True:
        here = order[k % len(order)]
        work = works[here]
        b.move("carriage", pts[here], s.speed_mm_s)
        if s.technique == "friction":
            # rubbing: kneading fast at one spot while the width changes a little (seed 003:
            # "first stroke, then rub"; docs/chair.md §3)
            b.move("width", s.width_mm if k % 2 == 0 else s.friction_width_mm)
            b.move_depth(work)
            b.rate("kneading", _knead_sign(s, k) * s.knead_rpm)
            b.t += s.hold_s
            b.pad_here(None)
            b.rate("kneading", 0.0)
            b.move_depth(light)
        elif s.technique == "shiatsu":
            # "pulsing, rhythmic pressure" (seed 000): a few short presses at each point, each
            # released to light contact, then on to the next point (docs/chair.md §3)
            for p in range(s.pulses):
                b.move_depth(work, hold=s.hold_s, press_early=True)
                b.move_depth(light, hold=s.release_s if p < s.pulses - 1 else 0.0)
            b.pad_here(None)  # spare time: a longer light pause between points
        else:
            # trigger point: "sustained pressure on knots, then release" (docs/chair.md §3) —
            # the hold takes the spare time, then the heads come back slowly
            i = b.move_depth(work, hold=s.hold_s)
            b.pad_here(i)
            b.move_depth(light, v_max=s.release_mm_s or None)
        yield
        k += 1


MAX_UNITS = 100_000


def build_plan(
    program: Program,
    config: ChairConfig,
    shoulder_mm: float,
    minutes: float,
    intensity: int,
    heat_level: str,
    *,
    start_y_mm: float | None = None,
    start_width_mm: float | None = None,
    start_depth_mm: float | None = None,
    zone_intensity: Mapping[str, int] | None = None,
    surface: PressSurface | None = None,
) -> SessionPlan:
    """The session plan of `program` for a body whose scanned shoulder line is `shoulder_mm`.

    `zone_intensity`: per-zone strength, {zone: offset in depth levels} (docs/chair.md §8),
    added where the heads press in that zone, clamped to its cap and to level 1.

    The plan starts where the body scan left the heads: `start_y_mm` (default: the shoulder
    line), `start_width_mm` (default: the width's park position) and `start_depth_mm` (default:
    the scan's depth level), with both rates at 0 and the heater off. Raises ValueError for
    arguments out of range and `PlanError` when a step's budget cannot hold its passes.
    """
    sess = config.session
    if not sess.min_minutes <= minutes <= sess.max_minutes:
        raise ValueError(
            f"minutes must be in {sess.min_minutes:g}..{sess.max_minutes:g}, got {minutes:g}"
        )
    if intensity not in sess.intensities:
        raise ValueError(
            f"intensity must be {sess.min_intensity}..{sess.max_intensity}, got {intensity!r}"
        )
    if heat_level not in config.heater.level_names:
        raise ValueError(f"heat must be one of {', '.join(config.heater.level_names)}")
    offsets = dict(zone_intensity or {})
    for z, o in offsets.items():
        if z not in ZONES or o not in sess.zone_offsets:
            raise ValueError(f"zone_intensity: {z!r}: {o!r} is not a zone's offset")
    zones = config.zones_for_shoulder(shoulder_mm)
    y0 = shoulder_mm if start_y_mm is None else start_y_mm
    w0 = config.width.park_mm if start_width_mm is None else start_width_mm
    d0 = (
        config.depth.level_mm(config.body.scan_depth_level)
        if start_depth_mm is None
        else start_depth_mm
    )
    settings = [s.settings(config) for s in program.steps]
    return _build(
        program, settings, program.step_budgets(minutes), config, shoulder_mm, zones, minutes,
        intensity, heat_level, (y0, w0, d0), offsets, exact=False, surface=surface,
    )  # fmt: skip


def build_segment(
    program: Program,
    step: StepSettings,
    config: ChairConfig,
    shoulder_mm: float,
    seconds: float,
    intensity: int,
    heat_level: str,
    *,
    start_y_mm: float,
    start_width_mm: float,
    start_depth_mm: float,
    zone_intensity: Mapping[str, int] | None = None,
    surface: PressSurface | None = None,
) -> SessionPlan:
    """A segment of manual mode (docs/chair.md §8): the one-step `program` played with the
    concrete `step` (its explicit span, its tempo's rates) from the pose the heads are in, for
    as many whole passes (or presses) as `seconds` holds — no pass slowed, no spare time: the
    segment lasts exactly what its passes take (≤ `seconds`) and the session plans the next one
    from where it ends. Same builder, same rules as `build_plan` (check_plan verifies it; its
    `segment` flag exempts it from the session-length rule only). Raises `PlanError` when not one
    pass fits in `seconds`."""
    if intensity not in config.session.intensities:
        raise ValueError(f"intensity must be in {config.session.intensities}, got {intensity!r}")
    zones = config.zones_for_shoulder(shoulder_mm)
    offsets = dict(zone_intensity or {})
    return _build(
        program, [step], [seconds], config, shoulder_mm, zones, seconds / 60.0, intensity,
        heat_level, (start_y_mm, start_width_mm, start_depth_mm), offsets, exact=True,
        surface=surface,
    )  # fmt: skip


def _build(
    program: Program,
    settings: list[StepSettings],
    budgets: list[float],
    config: ChairConfig,
    shoulder_mm: float,
    zones: dict[str, tuple[float, float]],
    minutes: float,
    intensity: int,
    heat_level: str,
    pose: tuple[float, float, float],
    offsets: dict[str, int],
    *,
    exact: bool,
    surface: PressSurface | None = None,
) -> SessionPlan:
    """The plan of `settings` in their `budgets`; `exact`: a segment (see `build_segment`)."""
    y0, w0, d0 = pose
    heat_c = config.heater.target_c(heat_level)
    duration = minutes * 60.0
    b = _Builder(config, zones, intensity, y0, w0, d0, offsets, surface)
    steps: list[StepPlan] = []
    t0 = 0.0
    b.heat(heat_c)  # the session's heat, from the program's start to its end (0 when off)
    for i, (s, budget) in enumerate(zip(settings, budgets, strict=True)):
        b.step = i
        b.t = t0
        first_action = len(b.actions)
        b.pads = []
        a, z = step_span(zones, s)
        if z - a < MIN_SPAN_MM - 1e-9:
            raise PlanError(
                i,
                program.steps[i].where_field,
                "zone-band",
                f"the {'/'.join(s.ends)} band is only {z - a + 2 * ZONE_MARGIN_MM:.0f} mm "
                f"for a shoulder line at {shoulder_mm:.0f} mm",
            )
        end = t0 + budget
        if s.pattern == "stroke" and exact:
            done = _fill(b, _stroke_units(b, s, (a, z), s.speed_mm_s), end)
        elif s.pattern == "stroke":
            done = _fill_strokes(b, s, (a, z), end)
        else:
            # as many points as one round can visit in the budget (up to the technique's
            # spacing), so that a short step still covers its whole span once
            npoints = len(point_positions(a, z, s.spacing_mm))
            start = b.snapshot()
            while True:
                done = _fill(b, _point_units(b, s, (a, z), npoints), end)
                if done >= npoints or npoints == 1:
                    break
                b.restore(start)
                npoints = max(1, min(done, npoints - 1))
        need = max(1, s.repeat)
        if done < need:
            field_name = "seconds" if program.steps[i].seconds is not None else "share"
            unit = "pass" if s.pattern == "stroke" else "press"
            raise PlanError(
                i,
                field_name,
                "step-too-short",
                f"{budget:.1f} s cannot hold {need} × {unit} of {s.technique} "
                f"({minutes:g} min session, shoulder line {shoulder_mm:.0f} mm)",
            )
        if s.pattern == "stroke":
            b.rates_fade()
        b.rates_off()
        if exact:  # a segment ends with its last pass
            end = duration = b.t
        slack = end - b.t
        _spread(b, first_action, slack)
        b.t = end
        steps.append(StepPlan(i, s.technique, s.zones, t0, end))
        t0 = end
    b.t = duration
    b.heat(HEAT_OFF_C)
    actions = b.actions
    zone_seconds, zone_order = _carriage_zones(actions, zones, y0, duration)
    return SessionPlan(
        program=program.name,
        minutes=duration / 60.0 if exact else minutes,
        intensity=intensity,
        heat_level=heat_level,
        shoulder_mm=shoulder_mm,
        start_y_mm=y0,
        start_width_mm=w0,
        start_depth_mm=d0,
        actions=actions,
        steps=steps,
        zone_seconds=zone_seconds,
        zone_order=zone_order,
        duration_s=duration,
        zones=zones,
        heat_target_c=heat_c,
        settings=settings,
        zone_intensity=offsets,
        segment=exact,
        surface=surface,
    )


def _fill(b: _Builder, units: Iterator[None], end: float) -> int:
    """Run setup and whole units while they (and the rates' ramp-down) end by `end`; the first
    unit that would not fit is undone. Returns the number of units kept."""
    done = 0
    snap = b.snapshot()
    for _ in units:
        if b.t + b.rates_off_cost() > end + 1e-9 or done >= MAX_UNITS:
            b.restore(snap)
            break
        done += 1
        snap = b.snapshot()
    return done


def _fill_strokes(b: _Builder, s: StepSettings, span: tuple[float, float], end: float) -> int:
    """As many whole passes as fit by `end` at the step's speed, then the same passes slowed
    just enough to end at `end` (never below MIN_STROKE_SPEED_FRACTION of v_max): the spare
    time goes into slower passes, never into halts (docs/chair.md §3). Returns the passes."""
    start = b.snapshot()
    done = _fill(b, _stroke_units(b, s, span, s.speed_mm_s), end)
    slack = end - _faded_end(b)
    moves = b.paced_moves - start[7]
    if done == 0 or moves == 0 or slack <= FILL_TOLERANCE_S:
        return done
    # Every paced move of the step spans the same distance, so the step lasts
    # fixed + moves × duration(span, v): find the v whose one-move duration takes the slack.
    top, lim = b.carriage_limits(span[0], span[1], s.speed_mm_s)
    span_mm = span[1] - span[0]
    want = move_duration(0.0, span_mm, top, lim) + slack / moves
    lo = min(top, b.lim["carriage"].v_max * MIN_STROKE_SPEED_FRACTION)
    if move_duration(0.0, span_mm, lo, lim) <= want:
        v = lo  # even the slowest stroke leaves time: the rest is a light pause
    else:
        hi = top
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            if move_duration(0.0, span_mm, mid, lim) > want:
                lo = mid
            else:
                hi = mid
        v = hi
    b.restore(start)
    for slowed, _ in enumerate(_stroke_units(b, s, span, v), start=1):
        if slowed == done:
            break
    if _faded_end(b) > end + 1e-9:  # rounding: keep the passes at their speed
        b.restore(start)
        _fill(b, _stroke_units(b, s, span, s.speed_mm_s), end)
    return done


def _faded_end(b: _Builder) -> float:
    """When the step's passes end once the rates have faded out with the last one."""
    snap = b.snapshot()
    b.rates_fade()
    t = b.t
    b.restore(snap)
    return t


def _spread(b: _Builder, first_action: int, slack: float) -> None:
    """Spend a step's leftover time evenly at its pad places (dwells after passes / longer
    holds), shifting every later action of the step."""
    if slack <= 0 or not b.pads:
        return
    extra = slack / len(b.pads)
    shift = [0.0] * (len(b.actions) - first_action + 1)
    holds: dict[int, float] = {}
    for pos, attach in b.pads:
        shift[pos - first_action] += extra
        if attach is not None:
            holds[attach] = holds.get(attach, 0.0) + extra
    acc = 0.0
    for k in range(first_action, len(b.actions)):
        acc += shift[k - first_action]
        a = b.actions[k]
        hold = a.hold_s + holds.get(k, 0.0)
        if acc or hold != a.hold_s:
            b.actions[k] = _replace(a, t_s=a.t_s + acc, hold_s=hold)


def _replace(a: Action, **kw: float) -> Action:
    d = {f: getattr(a, f) for f in Action.__slots__}
    d.update(kw)
    return Action(**d)


def _carriage_zones(
    actions: list[Action],
    zones: dict[str, tuple[float, float]],
    y0: float,
    duration: float,
) -> tuple[dict[str, float], list[str]]:
    """Seconds per zone and the zone order, from the planned carriage trajectory: rests are
    exact; during each move the zone-boundary crossings are found on the move's own profile
    (plan_move states, bisection on the monotone position)."""
    secs = dict.fromkeys(ZONES, 0.0)
    pieces: list[tuple[float, float, str | None]] = []
    y = y0
    t = 0.0
    edges = sorted({lo for lo, _ in zones.values()} | {hi for _, hi in zones.values()})
    for a in actions:
        if a.axis != "carriage":
            continue
        if a.t_s > t:
            pieces.append((t, a.t_s, zone_of(zones, y)))
        m = core_rt.plan_move(a.from_value, a.value, a.v_max, a.a_max, a.j_max)
        lo, hi = min(a.from_value, a.value), max(a.from_value, a.value)
        cuts = [0.0]
        for e in edges:
            if lo < e < hi:
                cuts.append(_crossing(m, e, a.value > a.from_value))
        cuts.append(m.duration)
        cuts.sort()
        for c0, c1 in itertools.pairwise(cuts):
            if c1 > c0:
                mid = m.state(0.5 * (c0 + c1))[0]
                pieces.append((a.t_s + c0, a.t_s + c1, zone_of(zones, mid)))
        t = a.t_s + m.duration
        y = a.value
    if duration > t:
        pieces.append((t, duration, zone_of(zones, y)))
    order: list[str] = []
    for p0, p1, z in pieces:
        if z is None:
            continue
        secs[z] += p1 - p0
        if not order or order[-1] != z:
            order.append(z)
    return secs, order


def _crossing(m: Any, y: float, rising: bool) -> float:
    lo, hi = 0.0, float(m.duration)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        p = m.state(mid)[0]
        if (p < y) == rising:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ---- a static bound used by validation -------------------------------------------------------


def step_time_bounds(program: Program, config: ChairConfig) -> list[float]:
    """For each step, an upper bound on the time its setup, `repeat` passes (or presses) and
    teardown can take, over every body from the config's smallest to its largest and every
    intensity. `build_plan` never raises step-too-short for a step whose budget is at least this.

    Why it is an upper bound: zone edges are affine in the back length and clamped to the track;
    clamping only shortens distances, so every distance below is taken on the unclamped zones of
    the longest back; plan_move durations grow with distance; depth moves are bounded by a full
    0..max stroke of the depth axis (intensity scales depths down, never up), width moves by a
    full min..max stroke, ramps by full-scale ramps; the carriage's walk to a step's start is
    bounded by the farthest point of the previous step's span (or of the whole track, for the
    first step: the plan may start anywhere).
    """
    c = config
    sh = max(c.shoulder_for_height_mm(c.body.height_max_cm), c.body.shoulder_max_mm)
    back = sh - c.carriage.seat_mm
    e = [c.carriage.seat_mm + f * back for f in c.body.zone_edges]
    zones = {z: (e[i], e[i + 1]) for i, z in enumerate(ZONES)}
    cl, wl, dl = c.carriage.limits, c.width.limits, c.depth.limits
    kl, tl = c.kneading.limits, c.tapping.limits
    g = GUARD_GAP_S
    t_depth = move_duration(c.depth.min_mm, max(c.depth.levels_mm), dl.v_max, dl) + g
    t_width = move_duration(c.width.min_mm, c.width.max_mm, wl.v_max, wl) + g
    # the first walk starts wherever the session left the carriage: anywhere on the track
    prev = (min(e[0], c.carriage.track_min_mm), max(e[-1], c.carriage.track_max_mm))
    out = []
    for step in program.steps:
        s = step.settings(c)
        a, z = zones[s.ends[0]][0], zones[s.ends[1]][1]
        # one ramp per rate axis in use, 0 <-> its (unsigned) top rate; a reversal spans both
        k_up = ramp_duration(0.0, max(s.knead_rpm, 0.0), kl) + g if s.knead_rpm else 0.0
        t_up = ramp_duration(0.0, max(s.tap_hz, 0.0), tl) + g if s.tap_hz else 0.0
        k_flip = ramp_duration(-s.knead_rpm, s.knead_rpm, kl) + g if s.knead_rpm else 0.0
        rates = k_up + t_up
        walk = max(abs(z - prev[0]), abs(prev[1] - a))
        walk_t = move_duration(0.0, walk, cl.v_max * TRAVEL_SPEED_FRACTION, cl) + g
        setup = t_depth + walk_t + t_width + t_depth + rates
        span = move_duration(0.0, z - a, min(s.speed_mm_s, cl.v_max), cl) + g
        if s.pattern == "points":
            t_release = t_depth
            if s.release_mm_s:
                t_release = (
                    move_duration(c.depth.min_mm, max(c.depth.levels_mm), s.release_mm_s, dl) + g
                )
            if s.pulses > 1:  # shiatsu: press and release each pulse, light pauses between
                press = s.pulses * (2 * t_depth + s.hold_s) + (s.pulses - 1) * s.release_s
            else:
                press = t_depth + s.hold_s + t_release
                press += t_width + 2 * k_up if s.knead_rpm else 0.0
            work = press + (s.repeat - 1) * (span + press)
        elif s.direction == "up_down":
            work = span + (s.repeat - 1) * (span + k_flip)
        else:
            work = span + (s.repeat - 1) * (2 * span + 2 * rates + 2 * t_depth)
        out.append(setup + work + rates)
        prev = (a, z)
    return out
