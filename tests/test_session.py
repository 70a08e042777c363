"""Whole sessions on the simulated chair: life cycle, requests, faults — checked on telemetry."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest

from chair.api import CommandError
from chair.controller import Controller
from chair.lifecycle import SessionState
from core_rt.config import ChairConfig
from tests.session_helpers import SHORT, Run, at_state, run_session

CFG = ChairConfig()
LIM = CFG.carriage.limits


def first_t(run: Run, pred) -> float:  # type: ignore[no-untyped-def]
    return next(s["t"] for s in run.telemetry if pred(s))


def program_start(run: Run) -> float:
    return first_t(run, lambda s: s["state"] == "running")


@pytest.fixture(scope="module")
def plain() -> Run:
    return run_session(SHORT, heat="medium")


def test_a_whole_session_completes_safely(plain: Run) -> None:
    assert plain.result.completed, plain.result.notes
    assert plain.violations == []
    assert plain.summary["safety"]["ok"]
    states = [s["state"] for s in plain.telemetry]
    order = [x for i, x in enumerate(states) if i == 0 or states[i - 1] != x]
    assert order == ["scanning", "adjusting", "running", "settling", "idle"]
    assert abs(plain.result.program_seconds - 300.0) <= 2.0
    last = plain.telemetry[-1]
    assert last["y_mm"] == pytest.approx(CFG.carriage.park_mm)
    assert last["depth_mm"] == 0.0 and last["heat_target_c"] == 0.0


def test_zones_are_derived_from_the_scanned_shoulder_and_published(plain: Run) -> None:
    body = plain.summary["body"]
    plant = plain.controller.hardware
    assert abs(body["shoulder_mm"] - plant.true_shoulder_mm) < 20.0
    expected = CFG.zones_for_shoulder(body["shoulder_mm"])
    for z, (lo, hi) in expected.items():
        assert body["zones"][z] == [pytest.approx(lo, abs=0.01), pytest.approx(hi, abs=0.01)]


@pytest.mark.parametrize("height", [140.0, 200.0])
def test_body_scan_finds_the_shoulder_for_small_and_tall_bodies(height: float) -> None:
    run = run_session(SHORT, height=height)
    assert run.result.completed
    assert abs(run.result.shoulder_mm - run.controller.hardware.true_shoulder_mm) < 20.0  # type: ignore[operator]
    assert run.violations == []


def test_same_inputs_give_byte_identical_telemetry() -> None:
    a = run_session(SHORT, heat="low", seed=7)
    b = run_session(SHORT, heat="low", seed=7)
    assert json.dumps(a.telemetry) == json.dumps(b.telemetry)
    per_run = ("session_id", "wall_seconds")  # a fresh id and the host's time, by design
    assert a.summary["session_id"] != b.summary["session_id"]
    same_a = {k: v for k, v in a.summary.items() if k not in per_run}
    same_b = {k: v for k, v in b.summary.items() if k not in per_run}
    assert json.dumps(same_a) == json.dumps(same_b)


def test_pause_brakes_holds_and_resume_continues_the_same_step() -> None:
    pause_at, resume_at = 150.0, 190.0
    run = run_session(
        SHORT,
        heat="medium",
        script=[
            (pause_at, lambda s: s.request("pause")),
            (resume_at, lambda s: s.request("resume")),
        ],
    )
    assert run.result.completed and run.violations == []
    paused = at_state(run.telemetry, "paused")
    assert paused, "no paused telemetry"
    assert paused[0]["t"] == pytest.approx(pause_at, abs=0.03)
    # braking within the limits, then at rest and holding
    assert all(abs(s["a_mm_s2"]) <= LIM.a_max * (1 + 1e-9) for s in paused)
    held = [s for s in paused if s["t"] > pause_at + 1.0]
    assert held and all(s["v_mm_s"] == 0.0 for s in held)
    assert len({s["y_mm"] for s in held}) == 1
    # heat holds during a short pause
    assert all(s["heat_target_c"] == paused[0]["heat_target_c"] for s in paused)
    # the step running at the pause is the one that runs after it
    before = [s for s in run.telemetry if s["t"] < pause_at and s["state"] == "running"][-1]
    after = next(s for s in run.telemetry if s["t"] > resume_at and s["state"] == "running")
    assert before["step"] == after["step"]
    # no zone skipped or repeated, dwell and program time as planned
    assert run.summary["zone_order_observed"] == run.summary["zone_order_planned"]
    assert abs(run.result.program_seconds - 300.0) <= 2.0


def test_heat_turns_off_after_five_minutes_of_pause() -> None:
    start = 250.0  # the short program's heat step
    run = run_session(
        SHORT,
        heat="medium",
        script=[
            (start, lambda s: s.request("pause")),
            (start + 330.0, lambda s: s.request("resume")),
        ],
    )
    paused = at_state(run.telemetry, "paused")
    early = [s for s in paused if s["t"] < start + 290]
    late = [s for s in paused if s["t"] > start + 302]
    assert early and all(s["heat_target_c"] == 42.0 for s in early)
    assert late and all(s["heat_target_c"] == 0.0 for s in late)
    resumed = [s for s in run.telemetry if s["t"] > start + 331 and s["state"] == "running"]
    assert resumed and resumed[0]["heat_target_c"] == 42.0
    assert run.result.completed and run.violations == []


def test_intensity_change_mid_session_replans_depth_from_then_on() -> None:
    change = 120.0
    low = run_session(SHORT, intensity=1)
    changed = run_session(
        SHORT, intensity=1, script=[(change, lambda s: s.request("intensity", 5))]
    )
    assert changed.result.completed and changed.violations == []
    a = {s["t"]: s["depth_mm"] for s in low.telemetry}
    b = {s["t"]: s["depth_mm"] for s in changed.telemetry}
    assert all(a[t] == b[t] for t in a if t < change)
    later = [t for t in a if t > change + 2 and t in b]
    assert all(b[t] >= a[t] for t in later)
    assert any(b[t] > a[t] + 1.0 for t in later)


def test_heat_change_mid_session_sets_the_new_target() -> None:
    run = run_session(SHORT, heat="low", script=[(100.0, lambda s: s.request("heat", "high"))])
    targets = {s["heat_target_c"] for s in run.telemetry if s["t"] > 100.5}
    assert 45.0 in targets and 38.0 not in targets
    assert run.result.completed and run.violations == []


def test_estop_is_latched_and_stops_within_100_ms() -> None:
    at = 130.0
    run = run_session(SHORT, heat="medium", faults=[f"estop@{at:g}s"])
    assert not run.result.completed and run.result.end_reason == "estop"
    after = [s for s in run.telemetry if s["t"] >= at]
    assert after[0]["state"] == "estop"
    rest = next(s for s in after if s["v_mm_s"] == 0.0 and s["a_mm_s2"] == 0.0)
    assert rest["t"] - at <= 0.100
    assert all(abs(s["a_mm_s2"]) <= LIM.estop_a_max * (1 + 1e-9) for s in after)
    assert all(s["heat_target_c"] == 0.0 and s["knead_rpm"] == 0.0 for s in after[1:])
    late = [s for s in after if s["t"] > at + 0.2]
    assert len({s["y_mm"] for s in late}) == 1, "something moved while e-stopped"


def test_occupant_leaving_settles_the_chair() -> None:
    at = 140.0
    run = run_session(SHORT, heat="medium", faults=[f"occupant_leaves@{at:g}s"])
    assert run.result.end_reason == "occupant_left"
    settle = first_t(run, lambda s: s["state"] == "settling")
    assert 0 < settle - at <= 0.5
    last = run.telemetry[-1]
    assert last["y_mm"] == pytest.approx(CFG.carriage.park_mm) and last["heat_target_c"] == 0.0
    assert not run.result.faults


def test_nobody_seated_aborts_the_scan_with_a_reason() -> None:
    run = run_session(SHORT, faults=["occupant_leaves@0s"])
    assert run.result.end_reason == "no_occupant"
    assert run.result.plan is None


# (spec, expected fault code, detection deadline s, heat level)
FAULTS = [
    ("stall:carriage@120s", "stall", 0.5, "off"),
    ("stall:width@121s", "stall", 0.5, "off"),
    ("overcurrent:carriage@120s", "overcurrent", 0.010, "off"),
    ("overcurrent:kneading@160s", "overcurrent", 0.010, "off"),
    ("limit_switch_both@120s", "limit_switch", 0.001, "off"),
    ("thermistor_open@120s", "thermistor", 0.100, "medium"),
    ("thermistor_short@120s", "thermistor", 0.100, "medium"),
    ("supply_low@120s", "supply_voltage", 0.100, "off"),
    ("supply_high@120s", "supply_voltage", 0.100, "off"),
    ("heater_stuck_on@60s", "over_temperature", None, "off"),
    ("heater_dead@0s", "heater_not_heating", 60.0, "high"),
]


@pytest.mark.parametrize(("spec", "code", "deadline", "heat"), FAULTS, ids=[f[0] for f in FAULTS])
def test_each_injected_fault_is_detected_and_stops_safely(
    spec: str, code: str, deadline: float | None, heat: str
) -> None:
    run = run_session(SHORT, heat=heat, faults=[spec])
    assert run.result.end_reason == "fault"
    f = run.result.faults[0]
    assert f.code == code, f
    at = float(spec.split("@")[1].rstrip("s"))
    if spec.startswith("stall:width"):
        # a stall shows only while the axis is driven: count from its next move
        widths = [(s["t"], s["width_mm"]) for s in run.telemetry if s["t"] >= at]
        at = next(t0 for (t0, w0), (_, w1) in itertools.pairwise(widths) if w1 != w0)
    if deadline is not None and code != "heater_not_heating":
        assert 0 <= f.t - at <= deadline + 0.001, (f.t, at)
    if code == "heater_not_heating":
        # within 60 s of the heater being driven hard without effect
        first_hard = first_t(run, lambda s: s["heat_target_c"] > 0)
        assert f.t - first_hard <= deadline  # type: ignore[operator]
    if code == "over_temperature":
        hot = [s for s in run.telemetry if s["heat_c"] >= CFG.heater.trip_c]
        assert hot and hot[0]["t"] >= f.t - 0.001  # tripped on the first tick at the trip point
    after = [s for s in run.telemetry if s["t"] > f.t]
    assert after and all(s["state"] == "fault" and s["fault"] == code for s in after)
    assert all(s["heat_target_c"] == 0.0 for s in after)
    assert all(abs(s["a_mm_s2"]) <= LIM.a_max * (1 + 1e-9) for s in after)
    rest = [s for s in after if s["t"] > f.t + 1.0]
    assert rest and all(s["v_mm_s"] == 0.0 for s in rest)


def test_shoulder_nudge_in_the_adjust_window_moves_the_zones() -> None:
    base = run_session(SHORT)
    t_adj = first_t(base, lambda s: s["state"] == "adjusting") + 1.0
    nudged = run_session(SHORT, script=[(t_adj, lambda s: s.request("adjust", 30.0))])
    assert nudged.result.shoulder_mm == pytest.approx(base.result.shoulder_mm + 30.0)  # type: ignore[operator]
    assert nudged.violations == []


def test_session_length_is_capped_at_30_minutes() -> None:
    c = Controller.create(CFG, pacing="fast")
    with pytest.raises(CommandError) as e:
        c._make_session(SHORT, minutes=31)
    assert e.value.code == "out_of_range"
    with pytest.raises(CommandError):
        c._make_session(SHORT, minutes=4.9)


@pytest.mark.realtime
def test_realtime_pacing_runs_the_same_session_on_the_wall_clock() -> None:
    """The real-time core against the wall clock: a session starts scanning, obeys an e-stop."""
    import asyncio
    import time

    async def main() -> tuple[list[dict], float]:  # type: ignore[type-arg]
        c = Controller.create(CFG, pacing="realtime")
        async with c:
            c.serve()
            await c.start(SHORT)
            await c.wait_for_state({SessionState.SCANNING}, timeout_s=10, what="the scan")

            async def telemetry_shows(pred: Any, what: str) -> None:  # polled: no event for it
                t0 = time.monotonic()
                while not pred(c.telemetry() or {}):
                    assert time.monotonic() - t0 < 10, f"timed out waiting for {what}"
                    await asyncio.sleep(0.02)

            await telemetry_shows(lambda t: t.get("v_mm_s", 0) != 0, "the scan moving")
            await c.estop()
            assert c.state_name == "estop"
            await telemetry_shows(
                lambda t: t.get("state") == "estop" and t.get("v_mm_s") == 0.0, "the brake"
            )
            tl = list(c.session.telemetry if c.session else c.last_telemetry)
            stats = c.core.loop_stats()
            return tl, stats["cycles"] / max(1, stats["hz"])

    telemetry, _ = asyncio.run(main())
    assert any(s["state"] == "scanning" and s["v_mm_s"] != 0 for s in telemetry)
    estopped = [s for s in telemetry if s["state"] == "estop"]
    assert estopped and estopped[-1]["v_mm_s"] == 0.0


@pytest.mark.parametrize("strict", [False, True])
def test_session_finished_carries_the_one_summary_with_the_checkers_verdict(strict: bool) -> None:
    """The controller builds the summary once, with the independent checker's verdict in
    `safety`; the `session_finished` event (what MQTT publishes) carries that very summary. With
    a heater tuned to overshoot a zero steady band, only the checker can find the violation."""
    import asyncio

    heater = {"steady_band_c": 0.0, "kp_duty_per_c": 1.0, "ki_duty_per_c_s": 0.3}
    cfg = ChairConfig.model_validate({"heater": heater}) if strict else CFG
    events: list[dict] = []  # type: ignore[type-arg]

    async def main() -> Controller:
        c = Controller.create(cfg, pacing="fast")
        c.on_event(events.append)
        async with c:
            await c.run_session(SHORT, heat="medium")
        return c

    c = asyncio.run(main())
    finished = [e for e in events if e["event"] == "session_finished"]
    assert len(finished) == 1
    summary = finished[0]["summary"]
    assert summary is c.last_summary and summary["session_id"] == finished[0]["session_id"]
    safety = summary["safety"]
    assert safety["checked"] is True
    if strict:
        assert safety["violations"] and not safety["ok"]
    else:
        assert safety["violations"] == [] and safety["ok"]


async def test_a_session_that_crashes_is_e_stopped_reported_and_the_daemon_serves_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug inside a session (simulated: its run raises) must not take the daemon with it: the
    chair is e-stopped, `session_finished` says so, and after a reset the next session runs."""
    from chair.session import Session

    ctl = Controller.create(ChairConfig(), hardware="sim", pacing="fast")
    events: list[dict[str, object]] = []
    ctl.on_event(events.append)
    real_run = Session.run

    async def crash(self: Session) -> object:
        raise RuntimeError("a bug in a session")

    async with ctl:
        runner = ctl.serve()
        monkeypatch.setattr(Session, "run", crash)
        await ctl.start(SHORT, minutes=5)
        await ctl.wait_for_state(lambda s: s == "estop", timeout_s=10, what="the e-stop")
        assert ctl.state()["state"] == "estop"
        finished = [e for e in events if e["event"] == "session_finished"]
        assert finished and finished[-1]["end_reason"] == "internal"
        assert not runner.done()  # the daemon's runner survived
        monkeypatch.setattr(Session, "run", real_run)
        await ctl.reset()
        await ctl.start(SHORT, minutes=5)
        await ctl.wait_for_state(lambda s: s == "scanning", timeout_s=10, what="a new session")
        await ctl.estop()


