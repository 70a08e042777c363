"""The controller: one chair (core + hardware), at most one session at a time.

It is what `chair run` and `chair serve` drive, and what remote control sees through
`chair.api.ControllerAPI`: every request is checked here (`chair.requests`) and against the life
cycle (docs/chair.md §4), and refused with a stable error code when it does not fit; the core's
guard checks again every tick.

Every action waits for its outcome on the session's state changes: each transition is offered to
the waiting actions the moment it happens (`wait_for_state`), so none is missed however fast the
chair runs, and a wait that runs out raises `CommandError("timeout")` — never a silent timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, ClassVar

from chair.api import CommandError
from chair.checker import check_session
from chair.driver import PACE_GRANULARITY_S, CoreDriver, Pacing
from chair.lifecycle import IN_SESSION, LATCHED, SessionEvent, SessionState
from chair.manual_session import ManualSession
from chair.programs.manual import MANUAL, ManualSettings
from chair.programs.model import (
    Issue,
    Program,
    ProgramError,
    builtin_programs,
    load_program,
    parse_program,
)
from chair.programs.validate import validate_program
from chair.report import build_summary
from chair.requests import (
    AdjustRequest,
    MoveRequest,
    SetRequest,
    StartRequest,
    UserProfile,
    parse_request,
)
from chair.session import CONTOUR_STATE_STEP_MM, Session, SessionResult, telemetry_sample
from chair.store import (
    USER_FIELDS,
    Store,
    StoreError,
    finished_event,
    minutes_run,
    now_iso,
    outcome_of,
)
from core_rt.config import AXES, ChairConfig
from core_rt.core import FAULT_CODES, FAULT_MESSAGES, Core, CoreEvent, Telemetry, mono_ns

log = logging.getLogger("chair.controller")

IDLE_STEP_NS = 100_000_000
"""Between sessions the runner advances the core in steps this long (it wakes at once on a
command or a core event)."""
ACTION_TIMEOUT_S = 10.0
"""Longest wait for an action's outcome (a state change) before it is reported as timed out."""
RESET_TIMEOUT_S = 2.0
"""Longest wait for the core's answer to a reset."""
FINISH_TIMEOUT_S = 30.0
"""Longest wait for a latched session to finish (its summary and the checker) before a reset."""

StatePredicate = Callable[[SessionState], bool]


