"""Hardware in the loop: the real controller against `chair board` over a real TCP or pty link.

Real processes, real TCP on loopback, a real pseudo-terminal, the real-time core against the wall
clock: nothing is mocked. The sessions run over TCP, the serial line's own cases on the pty
(tests/board_helpers.py says why). Times are CLOCK_MONOTONIC on both sides (one machine), so a
detection time is measured from the moment the board applied an injected fault (its control
channel's ``t_ns``) to the core's fault event (the tick's time, mapped to the same clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chair.controller import Controller
from chair.lifecycle import SessionState
from core_rt.board.protocol import (
    BOARD_TO_CONTROLLER,
    FrameDecoder,
    Hello,
    HelloAck,
    Status,
    encode,
)
from core_rt.config import ChairConfig
from core_rt.core import FAULT_CODES, MODES, CoreEvent, Telemetry, mono_ns
from tests.board_helpers import ROOT, Board, board, child_env, read_first_line

pytestmark = [pytest.mark.hil, pytest.mark.realtime]

MS = 1_000_000
TICK_MS = ChairConfig().loop.period_ns / MS
LINK_ALLOWANCE_MS = 4.0
"""What a link adds to a "1 tick" detection: the board's 1 ms tick, the STATUS on the wire and
the core's next tick. The core itself decides on the very tick a status shows the fault."""
THERMAL_SCALE = 20.0


@dataclass
class Watch:
    """What the controller's core reported, on the CLOCK_MONOTONIC time line."""

    ctl: Controller
    offset_ns: int = 0
    events: list[CoreEvent] = field(default_factory=list)
    first_fault: tuple[int, int] | None = None  # (mono ns, code) from per-tick telemetry
    heat_crossing_ns: int | None = None  # first tick whose pad reading reached the trip point
    last_ns: int = 0  # the latest tick telemetry has reported (mono ns)

    def mono(self, core_ns: int) -> int:
        return core_ns + self.offset_ns

    def fault_event(self) -> tuple[int, str] | None:
        for e in self.events:
            if e.kind == "fault":
                return self.mono(e.t_ns), FAULT_CODES[e.code] or "?"
        return None

    def link_events(self) -> list[int]:
        return [e.code for e in self.events if e.kind == "link"]


@contextlib.asynccontextmanager
async def controller(b: Board, config: ChairConfig | None = None) -> AsyncIterator[Watch]:
    cfg = config or ChairConfig()
    ctl = Controller.create(cfg, hardware=b.spec, pacing="realtime", telemetry_hz=1000)
    w = Watch(ctl)
    trip = cfg.heater.trip_c

    def on_telemetry(records: list[Telemetry]) -> None:
        if records:
            w.last_ns = w.mono(records[-1].t_ns)
        for r in records:
            if w.first_fault is None and MODES[r.mode] == "fault":
                w.first_fault = (w.mono(r.t_ns), r.fault)
            if w.heat_crossing_ns is None and r.heat_c >= trip:
                w.heat_crossing_ns = w.mono(r.t_ns)

    deliver = ctl.driver._deliver

    def spy() -> list[CoreEvent]:  # record the core's events too
        ev = deliver()
        w.events.extend(ev)
        return ev

    ctl.driver._deliver = spy  # type: ignore[method-assign]
    ctl.driver.telemetry_sinks.append(on_telemetry)
    try:
        async with ctl:
            ctl.serve()
            # the loop has ticked: its epoch maps core time to mono
            await until(lambda: ctl.core.core_time_ns() > 0, 5, "the core's first tick")
            w.offset_ns = mono_ns() - ctl.core.core_time_ns()
            try:
                yield w
            except BaseException:
                print_link_diagnosis(b, ctl)
                raise
    finally:
        ctl.hardware.close()


def print_link_diagnosis(b: Board, ctl: Controller) -> None:
    """On a failed HIL test, say which side of the link was late (pytest shows it with the
    failure): the board's loop (its longest gap between two turns, its scheduling), the link's
    I/O thread (the longest gaps between STATUS frames and between SETPOINTs it sent, stale
    episodes) and the core's loop (missed ticks, worst wake-up latency)."""
    with contextlib.suppress(Exception):
        st = b.state()
        c = st["counters"]
        print(
            f"board: sched_fifo {st['sched_fifo']} max_loop_gap_ms {c['max_loop_gap_ms']:.2f} "
            f"max_gc_pause_ms {c['max_gc_pause_ms']:.2f} overruns {c.get('overruns')} "
            f"ticks {c.get('ticks')}"
        )
    with contextlib.suppress(Exception):
        r = ctl.link_report() or {}
        keys = (
            "sched_fifo",
            "status_gap_ms",
            "setpoint_gap_ms",
            "rtt_ms",
            "stale_episodes",
            "late_sends",
            "io_thread",
            "stale_core_setpoints",
            "drops",
        )
        print("link:", {k: r.get(k) for k in keys})
    with contextlib.suppress(Exception):
        ls = ctl.core.loop_stats()
        print(
            "core loop:", {k: ls[k] for k in ("cycles", "missed", "latency_max_us", "exec_max_us")}
        )


