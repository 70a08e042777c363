"""One massage session on one chair: body scan → shoulder adjust → program → settle.

The session is the story of a massage told to the real-time core: it turns the program's plan
into timed commands (sent ahead of their time, so real-time and virtual-time runs match), reacts
to the core's events (faults, e-stop, the occupant leaving, zone changes) and to the user's
requests (pause, resume, stop, e-stop, intensity, heat and per-zone strength changes, shoulder
nudges).

Life cycle (docs/chair.md §4)::

    idle → scanning → adjusting → running ⇄ paused → settling → idle
    any state → fault | estop   (latched in the core until reset)

Safety does not live here: the core's guard checks every tick whatever the session asks for.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chair.contour import (
    BackContour,
    FitMemo,
    find_shoulder,
    in_contact,
    neck_seen,
    scan_problem,
    skin_points,
)
from chair.driver import CoreDriver
from chair.lifecycle import LATCHED, SessionEvent, SessionState
from chair.programs.model import Program
from chair.programs.plan import Action, PlanError, SessionPlan, build_plan
from chair.surface import PressSurface, surface_from_contour
from core_rt.config import AXES, ZONES, ChairConfig
from core_rt.core import FAULT_CODES, FAULT_MESSAGES, MODES, CoreEvent, SurfaceSample, Telemetry

S = 1_000_000_000
NECK_CHECK_SAMPLES = 3
"""While the contour scan walks, it looks for the neck every this many samples."""
CONTOUR_STATE_STEP_MM = 10.0
"""The state carries the scanned contour this coarsely (every sample is in the summary)."""
LOOKAHEAD_NS = 500_000_000
"""Timed commands are sent this far ahead of their start (the core starts them on the tick)."""

IDLE, SCANNING, ADJUSTING = SessionState.IDLE, SessionState.SCANNING, SessionState.ADJUSTING
RUNNING, PAUSED, SETTLING = SessionState.RUNNING, SessionState.PAUSED, SessionState.SETTLING
PROGRAM_STATES = (RUNNING, PAUSED)
"""States in which the program's clock, steps and zones count."""


def telemetry_sample(
    r: Telemetry, t0_ns: int, state: str, step: int | None = None, technique: str | None = None
) -> dict[str, Any]:
    """One core telemetry record as the docs/interfaces.md §2 telemetry object (`t` from `t0_ns`).
    A latched core reports its own state (fault, estop) whatever the session's."""
    mode = MODES[r.mode]
    return {
        "t": round((r.t_ns - t0_ns) / S, 4),
        "state": mode if mode in LATCHED else state,
        "step": step,
        "technique": technique,
        "zone": ZONES[r.zone] if r.zone >= 0 else None,
        "y_mm": r.y_mm,
        "v_mm_s": r.v_mm_s,
        "a_mm_s2": r.a_mm_s2,
        "width_mm": r.width_mm,
        "left_x_mm": r.left_x_mm,
        "right_x_mm": r.right_x_mm,
        "depth_mm": r.depth_mm,
        "knead_rpm": r.knead_rpm,
        "tap_hz": r.tap_hz,
        "heat_target_c": r.heat_target_c,
        "heat_c": r.heat_c,
        "fault": FAULT_CODES[r.fault],
        "surface_mm": r.surface_mm if math.isfinite(r.surface_mm) else None,
        "press_mm": r.press_mm if math.isfinite(r.press_mm) else None,
        "y_meas_mm": r.y_meas_mm,
        "depth_meas_mm": r.depth_meas_mm,
        "depth_load_a": r.depth_load_a if math.isfinite(r.depth_load_a) else None,
    }


