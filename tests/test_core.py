"""The real-time core (core_rt.core) on the simulated chair: the tick and its Python API — the
fault latch and its controlled stop, e-stop and reset, braking, timed moves and holds, the named
records it hands out, determinism, and the real-time loop.

Every test drives the real compiled `Core` against the real `SimPlant` (no mocks), in virtual time
with `Core.run_until` (tests/core_helpers.py has the rig). The guard's checks are tested in
test_guard.py, the heater in test_heater.py.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import pickle
import time
from typing import Any

import pytest

from core_rt.config import Loop
from core_rt.core import AXES, FAULT_CODES, MODES, TELEMETRY_FIELDS, Core, CoreEvent, Telemetry
from core_rt.motion import plan_move
from core_rt.records import EVENT_FIELDS
from sim import SimPlant
from tests.core_helpers import (
    BANDS,
    CAPS,
    CFG,
    LIMITS,
    MS,
    TICK,
    TOL,
    Rig,
    S,
    at_rest,
    check_fault_reaction,
    cruising,
    into_zone,
    level_mm,
    mid,
    wait_cycles,
)

# ---- the latch ---------------------------------------------------------------------------------


def test_raised_fault_latches_with_a_controlled_stop() -> None:
    rig = Rig()
    cruising(rig)
    rig.run(2.0)
    rig.core.raise_fault("track_range")
    e = rig.run_to_fault(0.01)
    assert e.t_ns == 2 * S
    check_fault_reaction(rig, e, "track_range", persistent=False)


# ---- e-stop ------------------------------------------------------------------------------------


def _check_brake(
    trace: list[tuple[int, dict[str, tuple[float, float, float]]]],
    start: dict[str, tuple[float, float, float]],
    *,
    emergency: bool,
) -> None:
    """Every axis brakes within its limits, never speeds up beyond what its acceleration at the
    start implies, never reverses, and ends at rest."""
    dt = trace[1][0] - trace[0][0]
    for axis in AXES:
        lim = LIMITS[axis]
        a_max = lim.estop_a_max if emergency else lim.a_max
        j_max = lim.estop_j_max if emergency else lim.j_max
        _, v0, a0 = start[axis]
        # the stop starts from the state at the tick that handles it: one tick of the running
        # profile (normal jerk) after `start`, then the brake's own bound
        h = dt / S
        a1 = abs(a0) + lim.j_max * h
        v1 = abs(v0) + abs(a0) * h + lim.j_max * h * h / 2
        v_bound = v1 + a1 * a1 / (2 * j_max)
        prev_a = a0
        for _, axes in trace:
            _, v, a = axes[axis]
            assert abs(a) <= a_max * (1 + TOL), (axis, a)
            assert abs(a - prev_a) <= j_max * dt / S * (1 + 1e-6) + 1e-9, (axis, a, prev_a)
            assert abs(v) <= v_bound * (1 + TOL) + 1e-9, (axis, v, v_bound)
            assert v * v0 >= -1e-9, f"{axis} reversed"
            prev_a = a
        assert trace[-1][1][axis][1:] == (0.0, 0.0), f"{axis} not at rest"


def test_estop_brakes_everything_with_the_emergency_limits_and_latches() -> None:
    rig = Rig()
    rig.core.move("carriage", 300.0)
    rig.core.move("depth", level_mm(3), at_ns=1_800 * MS)
    rig.core.rate("kneading", CFG.kneading.max_rpm)
    rig.core.rate("tapping", CFG.tapping.max_hz)
    rig.heat_c = 40.0
    rig.run(2.0)
    start = rig.core.snapshot()["axes"]
    assert abs(start["carriage"][1]) == pytest.approx(LIMITS["carriage"].v_max)
    assert start["depth"][1] != 0.0 and start["kneading"][1] == CFG.kneading.max_rpm
    assert rig.telemetry[-1].heater_duty > 0.0
    rig.core.estop()
    rig.heat_c = None
    t_e = rig.now
    trace = rig.trace(0.5)
    _check_brake(trace, start, emergency=True)
    events = rig.find("estop")
    assert events and events[0].t_ns == t_e
    carriage_rest = next(t for t, axes in trace if axes["carriage"][1:] == (0.0, 0.0))
    assert carriage_rest - t_e <= 100 * MS
    assert all(axes["carriage"][1:] == (0.0, 0.0) for t, axes in trace if t >= carriage_rest)
    assert all(r.heater_duty == 0.0 for r in rig.since(t_e))
    assert {MODES[r.mode] for r in rig.since(t_e)} == {"estop"}


def test_estop_reset_is_refused_while_moving_and_nothing_resumes_after_it() -> None:
    rig = Rig()
    rig.core.move("carriage", 300.0)
    rig.core.rate("kneading", 40.0)
    rig.heat_c = 42.0
    rig.run(2.0)
    rig.core.estop()
    rig.heat_c = None
    t_e = rig.now
    rig.step()
    rig.core.reset()  # still braking
    rig.core.move("carriage", 1000.0)  # latched: ignored
    rig.core.rate("tapping", 5.0)
    rig.core.heat(40.0)
    rig.step()
    assert rig.find("reset", since=t_e) == [CoreEvent(t_e + TICK, "reset", 0)]
    rig.run(2.0)
    snap = rig.core.snapshot()
    assert snap["mode"] == "estop" and at_rest(snap)
    y = snap["axes"]["carriage"][0]
    t_reset = rig.now
    rig.core.reset()
    rig.run(2.0)
    assert rig.find("reset", since=t_reset) == [CoreEvent(t_reset, "reset", 1)]
    snap = rig.core.snapshot()
    assert snap["mode"] == "run" and at_rest(snap)
    assert snap["axes"]["carriage"][0] == y, "nothing resumes by itself"
    assert snap["heat_target_c"] == 0.0 and snap["heater_duty"] == 0.0
    rig.core.move("carriage", y + 50.0)
    rig.run(2.0)
    assert rig.core.snapshot()["axes"]["carriage"][0] == y + 50.0


def test_after_a_zone_depth_fault_reset_and_retract_recover_the_chair() -> None:
    rig = Rig()
    into_zone(rig, "lumbar")
    rig.core.move("depth", level_mm(CAPS["lumbar"].depth_level + 1))
    rig.run_to_fault(3.0)
    rig.run(2.0)
    t_reset = rig.now
    rig.core.reset()
    rig.core.move("depth", CFG.depth.retracted_mm)
    rig.run(3.0)
    assert not rig.find("fault", since=t_reset)
    snap = rig.core.snapshot()
    assert snap["mode"] == "run" and snap["axes"]["depth"][0] == CFG.depth.retracted_mm


@pytest.mark.parametrize("command", ["brake", "estop", "raise_fault"])
def test_a_commanded_stop_continues_the_setpoint_without_a_step(command: str) -> None:
    rig = Rig()
    rig.core.move("carriage", 300.0)
    rig.run(2.0)
    if command == "raise_fault":
        rig.core.raise_fault("board")
    else:
        getattr(rig.core, command)()
    rig.run(0.05)
    recs = rig.since(2 * S - 5 * MS)
    dt = TICK / S
    for r0, r1 in itertools.pairwise(recs):
        # trapezoidal rule: exact to j*dt^3/12, far below 1 um here
        assert r1.y_mm - r0.y_mm == pytest.approx((r0.v_mm_s + r1.v_mm_s) / 2 * dt, abs=1e-3), (
            r1.t_ns
        )


# ---- braking, timed moves, holds ---------------------------------------------------------------


def test_brake_from_full_speed_stops_smoothly_within_the_normal_limits() -> None:
    rig = Rig()
    rig.core.move("carriage", 300.0)
    rig.core.move("depth", level_mm(2))
    rig.core.rate("kneading", 30.0)
    rig.run(1.0)
    start = rig.core.snapshot()["axes"]
    assert abs(start["carriage"][1]) == pytest.approx(LIMITS["carriage"].v_max)
    rig.core.brake()
    t_b = rig.now
    trace = rig.trace(1.5)
    _check_brake(trace, start, emergency=False)
    lim = LIMITS["carriage"]
    stop_s = lim.v_max / lim.a_max + lim.a_max / lim.j_max
    rest = next(t for t, axes in trace if axes["carriage"][1:] == (0.0, 0.0))
    assert rest - t_b <= stop_s * S + 2 * TICK
    assert rig.core.snapshot()["mode"] == "run", "a brake is a pause, not a latch"
    assert rig.find("at_rest", since=t_b)
    rig.core.move("carriage", 700.0)  # and the axis takes new moves
    rig.run(10.0)
    assert rig.core.snapshot()["axes"]["carriage"][0] == 700.0


def test_brake_never_passes_the_goal_of_the_move_it_interrupts() -> None:
    start, goal = CFG.carriage.track_max_mm, CFG.carriage.track_max_mm - 100.0
    duration = plan_move(start, goal, *_vaj("carriage")).duration
    for k in range(40):
        rig = Rig()
        rig.core.move("carriage", goal)
        rig.run(k * duration / 40)
        rig.core.brake()
        rig.run(2.0)
        ys = [r.y_mm for r in rig.telemetry]
        assert min(ys) >= goal, f"brake at {k}/40 of the move passed the goal"
        assert all(b <= a for a, b in itertools.pairwise(ys)), "never backwards"
        assert rig.telemetry[-1].v_mm_s == 0.0
        assert max(abs(r.a_mm_s2) for r in rig.telemetry) <= LIMITS["carriage"].a_max * (1 + TOL)


def _vaj(axis: str) -> tuple[float, float, float]:
    lim = LIMITS[axis]
    return lim.v_max, lim.a_max, lim.j_max


@pytest.mark.parametrize("offset_ns", [0, TICK // 2])
def test_a_timed_move_starts_exactly_at_its_tick(offset_ns: int) -> None:
    rig = Rig()
    at = 1_234 * MS + offset_ns
    start_tick = -(-at // TICK) * TICK  # the first tick at or after at_ns
    rig.core.move("carriage", 700.0, at_ns=at)
    rig.run(3.0)
    plan = plan_move(CFG.carriage.park_mm, 700.0, *_vaj("carriage"))
    for r in rig.telemetry:
        if r.t_ns <= start_tick:
            assert (r.y_mm, r.v_mm_s) == (CFG.carriage.park_mm, 0.0)
        else:
            p, v, a, _ = plan.state((r.t_ns - start_tick) * 1e-9)
            assert (r.y_mm, r.v_mm_s, r.a_mm_s2) == (p, v, a), r.t_ns


def test_hold_keeps_the_axis_busy_and_delays_the_next_move() -> None:
    rig = Rig()
    first = plan_move(0.0, level_mm(2), *_vaj("depth"))
    rig.core.move("depth", level_mm(2), hold_s=2.0)
    rig.core.move("depth", level_mm(1))
    rig.run(0.001)
    end_of_first = math.ceil(first.duration * S - 1e-3)
    rig.run(first.duration + 1.0)
    snap = rig.core.snapshot()
    assert snap["busy"]["depth"] and snap["axes"]["depth"] == (level_mm(2), 0.0, 0.0)
    rig.run(3.0)
    depth = {r.t_ns: r.depth_mm for r in rig.telemetry}
    release = end_of_first + 2 * S
    assert all(depth[t] == level_mm(2) for t in depth if end_of_first <= t <= release)
    assert depth[release + TICK] < level_mm(2), "the queued move starts right after the hold"
    idle = rig.find("axis_idle", code=AXES.index("depth"))
    second = plan_move(level_mm(2), level_mm(1), *_vaj("depth")).duration
    assert [e.t_ns for e in idle] == [release + math.ceil(second * S - 1e-3)]


def test_a_command_not_yet_taken_by_the_tick_counts_as_busy() -> None:
    # In real time the tick can be late (a loaded machine): a wait for rest that looks before
    # the tick has taken the move must not see the chair at rest (it once ended a body scan
    # before the heads had moved: the doc board's session test, docs/core.md).
    rig = Rig()
    rig.run(0.01)
    assert not any(rig.core.snapshot()["busy"].values())
    rig.core.move("depth", level_mm(2))  # sent, no tick has run since
    rig.core.rate("kneading", 30.0)
    assert {a for a, b in rig.core.snapshot()["busy"].items() if b} == {"depth", "kneading"}
    rig.run(0.001)  # taken: moving now
    assert {a for a, b in rig.core.snapshot()["busy"].items() if b} == {"depth", "kneading"}
    rig.core.heat(40.0)  # not a motion: nothing waits for it to come to rest
    rig.core.rate("kneading", 0.0)
    rig.run(10.0)
    assert not any(rig.core.snapshot()["busy"].values())


def test_a_single_move_with_a_hold_reports_idle_after_the_hold() -> None:
    rig = Rig()
    rig.core.move("width", CFG.width.medium_mm, hold_s=1.5)
    rig.run(5.0)
    plan = plan_move(CFG.width.park_mm, CFG.width.medium_mm, *_vaj("width"))
    idle = rig.find("axis_idle", code=AXES.index("width"))
    assert [e.t_ns for e in idle] == [math.ceil(plan.duration * S - 1e-3) + 1_500 * MS]


# ---- the records the core hands out ------------------------------------------------------------


def test_telemetry_records_name_every_field_and_are_read_only() -> None:
    rig = Rig()
    rig.core.move("carriage", 700.0)
    rig.core.rate("kneading", 20.0)
    rig.heat_c = 40.0
    rig.run(1.0)
    r = rig.telemetry[-1]
    snap = rig.core.snapshot()  # the state of the last tick, which sent this record
    assert r.t_ns == rig.now - TICK
    assert (r.y_mm, r.v_mm_s, r.a_mm_s2) == snap["axes"]["carriage"]
    assert (r.width_mm, r.depth_mm) == (snap["axes"]["width"][0], snap["axes"]["depth"][0])
    assert (r.knead_rpm, r.tap_hz) == (snap["axes"]["kneading"][1], snap["axes"]["tapping"][1])
    assert (r.heat_target_c, r.heat_c, r.heater_duty) == (
        snap["heat_target_c"],
        snap["heat_c"],
        snap["heater_duty"],
    )
    assert r.y_meas_mm == snap["y_meas_mm"]
    assert r.left_x_mm < 0.0 < r.right_x_mm
    assert (MODES[r.mode], FAULT_CODES[r.fault], r.zone) == ("run", None, -1)
    assert r.flags == snap["arm_contact"] | snap["seat_occupied"] << 1 | (r.heater_duty > 0) << 2
    fields: dict[str, Any] = {name: getattr(r, name) for name in TELEMETRY_FIELDS}
    assert Telemetry(**fields) == r and hash(Telemetry(**fields)) == hash(r)
    assert Telemetry(**{**fields, "y_meas_mm": r.y_meas_mm + 1.0}) != r
    assert pickle.loads(pickle.dumps(r)) == r
    assert repr(r).startswith(f"Telemetry(t_ns={r.t_ns}, mode=0, ")
    for name in TELEMETRY_FIELDS:
        with pytest.raises(AttributeError):
            setattr(r, name, getattr(r, name))
    with pytest.raises(TypeError):
        r[0]  # type: ignore[index]  # fields are read by name, never by position


def test_events_carry_kind_code_value_limit_and_axis_by_name() -> None:
    rig = Rig()
    rig.core.move("width", CFG.width.medium_mm)
    idle = rig.run(5.0, stop_on=lambda e: e.kind == "axis_idle")
    assert idle is not None
    width = AXES.index("width")
    assert idle == CoreEvent(idle.t_ns, "axis_idle", width, CFG.width.medium_mm, 0.0, width)
    rig.core.raise_fault("board")
    e = rig.run_to_fault(0.01)
    assert (e.kind, FAULT_CODES[e.code], e.value, e.limit, e.axis) == ("fault", "board", 0, 0, -1)
    assert tuple(getattr(e, name) for name in EVENT_FIELDS) == (
        e.t_ns,
        "fault",
        FAULT_CODES.index("board"),
        0.0,
        0.0,
        -1,
    )
    assert pickle.loads(pickle.dumps(e)) == e and e != idle
    assert repr(e) == f"CoreEvent(t_ns={e.t_ns}, kind='fault', code={e.code}, value=0.0, " + (
        "limit=0.0, axis=-1)"
    )
    for name in EVENT_FIELDS:
        with pytest.raises(AttributeError):
            setattr(e, name, getattr(e, name))


# ---- determinism, real time --------------------------------------------------------------------


def _session(seed: int) -> Rig:
    rig = Rig(["supply_low@11s"], seed=seed)
    c = rig.core
    c.set_body(BANDS)
    c.program(True)
    c.move("carriage", mid("mid_back"))
    c.move("width", CFG.width.medium_mm)
    c.move("depth", level_mm(3), at_ns=7 * S)
    c.rate("kneading", 40.0, at_ns=7_500 * MS)
    c.rate("tapping", 6.0, at_ns=9 * S)
    rig.heat_c = CFG.heater.levels_c["medium"]
    rig.run(13.0)
    return rig


def test_identical_runs_give_bit_identical_telemetry_and_events() -> None:
    a, b = _session(7), _session(7)
    assert [(e.kind, e.code) for e in a.find("fault")] == [
        ("fault", FAULT_CODES.index("supply_voltage"))
    ]
    assert len(a.telemetry) == 13_000
    assert a.telemetry == b.telemetry
    assert a.events == b.events
    other = _session(8)
    assert [r.heat_c for r in other.telemetry] != [r.heat_c for r in a.telemetry]
    assert [r.y_mm for r in other.telemetry] == [r.y_mm for r in a.telemetry]


def _timed_script(core: Core) -> None:
    """Commands sent ahead of their time, so their start does not depend on when they were sent."""
    core.move("carriage", 1100.0, at_ns=50 * MS)
    core.move("width", CFG.width.narrow_mm, at_ns=80 * MS)
    core.move("depth", level_mm(1), at_ns=120 * MS)
    core.rate("kneading", 30.0, at_ns=200 * MS)
    core.move("carriage", 1150.0, at_ns=300 * MS)


@pytest.mark.realtime
def test_real_time_and_virtual_time_give_the_same_setpoints() -> None:
    virtual = Rig(seed=3)
    _timed_script(virtual.core)
    virtual.run(0.9)
    by_t = {r.t_ns: r for r in virtual.telemetry}

    real = Rig(seed=3)
    _timed_script(real.core)
    real.core.heartbeat()
    real.core.start_realtime()
    with pytest.raises(RuntimeError):
        real.core.run_until(10 * S)
    t_end = time.monotonic() + 0.7
    while time.monotonic() < t_end:
        real.core.heartbeat()
        real.collect()
        time.sleep(0.05)
    real.core.stop_realtime()
    real.collect()
    stats = real.core.loop_stats()
    assert len(real.telemetry) > 300
    assert not real.find("fault"), real.events
    # A deadline the loop skipped (a CPU taken away) that was a move's start makes the move start
    # at the next tick (docs/core.md, Misses): the setpoints are the same up to the first skip.
    ticked = sorted(r.t_ns for r in real.telemetry)
    skipped = [a + TICK for a, b in itertools.pairwise(ticked) if b - a > TICK]
    for r in real.telemetry:
        assert r.t_ns % TICK == 0 and r.t_ns in by_t, r.t_ns
        if skipped and r.t_ns > skipped[0]:
            continue
        v = by_t[r.t_ns]
        assert (r.y_mm, r.width_mm, r.depth_mm, r.knead_rpm) == (
            v.y_mm,
            v.width_mm,
            v.depth_mm,
            v.knead_rpm,
        ), r.t_ns
    moved = [r for r in real.telemetry if r.y_mm != CFG.carriage.park_mm]
    assert moved, "the comparison covers motion"
    if stats["missed"] == 0:
        # no tick skipped: the plant stepped in lockstep, so even its noise matches
        assert real.telemetry == [by_t[r.t_ns] for r in real.telemetry]


@pytest.mark.realtime
@pytest.mark.parametrize("hz", [1000, 250])
async def test_real_time_loop_runs_at_its_rate_and_wakes_asyncio(hz: int) -> None:
    cfg = CFG.model_copy(update={"loop": Loop(tick_hz=hz)})
    rig = Rig(config=cfg)
    core = rig.core
    loop = asyncio.get_running_loop()
    woken: list[CoreEvent] = []
    got_idle = asyncio.Event()

    def on_wake() -> None:
        core.clear_wakeup()
        woken.extend(core.drain_events())
        if any(e.kind == "axis_idle" for e in woken):
            got_idle.set()

    loop.add_reader(core.fileno(), on_wake)
    try:
        core.move("depth", level_mm(1), at_ns=100 * MS)
        core.heartbeat()
        outcome = core.start_realtime()
        assert set(outcome) >= {"sched_fifo", "mlocked", "warning"}
        assert core.realtime
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.5:
            core.heartbeat()
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - t0
        await asyncio.wait_for(got_idle.wait(), timeout=5.0)
    finally:
        core.stop_realtime()
        loop.remove_reader(core.fileno())
    stats = core.loop_stats()
    assert stats["hz"] == hz
    assert 0.5 * hz * elapsed <= stats["cycles"] <= hz * (elapsed + 0.5)
    for key in ("latency_p50_us", "latency_p99_us", "latency_max_us"):
        assert math.isfinite(stats[key]) and stats[key] >= 0, key
    for key in ("exec_p50_us", "exec_p99_us", "exec_max_us"):
        assert math.isfinite(stats[key]) and stats[key] >= 0, key
    idle = [e for e in woken if e.kind == "axis_idle"]
    assert idle and AXES[idle[0].code] == "depth"
    assert not [e for e in woken if e.kind == "fault"]


@pytest.mark.realtime
def test_the_loop_runs_pinned_to_the_configured_cpu_and_says_so() -> None:
    import os

    cpus = sorted(os.sched_getaffinity(0))
    core = Core(CFG, SimPlant(CFG, seed=1))
    outcome = core.start_realtime(CFG.loop.rt_priority, cpus[-1])
    try:
        wait_cycles(core.loop_stats)
    finally:
        core.stop_realtime()
    assert outcome["cpu"] == cpus[-1]
    assert core.loop_stats()["cycles"] > 0


@pytest.mark.realtime
def test_an_unavailable_cpu_runs_unpinned_with_a_warning() -> None:
    core = Core(CFG, SimPlant(CFG, seed=1))
    outcome = core.start_realtime(CFG.loop.rt_priority, 1000)
    try:
        wait_cycles(core.loop_stats)
    finally:
        core.stop_realtime()
    assert outcome["cpu"] is None
    assert "CPU 1000" in outcome["warning"]
    assert core.loop_stats()["cycles"] > 0
