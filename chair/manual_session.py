"""A manual-mode session (docs/chair.md §8): the user steers technique, area, tempo, width and
strength live instead of running a program.

The session is a `Session` (same scan, adjust window, pause, settle, faults, telemetry) whose
program part plays *segments*: the current settings as a one-step plan over the chosen area
(`chair.programs.manual.manual_step`), built by the programs' own planner from the pose the heads
are in (`chair.programs.plan.build_segment`: setup at light contact, caps, spine clearance,
tapping only once the width is reached), for whole passes of up to `config.manual.segment_s`.
When a segment ends the next one is planned from where it ended. When the user changes the
technique, area, zone, tempo or width, or moves the area: on the next tick the telemetry shows a
new segment (`step`, `technique`), the chair brakes, the heads ease off to light contact, and once
every axis and rate is at rest the next segment is planned from there. A change of intensity,
heat or per-zone strength swaps in the same segment's plan with the new values (its timeline does
not depend on them), like in a program.

The summary carries `manual`: ``[[t_s, {technique, area, zone, centre_mm, tempo, width, span_mm:
[lo, hi]}], ...]`` (a row at the program's start and one per change), from which the independent
checker judges that the heads press only inside the chosen area (`chair.checker`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from chair.driver import CoreDriver
from chair.lifecycle import SessionEvent
from chair.programs.manual import (
    ManualSettings,
    area_span_mm,
    clamp_centre_mm,
    manual_program,
    plan_segment,
    zone_at_mm,
    zone_centre_mm,
)
from chair.programs.model import StepSettings
from chair.programs.plan import SessionPlan, _carriage_zones, build_segment
from chair.session import PROGRAM_STATES, RUNNING, S, Session
from core_rt.config import AXES, ZONES, ChairConfig


class ManualSession(Session):
    """Runs one manual-mode session; `request("manual", {...})` and `request("move", mm)` steer
    it live (the controller checks them first, `chair.requests`)."""

    def __init__(
        self, config: ChairConfig, driver: CoreDriver, manual: ManualSettings, **kw: Any
    ) -> None:
        super().__init__(config, driver, manual_program(manual), **kw)
        self.manual = manual
        self.centre_mm: float | None = None
        self.span_mm: tuple[float, float] | None = None
        self.manual_history: list[tuple[float, dict[str, Any]]] = []
        self.planned_zone_seconds = dict.fromkeys(ZONES, 0.0)
        self.planned_zone_order: list[str] = []
        self._moved_mm = 0.0  # moves asked before the body is known
        self._change = False
        self._techniques: list[str] = []
        self._segment: tuple[StepSettings, float, tuple[float, float, float]] | None = None
        self._playing = False
        """`plan` is the segment `_segment` describes, being played (not braked and dropped)."""
        self._strength = (self.intensity, dict(self.zone_intensity))

    # ---- status ------------------------------------------------------------------------------

    def manual_state(self) -> dict[str, Any]:
        centre = None if self.centre_mm is None else round(self.centre_mm, 1)
        return {**self.manual.as_dict(), "centre_mm": centre}

    def _technique_of(self, step: int | None) -> str | None:
        if step is None or not 0 <= step < len(self._techniques):
            return None
        return self._techniques[step]

    # ---- requests ----------------------------------------------------------------------------

    def _manual_request(self, what: str, value: Any) -> None:
        if what == "manual":
            fields = dict(value)
            self.manual = self.manual.changed(**fields)
            if "zone" in fields and self.zones:
                self.centre_mm = zone_centre_mm(self.zones, self.manual.zone)
        else:  # move: the area's centre, kept on the body
            if self.centre_mm is None:
                self._moved_mm += float(value)
            else:
                self.centre_mm = clamp_centre_mm(self.centre_mm + float(value), self.zones)
                self.manual = self.manual.changed(zone=zone_at_mm(self.zones, self.centre_mm))
        if self.state in PROGRAM_STATES and self.centre_mm is not None:
            self._change = True
            self._record()
            self._mark_segment()
        self._on_change()

    def _record(self) -> None:
        """A row of the summary's `manual` history: the settings and the span from now on."""
        assert self.centre_mm is not None
        self.span_mm = area_span_mm(self.manual.area, self.centre_mm, self.zones, self.config)
        row = {**self.manual_state(), "span_mm": [round(x, 3) for x in self.span_mm]}
        self.manual_history.append((self._session_s(), row))

    def _mark_segment(self) -> None:
        """A new segment from this tick on: the telemetry's `step` and `technique` follow it."""
        n = len(self._techniques)
        self._techniques.append(self.manual.technique)
        self._step_marks.append(self.driver.now_ns())
        self._step_of_mark.append(n)
        self.step = n
        self._emit(
            SessionEvent.STEP_STARTED,
            step=n,
            technique=self.manual.technique,
            zones=list(self._step_zones()),
        )
        self._on_change()

    def _step_zones(self) -> list[str]:
        if self.span_mm is None:
            return []
        lo, hi = self.span_mm
        return [z for z in ZONES if self.zones[z][0] <= hi and lo <= self.zones[z][1]]

    # ---- the segments ------------------------------------------------------------------------

    def _segment_plan(
        self, step: StepSettings, budget: float, pose: tuple[float, float, float]
    ) -> SessionPlan:
        assert self.shoulder_mm is not None
        plan = build_segment(
            self.program,
            step,
            self.config,
            self.shoulder_mm,
            budget,
            self.intensity,
            self.heat_level,
            start_y_mm=pose[0],
            start_width_mm=pose[1],
            start_depth_mm=pose[2],
            zone_intensity=self.zone_intensity,
            surface=self.surface,
        )
        # the session's heat holds across segments: a segment's closing heat-off is not sent
        # (the settle turns the heater off)
        end = [a for a in plan.actions if a.kind == "heat" and a.t_s >= plan.duration_s - 1e-9]
        return dataclasses.replace(plan, actions=[a for a in plan.actions if a not in end])

    def _replan(self) -> None:
        """Intensity, heat or per-zone strength changed. A new strength starts a new segment at
        once, like every other setting, so that it is felt within the 0.5 s a remote promises
        (docs/chair.md §8): nothing of the old one is swapped. Otherwise (heat) the segment
        being played takes the new values (same timeline); between two segments — a change
        eases off and the braked segment keeps only its heat (`_drop_plan`) — there is no
        segment to swap, and the heat applies at once."""
        strength = (self.intensity, dict(self.zone_intensity))
        if strength != self._strength:
            self._strength = strength
            if self.state in PROGRAM_STATES and self.centre_mm is not None:
                self._change = True
                self._mark_segment()
                self._send_heat_now()
                return
        if self._playing:
            super()._replan()
        elif self.state in PROGRAM_STATES:
            self._send_heat_now()

    def _rebuilt(self) -> SessionPlan:
        assert self._segment is not None
        step, budget, pose = self._segment
        return self._segment_plan(step, budget, pose)

    def _plan_next(self, left_s: float) -> SessionPlan | None:
        """The next segment from the heads' pose (`chair.programs.manual.plan_segment`)."""
        assert self.centre_mm is not None and self.shoulder_mm is not None
        self.span_mm = area_span_mm(self.manual.area, self.centre_mm, self.zones, self.config)
        snap = self.core.snapshot()["axes"]
        pose = (snap["carriage"][0], snap["width"][0], snap["depth"][0])
        found = plan_segment(
            self.manual, self.centre_mm, self.config, self.shoulder_mm, left_s, self.intensity,
            self.heat_level, pose, self.zone_intensity,
        )  # fmt: skip
        if found is None:
            return None
        _, step, budget = found
        self._segment = (step, budget, pose)
        return self._segment_plan(step, budget, pose)

    async def _run_program(self) -> None:
        core = self.core
        zones = self.zones
        centre = zone_centre_mm(zones, self.manual.zone) + self._moved_mm
        self.centre_mm = clamp_centre_mm(centre, zones)
        if self._moved_mm:
            self.manual = self.manual.changed(zone=zone_at_mm(zones, self.centre_mm))
        core.clear_stats()
        core.program(True)
        self._run_since_ns = self.driver.now_ns() + 2 * self.driver.period_ns
        self._set_state(RUNNING)
        self._record()
        self._mark_segment()
        total_s = self.minutes * 60.0
        fresh = False  # the current segment index has no plan yet
        while True:
            left = total_s - self.program_seconds()
            if left <= 1e-3:
                break
            plan = self._plan_next(left)
            if plan is None:  # not one pass fits the time left: light contact until the end
                await self._rest_until(total_s)
                break
            if fresh:
                self._mark_segment()
            fresh = True
            completed = await self._play(plan)
            self._count_zones(plan, completed)
            if self._change:
                fresh = False  # the change marked its segment already
                self._change = False
                await self._ease_off()
        self._stop_program_clock()
        core.program(False)
        self.step = None

    async def _play(self, plan: SessionPlan) -> float:
        """Play a segment until it ends or a setting changes; returns the plan time played."""
        self.plan = plan
        self._playing = True
        self._program_start_ns = self.driver.now_ns() + 2 * self.driver.period_ns
        self._shift_ns = 0
        self._next_action = 0
        self._sent = []
        heat_refresh_ns = int(self.config.heater.refresh_timeout_s * S / 3)
        next_heat = self.driver.now_ns()
        while not self._change:
            plan = self.plan  # an intensity/heat/zone_intensity change swaps it (same timeline)
            now = self.driver.now_ns()
            self._send_due(plan, now)
            t_plan = self._plan_ns(now)
            if (
                t_plan >= plan.duration_s
                and self._next_action >= len(plan.actions)
                and not self._busy(set(AXES))
            ):
                return plan.duration_s
            if now >= next_heat:
                self._send_heat_now()
                next_heat = now + heat_refresh_ns
            wake = self._wake_at(plan, now, next_heat)
            await self._wait(wake, until=lambda: self._change)
        return max(0.0, self._plan_ns(self.driver.now_ns()))

    def _count_zones(self, plan: SessionPlan, played_s: float) -> None:
        """The planned seconds per zone of what was played of a segment (cut at a change)."""
        if played_s >= plan.duration_s - 1e-9:
            secs, order = plan.zone_seconds, plan.zone_order
        else:
            acts = [a for a in plan.actions if a.t_s < played_s]
            secs, order = _carriage_zones(acts, plan.zones, plan.start_y_mm, played_s)
        for z in ZONES:
            self.planned_zone_seconds[z] += secs[z]
        for z in order:
            if not self.planned_zone_order or self.planned_zone_order[-1] != z:
                self.planned_zone_order.append(z)

    def _drop_plan(self) -> None:
        """Nothing of the braked segment is sent again (a pause now re-issues none of it): the
        plan keeps only its heat, for the heater's refresh."""
        self._playing = False
        if self.plan is not None:
            heat = [a for a in self.plan.actions if a.kind == "heat"]
            self.plan = dataclasses.replace(self.plan, actions=heat)
            self._next_action = len(heat)
        self._sent = []

    async def _ease_off(self) -> None:
        """A setting changed: brake, ease the heads off to light contact at once (never standing
        pressed in while the rates spin down), and wait for every axis and rate to rest."""
        self.core.brake()
        self._drop_plan()
        await self._wait(self.driver.now_ns() + 2 * self.driver.period_ns)
        self._lighten()
        await self._wait_idle(set(AXES))

    def _lighten(self) -> None:
        light = self.config.depth.level_mm(1) * self.config.session.depth_factor(self.intensity)
        depth = self.core.snapshot()["axes"]["depth"][0]
        if depth > light:
            self.core.move("depth", light)

    async def _rest_until(self, total_s: float) -> None:
        """The last seconds, too short for a pass: rest at light contact, heat held."""
        self._drop_plan()
        self.core.brake()
        await self._wait(self.driver.now_ns() + 2 * self.driver.period_ns)
        self._lighten()
        heat_refresh_ns = int(self.config.heater.refresh_timeout_s * S / 3)
        while (left := total_s - self.program_seconds()) > 1e-3:
            self._send_heat_now()
            await self._wait(self.driver.now_ns() + min(heat_refresh_ns, max(1, round(left * S))))