class SessionAborted(Exception):
    """The session cannot go on (nobody seated, a fault, an e-stop); `reason` says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Fault:
    code: str
    t: float
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "t": round(self.t, 3), "message": self.message}


@dataclass
class SessionResult:
    completed: bool
    end_reason: str
    program_seconds: float
    shoulder_mm: float | None
    zones: dict[str, tuple[float, float]]
    plan: SessionPlan | None
    zone_order_observed: list[str]
    stats: dict[str, Any]
    faults: list[Fault]
    sim_seconds: float
    notes: list[str] = field(default_factory=list)
    contour: BackContour | None = None


class Session:
    """Runs one session. Create it, then `await run()`; control it with the request methods."""

    def __init__(
        self,
        config: ChairConfig,
        driver: CoreDriver,
        program: Program,
        *,
        minutes: float | None = None,
        intensity: int | None = None,
        heat: str | None = None,
        zone_intensity: dict[str, int] | None = None,
        session_id: str = "",
        on_change: Callable[[], None] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        session_faults: list[tuple[float, str]] | None = None,
        user: str | None = None,
        shoulder_offset_mm: float = 0.0,
    ) -> None:
        self.config = config
        self.driver = driver
        self.core = driver.core
        self.program = program
        s = config.session
        self.minutes = float(minutes if minutes is not None else program.default_minutes)
        if not s.min_minutes <= self.minutes <= s.max_minutes:
            raise ValueError(f"minutes must be in {s.min_minutes:g}..{s.max_minutes:g}")
        # what the user did not choose: the program's defaults (docs/chair.md §3)
        if intensity is None:
            intensity = program.default_intensity
        if heat is None:
            heat = program.default_heat
        if intensity not in s.intensities:  # checked above too: no layer trusts the one above
            raise ValueError(f"intensity must be {s.min_intensity}..{s.max_intensity}")
        if heat not in config.heater.level_names:
            raise ValueError(f"heat must be one of {', '.join(config.heater.level_names)}")
        self.intensity = intensity
        self.heat_level = heat
        self.zone_intensity: dict[str, int] = {}
        """Per-zone strength offsets (docs/chair.md §8); zones at 0 are left out."""
        self._merge_zone_intensity(zone_intensity or {})
        self.session_id = session_id
        self.user = user
        """Whose session it is (docs/chair.md §9); None: nobody's in particular."""
        lim = config.body.adjust_mm
        self._start_adjust_mm = max(-lim, min(lim, float(shoulder_offset_mm)))
        """Where the adjust window opens: the user's remembered nudge (0: the scanned line)."""
        self._on_change = on_change or (lambda: None)
        self._on_event = on_event or (lambda e: None)
        for at_s, kind in sorted(session_faults or []):
            if kind == "estop":
                driver.call_at(driver.now_ns() + round(at_s * S), self._scripted_estop)

        self.state = IDLE
        self.step: int | None = None
        self.shoulder_mm: float | None = None
        self.zones: dict[str, tuple[float, float]] = {}
        self.contour: BackContour | None = None
        """The back's contour from the body scan (docs/chair.md §10); None without one."""
        self._scanned_shoulder_mm = 0.0
        self.surface: PressSurface | None = None
        """The surface the heads press relative to, from the contour (docs/chair.md §10)."""
        self.plan: SessionPlan | None = None
        self.fault: Fault | None = None
        self.faults: list[Fault] = []
        self.notes: list[str] = []
        self.zone_order: list[str] = []
        self.zone: str | None = None
        self.end_reason = ""
        self.heat_c: float | None = None
        self.heat_levels: list[tuple[float, str]] = [(0.0, heat)]
        """The session's heat level and when it was chosen (s since the session's start)."""
        self.telemetry: list[dict[str, Any]] = []
        self.keep_telemetry = True
        self.last_telemetry: dict[str, Any] | None = None

        self._t0_ns = driver.now_ns()  # session start (core time)
        self._shift_ns = 0  # core time = plan time + program start + shift (pauses, replans)
        self._program_start_ns: int | None = None
        self._program_ns = 0  # program (running) time accumulated before the current run
        self._run_since_ns: int | None = None
        self._next_action = 0
        self._sent: list[Action] = []
        self._requests: list[tuple[str, Any, asyncio.Future[bool]]] = []
        self._step_marks: list[int] = []
        self._step_of_mark: list[int | None] = []
        self._pause_started_ns: int | None = None
        self._adjust_mm = 0.0
        self._scan_top_mm = 0.0
        self._resume_requested = False
        self._t_pause_plan: float | None = None
        self._contact_events: list[tuple[int, float]] = []
        self._settings_changed = False  # intensity, heat or per-zone strength not yet planned
        self._done = False
        driver.telemetry_sinks.append(self._on_telemetry)

    # ------------------------------------------------------------------------------------------
    # requests (from the controller / CLI; same event loop)
    # ------------------------------------------------------------------------------------------

    @property
    def requests_pending(self) -> bool:
        """Requests queued and not yet handled by the session."""
        return bool(self._requests)

    def request(self, what: str, value: Any = None) -> asyncio.Future[bool]:
        """Queue a request: pause, resume, stop, estop, intensity, heat, zone_intensity, adjust
        (manual mode adds manual and move). The future
        resolves when the session has taken it: True, or False when the session ended or began
        to settle without acting on it."""
        ack: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._requests.append((what, value, ack))
        self.driver.interrupt()
        return ack

    def _merge_zone_intensity(self, offsets: dict[str, int]) -> None:
        """Replace the offsets of the zones given (0 clears a zone's), keeping the others."""
        lim = self.config.session.max_zone_offset
        for z, o in offsets.items():
            if z not in ZONES or not -lim <= o <= lim:  # checked above too: no layer trusts
                raise ValueError(f"zone_intensity: {z!r}: {o!r} is not a zone's offset")
        merged = {**self.zone_intensity, **offsets}
        self.zone_intensity = {z: merged[z] for z in ZONES if merged.get(z)}

    def _drop_requests(self, keep: tuple[str, ...] = ()) -> None:
        """Forget the queued requests but `keep`; their futures say they were not acted on."""
        kept = []
        for r in self._requests:
            if r[0] in keep:
                kept.append(r)
            elif not r[2].done():
                r[2].set_result(False)
        self._requests = kept

    # ------------------------------------------------------------------------------------------
    # status
    # ------------------------------------------------------------------------------------------

    def now_s(self) -> float:
        return (self.driver.now_ns() - self._t0_ns) / S

    @property
    def adjust_mm(self) -> float:
        """The shoulder nudge chosen in the adjust window (what a user's memory keeps)."""
        return self._adjust_mm

    def program_seconds(self) -> float:
        ns = self._program_ns
        if self._run_since_ns is not None:
            ns += self.driver.now_ns() - self._run_since_ns
        return ns / S

    def remaining_s(self) -> float:
        if (self.state == IDLE or self.state.latched) and self._done:
            return 0.0
        return max(0.0, self.minutes * 60.0 - self.program_seconds())

    def technique(self) -> str | None:
        return self._technique_of(self.step)

    def _technique_of(self, step: int | None) -> str | None:
        """The technique of a step index (manual mode: of a segment)."""
        if step is None or self.plan is None:
            return None
        return self.plan.steps[step].technique

    def manual_state(self) -> dict[str, Any] | None:
        """Manual mode's settings (docs/chair.md §8); None in a program session."""
        return None

    def heat_target_c(self) -> float:
        return self.config.heater.target_c(self.heat_level)

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "program": self.program.name,
            "step": self.step,
            "technique": self.technique(),
            "zone": self.zone,
            "elapsed_s": round(self.program_seconds(), 1),
            "remaining_s": round(self.remaining_s(), 1),
            "intensity": self.intensity,
            "zone_intensity": dict(self.zone_intensity),
            "manual": self.manual_state(),
            "heat": {
                "level": self.heat_level,
                # the chosen level's target (0 only when off); what the heater regulates to at
                # this moment is the telemetry's heat_target_c
                "target_c": self.heat_target_c(),
                "temp_c": None if self.heat_c is None else round(self.heat_c, 2),
            },
            "shoulder_mm": None if self.shoulder_mm is None else round(self.shoulder_mm, 1),
            "fault": None
            if self.fault is None
            else {"code": self.fault.code, "message": self.fault.message},
            "session_id": self.session_id,
            "zones": {z: [round(a, 1), round(b, 1)] for z, (a, b) in self.zones.items()},
            # the scanned back, every 10 mm (the summary has every sample)
            "contour": self.contour.as_pairs(CONTOUR_STATE_STEP_MM) if self.contour else [],
        }

    def _set_state(self, state: SessionState | str) -> None:
        if state != self.state:
            self.state = SessionState(state)
            self._on_change()

    def _emit(self, event: str, **fields: Any) -> None:
        self._on_event(
            {"event": event, "session_id": self.session_id, "t": round(self.now_s(), 3), **fields}
        )

    # ------------------------------------------------------------------------------------------
    # telemetry
    # ------------------------------------------------------------------------------------------

    def _on_telemetry(self, records: list[Telemetry]) -> None:
        state = self.state
        t0 = self._t0_ns
        marks = self._step_marks
        plan = self.plan
        out = self.telemetry
        keep = self.keep_telemetry
        d: dict[str, Any] | None = None
        # only the last record is needed when the session keeps no telemetry of its own
        for r in records if keep else records[-1:]:
            t_ns = r.t_ns
            step: int | None = None
            if marks and state in PROGRAM_STATES:
                k = bisect.bisect_right(marks, t_ns) - 1
                if k >= 0:
                    step = self._step_of_mark[k]
            technique = None if step is None or plan is None else self._technique_of(step)
            d = telemetry_sample(r, t0, state, step, technique)
            if keep:
                out.append(d)
        if d is not None:
            self.last_telemetry = d
            self.heat_c = d["heat_c"]
            self.zone = d["zone"] if state in PROGRAM_STATES else None

    # ------------------------------------------------------------------------------------------
    # the story
    # ------------------------------------------------------------------------------------------

    async def run(self) -> SessionResult:
        """Run the whole session; returns how it ended (never raises for chair faults). The
        session's telemetry ends with it: the chair's telemetry after that is no longer its."""
        try:
            return await self._run()
        finally:
            if self._on_telemetry in self.driver.telemetry_sinks:
                self.driver.telemetry_sinks.remove(self._on_telemetry)

    async def _run(self) -> SessionResult:
        self._emit(
            SessionEvent.SESSION_STARTED,
            program=self.program.name,
            minutes=self.minutes,
            intensity=self.intensity,
            heat=self.heat_level,
        )
        try:
            await self._scan()
            await self._adjust()
            await self._run_program()
            await self._settle()
            self.end_reason = self.end_reason or "completed"
        except SessionAborted as e:
            self.end_reason = e.reason
            if not self.state.latched:
                self.notes.append(e.message)
                try:
                    await self._settle()
                except SessionAborted as again:  # a fault while settling: latched, stop there
                    self.end_reason = again.reason
            if self.state.latched:
                await self._until_at_rest()
                self._clear_surface()  # a latched core's depth is absolute already
        finally:
            self._done = True
            self._stop_program_clock()
        self._drop_requests()
        if not self.state.latched:
            self._set_state(IDLE)
            # a last tenth of a second at rest, so the telemetry ends on the settled chair
            try:
                self._handle_events(await self.driver.advance(self.driver.now_ns() + S // 10))
            except SessionAborted as e:
                self.end_reason = e.reason
        completed = self.end_reason == "completed"
        return SessionResult(
            completed=completed,
            end_reason=self.end_reason,
            program_seconds=self.program_seconds(),
            shoulder_mm=self.shoulder_mm,
            zones=self.zones,
            plan=self.plan,
            zone_order_observed=list(self.zone_order),
            stats=self.core.stats(),
            faults=list(self.faults),
            sim_seconds=self.now_s(),
            notes=self.notes,
            contour=self.contour,
        )

    # ---- waiting on the core -----------------------------------------------------------------

    async def _wait(
        self,
        until_ns: int,
        *,
        idle_axes: set[str] | None = None,
        until: Callable[[], bool] | None = None,
    ) -> None:
        """Advance to `until_ns` (or until `idle_axes` are all at rest), handling events and
        requests on the way. Raises SessionAborted on fault, e-stop, stop or an empty seat."""
        settle_ns = self.driver.now_ns() + 2 * self.driver.period_ns  # commands in flight
        while True:
            now = self.driver.now_ns()
            if idle_axes is not None and now >= settle_ns and not self._busy(idle_axes):
                return
            if until is not None and until():
                return
            if now >= until_ns:
                return
            target = until_ns if idle_axes is None or now >= settle_ns else settle_ns
            events = await self.driver.advance(target)
            self._handle_events(events)
            await self._handle_requests()

    async def _until_at_rest(self) -> None:
        """After a fault or e-stop: follow the core's controlled stop to rest (the telemetry
        shows it), then a moment of stillness. Events are recorded, nothing is commanded."""
        end = self.driver.now_ns() + 30 * S
        settle_ns = self.driver.now_ns() + 2 * self.driver.period_ns
        while self.driver.now_ns() < end:
            now = self.driver.now_ns()
            if now >= settle_ns and not self._busy(set(AXES)):
                break
            for ev in await self.driver.advance(min(end, max(settle_ns, now + S // 10))):
                if ev.kind == "fault" and self.fault is not None:
                    pass  # the first fault is the one latched and reported
        await self.driver.advance(self.driver.now_ns() + 3 * S // 2)

    def _busy(self, axes: set[str]) -> bool:
        busy = self.core.snapshot()["busy"]
        return any(busy[a] for a in axes)

    async def _wait_idle(self, axes: set[str], limit_s: float = 120.0) -> None:
        await self._wait(self.driver.now_ns() + int(limit_s * S), idle_axes=axes)
        if self._busy(axes):
            raise SessionAborted("timeout", f"axes {sorted(axes)} did not come to rest")

    def _handle_events(self, events: list[CoreEvent]) -> None:
        for e in events:
            t_ns, kind, code = e.t_ns, e.kind, e.code
            if kind == "fault":
                name = FAULT_CODES[code] or "unknown"
                where = f"{AXES[e.axis]}: " if e.axis >= 0 else ""
                self.fault = Fault(
                    name,
                    (t_ns - self._t0_ns) / S,
                    f"{FAULT_MESSAGES.get(name, name)} ({where}value {e.value:g}, "
                    f"limit {e.limit:g})",
                )
                self.faults.append(self.fault)
                self._stop_program_clock()
                self._set_state(SessionState.FAULT)
                self._emit(SessionEvent.FAULT, code=name, message=self.fault.message)
                raise SessionAborted("fault", f"fault {name}: {self.fault.message}")
            if kind == "estop":
                self._stop_program_clock()
                self.faults.append(Fault("estop", (t_ns - self._t0_ns) / S, "emergency stop"))
                self._set_state(SessionState.ESTOP)
                self._emit(SessionEvent.ESTOP)
                raise SessionAborted("estop", "emergency stop")
            if kind == "occupancy" and code == 0:
                if self.state == SCANNING:
                    raise SessionAborted("no_occupant", "the seat is empty: nobody to massage")
                raise SessionAborted("occupant_left", "occupant left the seat: settling")
            if kind == "zone" and self.state == RUNNING:
                z = ZONES[code]
                if not self.zone_order or self.zone_order[-1] != z:
                    self.zone_order.append(z)
            if kind == "contact":
                self._contact_events.append((code, e.value))

    def _session_s(self) -> float:
        """Seconds since the session's start (the telemetry's `t`)."""
        return (self.driver.now_ns() - self._t0_ns) / S

    def _scripted_estop(self) -> None:
        self.core.estop()

    async def _handle_requests(self) -> None:
        while self._requests:
            what, value, ack = self._requests.pop(0)
            if not ack.done():
                ack.set_result(True)  # taken: the state change (if any) is what callers await
            if what in ("pause", "resume", "manual", "move"):
                self._apply_settings()  # in the order they came (an e-stop never waits)
            if what == "estop":
                self.core.estop()
            elif what == "stop":
                raise SessionAborted("stopped", "stopped by the user")
            elif what == "pause" and self.state == RUNNING:
                await self._pause()
            elif what == "resume" and self.state == PAUSED:
                self._resume_requested = True
            elif what == "intensity":
                self.intensity = int(value)
                self._settings_changed = True
                self._on_change()
            elif what == "heat":
                self.heat_level = str(value)
                self.heat_levels.append((self._session_s(), self.heat_level))
                self._settings_changed = True
                self._on_change()
            elif what == "zone_intensity":
                self._merge_zone_intensity(dict(value))
                self._settings_changed = True
                self._on_change()
            elif what in ("manual", "move"):
                self._manual_request(what, value)
            elif what == "adjust" and self.state == ADJUSTING:
                lim = self.config.body.adjust_mm
                self._adjust_mm = max(-lim, min(lim, self._adjust_mm + float(value)))
                self._on_change()
        self._apply_settings()

    def _apply_settings(self) -> None:
        """Changed intensity, heat or per-zone strength reach the plan: every change taken in
        one pass over the requests in one re-plan. A re-plan rebuilds the whole plan on the
        event loop (about 30 ms for a 30-minute program on a desktop core), so changes that
        queue up while it runs (a remote sending as fast as its rate limit lets it) cost one
        re-plan, not one each."""
        if self._settings_changed:
            self._settings_changed = False
            self._replan()

    def _manual_request(self, what: str, value: Any) -> None:
        """Manual mode's requests (`chair.manual_session`); a program session takes none (the
        controller refuses them with `not_manual` before they get here)."""
        raise ValueError(f"{what}: not a manual session")

    # ---- body scan ---------------------------------------------------------------------------

    async def _scan(self) -> None:
        """The body scan: the shoulder line, and the back's contour when the chair senses the
        depth drive's load (docs/chair.md §2, §10). The chair may be anywhere (the core took its
        pose from the encoders, docs/core.md): the heads come back first, so the rollers never
        sweep along the back pressed in."""
        cfg = self.config
        self._set_state(SCANNING)
        core = self.core
        core.program(False)
        core.set_body(None)
        core.move("depth", cfg.depth.min_mm)
        await self._wait_idle({"depth"})
        top = cfg.body.shoulder_max_mm
        if math.isfinite(core.snapshot()["depth_load_a"]):
            shoulder = await self._scan_contour()
        else:
            self.notes.append(
                "the chair does not report the depth drive's load: no contour scan, the "
                "shoulder from the arm's contact switch"
            )
            shoulder = await self._scan_shoulder_switch()
        core.brake()
        await self._wait_idle(set(AXES))
        # the highest the heads reached forward: the neck's top is never set below it (_adjust)
        self._scan_top_mm = core.snapshot()["axes"]["carriage"][0]
        core.move("depth", cfg.depth.min_mm)
        await self._wait_idle({"depth"})
        self.shoulder_mm = min(shoulder, top)
        self._scanned_shoulder_mm = self.shoulder_mm  # the body's (a nudge moves the zones)
        self._emit(SessionEvent.SHOULDER_DETECTED, shoulder_mm=round(self.shoulder_mm, 1))
        self._on_change()

    async def _scan_contour(self) -> float:
        """Walk up the whole back with the depth axis following the skin by its load
        (`Core.follow_contour`): the contour from the samples, the shoulder where the neck's soft
        tissue begins (`chair.contour`). Returns the shoulder line (the top-most allowed one,
        with a note, when no neck was found)."""
        cfg = self.config
        b, k = cfg.body, cfg.contour
        core = self.core
        start_y, end_y = cfg.contour_scan_span_mm()  # at medium width
        top = b.shoulder_max_mm
        core.move("width", cfg.width.medium_mm)
        core.move("carriage", start_y)
        await self._wait_idle({"width", "carriage"})
        core.drain_surface()
        core.follow_contour(True)
        # the heads come forward until they touch the skin (at most across the depth's range)
        touch_a = k.contact_min_press_mm * k.load_a_per_mm
        reach_ns = round(
            (cfg.depth.max_mm - cfg.depth.min_mm) / (k.gain_per_s * k.touch_press_mm[0]) * S
        )
        end = self.driver.now_ns() + reach_ns + S
        while core.snapshot()["depth_load_a"] < touch_a and self.driver.now_ns() < end:
            await self._wait(min(end, self.driver.now_ns() + S // 20))
        if not core.snapshot()["depth_load_a"] >= touch_a:
            core.brake()
            await self._wait_idle(set(AXES))
            core.move("depth", cfg.depth.min_mm)
            raise SessionAborted("no_occupant", "the heads touched no back: nobody seated")
        core.move("carriage", end_y, v_max=k.speed_mm_s)
        # walk until the heads reach the neck's soft tissue (the shoulder is below it: the head
        # is never reached), or the top
        lowest = cfg.carriage.seat_mm + b.shoulder_min_above_seat_mm
        samples: list[SurfaceSample] = []
        step_ns = round(k.sample_mm / k.speed_mm_s * S)
        checks = 0
        memo: FitMemo = {}  # the window fits so far: each neck check refits mostly the same
        touched_y = start_y  # the last place the heads touched the skin
        walk_to: float | None = None  # once a neck is seen: where the walk looks again
        confirmed: float | None = None  # the shoulder the walk stopped on
        await self._wait(self.driver.now_ns() + 2 * self.driver.period_ns)
        while self._busy({"carriage"}):
            await self._wait(self.driver.now_ns() + step_ns)
            new = core.drain_surface()
            samples += new
            if not new:
                continue
            y = new[-1].y_mm
            touched_y = max([touched_y, *(s.y_mm for s in new if in_contact(s, k))])
            if touched_y < lowest and y - touched_y > 2 * k.gap_max_mm:
                break  # the back left the heads below any shoulder: no use walking on
            if walk_to is None:
                checks += len(new)
                if checks < NECK_CHECK_SAMPLES:
                    continue
                checks = 0
                seen = neck_seen(samples, lowest, k, memo)
                if seen is None:
                    continue
                # walk on a little, so that the fits where the neck begins have samples above
                # it too; never past the neck's top for this shoulder (_adjust keeps that top
                # above where the heads reached: the zones would move up), less a sample's
                # travel between two looks and the brake's
                neck_top = cfg.zones_for_shoulder(min(seen, top))["neck"][1]
                walk_to = min(y + k.neck_confirm_mm, neck_top - 2 * k.sample_mm)
            if y < walk_to:
                continue
            # look again over every sample, as the contour will: a neck that the samples above
            # it no longer show soft was soft tissue of the back (a few stiffness fits near the
            # threshold), and the walk goes on to the real one
            confirmed = find_shoulder(skin_points(samples, k, memo), lowest, k)
            if confirmed is not None:
                break
            walk_to = None
        core.brake()  # ends the following too
        # the scan is judged at rest: the depth, braking from the following (fast where the neck
        # curves away), is not still on its way when a scan gone wrong lets the session settle.
        # A fault or an e-stop that ended the walk ends the session: it is no scan to judge
        await self._wait_idle(set(AXES))
        samples += core.drain_surface()
        self.contour = skin_points(samples, k, memo)
        shoulder = find_shoulder(self.contour, lowest, k) if self.contour else None
        if shoulder is None:
            shoulder = confirmed  # (the brake's last samples cannot take a confirmed neck away)
        problem = scan_problem(samples, top if shoulder is None else shoulder, k)
        if problem is not None:
            # a contour that cannot be trusted is not used: the session ends, the heads come
            # back first as it settles (never deeper than the scan's light touch)
            self.contour = None
            raise SessionAborted("scan_failed", f"the body scan went wrong: {problem}")
        if shoulder is None:
            self.notes.append(
                f"no neck found on the contour below the top: using the top-most shoulder "
                f"{top:g} mm"
            )
            return top
        return shoulder

    async def _scan_shoulder_switch(self) -> float:
        """Walk up from the lumbar region of the smallest body with the heads at the scan's
        depth: above the lowest plausible shoulder, the first loss of the arm's contact is the
        shoulder line (docs/chair.md §2). For a chair that does not sense the depth's load."""
        cfg = self.config
        b = cfg.body
        core = self.core
        smallest = cfg.zones_for_shoulder(cfg.shoulder_for_height_mm(b.height_min_cm))
        start_y = smallest[b.scan_start_zone][0]
        core.move("width", cfg.width.medium_mm)
        core.move("carriage", start_y)
        await self._wait_idle({"width", "carriage"})
        core.move("depth", cfg.depth.level_mm(b.scan_depth_level))
        await self._wait_idle({"depth"})
        await self._wait(self.driver.now_ns() + 50_000_000)  # let the contact switch settle
        if not core.snapshot()["arm_contact"]:
            core.move("depth", cfg.depth.min_mm)
            raise SessionAborted("no_occupant", "no contact at all: nobody seated")
        core.scan(True)
        self._contact_events.clear()
        top = b.shoulder_max_mm
        core.move("carriage", top, v_max=b.scan_speed_mm_s)
        # the tick takes the move first (contact changes meanwhile are kept, not lost)
        await self._wait(self.driver.now_ns() + 2 * self.driver.period_ns)
        min_shoulder = cfg.carriage.seat_mm + b.shoulder_min_above_seat_mm
        shoulder: float | None = None
        while shoulder is None:
            # return at the very tick the arm reports a change: the carriage must not walk on
            await self._wait(self.driver.now_ns() + 1 * S, until=lambda: bool(self._contact_events))
            for touched, y in self._contact_events:
                if not touched and y >= min_shoulder:
                    shoulder = y + b.shoulder_offset_mm
                    break
            self._contact_events.clear()
            if shoulder is None and not self._busy({"carriage"}):
                shoulder = top
                self.notes.append(
                    f"contact never lost below the top: using the top-most shoulder {top:g} mm"
                )
                break
        core.scan(False)
        return shoulder

    async def _adjust(self) -> None:
        self._set_state(ADJUSTING)
        self._adjust_mm = self._start_adjust_mm
        end = self.driver.now_ns() + int(self.config.body.adjust_window_s * S)
        await self._wait(end)
        assert self.shoulder_mm is not None
        cfg = self.config
        top = cfg.body.shoulder_max_mm
        shoulder = min(self.shoulder_mm + self._adjust_mm, top)
        # a nudge down never puts the neck's top below where the scan's heads reached: the scan
        # never pressed above the neck (docs/chair.md §2, the head is never massaged)
        seat = cfg.carriage.seat_mm
        lowest = seat + (self._scan_top_mm - seat) / cfg.body.zone_edges[-1]
        if shoulder < lowest:
            self.notes.append(
                f"shoulder nudge limited to {lowest - self.shoulder_mm:+.0f} mm: the neck's top "
                f"stays above where the scan reached ({self._scan_top_mm:.0f} mm)"
            )
            shoulder = lowest
        self.shoulder_mm = shoulder
        self.zones = self.config.zones_for_shoulder(self.shoulder_mm)
        self.core.set_body(self.zones)
        await self._press_relative()

    async def _press_relative(self) -> None:
        """With a scanned contour, from here on depths are presses into the tissue: the core
        gets the surface and the zones' load bounds (`chair.surface`) and the depth axis follows
        the surface (docs/chair.md §10). Taken at rest (the scan left the heads home), before
        the program's first move."""
        if not self.contour or not self.config.contour.press_relative:
            return
        self.surface = surface_from_contour(
            self.contour, self.config, self.zones, self._scanned_shoulder_mm
        )
        sf = self.surface
        self.core.set_surface(sf.y0_mm, sf.step_mm, sf.control_mm, sf.load_max_a)
        self.core.press_relative(True)
        # the heads come forward to the skin (press 0: touching, not pressing), so that the
        # carriage never carries them short of the skin by a fixed gap where the back comes nearer
        self.core.move("depth", 0.0)
        await self._wait_idle({"depth"})

    async def _flatten_surface(self, why: PlanError) -> None:
        """The strokes that follow this back are too slow for the program's time: press
        relative to a flat surface at the back's nearest skin instead (docs/chair.md §10). No
        following, full stroke speed; the heads press lighter where the back lies deeper, never
        deeper than their level. Taken at rest, before the program's first move."""
        assert self.surface is not None
        flat = self.surface.flattened()
        self.notes.append(
            f"the strokes following this back do not fit the program's time ({why}): pressing "
            f"from the back's nearest skin ({flat.control_mm[0]:.1f} mm) instead, lighter where "
            "it lies deeper"
        )
        # the heads come back to the nearest skin first (never pressing: the new surface is
        # nearer than the back under them), then the flat surface takes over
        self.core.press_relative(False)
        self.core.move("depth", flat.control_mm[0])
        await self._wait_idle({"depth"})
        self.core.set_surface(flat.y0_mm, flat.step_mm, flat.control_mm, flat.load_max_a)
        self.core.press_relative(True)
        await self._wait_idle({"depth"})
        self.surface = flat

    def _clear_surface(self) -> None:
        if self.surface is not None:
            self.core.clear_surface()
            self.surface = None

    # ---- the program -------------------------------------------------------------------------

    def _build_plan(self) -> SessionPlan:
        snap = self.core.snapshot()["axes"]
        assert self.shoulder_mm is not None
        return build_plan(
            self.program,
            self.config,
            self.shoulder_mm,
            self.minutes,
            self.intensity,
            self.heat_level,
            start_y_mm=snap["carriage"][0],
            start_width_mm=snap["width"][0],
            start_depth_mm=snap["depth"][0],
            zone_intensity=self.zone_intensity,
            surface=self.surface,
        )

    def _rebuilt(self) -> SessionPlan:
        """The current plan rebuilt with the session's intensity, heat and per-zone strength."""
        assert self.plan is not None and self.shoulder_mm is not None
        return build_plan(
            self.program,
            self.config,
            self.shoulder_mm,
            self.minutes,
            self.intensity,
            self.heat_level,
            start_y_mm=self.plan.start_y_mm,
            start_width_mm=self.plan.start_width_mm,
            start_depth_mm=self.plan.start_depth_mm,
            zone_intensity=self.zone_intensity,
            surface=self.surface,
        )

    def _replan(self) -> None:
        """Intensity, heat or per-zone strength changed: swap the actions not yet sent for the
        new plan's (the plan's timeline — every action's slot, kind and axis — does not depend
        on them, only its values do)."""
        if self.plan is None or self.shoulder_mm is None:
            return
        new = self._rebuilt()
        old = self.plan.actions
        if len(new.actions) != len(old) or any(
            abs(a.slot_s - b.slot_s) > 1e-6 or (a.kind, a.axis) != (b.kind, b.axis)
            for a, b in zip(new.actions, old, strict=True)
        ):
            raise RuntimeError("plan timeline changed with intensity/heat/zone_intensity")
        self.plan = new
        # heat applies at once
        if self.state in PROGRAM_STATES:
            self._send_heat_now()

    def _core_ns(self, t_s: float) -> int:
        assert self._program_start_ns is not None
        return self._program_start_ns + self._shift_ns + round(t_s * S)

    def _plan_ns(self, core_ns: int) -> float:
        assert self._program_start_ns is not None
        return (core_ns - self._program_start_ns - self._shift_ns) / S

    def _send(self, a: Action) -> None:
        at = self._core_ns(a.t_s)
        if a.kind == "move":
            self.core.move(
                a.axis,
                a.value,
                v_max=a.v_max,
                a_max=a.a_max,
                j_max=a.j_max,
                at_ns=at,
                hold_s=a.hold_s,
            )
        elif a.kind == "rate":
            self.core.rate(a.axis, a.value, at_ns=at)
        elif a.kind == "heat":
            self.core.heat(a.value, at_ns=at)
        else:  # pragma: no cover - the plan only makes these three
            raise ValueError(a.kind)
        self._sent.append(a)

    def _current_step_at(self, t_s: float) -> int | None:
        assert self.plan is not None
        for s in self.plan.steps:
            if s.start_s <= t_s < s.end_s:
                return s.index
        return None

    def _send_heat_now(self) -> None:
        """Refresh the heater (the core turns it off if not refreshed)."""
        if self.plan is None:
            return
        target = 0.0
        t = (
            self._plan_ns(self.driver.now_ns())
            if self._t_pause_plan is None
            else self._t_pause_plan
        )
        for a in self.plan.actions:
            if a.kind == "heat" and a.t_s <= t:
                target = a.value
        paused_ns = (
            None
            if self.state != PAUSED or self._pause_started_ns is None
            else self.driver.now_ns() - self._pause_started_ns
        )
        if paused_ns is not None and paused_ns >= self.config.heater.pause_hold_s * S:
            target = 0.0  # heat holds for at most pause_hold_s of pause
        self.core.heat(target)

    async def _run_program(self) -> None:
        try:
            self.plan = self._build_plan()
        except PlanError as e:
            if self.surface is None or self.surface.is_flat:
                # this program does not fit this body in this time: settle
                raise SessionAborted(
                    "plan_error", f"the program cannot be planned for this session: {e}"
                ) from None
            await self._flatten_surface(e)
            try:
                self.plan = self._build_plan()
            except PlanError as again:
                raise SessionAborted(
                    "plan_error", f"the program cannot be planned for this session: {again}"
                ) from None
        plan = self.plan
        core = self.core
        core.clear_stats()
        core.program(True)
        self._program_start_ns = self.driver.now_ns() + 2 * self.driver.period_ns
        self._shift_ns = 0
        self._set_state(RUNNING)
        self._run_since_ns = self._program_start_ns
        self._next_action = 0
        for s in plan.steps:
            self._step_marks.append(self._core_ns(s.start_s))
            self._step_of_mark.append(s.index)
        cap_ns = int(self.config.session.max_minutes * 60 * S)
        heat_refresh_ns = int(self.config.heater.refresh_timeout_s * S / 3)
        next_heat = self.driver.now_ns() + heat_refresh_ns
        while True:
            plan = self.plan  # an intensity/heat change swaps in a new plan (same timeline)
            now = self.driver.now_ns()
            self._send_due(plan, now)
            t_plan = self._plan_ns(now)
            step = self._current_step_at(t_plan)
            if step != self.step and step is not None:
                self.step = step
                s = plan.steps[step]
                self._emit(
                    SessionEvent.STEP_STARTED, step=step, technique=s.technique, zones=list(s.zones)
                )
                self._on_change()
            done = t_plan >= plan.duration_s and self._next_action >= len(plan.actions)
            if done and not self._busy(set(AXES)):
                break
            if self.program_seconds() * S >= cap_ns:
                self.notes.append("30-minute hard cap reached")
                break
            if now >= next_heat:
                self._send_heat_now()
                next_heat = now + heat_refresh_ns
            wake = self._wake_at(plan, now, next_heat)
            for s in plan.steps:
                st_ns = self._core_ns(s.start_s)
                if st_ns > now:
                    wake = max(min(wake, st_ns), now + self.driver.period_ns)
                    break
            await self._wait(wake)
        self._stop_program_clock()
        core.program(False)
        self.step = None

    def _send_due(self, plan: SessionPlan, now: int) -> None:
        """Send the plan's actions that start within the look-ahead window."""
        while (
            self._next_action < len(plan.actions)
            and self._core_ns(plan.actions[self._next_action].t_s) <= now + LOOKAHEAD_NS
        ):
            self._send(plan.actions[self._next_action])
            self._next_action += 1

    def _wake_at(self, plan: SessionPlan, now: int, next_heat_ns: int) -> int:
        """When the playing loop must next look: the next action's look-ahead, the heater's
        refresh, the plan's end, and at least every half look-ahead (never before the next tick)."""
        wake = now + LOOKAHEAD_NS // 2
        if self._next_action < len(plan.actions):
            wake = min(wake, self._core_ns(plan.actions[self._next_action].t_s) - LOOKAHEAD_NS)
        end_ns = self._core_ns(plan.duration_s)
        return max(min(wake, next_heat_ns, end_ns), now + self.driver.period_ns)

    def _stop_program_clock(self) -> None:
        if self._run_since_ns is not None:
            self._program_ns += self.driver.now_ns() - self._run_since_ns
            self._run_since_ns = None

    # ---- pause / resume ----------------------------------------------------------------------

    async def _pause(self) -> None:
        assert self.plan is not None
        core = self.core
        now = self.driver.now_ns()
        t_pause = self._plan_ns(now)
        self._t_pause_plan = t_pause
        core.brake()
        core.program(False)  # paused time is not program time: no zone accounting
        self._stop_program_clock()
        self._pause_started_ns = now
        self._set_state(PAUSED)
        # what was sent but had not finished: moves in progress are re-issued on resume, the rest
        # goes back to the to-send list
        unfinished = [a for a in self._sent if a.kind != "heat" and a.t_s + a.duration_s > t_pause]
        first_unsent = self._next_action
        self._sent = []
        heat_refresh_ns = int(self.config.heater.refresh_timeout_s * S / 3)
        next_heat = now
        self._resume_requested = False
        while not self._resume_requested:
            now = self.driver.now_ns()
            if now >= next_heat:
                self._send_heat_now()
                next_heat = now + heat_refresh_ns
            await self._wait(min(next_heat, now + LOOKAHEAD_NS))
        await self._wait_idle(set(AXES))
        # resume: the interrupted moves go on to their goals from where the brake left them
        now = self.driver.now_ns()
        started = [a for a in unfinished if a.t_s <= t_pause]
        pending = [a for a in unfinished if a.t_s > t_pause]
        extra = 0.0
        snap = core.snapshot()["axes"]
        from core_rt.motion import plan_move, plan_velocity

        for a in started:
            if a.kind == "move":
                d = plan_move(snap[a.axis][0], a.value, a.v_max, a.a_max, a.j_max).duration
                left = a.t_s + a.duration_s - t_pause
                extra = max(extra, d - left)
            elif a.kind == "rate":
                lim = getattr(self.config, a.axis).limits
                d = plan_velocity(0.0, 0.0, 0.0, a.value, lim.a_max, lim.j_max).duration
                left = a.t_s + a.duration_s - t_pause
                extra = max(extra, d - left)
        gap_ns = 2 * self.driver.period_ns
        paused_at_ns = self._pause_started_ns
        self._shift_ns += (now + gap_ns - self._pause_started_ns) + math.ceil(extra * S)
        resume_at = now + gap_ns
        self._run_since_ns = now
        self._pause_started_ns = None
        self._t_pause_plan = None
        core.program(True)
        # re-issue interrupted moves/rates at once, then the pending ones at their shifted time
        for a in started:
            if a.kind == "move":
                core.move(
                    a.axis,
                    a.value,
                    v_max=a.v_max,
                    a_max=a.a_max,
                    j_max=a.j_max,
                    at_ns=resume_at,
                    hold_s=0.0,
                )
            else:
                core.rate(a.axis, a.value, at_ns=resume_at)
        # rates that were on before the pause and not re-issued above come back too
        t_now = self._plan_ns(resume_at)
        for axis in ("kneading", "tapping"):
            if any(a.axis == axis for a in started):
                continue
            value = 0.0
            for a in self.plan.actions[:first_unsent]:
                if a.kind == "rate" and a.axis == axis and a.t_s <= t_pause:
                    value = a.value
            if value:
                core.rate(axis, value, at_ns=resume_at)
        for a in pending:
            self._send(a)
        self._send_heat_now()
        # re-mark steps at their shifted times
        assert self.plan is not None
        # the marks the pause never reached (a step due while paused) go: they come back shifted
        k = bisect.bisect_right(self._step_marks, paused_at_ns)
        del self._step_marks[k:]
        del self._step_of_mark[k:]
        for s in self.plan.steps:
            if s.start_s > t_now:
                self._step_marks.append(self._core_ns(s.start_s))
                self._step_of_mark.append(s.index)
        self._set_state(RUNNING)

    # ---- settle ------------------------------------------------------------------------------

    async def _settle(self) -> None:
        """Heater off at once, tapping and kneading stop with the heads parked wide, depth
        retracts, the carriage walks to park."""
        cfg = self.config
        core = self.core
        self._set_state(SETTLING)
        self._stop_program_clock()
        self._drop_requests(keep=("estop",))
        core.program(False)
        core.heat(0.0)
        core.brake()
        await self._wait_idle(set(AXES))
        core.press_relative(False)  # the heads retract to their home, whatever the back's surface
        core.move("depth", cfg.depth.min_mm)
        core.move("width", cfg.width.park_mm)
        await self._wait_idle({"depth", "width"})
        self._clear_surface()
        core.move("carriage", cfg.carriage.park_mm)
        await self._wait_idle({"carriage"})
        core.set_body(None)
        self.step = None