async def until(
    pred: Callable[[], Any],
    timeout_s: float,
    what: str,
    step_s: float = 0.005,
    ctl: Controller | None = None,
) -> Any:
    """Poll `pred` (a board-side condition: the board process has no events for us) until true;
    with `ctl`, a timeout says what the controller's state and fault were."""
    end = time.monotonic() + timeout_s
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            where = "" if ctl is None else f" (controller: {ctl.state()['state']}, "
            where += "" if ctl is None else f"fault {ctl.state()['fault']})"
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}{where}")
        await asyncio.sleep(step_s)


async def seen_after(w: Watch, t_ns: int, what: str) -> None:
    """Wait until the controller's telemetry covers a tick after `t_ns` (mono): what the board
    did at `t_ns` has reached the core."""
    await until(lambda: w.last_ns > t_ns + 2 * MS, 3, what, ctl=w.ctl)


async def observe(seconds: float) -> None:
    """An observation window, not a wait: the assertions after it say what must NOT have happened
    in it (nothing moves, nothing latches), which only the passing of time can show."""
    await asyncio.sleep(seconds)


async def reach(ctl: Controller, state: str, timeout_s: float, what: str) -> None:
    """Wait for the controller to enter `state`: offered at the transition itself, never missed."""
    await ctl.wait_for_state({SessionState(state)}, timeout_s=timeout_s, what=f"waiting for {what}")


def start_motion(ctl: Controller, heat_c: float = 0.0) -> None:
    """Carriage down the back at full speed, heads narrowing and pressing, kneading."""
    core = ctl.core
    core.move("carriage", 600.0)
    core.move("width", 110.0)
    core.move("depth", 24.0)
    core.rate("kneading", 30.0)
    if heat_c:
        core.heat(heat_c)


async def wait_moving(b: Board, ctl: Controller | None = None) -> None:
    await until(
        lambda: abs(b.state()["plant"]["vel_mm_s"][0]) > 50.0,
        5.0,
        "carriage at speed",
        step_s=0.02,
        ctl=ctl,
    )


async def wait_board_safe(b: Board, after_ns: int, timeout_s: float = 3.0) -> dict[str, Any]:
    """The chair at rest and the heater unpowered, as the board sees it."""

    def safe() -> dict[str, Any] | None:
        s = b.state()
        p = s["plant"]
        rest = (
            all(abs(v) < 0.5 for v in p["vel_mm_s"])
            and abs(p["knead_rpm"]) < 0.5
            and abs(p["tap_hz"]) < 0.5
        )
        return s if rest and p["heater_w"] == 0.0 else None

    return await until(safe, timeout_s, "the board at rest with the heater off", step_s=0.02)


# ---- the board on its own ------------------------------------------------------------------------


def test_board_over_tcp_answers_hello_and_streams_status_at_1khz(tmp_path: Path) -> None:
    with board(tmp_path) as b:
        port = int(b.where)
        assert b.state()["link"]["spec"] == f"tcp:127.0.0.1:{port}"
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(encode(Hello(nonce=99), 0))
        dec = FrameDecoder(expect=BOARD_TO_CONTROLLER)
        frames = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.5:
            frames += dec.feed(s.recv(65536))
        s.close()
        acks = [f.msg for f in frames if isinstance(f.msg, HelloAck)]
        statuses = [f.msg for f in frames if isinstance(f.msg, Status)]
        assert len(acks) == 1 and acks[0].nonce == 99 and acks[0].watchdog_ms <= 100
        assert len(statuses) / 0.5 >= 200  # ≥ 200 Hz (it sends one per 1 ms tick)
        st = statuses[-1]
        assert st.seat_occupied and st.limit_high and st.board_faults == 0  # parked, seated
        assert st.pos_mm[0] == pytest.approx(1200.0)
        assert dec.counters["bad_crc"] == 0 and dec.counters["out_of_order"] == 0


