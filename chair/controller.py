"""The controller: one chair (core + hardware), at most one session at a time.

It is what `chair run` and `chair serve` drive, and what remote control sees through
`chair.api.ControllerAPI`: every request is checked here against the life cycle (DOMAIN §4) and
refused with a stable error code when it does not fit; the core's guard checks again every tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from chair.api import CommandError
from chair.driver import CoreDriver, Pacing
from chair.program import Program, ProgramError, builtin_programs, load_program
from chair.report import build_summary
from chair.session import Session, SessionResult, telemetry_sample
from core_rt.config import ChairConfig
from core_rt.core import AXES, FAULT_CODES, FAULT_MESSAGES, Core, mono_ns

log = logging.getLogger("chair.controller")

IDLE_STEP_NS = 100_000_000
GRACE_S = 3.0
"""Simulated seconds a command may use while the clock is held (test hook)."""


class Controller:
    """Owns the core, the hardware and the current session; implements ControllerAPI."""

    def __init__(self, config: ChairConfig, core: Core, driver: CoreDriver, hardware: Any) -> None:
        self.config = config
        self.core = core
        self.driver = driver
        self.hardware = hardware
        self.session: Session | None = None
        self.last_result: SessionResult | None = None
        self.last_telemetry: list[dict[str, Any]] = []
        self.last_summary: dict[str, Any] | None = None
        self._state = "idle"
        self._fault: dict[str, str] | None = None
        self._intensity = 3
        self._heat = "off"
        self._change_cbs: list[Callable[[dict[str, Any]], None]] = []
        self._event_cbs: list[Callable[[dict[str, Any]], None]] = []
        self._pending: Session | None = None
        self._runner: asyncio.Task[None] | None = None
        self._session_done = asyncio.Event()
        self._ids = itertools.count(1)
        self._last_state: dict[str, Any] | None = None
        self._reset_result: asyncio.Future[bool] | None = None
        self.telemetry_sinks = driver.telemetry_sinks
        self._latest_tlm: dict[str, Any] | None = None
        self.session_faults: list[tuple[float, str]] = []

    # ---- construction ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        config: ChairConfig,
        *,
        hardware: str = "sim",
        pacing: Pacing | None = None,
        speed: float | None = None,
        body_height_cm: float = 175.0,
        seed: int = 0,
        faults: Sequence[str] = (),
        telemetry_hz: float = 50.0,
    ) -> Controller:
        """Build a controller. `speed` = virtual time paced at that factor (tests, demos);
        None = the real-time core against the wall clock (`pacing` may override)."""
        if pacing is None:
            pacing = "realtime" if speed is None else "paced"
        session_faults: list[tuple[float, str]] = []
        if hardware == "sim":
            from sim.faults import parse_fault
            from sim.plant import SimPlant

            specs = [parse_fault(f) for f in faults]
            hw: Any = SimPlant(
                config,
                body_height_cm=body_height_cm,
                seed=seed,
                faults=[s for s in specs if s.kind != "estop"],
            )
            session_faults = [(s.at_s, s.kind) for s in specs if s.kind == "estop"]
        else:
            # a board (real, or `chair board`) runs at its own real-time pace
            if faults:
                raise ValueError(
                    "--fault applies to the simulated chair; inject faults on the board "
                    "(`chair board --fault` or its control socket) instead"
                )
            if pacing != "realtime":
                raise ValueError("a board link runs in real time: use --realtime (or no --speed)")
            from chair.board_link import open_board_link  # the HIL board driver

            hw = open_board_link(hardware, config)
        core = Core(config, hw, telemetry_hz=telemetry_hz)
        driver = CoreDriver(core, config, pacing, speed or 60.0)
        c = cls(config, core, driver, hw)
        c.session_faults = session_faults
        driver.telemetry_sinks.append(c._on_telemetry)
        return c

    # ---- status (ControllerAPI) --------------------------------------------------------------

    @property
    def state_name(self) -> str:
        if self.session is not None and self._state not in ("fault", "estop"):
            return self.session.state
        return self._state

    def state(self) -> dict[str, Any]:
        if self.session is not None:
            d = self.session.status()
            if self._state in ("fault", "estop"):
                d["state"] = self._state
                d["fault"] = self._fault
            return d
        tl = self._latest_tlm
        last = self.last_result
        return {
            "state": self._state,
            "program": None,
            "step": None,
            "technique": None,
            "zone": None,
            "elapsed_s": 0.0,
            "remaining_s": 0.0,
            "intensity": self._intensity,
            "heat": {
                "level": self._heat,
                "target_c": 0.0,
                "temp_c": None if tl is None else round(tl["heat_c"], 2),
            },
            "shoulder_mm": None
            if last is None or last.shoulder_mm is None
            else round(last.shoulder_mm, 1),
            "fault": self._fault,
            "session_id": None,
        }

    def telemetry(self) -> dict[str, Any] | None:
        if self.session is not None and self.session.last_telemetry is not None:
            return self.session.last_telemetry
        return self._latest_tlm

    def programs(self) -> list[str]:
        return builtin_programs()

    def on_change(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self._change_cbs.append(callback)

    def on_event(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self._event_cbs.append(callback)

    def moving(self) -> bool:
        return any(self.core.snapshot()["busy"].values())

    def last_command_latency(self) -> tuple[int, int]:
        """(sent_ns, applied_ns) of the last command sent with a timestamp (bench)."""
        return self.core.last_command_latency()

    def _changed(self) -> None:
        st = self.state()
        if st != self._last_state:
            self._last_state = st
            for cb in self._change_cbs:
                cb(st)

    def _event(self, e: dict[str, Any]) -> None:
        for cb in self._event_cbs:
            cb(e)

    def _on_telemetry(self, records: list[tuple[Any, ...]]) -> None:
        # between sessions: the chair's own telemetry, `t` on the core's clock
        self._latest_tlm = telemetry_sample(records[-1], 0, self._state)

    # ---- running -----------------------------------------------------------------------------

    async def open(self) -> None:
        await self.driver.start()

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        await self.driver.close()
        close = getattr(self.hardware, "close", None)
        if close is not None:  # a board link: stop its I/O thread, close the port
            close()

    async def __aenter__(self) -> Controller:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def serve(self) -> asyncio.Task[None]:
        """Start the background runner (daemon): idles the core between sessions."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="chair-controller")
        return self._runner

    async def _run(self) -> None:
        while True:
            if self._pending is not None:
                self.session, self._pending = self._pending, None
                await self._run_session(self.session)
                continue
            events = await self.driver.advance(self.driver.now_ns() + IDLE_STEP_NS)
            self._idle_events(events)
            self._changed()

    async def _run_session(self, session: Session) -> SessionResult:
        self._session_done.clear()
        wall0 = time.perf_counter()
        try:
            result = await session.run()
        except Exception:  # never lose the chair to a bug in a session: stop it safely
            log.exception("session crashed; e-stopping the chair")
            self.core.estop()
            self._state = "estop"
            self._fault = {"code": "internal", "message": "session crashed"}
            self.session = None
            self._session_done.set()
            self._changed()
            raise
        self.last_result = result
        self.last_telemetry = session.telemetry
        self.last_summary = build_summary(
            result,
            self.config,
            program=session.program.name,
            minutes=session.minutes,
            body_height_cm=getattr(self.hardware, "body_height_cm", None),
            ticks=round(result.sim_seconds * 1e9 / self.core.period_ns),
            wall_seconds=time.perf_counter() - wall0,
        )
        # the summary rides on the event, so remote tools can check a session like `chair run`
        session._emit(
            "session_finished",
            completed=result.completed,
            end_reason=result.end_reason,
            summary=self.last_summary,
        )
        if session.state in ("fault", "estop"):
            self._state = session.state
            f = session.fault
            self._fault = (
                {"code": f.code, "message": f.message}
                if f is not None
                else {"code": "estop", "message": "emergency stop"}
            )
        else:
            self._state = "idle"
        self.session = None
        self._session_done.set()
        self._changed()
        return result

    def _idle_events(self, events: list[tuple[int, str, int, float, float]]) -> None:
        for _t, kind, code, v0, _v1 in events:
            if kind == "fault":
                name = FAULT_CODES[code] or "unknown"
                self._state = "fault"
                self._fault = {
                    "code": name,
                    "message": f"{FAULT_MESSAGES.get(name, name)} (value {v0:g})",
                }
                self._event({"event": "fault", "code": name, "message": self._fault["message"]})
            elif kind == "estop":
                self._state = "estop"
                self._fault = {"code": "estop", "message": "emergency stop"}
                self._event({"event": "estop"})
            elif kind == "reset":
                if code == 1:
                    self._state = "idle"
                    self._fault = None
                    self._event({"event": "reset"})
                if self._reset_result is not None and not self._reset_result.done():
                    self._reset_result.set_result(code == 1)

    async def run_session(self, program: str | Program, **kw: Any) -> SessionResult:
        """Run one whole session in the caller's task (the CLI's `chair run`)."""
        session = self._make_session(program, **kw)
        self.session = session
        return await self._run_session(session)

    def _make_session(
        self,
        program: str | Program,
        minutes: float | None = None,
        intensity: int | None = None,
        heat: str | None = None,
    ) -> Session:
        if isinstance(program, str):
            try:
                prog = load_program(program)
            except ProgramError as e:
                raise CommandError("unknown_program", str(e)) from e
        else:
            prog = program
        s = self.config.session
        if minutes is not None and not (
            isinstance(minutes, int | float)
            and math.isfinite(minutes)
            and s.min_minutes <= minutes <= s.max_minutes
        ):
            raise CommandError(
                "out_of_range", f"minutes must be {s.min_minutes:g}..{s.max_minutes:g}"
            )
        if intensity is None:
            intensity = self._intensity
        if heat is None:
            heat = self._heat
        self._check_intensity(intensity)
        self._check_heat(heat)
        sid = f"{uuid.uuid4().hex[:8]}-{next(self._ids)}"
        session = Session(
            self.config,
            self.driver,
            prog,
            minutes=minutes,
            intensity=intensity,
            heat=heat,
            session_id=sid,
            on_change=self._changed,
            on_event=self._event,
            session_faults=list(self.session_faults),
        )
        self.session_faults = []
        if hasattr(self.hardware, "set_epoch"):
            self.hardware.set_epoch(self.driver.now_ns())  # --fault times count from here
        return session

    def _check_intensity(self, intensity: Any) -> None:
        if isinstance(intensity, bool) or not isinstance(intensity, int) or not 1 <= intensity <= 5:
            raise CommandError("out_of_range", "intensity must be an integer 1..5")

    def _check_heat(self, heat: Any) -> None:
        levels = ("off", *self.config.heater.levels_c)
        if heat not in levels:
            raise CommandError("out_of_range", f"heat must be one of {', '.join(levels)}")

    # ---- test hooks (simulated chair, paced clock) -------------------------------------------

    def hold(self) -> None:
        """Freeze simulated time: the controller stays in its state; commands still apply."""
        self.driver.hold()

    def release(self) -> None:
        self.driver.release()

    async def advance_until(self, state: str, timeout: float = 30.0) -> None:
        """Let simulated time run until the controller is in `state`, then hold it there."""
        self.driver.hold_when = lambda: self.state_name == state
        self.driver.release()
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.state_name != state:
            if loop.time() > end:
                raise TimeoutError(f"never reached {state} (at {self.state_name})")
            await asyncio.sleep(0.002)
        self.driver.hold()
        self.driver.hold_when = None

    async def inject_fault(self, code: str = "board") -> None:
        """Latch a fault from above (the core's controlled stop follows), as a test hook."""
        self.core.raise_fault(code)
        self._grant()
        await self._await_state({"fault"})

    def _grant(self) -> None:
        if self.driver.held:
            self.driver.grant(GRACE_S)

    def _require(self, *states: str) -> None:
        if self.state_name not in states:
            raise CommandError(
                "not_allowed", f"not allowed while {self.state_name} (needs {' or '.join(states)})"
            )

    # ---- actions (ControllerAPI) -------------------------------------------------------------

    async def start(
        self,
        program: str,
        minutes: float | None = None,
        intensity: int | None = None,
        heat: str | None = None,
    ) -> None:
        self._require("idle")
        if self._pending is not None:
            raise CommandError("busy", "a session is already starting")
        session = self._make_session(program, minutes, intensity, heat)
        self._pending = session
        self.session = session
        self.driver.interrupt()
        self._grant()
        self._changed()
        await self._await_state({"scanning", "fault", "estop", "idle"} - {"idle"})

    async def pause(self) -> None:
        self._require("running")
        assert self.session is not None
        self.session.request("pause")
        self._grant()
        await self._await_state({"paused", "fault", "estop", "idle", "settling"})

    async def resume(self) -> None:
        self._require("paused")
        assert self.session is not None
        self.session.request("resume")
        self._grant()
        await self._await_state({"running", "fault", "estop", "idle", "settling"})

    async def stop(self) -> None:
        self._require("scanning", "adjusting", "running", "paused")
        assert self.session is not None
        self.session.request("stop")
        self._grant()
        await self._await_state({"settling", "idle", "fault", "estop"})

    async def estop(self) -> None:
        self.core.estop(sent_ns=mono_ns())
        self.driver.interrupt()
        self._grant()
        if self.session is not None:
            self.session.request("estop")
        await self._await_state({"estop"})

    async def reset(self) -> None:
        self._require("fault", "estop")
        if self.moving():
            raise CommandError("not_allowed", "the chair is still coming to rest")
        loop = asyncio.get_running_loop()
        self._reset_result = loop.create_future()
        self.core.reset()
        self.driver.interrupt()
        self._grant()
        try:
            ok = await asyncio.wait_for(self._reset_result, timeout=2.0)
        except TimeoutError:
            ok = False
        finally:
            self._reset_result = None
        if not ok:
            raise CommandError("not_allowed", "reset refused: the chair is not at rest")
        self._changed()

    async def set(self, intensity: int | None = None, heat: str | None = None) -> None:
        if intensity is None and heat is None:
            raise CommandError("bad_field", "set needs intensity and/or heat")
        self._require("idle", "scanning", "adjusting", "running", "paused")
        if intensity is not None:
            self._check_intensity(intensity)
        if heat is not None:
            self._check_heat(heat)
        if self.session is None:
            if intensity is not None:
                self._intensity = intensity
            if heat is not None:
                self._heat = heat
            self._changed()
            return
        if intensity is not None:
            self.session.request("intensity", intensity)
        if heat is not None:
            self.session.request("heat", heat)
        self._grant()
        await self._settle_requests()

    async def adjust_shoulder(self, mm: float) -> None:
        self._require("adjusting")
        lim = self.config.body.adjust_mm
        if (
            isinstance(mm, bool)
            or not isinstance(mm, int | float)
            or not math.isfinite(mm)
            or (abs(mm) > lim)
        ):
            raise CommandError("out_of_range", f"mm must be a number in -{lim:g}..{lim:g}")
        assert self.session is not None
        self.session.request("adjust", float(mm))
        self._grant()
        await self._settle_requests()

    async def _settle_requests(self) -> None:
        for _ in range(200):
            if self.session is None or not self.session.requests_pending:
                return
            await asyncio.sleep(0.005)

    async def _await_state(self, states: AbstractSet[str], timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.state_name not in states and loop.time() < end:
            await asyncio.sleep(0.005)

    async def wait_session(self) -> None:
        await self._session_done.wait()


__all__ = ["AXES", "Controller"]