async def test_a_start_that_times_out_never_runs_later() -> None:
    """A start answered `timeout` is refused for good (a paid start refused and then served
    would be paid for nothing or served for free): not yet taken by the runner, it is withdrawn
    and the next start is the only session; taken but not yet scanning, it is stopped before its
    program runs."""
    ctl = Controller.create(ChairConfig(), hardware="sim", pacing="fast")
    ctl.action_timeout_s = 0.3
    events: list[dict[str, Any]] = []
    ctl.on_event(events.append)
    async with ctl:
        # 1. no runner to take it (a chair too busy to): withdrawn
        with pytest.raises(CommandError) as refused:
            await ctl.start(SHORT, minutes=5)
        assert refused.value.code == "timeout"
        assert "nothing was started" in refused.value.message
        assert ctl.state()["state"] == "idle" and ctl.session is None
        ctl.serve()
        ctl.action_timeout_s = 10.0
        await ctl.start(SHORT, minutes=5)
        await ctl.stop()
        started = [e for e in events if e["event"] == "session_started"]
        assert len(started) == 1, started

        # 2. taken, its start held up (the database slow to open its record): stopped
        await ctl.wait_for_state({SessionState.IDLE}, what="the first session's end")
        ctl.action_timeout_s = 0.3
        slow_db = asyncio.Event()
        real_begin = ctl._history_begin

        async def held_begin(session: Any) -> None:
            await slow_db.wait()
            await real_begin(session)

        ctl._history_begin = held_begin  # type: ignore[method-assign]
        events.clear()
        with pytest.raises(CommandError) as refused:
            await ctl.start(SHORT, minutes=5)
        assert "stopped before its program" in refused.value.message
        states: list[str] = []
        ctl.on_change(lambda st: states.append(st["state"]))
        finished = asyncio.Event()
        ctl.on_event(lambda e: finished.set() if e["event"] == "session_finished" else None)
        slow_db.set()
        async with asyncio.timeout(30):
            await finished.wait()
        ends = [e for e in events if e["event"] == "session_finished"]
        assert ends[-1]["end_reason"] == "stopped", ends
        assert not [e for e in events if e["event"] == "step_started"], events
        assert "running" not in states, states