def test_board_pty_prints_the_path_first_and_exits_0_on_sigint_and_quit(tmp_path: Path) -> None:
    b = Board(tmp_path, over="pty")
    assert b.where.startswith("/dev/pts/") and os.path.exists(b.where)
    fd = os.open(b.where, os.O_RDWR | os.O_NOCTTY)
    try:
        assert os.isatty(fd)
    finally:
        os.close(fd)
    assert b.stop(signal.SIGINT) == 0
    b = Board(tmp_path, over="pty")
    assert b.cmd("quit")["t_ns"] > 0
    assert b.proc.wait(5) == 0
    b.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "one of the arguments --pty --tcp is required"),
        (["--pty", "--fault", "estop@1s"], "estop is the controller's"),
        (["--pty", "--fault", "stall@1s"], "needs a target"),
        (["--pty", "--watchdog-ms", "150"], "watchdog_ms must be 1..100"),
    ],
)
def test_board_refuses_bad_arguments_with_exit_1(args: list[str], message: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "chair", "board", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        timeout=30,
    )
    assert r.returncode == 1
    assert message in r.stderr and "Traceback" not in r.stderr


# ---- a session against the board -----------------------------------------------------------------


async def test_session_scan_strokes_pause_resume_then_occupant_leaves_and_it_settles(
    tmp_path: Path,
) -> None:
    """A whole session's life on a board that does not measure the depth load (its scan is the
    arm switch's, docs/chair.md §2): body scan, heated strokes, pause (holds), resume, then the
    user stands up: detected within 500 ms, the chair settles to park, heater off. (A board
    that measures it: tests/test_hil_contour.py.)"""
    cfg = ChairConfig.model_validate({"body": {"adjust_window_s": 1.0, "scan_speed_mm_s": 100.0}})
    with board(tmp_path, "--body-height", "140", "--seed", "3", "--no-depth-load") as b:
        async with controller(b, cfg) as w:
            ctl = w.ctl
            await ctl.start("lumbar_heat", minutes=5, heat="medium")
            await reach(ctl, "adjusting", 40, "the body scan to finish")
            shoulder = ctl.state()["shoulder_mm"]
            true_line = b.state()["plant"]["shoulder_mm"] + cfg.body.shoulder_offset_mm
            notes = ctl.session.notes if ctl.session is not None else []
            assert shoulder == pytest.approx(true_line, abs=3), notes  # the scan's line + offset
            assert any("does not report the depth drive's load" in n for n in notes), notes
            assert ctl.session is not None and ctl.session.contour is None  # no contour scan
            assert ctl.state()["contour"] == []
            await reach(ctl, "running", 10, "the program to start")
            await until(  # heating, walking down to the program's first step
                lambda: (p := b.state()["plant"])["heater_w"] > 0 and abs(p["vel_mm_s"][0]) > 50,
                10,
                "the program heating and walking down",
                0.02,
                ctl,
            )
            await ctl.pause()
            assert ctl.state_name == "paused"
            await until(
                lambda: all(abs(v) < 0.5 for v in b.state()["plant"]["vel_mm_s"]),
                1.5,
                "the carriage to hold",
                step_s=0.02,
            )
            held = b.state()["plant"]["pos_mm"][0]
            await observe(0.5)
            p = b.state()["plant"]
            assert p["pos_mm"][0] == pytest.approx(held, abs=0.1) and p["heater_w"] > 0
            await ctl.resume()
            assert ctl.state_name == "running"

            def pressing_stroke() -> bool:
                p = b.state()["plant"]
                return bool(p["pos_mm"][2] >= 5.0 and p["vel_mm_s"][0] > 20 and p["arm_contact"])

            await until(pressing_stroke, 15, "a pressing stroke up the back", 0.05, ctl)
            t_leave = b.cmd("occupant leave")["t_ns"]
            await reach(ctl, "settling", 10, "the session to settle")
            occupancy = [e.t_ns for e in w.events if e.kind == "occupancy" and e.code == 0]
            assert occupancy
            print(f"occupant left: detected in {(w.mono(occupancy[0]) - t_leave) / MS:.1f} ms")
            assert (w.mono(occupancy[0]) - t_leave) / MS <= 500
            await asyncio.wait_for(ctl.wait_session(), 30)
            assert ctl.state_name == "idle" and ctl.last_result is not None, ctl.state()["fault"]
            assert ctl.last_result.end_reason == "occupant_left"
            s = b.state()
            p = s["plant"]
            assert p["pos_mm"][0] == pytest.approx(cfg.carriage.park_mm, abs=0.5)
            assert p["pos_mm"][1] == pytest.approx(cfg.width.park_mm, abs=0.5)
            assert p["pos_mm"][2] == pytest.approx(cfg.depth.min_mm, abs=0.5)
            assert p["heater_w"] == 0.0 and abs(p["knead_rpm"]) < 0.5 and abs(p["tap_hz"]) < 0.5
            assert s["watchdog"]["trips"] == 0 and not s["board_faults"]
            c = ctl.hardware.counters()
            assert c["drops"]["bad_crc"] == 0 and c["drops"]["out_of_order"] == 0
            # settle turns the heater off at once (docs/chair.md §4): occupancy (300 ms) + a tick
            # or two
            heater_off = b.events("heater_off", t_leave)
            assert heater_off
            off_ms = (heater_off[0] - t_leave) / MS
            assert off_ms <= 600, f"heater off only {off_ms:.0f} ms after the occupant left"


