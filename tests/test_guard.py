"""The guard (core_rt.guard) on the simulated chair: every check with its violation injected, its
detection time against its deadline, and the controlled stop that follows.

Commanded checks are provoked through the core's API (and a config for the one with no honest
path); measured checks by plant faults (`KIND[:TARGET]@SECONDSs`). The rig and the reaction every
latched fault must show are in tests/core_helpers.py. The heater's own loop and checks are in
test_heater.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from core_rt.config import Kneading, MotionLimits
from core_rt.core import AXES, Core, CoreEvent
from core_rt.hardware import Hardware
from tests.core_helpers import (
    BANDS,
    CAPS,
    CFG,
    INJECT_S,
    LIMITS,
    MS,
    NECK_TOP_MM,
    RANGES,
    T_INJECT,
    TICK,
    Rig,
    S,
    at_rest,
    check_fault_reaction,
    cruising,
    fault_code,
    into_zone,
    level_mm,
    mid,
)

# ---- guard: commanded values -------------------------------------------------------------------


def test_track_range_is_refused_by_move_before_it_can_reach_the_tick() -> None:
    # The in-tick track-range check has no honest path from Python: move() range-checks the goal,
    # rest-to-rest moves never overshoot it, a normal brake never passes a move's goal and the
    # emergency brake stops sooner than the move would. So the refusal is what is tested here.
    rig = Rig()
    c = CFG.carriage
    for axis, lo, hi in (
        ("carriage", c.track_min_mm, c.track_max_mm),
        ("width", CFG.width.min_mm, CFG.width.max_mm),
        ("depth", CFG.depth.min_mm, CFG.depth.max_mm),
    ):
        for goal in (lo - 0.001, hi + 0.001, lo - 1e6, hi + 1e6):
            with pytest.raises(ValueError, match="goal must be a finite number"):
                rig.core.move(axis, goal)
        rig.core.move(axis, hi)  # the range itself is accepted
        rig.core.move(axis, lo)
    rig.run(20.0)
    assert rig.core.snapshot()["mode"] == "run"
    assert not rig.find("fault")


def test_pressing_above_the_neck_top_is_a_body_range_fault() -> None:
    # zones for a short back: the neck's top is below the parked carriage, then the heads press
    rig = Rig()
    rig.core.set_body(BANDS)
    rig.heat_c = 40.0
    rig.run(0.5)
    assert rig.core.snapshot()["axes"]["carriage"][0] > NECK_TOP_MM
    rig.core.move("depth", level_mm(1))
    e = rig.run_to_fault(1.0)
    assert fault_code(e) == "body_range"
    depth_at_fault = rig.telemetry[-1].depth_mm
    assert depth_at_fault > CFG.depth.retracted_mm
    assert rig.telemetry[-2].depth_mm <= CFG.depth.retracted_mm, "detected in the first tick"
    check_fault_reaction(
        rig, e, "body_range", persistent=False, recover=lambda r: r.core.set_body(None)
    )


def test_carriage_carrying_pressing_heads_past_the_neck_top_is_a_body_range_fault() -> None:
    rig = Rig()
    rig.core.set_body(BANDS)
    rig.core.move("carriage", mid("neck"))
    rig.run(4.0)
    rig.core.move("depth", level_mm(1))
    rig.run(1.5)
    assert not rig.find("fault")
    rig.core.move("carriage", CFG.carriage.track_max_mm)
    e = rig.run_to_fault(3.0)
    assert fault_code(e) == "body_range"
    assert e.value > NECK_TOP_MM and e.value - NECK_TOP_MM < 100.0 * TICK / S + 1e-6
    check_fault_reaction(
        rig, e, "body_range", persistent=False, recover=lambda r: r.core.set_body(None)
    )


def test_kneading_at_the_narrowest_width_is_a_spine_clearance_fault() -> None:
    # width 90: 90/2 - e(8) - r(20) = 17 < keep-out 20 mm as soon as the heads orbit
    assert CFG.width.min_mm < CFG.min_width_mm(kneading=True)
    rig = Rig()
    rig.core.move("width", CFG.width.min_mm)
    rig.run(4.0)
    assert not rig.find("fault"), "the narrowest width without kneading is allowed"
    rig.core.rate("kneading", 10.0)
    t_cmd = rig.now
    e = rig.run_to_fault(0.5)
    assert fault_code(e) == "spine_clearance"
    assert e.t_ns == t_cmd + TICK, "the first tick with a non-zero kneading rate"
    expected = (
        CFG.width.min_mm / 2
        - CFG.kneading.eccentricity_mm
        - CFG.body.contact_radius_mm
        - CFG.body.keep_out_mm
    )
    assert e.value == pytest.approx(expected)
    check_fault_reaction(rig, e, "spine_clearance", persistent=False)


@pytest.mark.parametrize("knead_rpm", [0.0, 30.0])
def test_kneading_at_the_safe_minimum_width_is_allowed(knead_rpm: float) -> None:
    rig = Rig()
    rig.core.move("width", CFG.min_width_mm(kneading=True))
    rig.core.rate("kneading", knead_rpm, at_ns=3 * S)
    rig.run(6.0)
    assert not rig.find("fault")


def test_depth_above_the_zone_cap_is_a_zone_depth_fault() -> None:
    rig = Rig()
    into_zone(rig, "lumbar")
    cap = level_mm(CAPS["lumbar"].depth_level)
    rig.core.move("depth", level_mm(CAPS["lumbar"].depth_level + 1))
    e = rig.run_to_fault(3.0)
    assert fault_code(e) == "zone_depth"
    assert e.limit == cap
    assert cap < e.value <= cap + LIMITS["depth"].v_max * TICK / S
    check_fault_reaction(
        rig, e, "zone_depth", persistent=False, recover=lambda r: r.core.set_body(None)
    )


def test_pressing_heads_carried_into_the_neck_is_a_zone_depth_fault() -> None:
    rig = Rig()
    into_zone(rig, "shoulders")
    rig.core.move("depth", level_mm(2))  # allowed on the shoulders, twice the neck's cap
    rig.run(2.0)
    rig.core.move("carriage", mid("neck"))
    e = rig.run_to_fault(5.0)
    assert fault_code(e) == "zone_depth"
    assert rig.telemetry[-1].zone == list(CAPS).index("neck")
    assert rig.telemetry[-2].zone == list(CAPS).index("shoulders"), "caught at the zone edge"
    check_fault_reaction(
        rig, e, "zone_depth", persistent=False, recover=lambda r: r.core.set_body(None)
    )


def test_tapping_in_the_neck_is_a_zone_tapping_fault() -> None:
    assert CAPS["neck"].tap_hz == 0.0
    rig = Rig()
    into_zone(rig, "neck")
    rig.core.rate("tapping", 2.0)
    t_cmd = rig.now
    e = rig.run_to_fault(0.5)
    assert fault_code(e) == "zone_tapping"
    assert e.t_ns == t_cmd + TICK
    check_fault_reaction(rig, e, "zone_tapping", persistent=False)


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_kneading_above_the_neck_cap_is_a_zone_kneading_fault(direction: float) -> None:
    rig = Rig()
    into_zone(rig, "neck")
    cap = CAPS["neck"].knead_rpm
    rig.core.rate("kneading", direction * cap)  # at the cap: allowed
    rig.run(2.0)
    assert not rig.find("fault")
    rig.core.rate("kneading", direction * (cap + 10.0))
    e = rig.run_to_fault(2.0)
    assert fault_code(e) == "zone_kneading"
    assert abs(e.value) > cap and e.limit == cap
    check_fault_reaction(rig, e, "zone_kneading", persistent=False)


def test_tapping_while_the_width_moves_is_a_tapping_width_fault() -> None:
    rig = Rig()
    rig.core.rate("tapping", 4.0)
    rig.run(1.0)
    assert not rig.find("fault")
    rig.core.move("width", CFG.width.medium_mm)
    t_cmd = rig.now
    e = rig.run_to_fault(0.5)
    assert fault_code(e) == "tapping_width"
    assert e.t_ns == t_cmd, "in the tick the width move starts"
    check_fault_reaction(rig, e, "tapping_width", persistent=False)


def test_tapping_may_start_once_the_width_is_reached() -> None:
    rig = Rig()
    rig.core.move("width", CFG.width.narrow_mm)
    idle = rig.run(5.0, stop_on=lambda e: e.kind == "axis_idle" and e.code == AXES.index("width"))
    assert idle is not None
    rig.core.rate("tapping", 6.0)
    rig.run(2.0)
    assert not rig.find("fault")


def test_motion_limits_above_the_config_are_refused() -> None:
    # The in-tick acceleration check has no honest path: moves are planned within limits the API
    # caps at the config, brakes use the config's limits, and in an e-stop (the only mode with
    # other limits) a further fault is never latched. The velocity check has one, below.
    rig = Rig()
    for axis in ("carriage", "width", "depth"):
        lim = LIMITS[axis]
        for name, value in (("v_max", lim.v_max), ("a_max", lim.a_max), ("j_max", lim.j_max)):
            above: dict[str, Any] = {name: value * 1.001}
            with pytest.raises(ValueError, match=f"{name} \\S+ exceeds the configured limit"):
                rig.core.move(axis, RANGES[axis][1], **above)
            at: dict[str, Any] = {name: value}
            rig.core.move(axis, RANGES[axis][1], **at)  # at the limit: accepted
    rig.run(15.0)
    assert not rig.find("fault")


def test_a_rate_above_the_axis_velocity_limit_is_a_velocity_fault() -> None:
    # A config whose kneading top rate exceeds its velocity limit: rate() checks the top rate, so
    # the command is accepted and the in-tick guard is what catches it.
    lim = CFG.kneading.limits
    slow = lim.model_copy(update={"v_max": 40.0})
    assert isinstance(slow, MotionLimits)
    cfg = CFG.model_copy(update={"kneading": Kneading(limits=slow)})
    rig = Rig(config=cfg)
    rig.core.rate("kneading", 50.0)
    e = rig.run_to_fault(2.0)
    assert fault_code(e) == "velocity"
    assert AXES[e.axis] == "kneading"
    assert 40.0 < e.value < 40.0 + lim.a_max * TICK / S
    assert e.limit == 40.0
    check_fault_reaction(rig, e, "velocity", persistent=False)


# ---- guard: measured values (faults injected into the plant) ----------------------------------


@pytest.mark.parametrize(
    ("axis", "goal", "inject_s"),
    [("carriage", 300.0, 2.0), ("width", CFG.width.min_mm, 1.0), ("depth", 40.0, 1.0)],
)
def test_a_stalled_axis_is_a_stall_fault_within_500_ms(
    axis: str, goal: float, inject_s: float
) -> None:
    rig = Rig([f"stall:{axis}@{inject_s}s"])
    rig.heat_c = 40.0
    rig.core.move(axis, goal)
    rig.run(inject_s)
    _, v, _ = rig.core.snapshot()["axes"][axis]
    assert abs(v) == pytest.approx(LIMITS[axis].v_max), "cruising when the axis jams"
    e = rig.run_to_fault(1.0)
    assert fault_code(e) == "stall", f"{fault_code(e)} fired before stall"
    assert AXES[e.axis] == axis
    assert e.value < e.limit, "the encoder followed less than a quarter of the setpoint's travel"
    detect_ns = e.t_ns - round(inject_s * S)
    assert 0 <= detect_ns <= 500 * MS
    # the jammed axis stays jammed: show the recovery on another one
    other = "width" if axis == "carriage" else "carriage"
    check_fault_reaction(rig, e, "stall", persistent=False, move_axis=other)


def test_a_stall_during_a_slow_move_is_a_stall_fault_within_500_ms() -> None:
    rig = Rig(["stall:depth@1s"])
    rig.core.move("depth", CFG.depth.max_mm, v_max=4.0)  # a gentle press, within the limits
    e = rig.run(20.0, stop_on=lambda e: e.kind == "fault")
    assert e is not None, "a jammed depth axis went unnoticed"
    assert fault_code(e) == "stall"
    assert e.t_ns - 1 * S <= 500 * MS


def test_a_hardware_that_stops_answering_is_a_link_lost_fault_within_100_ms() -> None:
    # The seam's base class is a chair with nothing attached: every exchange reports no status.
    core = Core(CFG, Hardware(), telemetry_hz=1000.0)
    core.heartbeat()
    core.move("carriage", 600.0)
    core.heat(40.0)
    core.run_until(300 * MS, False)
    events = core.drain_events()
    assert events[0] == CoreEvent(0, "link", 0)
    faults = [e for e in events if e.kind == "fault"]
    assert [fault_code(e) for e in faults] == ["link_lost"]
    assert faults[0].t_ns <= 100 * MS
    snap = core.snapshot()
    assert snap["mode"] == "fault" and at_rest(snap) and snap["heater_duty"] == 0.0


def test_both_limit_switches_are_a_limit_switch_fault_in_one_tick() -> None:
    rig = Rig([f"limit_switch_both@{INJECT_S}s"])
    cruising(rig)
    e = rig.run_to_fault(3.0)
    assert fault_code(e) == "limit_switch"
    assert e.t_ns - T_INJECT < TICK
    check_fault_reaction(rig, e, "limit_switch", persistent=True)


@pytest.mark.parametrize("motor", ["carriage", "width", "depth", "kneading", "tapping"])
def test_motor_overcurrent_is_an_overcurrent_fault_within_10_ms(motor: str) -> None:
    rig = Rig([f"overcurrent:{motor}@{INJECT_S}s"])
    cruising(rig)
    e = rig.run_to_fault(3.0)
    assert fault_code(e) == "overcurrent"
    assert AXES[e.axis] == motor
    assert e.value > e.limit == CFG.faults.overcurrent_a[AXES.index(motor)]
    assert 0 <= e.t_ns - T_INJECT <= 10 * MS
    check_fault_reaction(rig, e, "overcurrent", persistent=True)


@pytest.mark.parametrize("kind", ["supply_low", "supply_high"])
def test_supply_outside_its_range_is_a_supply_voltage_fault_within_100_ms(kind: str) -> None:
    rig = Rig([f"{kind}@{INJECT_S}s"])
    cruising(rig)
    e = rig.run_to_fault(3.0)
    assert fault_code(e) == "supply_voltage"
    assert not CFG.faults.supply_min_v <= e.value <= CFG.faults.supply_max_v
    assert 0 <= e.t_ns - T_INJECT <= 100 * MS
    check_fault_reaction(rig, e, "supply_voltage", persistent=True)


@pytest.mark.parametrize("kind", ["thermistor_open", "thermistor_short"])
def test_a_broken_thermistor_cuts_the_heater_at_once_and_faults_within_100_ms(kind: str) -> None:
    rig = Rig([f"{kind}@{INJECT_S}s"])
    cruising(rig)
    rig.run(INJECT_S)
    assert rig.telemetry[-1].heater_duty > 0.0
    e = rig.run_to_fault(1.0)
    assert fault_code(e) == "thermistor"
    assert 0 <= e.t_ns - T_INJECT <= 100 * MS
    during = [r for r in rig.telemetry if r.t_ns >= T_INJECT]
    assert during[0].t_ns == T_INJECT
    assert all(r.heater_duty == 0.0 for r in during), "heater off from the first bad reading"
    check_fault_reaction(rig, e, "thermistor", persistent=True)


def test_a_stuck_heater_trips_over_temperature_at_48_c() -> None:
    rig = Rig([f"heater_stuck_on@{INJECT_S}s"])
    rig.heat_c = CFG.heater.levels_c["low"]
    e = rig.run_to_fault(200.0)
    assert fault_code(e) == "over_temperature"
    trip = CFG.heater.trip_c
    before = [r for r in rig.telemetry if r.t_ns < e.t_ns]
    assert max(r.heat_c for r in before) < trip, "tripped on the first reading at the trip point"
    assert trip <= e.value < trip + 0.2 and e.limit == trip
    assert rig.telemetry[-1].heat_c == e.value
    check_fault_reaction(rig, e, "over_temperature", persistent=True)


def test_the_occupant_leaving_is_reported_within_500_ms_and_is_not_a_fault() -> None:
    rig = Rig([f"occupant_leaves@{INJECT_S}s"])
    cruising(rig)
    rig.run(4.0)
    gone = rig.find("occupancy")
    assert [e.code for e in gone] == [0]
    assert 0 <= gone[0].t_ns - T_INJECT <= 500 * MS
    assert not rig.find("fault")
    snap = rig.core.snapshot()
    assert snap["mode"] == "run" and not snap["seat_occupied"]
    assert snap["busy"]["carriage"], "settling is the session's call, not the core's"


def test_a_silent_controller_is_a_controller_stalled_fault_within_500_ms() -> None:
    rig = Rig()
    cruising(rig)
    rig.run(2.0)
    rig.feed()
    last = rig.last_fed_ns
    rig.run(0.45, feed=False)
    assert not rig.find("fault"), "fed 450 ms ago: not yet"
    e = rig.run(1.0, feed=False, stop_on=lambda e: e.kind == "fault")
    assert e is not None
    assert fault_code(e) == "controller_stalled"
    assert 0 < e.t_ns - last <= 500 * MS
    check_fault_reaction(rig, e, "controller_stalled", persistent=False, feed=False)