class Controller:
    """Owns the core, the hardware and the current session; implements ControllerAPI."""

    driver_class: ClassVar[type[CoreDriver]] = CoreDriver
    """The driver `create` builds (the testing controller's holds its clock)."""

    def __init__(self, config: ChairConfig, core: Core, driver: CoreDriver, hardware: Any) -> None:
        self.config = config
        self.core = core
        self.driver = driver
        self.hardware = hardware
        self.session: Session | None = None
        self.last_result: SessionResult | None = None
        self.last_telemetry: list[dict[str, Any]] = []
        self.last_summary: dict[str, Any] | None = None
        self._state = SessionState.IDLE  # the chair's own state between sessions
        self._fault: dict[str, str] | None = None
        # what a `set` chose between sessions for the next one (None: not chosen); the next
        # start consumes it (docs/mqtt.md, `set`)
        self._intensity: int | None = None
        self._heat: str | None = None
        self._zone_intensity: dict[str, int] = {}
        self._change_cbs: list[Callable[[dict[str, Any]], None]] = []
        self._event_cbs: list[Callable[[dict[str, Any]], None]] = []
        self._pending: Session | None = None
        self._runner: asyncio.Task[None] | None = None
        self._session_done = asyncio.Event()
        self._ids = itertools.count(1)
        self._last_state: dict[str, Any] | None = None
        self._last_name = SessionState.IDLE
        self._waiters: list[tuple[StatePredicate, asyncio.Future[SessionState]]] = []
        self._reset_result: asyncio.Future[bool] | None = None
        self.telemetry_sinks = driver.telemetry_sinks
        self._latest_record: tuple[Telemetry, SessionState] | None = None
        """The chair's last telemetry record and state, made a sample when asked for."""
        self.keep_telemetry = True
        """Sessions keep their telemetry for the independent checker (off: the summary carries
        the guard's verdict alone, `safety.checked` false; `chair fleet-sim`'s chairs)."""
        self.action_timeout_s = ACTION_TIMEOUT_S
        """Longest wait for an action's outcome before it is reported as timed out."""
        self.idle_step_ns = IDLE_STEP_NS
        """Between sessions the state is read afresh this often (`chair fleet-sim`'s chairs: less
        often); a command or a core event wakes the runner at once whatever it is."""
        self.session_faults: list[tuple[float, str]] = []
        # the chair's database (docs/chair.md §9): None without one, or once it failed
        self.db_path: Path | None = None
        self.store: Store | None = None
        self.history_error: str | None = None
        """Why history is off (None: on, or no database configured)."""
        self.interrupted: list[str] = []
        """Sessions found open at start and closed as interrupted."""
        self._outbox_topic: str | None = None
        self._store_tasks: set[asyncio.Task[None]] = set()
        self._delivered: dict[str, str] = {}
        """Programs delivered to the chair (docs/programs.md, Delivered programs): name → the
        file's text, kept in the database."""

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
        start_pose_mm: tuple[float, float, float] | None = None,
        db: str | Path | None = None,
        back: str | None = None,
        pace_granularity_s: float = PACE_GRANULARITY_S,
        keep_telemetry: bool = True,
    ) -> Controller:
        """Build a controller. `speed` = virtual time paced at that factor (tests, demos);
        None = the real-time core against the wall clock (`pacing` may override).
        `start_pose_mm`: where the simulated chair is at power-on (carriage, width, depth; None =
        park); the core takes it from the encoders like any other pose (docs/core.md).
        `db`: the chair's database (user profiles, history, outbox; None: none).
        `back`: the simulated back's curve family (`sim.back.BACK_SHAPES`; None: the flat back,
        docs/simulator.md). `pace_granularity_s`: the paced clock's shortest sleep (coarser for
        `chair fleet-sim`'s many chairs in one event loop). `keep_telemetry`: whether sessions
        keep their telemetry for the independent checker (`Controller.keep_telemetry`)."""
        if pacing is None:
            pacing = "realtime" if speed is None else "paced"
        session_faults: list[tuple[float, str]] = []
        if hardware == "sim":
            from sim.faults import parse_fault
            from sim.model import BodyParams, PlantParams
            from sim.plant import SimPlant

            specs = [parse_fault(f) for f in faults]
            hw: Any = SimPlant(
                config,
                body_height_cm=body_height_cm,
                seed=seed,
                faults=[s for s in specs if s.kind != "estop"],
                params=PlantParams(
                    start_mm=start_pose_mm,
                    body=BodyParams(back=back),
                ),
            )
            session_faults = [(s.at_s, s.kind) for s in specs if s.kind == "estop"]
        else:
            # a board (real, or `chair board`) runs at its own real-time pace
            if faults:
                raise ValueError(
                    "--fault applies to the simulated chair; inject faults on the board "
                    "(`chair board --fault` or its control socket) instead"
                )
            if back is not None:
                raise ValueError("a back shape applies to the simulated chair only")
            if start_pose_mm is not None:
                raise ValueError(
                    "--start-pose applies to the simulated chair; a board reports where it is "
                    "(`chair board --start-pose` for the simulated one)"
                )
            if pacing != "realtime":
                raise ValueError("a board link runs in real time: use --realtime (or no --speed)")
            from core_rt.board.link import open_board_link  # the HIL board driver

            hw = open_board_link(hardware, config)
        core = Core(config, hw, telemetry_hz=telemetry_hz)
        driver = cls.driver_class(
            core, config, pacing, speed or 60.0, pace_granularity_s=pace_granularity_s
        )
        c = cls(config, core, driver, hw)
        c.keep_telemetry = keep_telemetry
        c.session_faults = session_faults
        c.db_path = None if db is None else Path(db)
        driver.telemetry_sinks.append(c._on_telemetry)
        return c

    # ---- status (ControllerAPI) --------------------------------------------------------------

    @property
    def state_name(self) -> SessionState:
        if self.session is not None and not self._state.latched:
            return self.session.state
        return self._state

    def state(self) -> dict[str, Any]:
        """The state payload (docs/mqtt.md): the same keys in every state, gathered from the
        session's status when one runs, else from the chair between sessions."""
        s = self.session
        latched = self._state.latched
        if s is not None:
            st = s.status()
            fault = self._fault if latched else st["fault"]
        else:
            tl = self._latest_tlm()
            last = self.last_result
            heater = self.config.heater
            st = {
                "program": None,
                "step": None,
                "technique": None,
                "zone": None,
                "elapsed_s": 0.0,
                "remaining_s": 0.0,
                # the next session's choice, None (null) when nothing was set: the program's
                # defaults will apply
                "intensity": self._intensity,
                "zone_intensity": dict(self._zone_intensity),
                "manual": None,
                "heat": {
                    "level": self._heat,
                    "target_c": 0.0 if self._heat is None else heater.target_c(self._heat),
                    "temp_c": None if tl is None else round(tl["heat_c"], 2),
                },
                "shoulder_mm": None
                if last is None or last.shoulder_mm is None
                else round(last.shoulder_mm, 1),
                "session_id": None,
                "zones": {},
                "contour": []
                if last is None or not last.contour
                else last.contour.as_pairs(CONTOUR_STATE_STEP_MM),
            }
            fault = self._fault
        return {
            "state": str(self.state_name),
            **st,
            "fault": fault,
            "link": self.link_report(),
            "user": None if s is None else s.user,
            "history": {"on": self.store is not None, "error": self.history_error},
        }

    def link_report(self) -> dict[str, Any] | None:
        """The board link's counters (docs/board-protocol.md, Counters); None in the simulator,
        where the core calls the plant directly."""
        report = getattr(self.hardware, "report", None)
        return None if report is None else dict(report())

    def telemetry(self) -> dict[str, Any] | None:
        if self.session is not None and self.session.last_telemetry is not None:
            return self.session.last_telemetry
        return self._latest_tlm()

    def programs(self) -> list[str]:
        """What `start` accepts: the built-ins, the delivered programs (docs/programs.md,
        Delivered programs), then manual mode (docs/chair.md §8)."""
        return [*builtin_programs(), *sorted(self._delivered), MANUAL]

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
        """Called on every change of the session or the chair: offers a new state to the waiting
        actions at once, then tells the listeners when the payload changed."""
        name = self.state_name
        if name != self._last_name:
            self._last_name = name
            self._offer(name)
        st = self.state()
        if st != self._last_state:
            self._last_state = st
            for cb in self._change_cbs:
                cb(st)

    def _offer(self, name: SessionState) -> None:
        still: list[tuple[StatePredicate, asyncio.Future[SessionState]]] = []
        for done, fut in self._waiters:
            if fut.done():
                continue
            if done(name):
                fut.set_result(name)
            else:
                still.append((done, fut))
        self._waiters = still

    async def wait_for_state(
        self,
        done: StatePredicate | Collection[SessionState],
        *,
        timeout_s: float | None = None,
        what: str = "waiting",
    ) -> SessionState:
        """Wait until the chair is in a state for which `done` holds (or one of the states
        given); the state is checked now and at every transition, so none is missed. Raises
        `CommandError("timeout")` when `timeout_s` (default: `action_timeout_s`) runs out first."""
        if timeout_s is None:
            timeout_s = self.action_timeout_s
        pred: StatePredicate = done if callable(done) else frozenset(done).__contains__
        name = self.state_name
        if pred(name):
            return name
        fut: asyncio.Future[SessionState] = asyncio.get_running_loop().create_future()
        self._waiters.append((pred, fut))
        try:
            async with asyncio.timeout(timeout_s):  # (3.11's wait_for can swallow a cancel)
                return await fut
        except TimeoutError:
            now = self.state()
            why = f" ({now['fault']['code']}: {now['fault']['message']})" if now["fault"] else ""
            raise CommandError(
                "timeout", f"{what}: still {now['state']}{why} after {timeout_s:g} s"
            ) from None
        finally:
            if not fut.done():
                fut.cancel()

    def _event(self, e: dict[str, Any]) -> None:
        if e.get("event") == SessionEvent.STEP_STARTED and self.session is not None:
            self._history_progress(self.session)
        for cb in self._event_cbs:
            cb(e)

    def _on_telemetry(self, records: list[Telemetry]) -> None:
        self._latest_record = (records[-1], self._state)

    def _latest_tlm(self) -> dict[str, Any] | None:
        """Between sessions: the chair's own telemetry, `t` on the core's clock."""
        if self._latest_record is None:
            return None
        record, state = self._latest_record
        return telemetry_sample(record, 0, state)

    # ---- running -----------------------------------------------------------------------------

    async def open(self) -> None:
        await self.driver.start()
        if self.db_path is not None:
            try:
                self.store = await Store.open(self.db_path)
                self.interrupted = await self.store.close_interrupted()
                self._delivered = await self.store.programs()
            except StoreError as e:
                await self._history_off(e)
            for sid in self.interrupted:
                log.warning(
                    "session %s was cut off (power loss or kill): closed as interrupted", sid
                )

    async def close(self) -> None:
        if self._runner is not None:
            # Python 3.11's asyncio.wait_for can swallow a cancel that lands as its inner wait
            # completes: cancel until the runner has really ended
            while not self._runner.done():
                self._runner.cancel()
                await asyncio.wait({self._runner}, timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._store_tasks:
            await asyncio.gather(*self._store_tasks, return_exceptions=True)
        if self.store is not None:
            with contextlib.suppress(StoreError):
                await self.store.close()
            self.store = None
        close = getattr(self.hardware, "close", None)
        if close is not None:
            # a board link: its goodbye (drives and heater off, echoed by the board) goes out
            # while the core still ticks, then the I/O thread stops and the port closes
            await asyncio.to_thread(close)
        await self.driver.close()

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
                # a session that crashed is logged, e-stopped and reported by _run_session: the
                # daemon goes on serving (reset, the next session)
                with contextlib.suppress(Exception):
                    await self._run_session(self.session)
                continue
            events = await self.driver.advance(self.driver.now_ns() + self.idle_step_ns)
            self._idle_events(events)
            self._changed()

    async def _run_session(self, session: Session) -> SessionResult:
        self._session_done.clear()
        wall0 = time.perf_counter()
        await self._history_begin(session)
        try:
            result = await session.run()
        except Exception:  # never lose the chair to a bug in a session: stop it safely
            log.exception("session crashed; e-stopping the chair")
            self.core.estop()
            self._state = SessionState.ESTOP
            self._fault = {"code": "internal", "message": "session crashed"}
            await self._session_finished(
                session, None, None, completed=False, end_reason="internal"
            )
            self.session = None
            self._session_done.set()
            self._changed()
            raise
        self.last_result = result
        self.last_telemetry = session.telemetry
        self.last_summary = await self._summary(session, result, time.perf_counter() - wall0)
        # the daemon's log says how each session ended, and why when it did not complete
        log.info(
            "session %s ended: %s%s",
            session.session_id,
            result.end_reason,
            "" if result.completed else f" ({'; '.join(result.notes) or 'no note'})",
        )
        # the summary rides on the event, so remote tools can check a session like `chair run`
        await self._session_finished(
            session,
            result,
            self.last_summary,
            completed=result.completed,
            end_reason=result.end_reason,
        )
        if session.state.latched:
            self._state = session.state
            f = session.fault
            self._fault = (
                {"code": f.code, "message": f.message}
                if f is not None
                else {"code": "estop", "message": "emergency stop"}
            )
        else:
            self._state = SessionState.IDLE
        self.session = None
        self._session_done.set()
        self._changed()
        return result

    # ---- history, user memory, outbox (docs/chair.md §9) --------------------------------------

    async def _history_off(self, e: StoreError) -> None:
        """The database failed: say so once (log and state); sessions go on without history."""
        if self.history_error is None:
            log.error("history off: %s", e)
        self.history_error = str(e)
        store, self.store = self.store, None
        if store is not None:
            with contextlib.suppress(StoreError):
                await store.close()
        self._changed()

    def _program_name(self, session: Session) -> str:
        return MANUAL if isinstance(session, ManualSession) else session.program.name

    async def _history_begin(self, session: Session) -> None:
        if self.store is None:
            return
        try:
            await self.store.begin_session({**self._record_head(session), "started_at": now_iso()})
        except StoreError as e:
            await self._history_off(e)

    def _history_progress(self, session: Session) -> None:
        """Keep an open record's run time current (an interrupted record keeps it)."""
        store = self.store
        if store is None:
            return

        async def write() -> None:
            try:
                await store.progress(session.session_id, session.program_seconds())
            except StoreError as e:
                await self._history_off(e)

        task = asyncio.get_running_loop().create_task(write())
        self._store_tasks.add(task)
        task.add_done_callback(self._store_tasks.discard)

    def _record_head(self, session: Session) -> dict[str, Any]:
        """What a session's record says from its start: who, what, how long, how strong."""
        return {
            "session_id": session.session_id,
            "user": session.user,
            "program": self._program_name(session),
            "minutes_planned": session.minutes,
            "intensity": session.intensity,
            "heat": session.heat_level,
        }

    def record_of(
        self,
        session: Session,
        result: SessionResult | None,
        summary: dict[str, Any] | None,
        end_reason: str,
    ) -> dict[str, Any]:
        """The session's record (docs/chair.md §9) as `chair history` and `session_finished`
        carry it."""
        faults = [] if summary is None else summary.get("faults", [])
        seconds = round(session.program_seconds(), 3)
        return {
            **self._record_head(session),
            "outcome": outcome_of(end_reason),
            "end_reason": end_reason,
            "seconds_run": seconds,
            "minutes_run": minutes_run(seconds),
            "faults": faults,
            "safety_ok": None if summary is None else summary["safety"]["ok"],
            "zone_seconds": {}
            if summary is None
            else {z: d["actual"] for z, d in summary.get("zone_seconds", {}).items()},
            "ended_at": now_iso(),
        }

    async def _session_finished(
        self,
        session: Session,
        result: SessionResult | None,
        summary: dict[str, Any] | None,
        *,
        completed: bool,
        end_reason: str,
    ) -> None:
        """Close the record, update the user's memory after a completed session, keep the
        `session_finished` event in the outbox when a broker is to get it, then emit it."""
        for task in list(self._store_tasks):  # progress writes go first
            with contextlib.suppress(Exception):
                await task
        record = self.record_of(session, result, summary, end_reason)
        event: dict[str, Any] = {
            "event": SessionEvent.SESSION_FINISHED,
            "session_id": session.session_id,
            "t": round(session.now_s(), 3),
            "completed": completed,
            "end_reason": end_reason,
            "summary": summary,
            "record": record,
        }
        outbox_id: int | None = None
        if self.store is not None:
            try:
                started = await self.store.record(session.session_id)
                if started is not None:
                    record["started_at"] = started["started_at"]
                outbox_id = await self.store.finish_session(
                    session.session_id, record, event=event, topic=self._outbox_topic
                )
                if completed and session.user is not None:
                    await self.store.update_user(session.user, self._memory_of(session))
            except StoreError as e:
                await self._history_off(e)
        self._event(event if outbox_id is None else {**event, "outbox_id": outbox_id})

    @staticmethod
    def _memory_of(session: Session) -> dict[str, Any]:
        """What a completed session leaves in its user's memory."""
        program = session.program.name if not isinstance(session, ManualSession) else MANUAL
        return {
            "shoulder_offset_mm": round(session.adjust_mm, 1),
            "intensity": session.intensity,
            "heat": session.heat_level,
            "zone_intensity": dict(session.zone_intensity),
            "program": program,
            "minutes": session.minutes,
        }

    async def user_profile(self, name: str) -> UserProfile | None:
        """The user's memory, checked like any request; `unknown_user` when there is no such
        profile. None when the database is off (the session starts without memory)."""
        parse_request(StartRequest, {"user": name}, self.config, prefix="start.")
        if self.store is None:
            log.warning("user %s: the database is off, starting without their memory", name)
            return None
        try:
            row = await self.store.user(name)
        except StoreError as e:
            await self._history_off(e)
            return None
        if row is None:
            raise CommandError(
                "unknown_user", f"no user {name!r} (add one with `chair users add NAME`)"
            )
        data = {k: row[k] for k in ("name", *USER_FIELDS) if row.get(k) not in (None, {})}
        try:
            return parse_request(UserProfile, data, self.config, prefix=f"user {name}: ")
        except CommandError as e:  # nothing in the database can make a session unsafe
            log.error("the stored profile is invalid (%s): starting from the defaults", e.message)
            return UserProfile(name=row["name"])

    async def users(self) -> list[dict[str, Any]]:
        """The user profiles (the `users` action); `no_store` without a database."""
        if self.store is None:
            raise CommandError("no_store", self.history_error or "the chair has no database")
        try:
            return await self.store.users()
        except StoreError as e:
            await self._history_off(e)
            raise CommandError("no_store", str(e)) from None

    async def install_program(self, source: str) -> dict[str, Any]:
        """Keep a delivered program file (docs/programs.md, Delivered programs) once it passes
        `chair validate`'s full verification; refused while a session runs, without a database,
        or under a built-in's name. Nothing changes on a refusal. What was installed: {`name`,
        `sha256`, `replaced`}."""
        self._require_between_sessions("install a program")
        store = self._program_store()
        program, issues = await asyncio.to_thread(_verified, source, self.config)
        if program is None or issues:
            shown = "; ".join(f"{i.field}: {i.message} [{i.rule}]" for i in issues[:3])
            more = f" (+{len(issues) - 3} more)" if len(issues) > 3 else ""
            raise CommandError("invalid_program", f"the program fails verification: {shown}{more}")
        name = program.name
        if name in builtin_programs() or name == MANUAL:
            raise CommandError(
                "invalid_program", f"{name!r} is a built-in program's name: choose another"
            )
        self._require_between_sessions("install a program")  # (a start while it was checked)
        digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
        try:
            replaced = await store.put_program(name, source, digest)
        except StoreError as e:
            await self._history_off(e)
            raise CommandError("no_store", str(e)) from None
        self._delivered[name] = source
        log.info("program %s installed (sha256 %s)", name, digest[:12])
        self._changed()
        return {"name": name, "sha256": digest, "replaced": replaced}

    async def remove_program(self, name: str) -> dict[str, Any]:
        """Forget a delivered program (not while a session runs)."""
        self._require_between_sessions("remove a program")
        store = self._program_store()
        if name not in self._delivered:
            raise CommandError(
                "unknown_program", f"no delivered program {name!r} (built-ins cannot be removed)"
            )
        try:
            await store.remove_program(name)
        except StoreError as e:
            await self._history_off(e)
            raise CommandError("no_store", str(e)) from None
        del self._delivered[name]
        self._changed()
        return {"name": name, "removed": True}

    def _require_between_sessions(self, what: str) -> None:
        if self.session is not None or self.state_name != SessionState.IDLE:
            raise CommandError(
                "not_allowed", f"cannot {what} while a session runs ({self.state_name})"
            )

    def _program_store(self) -> Store:
        if self.store is None:
            raise CommandError("no_store", self.history_error or "the chair has no database")
        return self.store

    async def outbox_attach(self, topic: str) -> None:
        """From now on every finished session's event is kept in the outbox for `topic` until
        `outbox_done`; the sessions found interrupted at start are queued there too."""
        self._outbox_topic = topic
        if self.store is None:
            return
        try:
            for sid in self.interrupted:
                record = await self.store.record(sid)
                if record is not None:
                    await self.store.add_outbox(topic, sid, finished_event(record))
            self.interrupted = []
        except StoreError as e:
            await self._history_off(e)

    async def outbox_pending(self) -> list[tuple[int, dict[str, Any]]]:
        """The events not yet acknowledged (by the broker, or by the fleet's service), oldest
        first."""
        if self.store is None or self._outbox_topic is None:
            return []
        try:
            return await self.store.outbox(self._outbox_topic)
        except StoreError as e:
            await self._history_off(e)
            return []

    async def outbox_done(self, outbox_id: int) -> None:
        """The broker acknowledged the event: forget it."""
        if self.store is None:
            return
        try:
            await self.store.outbox_done(outbox_id)
        except StoreError as e:
            await self._history_off(e)

    async def outbox_received(self, session_id: str) -> bool:
        """The operator's service has the record of `session_id` in its database: forget its
        event (docs/fleet-service.md); whether there was one."""
        if self.store is None or self._outbox_topic is None:
            return False
        try:
            return await self.store.outbox_received(self._outbox_topic, session_id)
        except StoreError as e:
            await self._history_off(e)
            return False

    async def _summary(
        self, session: Session, result: SessionResult, wall_seconds: float
    ) -> dict[str, Any]:
        """The session's one summary (docs/interfaces.md §2), with the independent checker's
        verdict in ``safety`` (run off the event loop: it reads the whole telemetry)."""
        summary = build_summary(
            result,
            self.config,
            session_id=session.session_id,
            program=session.program.name,
            minutes=session.minutes,
            intensity=session.intensity,
            heat=session.heat_level,
            body_height_cm=getattr(self.hardware, "body_height_cm", None),
            ticks=round(result.sim_seconds * 1e9 / self.core.period_ns),
            wall_seconds=wall_seconds,
            user=session.user,
        )
        summary["link"] = self.link_report()
        # the real-time loop's wake-up latency and missed ticks (null in virtual time): a late
        # tick is the first thing to rule out when a link goes stale
        summary["loop"] = self.core.loop_stats() if self.driver.pacing == "realtime" else None
        summary["commands"] = self.core.command_stats()
        summary["heat_levels"] = [[round(t, 3), level] for t, level in session.heat_levels]
        summary["zone_intensity"] = dict(session.zone_intensity)
        if isinstance(session, ManualSession):
            # the settings over time, which the checker judges the area by; what was planned is
            # what the segments planned, each cut where a change braked it
            summary["manual"] = [[round(t, 3), row] for t, row in session.manual_history]
            summary["zone_order_planned"] = list(session.planned_zone_order)
            for z, d in summary["zone_seconds"].items():
                d["planned"] = round(session.planned_zone_seconds[z], 3)
        safety = summary["safety"]
        if session.keep_telemetry:
            violations = await asyncio.to_thread(
                check_session, session.telemetry, summary, self.config
            )
            safety["violations"] = violations
            safety["ok"] = safety["ok"] and not violations
            safety["checked"] = True
        else:  # a benchmark that keeps no telemetry: the guard's verdict alone
            safety["checked"] = False
        return summary

    def _idle_events(self, events: list[CoreEvent]) -> None:
        for e in events:
            kind, code = e.kind, e.code
            if kind == "fault":
                name = FAULT_CODES[code] or "unknown"
                self._state = SessionState.FAULT
                where = f"{AXES[e.axis]}: " if e.axis >= 0 else ""
                self._fault = {
                    "code": name,
                    "message": f"{FAULT_MESSAGES.get(name, name)} ({where}value {e.value:g})",
                }
                self._event(
                    {"event": SessionEvent.FAULT, "code": name, "message": self._fault["message"]}
                )
            elif kind == "estop":
                self._state = SessionState.ESTOP
                self._fault = {"code": "estop", "message": "emergency stop"}
                self._event({"event": SessionEvent.ESTOP})
            elif kind == "reset":
                if code == 1:
                    self._state = SessionState.IDLE
                    self._fault = None
                    self._event({"event": SessionEvent.RESET})
                if self._reset_result is not None and not self._reset_result.done():
                    self._reset_result.set_result(code == 1)

    async def run_session(
        self, program: str | Program, *, keep_telemetry: bool = True, **kw: Any
    ) -> SessionResult:
        """Run one whole session in the caller's task (the CLI's `chair run`). Without
        `keep_telemetry` (benchmarks) the summary carries the guard's verdict only."""
        user = kw.pop("user", None)
        profile = None if user is None else await self.user_profile(user)
        session = self._make_session(program, **kw, user=user, profile=profile)
        session.keep_telemetry = keep_telemetry
        self.session = session
        return await self._run_session(session)

    def _make_session(
        self,
        program: str | Program,
        minutes: float | None = None,
        intensity: int | None = None,
        heat: str | None = None,
        zone_intensity: dict[str, int] | None = None,
        manual: dict[str, Any] | None = None,
        user: str | None = None,
        profile: UserProfile | None = None,
    ) -> Session:
        """The next session. Intensity, heat and per-zone strength: the value given here, else
        the one a `set` chose since the last session (consumed here), else the user's memory
        (`profile`), else the program's default (no per-zone offsets). The minutes: given, else
        the user's when this is their favourite program, else the program's."""
        req = parse_request(
            StartRequest,
            {
                "program": program if isinstance(program, str) else None,
                "minutes": minutes,
                "intensity": intensity,
                "heat": heat,
                "zone_intensity": zone_intensity,
                "manual": manual,
                "user": user,
            },
            self.config,
        )
        is_manual = program == MANUAL
        if req.manual is not None and not is_manual:
            raise CommandError("not_manual", "manual settings need program 'manual'")
        if isinstance(program, str) and is_manual:
            prog: Program | None = None
        elif isinstance(program, str) and program in self._delivered:
            # checked in full when it came; checked again (as any file) before it runs
            prog = parse_program(self._delivered[program], delivered_label(program))
        elif isinstance(program, str):
            try:
                prog = load_program(program)
            except ProgramError as e:
                raise CommandError("unknown_program", str(e)) from e
        else:
            prog = program
        sid = f"{uuid.uuid4().hex[:8]}-{next(self._ids)}"
        # precedence: the start's own choice > what a `set` chose since the last session > the
        # user's memory > the program's default (the session applies that last one)
        mem = profile if profile is not None else UserProfile(name=user or "-")
        name = MANUAL if prog is None else prog.name
        minutes_ = req.minutes
        if minutes_ is None and mem.program == name:
            minutes_ = mem.minutes
        intensity_ = req.intensity if req.intensity is not None else self._intensity
        heat_ = req.heat if req.heat is not None else self._heat
        zones_ = req.zone_intensity
        if zones_ is None:
            zones_ = self._zone_intensity or mem.zone_intensity or {}
        kw: dict[str, Any] = dict(
            minutes=minutes_,
            intensity=mem.intensity if intensity_ is None else intensity_,
            heat=mem.heat if heat_ is None else heat_,
            zone_intensity=zones_,
            user=user,
            shoulder_offset_mm=mem.shoulder_offset_mm or 0.0,
            session_id=sid,
            on_change=self._changed,
            on_event=self._event,
            session_faults=list(self.session_faults),
        )
        session: Session
        if prog is None:
            settings = ManualSettings().changed(**(req.manual or {}))
            session = ManualSession(self.config, self.driver, settings, **kw)
        else:
            session = Session(self.config, self.driver, prog, **kw)
        session.keep_telemetry = self.keep_telemetry
        self.session_faults = []
        self._intensity = self._heat = None  # a `set` between sessions is for one session
        self._zone_intensity = {}
        if hasattr(self.hardware, "set_epoch"):
            self.hardware.set_epoch(self.driver.now_ns())  # --fault times count from here
        return session

    def _kick(self) -> None:
        """A request was made: the runner acts on it at once (it is interrupted by the session's
        request or the core command). The testing controller also lets its held clock run."""
        self.driver.interrupt()

    def _require(self, *states: SessionState) -> None:
        if self.state_name not in states:
            raise CommandError(
                "not_allowed", f"not allowed while {self.state_name} (needs {' or '.join(states)})"
            )

    async def _requested(self, *acks: asyncio.Future[bool]) -> None:
        """Wait until the session has taken the requests (or ended without them)."""
        try:
            async with asyncio.timeout(self.action_timeout_s):
                await asyncio.gather(*acks)
        except TimeoutError:
            raise CommandError(
                "timeout",
                f"the session did not take the request within {self.action_timeout_s:g} s",
            ) from None

    # ---- actions (ControllerAPI) -------------------------------------------------------------

    async def start(
        self,
        program: str,
        minutes: float | None = None,
        intensity: int | None = None,
        heat: str | None = None,
        zone_intensity: dict[str, int] | None = None,
        manual: dict[str, Any] | None = None,
        user: str | None = None,
    ) -> None:
        self._require(SessionState.IDLE)
        if self._pending is not None:
            raise CommandError("busy", "a session is already starting")
        if self.session is not None:  # the last one has ended and is being summed up
            await self.wait_session(self.action_timeout_s)
            self._require(SessionState.IDLE)
            if self._pending is not None or self.session is not None:
                raise CommandError("busy", "a session is already starting")
        profile = None if user is None else await self.user_profile(user)
        self._require(SessionState.IDLE)
        if self._pending is not None or self.session is not None:
            raise CommandError("busy", "a session is already starting")
        session = self._make_session(
            program, minutes, intensity, heat, zone_intensity, manual, user, profile
        )
        self._pending = session
        self.session = session
        self._kick()
        self._changed()
        # answered as soon as the session has left idle (scanning), or if it could not start
        try:
            await self.wait_for_state(
                lambda s: s != SessionState.IDLE or self.session is not session,
                what="start",
            )
        except CommandError as e:
            if e.code != "timeout":
                raise
            # a start answered "timeout" never runs later (a paid start would be refused and
            # then served): not yet taken by the runner, it is withdrawn; taken, it is stopped
            if self._pending is session:
                self._pending = None
                self.session = None
                self._changed()
                raise CommandError("timeout", f"{e.message}; nothing was started") from None
            if self.session is session:
                session.request("stop")
                self._kick()
                raise CommandError(
                    "timeout", f"{e.message}; the session is stopped before its program"
                ) from None
            raise

    async def pause(self) -> None:
        self._require(SessionState.RUNNING)
        assert self.session is not None
        self.session.request("pause")
        self._kick()
        await self.wait_for_state(
            lambda s: s not in (SessionState.RUNNING,) or self.session is None, what="pause"
        )

    async def resume(self) -> None:
        self._require(SessionState.PAUSED)
        assert self.session is not None
        self.session.request("resume")
        self._kick()
        await self.wait_for_state(
            lambda s: s not in (SessionState.PAUSED,) or self.session is None, what="resume"
        )

    async def stop(self) -> None:
        self._require(*IN_SESSION)
        assert self.session is not None
        self.session.request("stop")
        self._kick()
        await self.wait_for_state(lambda s: not s.in_session, what="stop")

    async def estop(self) -> None:
        self.core.estop(sent_ns=mono_ns())
        if self.session is not None:
            self.session.request("estop")
        self._kick()
        await self.wait_for_state({SessionState.ESTOP}, what="estop")

    async def reset(self) -> None:
        self._require(*LATCHED)
        if self.moving():
            raise CommandError("not_allowed", "the chair is still coming to rest")
        if self.session is not None:
            # the latched session is still finishing (its summary, the checker): the reset goes
            # to the core once the controller, not the session, reads the core's events — else
            # the session would take the reset's answer with it
            await self.wait_session(FINISH_TIMEOUT_S)
            self._require(*LATCHED)
        loop = asyncio.get_running_loop()
        self._reset_result = loop.create_future()
        self.core.reset()
        self._kick()
        try:
            async with asyncio.timeout(RESET_TIMEOUT_S):
                ok = await self._reset_result
        except TimeoutError:
            raise CommandError(
                "timeout", f"the core did not answer the reset within {RESET_TIMEOUT_S:g} s"
            ) from None
        finally:
            self._reset_result = None
        if not ok:
            raise CommandError("not_allowed", "reset refused: the chair is not at rest")
        self._changed()

    async def set(
        self,
        intensity: int | None = None,
        heat: str | None = None,
        zone_intensity: dict[str, int] | None = None,
        manual: dict[str, Any] | None = None,
    ) -> None:
        """Change the running session's intensity/heat/per-zone strength (a `zone_intensity`
        replaces the offsets of the zones it names); between sessions, choose them for the
        next session only (a start's own values win; the start after that is back to the
        program's defaults)."""
        req = parse_request(
            SetRequest,
            {
                "intensity": intensity,
                "heat": heat,
                "zone_intensity": zone_intensity,
                "manual": manual,
            },
            self.config,
        )
        if all(v is None for v in (req.intensity, req.heat, req.zone_intensity, req.manual)):
            raise CommandError(
                "bad_field", "set needs intensity, heat, zone_intensity and/or manual"
            )
        self._require(SessionState.IDLE, *IN_SESSION)
        if req.manual is not None:
            self._require_manual("set.manual")
        if self.session is None:
            if req.intensity is not None:
                self._intensity = req.intensity
            if req.heat is not None:
                self._heat = req.heat
            if req.zone_intensity is not None:
                merged = {**self._zone_intensity, **req.zone_intensity}
                self._zone_intensity = {z: o for z, o in merged.items() if o}
            self._changed()
            return
        acks = []
        if req.intensity is not None:
            acks.append(self.session.request("intensity", req.intensity))
        if req.heat is not None:
            acks.append(self.session.request("heat", req.heat))
        if req.zone_intensity is not None:
            acks.append(self.session.request("zone_intensity", req.zone_intensity))
        if req.manual is not None:
            acks.append(self.session.request("manual", req.manual))
        self._kick()
        await self._requested(*acks)

    def _require_manual(self, what: str) -> None:
        if not isinstance(self.session, ManualSession) or not self.state_name.in_session:
            raise CommandError("not_manual", f"{what}: no manual session is running")

    async def move(self, mm: float) -> None:
        """Manual mode: move the area's centre by `mm` (+ up), kept on the body."""
        req = parse_request(MoveRequest, {"mm": mm}, self.config)
        self._require_manual("move")
        assert self.session is not None
        ack = self.session.request("move", req.mm)
        self._kick()
        await self._requested(ack)

    async def adjust_shoulder(self, mm: float) -> None:
        self._require(SessionState.ADJUSTING)
        req = parse_request(AdjustRequest, {"mm": mm}, self.config)
        assert self.session is not None
        ack = self.session.request("adjust", req.mm)
        self._kick()
        await self._requested(ack)

    async def wait_session(self, timeout_s: float | None = None) -> None:
        """Wait until the chair has no session open: the last one has ended, its summary is made
        and `session_finished` is out (its state reads idle a moment before that). Returns at once
        without a session; `timeout_s` None waits as long as the session lasts."""
        if self.session is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._session_done.wait()
        except TimeoutError:
            raise CommandError(
                "timeout", f"the session was still being closed after {timeout_s:g} s"
            ) from None


__all__ = ["Controller"]


def delivered_label(name: str) -> str:
    """How a delivered program's file is named in messages."""
    return f"delivered/{name}.toml"


def _verified(source: str, config: ChairConfig) -> tuple[Program | None, list[Issue]]:
    """`chair validate`'s full verification of a delivered file: (program, issues)."""
    label = "delivered program"
    try:
        program = parse_program(source, label)
    except ProgramError as e:
        return None, e.issues
    return program, validate_program(program, config, delivered_label(program.name))