# ---- the fault matrix (docs/chair.md §6), injected during motion ---------------------------------


@dataclass(frozen=True)
class Case:
    inject: str
    code: str
    deadline_ms: float
    heat_c: float = 0.0
    board_args: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    heat_after_inject: bool = False


SCALED = ("--thermal-scale", str(THERMAL_SCALE))
CASES = {
    "stall_carriage": Case("fault stall:carriage", "stall", 500),
    "stall_width": Case("fault stall:width", "stall", 500),
    "stall_depth": Case("fault stall:depth", "stall", 500),
    "limit_switch_both": Case(
        "fault limit_switch_both", "limit_switch", TICK_MS + LINK_ALLOWANCE_MS
    ),
    "overcurrent_carriage": Case("fault overcurrent:carriage", "overcurrent", 10),
    "overcurrent_kneading": Case("fault overcurrent:kneading", "overcurrent", 10),
    "thermistor_open": Case("fault thermistor_open", "thermistor", 100, heat_c=45.0),
    "thermistor_short": Case("fault thermistor_short", "thermistor", 100, heat_c=45.0),
    "over_temperature": Case(
        "fault heater_stuck_on", "over_temperature", 30_000, board_args=SCALED
    ),
    "heater_not_heating": Case(
        "fault heater_dead",
        "heater_not_heating",
        60_000 / THERMAL_SCALE,
        heat_c=45.0,
        board_args=SCALED,
        heat_after_inject=True,
        config={"heater": {"not_heating_window_s": 45.0 / THERMAL_SCALE}},
    ),
    "supply_low": Case("fault supply_low", "supply_voltage", 100),
    "supply_high": Case("fault supply_high", "supply_voltage", 100),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_fault_during_motion_is_detected_in_time_stopped_safely_reported_and_reset(
    tmp_path: Path, name: str
) -> None:
    case = CASES[name]
    cfg = ChairConfig.model_validate(case.config)
    with board(tmp_path, *case.board_args) as b:
        async with controller(b, cfg) as w:
            ctl = w.ctl
            start_motion(ctl, 0.0 if case.heat_after_inject else case.heat_c)
            await wait_moving(b, ctl)
            t_inject = b.cmd(case.inject)["t_ns"]
            if case.heat_after_inject:
                ctl.core.heat(case.heat_c)

            def faulted() -> bool:
                if case.heat_c:
                    ctl.core.heat(case.heat_c)  # keep the heater's refresh alive, as a session does
                return ctl.state_name == "fault"

            await until(
                faulted,
                case.deadline_ms / 1000 + 5,
                f"the {case.code} fault",
                step_s=0.05 if case.deadline_ms > 1000 else 0.005,
            )
            # reported by the controller, with the right code, within the deadline
            assert ctl.state()["fault"]["code"] == case.code
            ev = w.fault_event()
            assert ev is not None and ev[1] == case.code
            detect_ms = (ev[0] - t_inject) / MS
            print(f"{name}: detected in {detect_ms:.1f} ms (deadline {case.deadline_ms:g} ms)")
            if case.code == "over_temperature":
                # the core latches on the very tick whose status first reads >= trip (1 tick)
                assert w.heat_crossing_ns is not None
                assert abs(ev[0] - w.heat_crossing_ns) <= TICK_MS * MS
            assert detect_ms <= case.deadline_ms
            # the safe state, as the board sees it: every axis and motor at rest, heater unpowered
            s = await wait_board_safe(b, t_inject)
            assert s["board_faults"] == 0 and not s["watchdog"]["tripped"]
            # a reset brings the chair back to idle once the faulty part is replaced
            await until(lambda: not ctl.moving(), 3, "the core's brake to finish")
            await seen_after(w, b.cmd("repair")["t_ns"], "the repaired board's status")
            await ctl.reset()
            assert ctl.state_name == "idle" and ctl.state()["fault"] is None, ctl.state()["fault"]
            await observe(0.3)
            assert ctl.state_name == "idle", ctl.state()["fault"]
            c = ctl.hardware.counters()
            assert c["engaged"] and c["drops"]["bad_crc"] == 0


async def test_reset_while_the_fault_persists_faults_again(tmp_path: Path) -> None:
    with board(tmp_path) as b:
        async with controller(b) as w:
            ctl = w.ctl
            start_motion(ctl)
            await wait_moving(b, ctl)
            b.cmd("fault overcurrent:carriage")
            await reach(ctl, "fault", 10, "the over-current fault")
            await until(lambda: not ctl.moving(), 3, "the brake")
            await ctl.reset()
            await reach(ctl, "fault", 10, "the fault to latch again")
            assert ctl.state()["fault"]["code"] == "overcurrent"


# ---- the link itself -----------------------------------------------------------------------------


async def test_link_cut_stops_both_sides_within_100ms_and_nothing_resumes(tmp_path: Path) -> None:
    with board(tmp_path) as b:
        async with controller(b) as w:
            ctl = w.ctl
            start_motion(ctl, heat_c=45.0)
            await wait_moving(b, ctl)
            assert b.state()["plant"]["heater_w"] > 0
            t_cut = b.cmd("link cut 600ms")["t_ns"]
            await reach(ctl, "fault", 10, "link_lost")
            ev = w.fault_event()
            assert ev is not None and ev[1] == "link_lost"
            controller_ms = (ev[0] - t_cut) / MS
            offs = ("watchdog_trip", "drives_off", "heater_off")
            await until(
                lambda: all(b.events(k, t_cut) for k in offs),
                3,
                "the board's watchdog, drives off and heater off",
                0.02,
            )
            trips = b.events("watchdog_trip", t_cut)
            drives_off = b.events("drives_off", t_cut)
            heater_off = b.events("heater_off", t_cut)
            assert trips and drives_off and heater_off
            board_ms = (trips[0] - t_cut) / MS
            print(
                f"link cut: controller link_lost in {controller_ms:.1f} ms, board watchdog in "
                f"{board_ms:.1f} ms, heater off in {(heater_off[0] - t_cut) / MS:.1f} ms"
            )
            assert controller_ms <= 100
            assert board_ms <= 100 and (heater_off[0] - t_cut) / MS <= 100
            motion_off = b.events("motion_off", t_cut)
            assert motion_off and (motion_off[0] - t_cut) / MS <= 200  # de-energised: coasting
            # the link comes back: reported (link event 1), and nothing moves by itself
            await until(lambda: 1 in w.link_events(), 3, "the link back")
            assert w.link_events()[:2] == [0, 1]
            await wait_board_safe(b, t_cut)
            rest = b.state()["plant"]["pos_mm"]
            await observe(0.5)
            s = b.state()
            assert s["plant"]["pos_mm"] == pytest.approx(rest, abs=0.05)
            assert s["plant"]["heater_w"] == 0.0 and ctl.state_name == "fault"
            assert not b.events("motion_on", t_cut)
            await until(lambda: not ctl.moving(), 3, "the core's brake")
            await ctl.reset()
            assert ctl.state_name == "idle", ctl.state()["fault"]
            await observe(0.3)
            # energised again where it stands (within the encoder's resolution): no jump
            assert b.state()["plant"]["pos_mm"] == pytest.approx(rest, abs=0.05)


async def test_after_a_link_cut_and_a_reset_the_chair_moves_again(tmp_path: Path) -> None:
    with board(tmp_path) as b:
        async with controller(b) as w:
            ctl = w.ctl
            start_motion(ctl)
            await wait_moving(b, ctl)
            b.cmd("link cut 300ms")
            await reach(ctl, "fault", 10, "link_lost")
            await until(lambda: not ctl.moving(), 3, "the core's brake")
            await until(lambda: 1 in w.link_events(), 3, "the link back")
            await ctl.reset()
            y = b.state()["plant"]["pos_mm"][0]
            ctl.core.move("carriage", y - 50.0)
            await until(ctl.moving, 1, "the move to start")
            await until(lambda: not ctl.moving() or ctl.state_name == "fault", 5, "the move")
            assert ctl.state_name == "idle", ctl.state()["fault"]
            assert b.state()["plant"]["pos_mm"][0] == pytest.approx(y - 50.0, abs=0.5)


async def test_one_percent_of_bytes_corrupted_motion_continues_and_drops_are_counted(
    tmp_path: Path,
) -> None:
    with board(tmp_path, "--seed", "7") as b:
        b.cmd("corrupt 0.01")
        async with controller(b) as w:
            ctl = w.ctl
            ctl.core.move("carriage", 800.0)
            ctl.core.move("width", 120.0)
            ctl.core.rate("kneading", 20.0)
            await until(ctl.moving, 1, "the moves to start")
            await until(
                lambda: not ctl.moving() or ctl.state_name == "fault",
                10,
                "the moves to finish",
                step_s=0.05,
            )
            ctl.core.rate("kneading", 0.0)
            assert ctl.state_name == "idle", ctl.state()
            p = b.state()["plant"]
            assert p["pos_mm"][0] == pytest.approx(800.0, abs=0.5)
            assert p["pos_mm"][1] == pytest.approx(120.0, abs=0.5)
            c = ctl.hardware.counters()
            print({k: c[k] for k in ("frames_in", "statuses_in", "resyncs", "drops")})
            assert c["drops"]["bad_crc"] > 50 and c["resyncs"] > 50
            assert c["statuses_in"] > 1000
            assert b.state()["counters"]["bytes_corrupted"] > 100


@pytest.mark.alone  # on the pty (tests/board_helpers.py)
def test_controller_killed_mid_motion_the_board_watchdog_stops_everything(tmp_path: Path) -> None:
    """On a pty, as on a serial line, the board cannot see a killed controller go (over TCP it
    would trip at the hang-up): its watchdog alone must stop everything."""
    script = tmp_path / "controller.py"
    script.write_text(
        textwrap.dedent("""
        import asyncio, sys
        from chair.controller import Controller
        from core_rt.config import ChairConfig

        async def main():
            ctl = Controller.create(ChairConfig(), hardware=sys.argv[1], pacing="realtime")
            async with ctl:
                ctl.serve()
                ctl.core.move("carriage", 300.0)
                ctl.core.rate("kneading", 30.0)
                ctl.core.heat(45.0)
                print("moving", flush=True)
                while True:
                    await asyncio.sleep(1.0)
                    ctl.core.heat(45.0)

        asyncio.run(main())
    """)
    )
    with board(tmp_path, over="pty") as b:
        proc = subprocess.Popen(
            [sys.executable, str(script), b.spec],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=ROOT,
        )
        try:
            assert read_first_line(proc, 20) == "moving"
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                p = b.state()["plant"]
                if abs(p["vel_mm_s"][0]) > 50 and p["heater_w"] > 0:
                    break
                time.sleep(0.02)
            else:
                raise AssertionError("the controller never got the chair moving and heating")
            t_kill = time.monotonic_ns()
            proc.kill()
            proc.wait(5)
            kinds = ("watchdog_trip", "drives_off", "heater_off", "motion_off")
            deadline = time.monotonic() + 3
            while not all(b.events(k, t_kill) for k in kinds) and time.monotonic() < deadline:
                time.sleep(0.02)  # the board's own events: polled, it has no push to the test
            s = b.state()
            trips = b.events("watchdog_trip", t_kill)
            drives_off = b.events("drives_off", t_kill)
            heater_off = b.events("heater_off", t_kill)
            motion_off = b.events("motion_off", t_kill)
            assert trips and drives_off and heater_off and motion_off
            print(
                f"SIGKILL: board watchdog after {(trips[0] - t_kill) / MS:.1f} ms, heater off "
                f"{(heater_off[0] - t_kill) / MS:.1f} ms, "
                f"axes at rest {(motion_off[0] - t_kill) / MS:.1f} ms"
            )
            assert (trips[0] - t_kill) / MS <= 100
            assert (heater_off[0] - t_kill) / MS <= 100 and (drives_off[0] - t_kill) / MS <= 100
            assert (motion_off[0] - t_kill) / MS <= 200  # de-energised, the carriage coasts
            assert s["watchdog"]["tripped"] and s["board_faults"] & 1
            assert s["plant"]["heater_w"] == 0.0 and not s["drives_on"]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            for f in (proc.stdout, proc.stderr):
                if f is not None:
                    f.close()