async def test_settling_before_exit_waits_until_the_session_is_closed() -> None:
    """`chair serve` on SIGTERM (and every `chair fleet-sim` chair on `stop`) settles the session,
    then publishes what is queued and `offline`. The session's state reads idle a moment before
    its summary is made and `session_finished` sent: settling must wait for that too, or the
    chair goes offline without it (a CI run saw a fleet-sim chair do so)."""
    from chair.cli.serve import settle

    ctl = Controller.create(ChairConfig(), hardware="sim", pacing="fast")
    events: list[dict[str, Any]] = []
    ctl.on_event(events.append)
    async with ctl:
        ctl.serve()
        await ctl.start(SHORT, minutes=5)
        summing_up = asyncio.Event()
        real_summary = ctl._summary

        async def slow_summary(*args: Any) -> Any:
            await summing_up.wait()
            return await real_summary(*args)

        ctl._summary = slow_summary  # type: ignore[method-assign]
        settling = asyncio.create_task(settle(ctl, timeout_s=30))
        await ctl.wait_for_state({SessionState.IDLE}, what="the session's end")
        for _ in range(20):  # let `settle` run on as far as it would
            await asyncio.sleep(0)
        assert not settling.done(), "settled before the session was closed"
        assert not [e for e in events if e["event"] == "session_finished"]
        summing_up.set()
        async with asyncio.timeout(30):
            await settling
        assert [e for e in events if e["event"] == "session_finished"]


async def test_a_finished_session_takes_no_more_telemetry() -> None:
    """A session's telemetry ends with it: the chair's telemetry afterwards (the daemon idles
    between sessions for days) is not appended to a past session's record, nor to the last
    summary's telemetry."""
    ctl = Controller.create(CFG, pacing="fast")
    async with ctl:
        await ctl.run_session(SHORT, minutes=5)
        kept = len(ctl.last_telemetry)
        assert ctl.driver.telemetry_sinks == [ctl._on_telemetry]
        await ctl.driver.advance(ctl.driver.now_ns() + 10_000_000_000)  # 10 s of idle chair
        assert len(ctl.last_telemetry) == kept
