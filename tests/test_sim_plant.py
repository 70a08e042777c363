"""The simulated chair (sim.plant, sim.faults, sim.model): what the controller will see."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core_rt.config import POSITION_AXES, ChairConfig
from sim import FAULT_KINDS, FaultSpec, PlantParams, SimPlant, parse_fault
from sim.faults import FAULT_TARGETS, MOTORS
from sim.model import BodyParams
from sim.plant import bench_exchange

CFG = ChairConfig()
MS = 1_000_000
HOLD = (600.0, 130.0, 16.0)  # on the back, below any shoulder of the default body, heads pressing


def plant(**kw: Any) -> SimPlant:
    return SimPlant(CFG, **kw)


def settle(p: SimPlant, pos: tuple[float, float, float], seconds: float = 8.0) -> dict[str, Any]:
    return p.step({"pos_mm": pos}, n=int(seconds * 1000))


def trapezoid(
    p0: float, p1: float, v_max: float, a_max: float, dt: float
) -> list[tuple[float, float]]:
    """(position, velocity) every dt of a rest-to-rest move with a trapezoidal velocity."""
    out, p, v, sign = [], p0, 0.0, 1.0 if p1 > p0 else -1.0
    while True:
        remaining = abs(p1 - p)
        if remaining < 1e-9 and v == 0.0:
            return out
        if v * v / (2 * a_max) >= remaining:
            v = max(v - a_max * dt, 0.0)
        else:
            v = min(v + a_max * dt, v_max)
        p += sign * min(v * dt, remaining)
        if abs(p1 - p) < 1e-9:
            p, v = p1, 0.0
        out.append((p, sign * v))


# ---- axes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("axis", "start", "goal", "limits"),
    [
        (0, 320.0, 920.0, CFG.carriage.limits),
        (1, 100.0, 160.0, CFG.width.limits),
        (2, 0.0, 40.0, CFG.depth.limits),
    ],
)
def test_axes_track_a_move_with_small_error(
    axis: int, start: float, goal: float, limits: Any
) -> None:
    p = plant()
    pos = list(HOLD)
    pos[axis] = start
    settle(p, (pos[0], pos[1], pos[2]))
    path = trapezoid(start, goal, limits.v_max, limits.a_max, 1e-3)
    worst = 0.0
    for (ref, vel), (ref_next, _) in zip(path, [*path[1:], path[-1]], strict=True):
        pos[axis] = ref
        velocity = [0.0, 0.0, 0.0]
        velocity[axis] = vel
        s = p.step({"pos_mm": tuple(pos), "vel_mm_s": tuple(velocity)})
        worst = max(worst, abs(s["pos_mm"][axis] - ref_next))  # status is for the next tick
    assert worst < 0.2
    assert abs(s["pos_mm"][axis] - goal) <= 0.05


def test_encoders_are_quantised() -> None:
    p = plant()
    s = p.step({"pos_mm": (600.013, 131.237, 17.771)}, n=2000)
    q = p.params.encoder_mm
    true = p.state()["pos_mm"]
    for j in range(3):
        assert s["pos_mm"][j] == pytest.approx(round(s["pos_mm"][j] / q) * q, abs=1e-9)
        assert abs(s["pos_mm"][j] - true[j]) <= q / 2 + 1e-9
    assert s["pos_mm"][0] != true[0]


def test_mechanical_stops_hold_and_the_drive_pushes_against_them() -> None:
    p = plant()
    s = p.step({"pos_mm": (-15.0, 180.0, CFG.depth.max_mm + 10.0)}, n=8000)
    assert p.state()["pos_mm"] == (0.0, CFG.width.max_mm, CFG.depth.max_mm)
    assert s["pos_mm"] == (0.0, CFG.width.max_mm, CFG.depth.max_mm)
    # pushing into a stop draws a high current, yet below the over-current threshold
    for j in range(3):
        assert 0.5 * CFG.faults.overcurrent_a[j] < s["current_a"][j] < CFG.faults.overcurrent_a[j]
    s = p.step({"pos_mm": (1215.0, 130.0, 0.0)}, n=20000)
    assert p.state()["pos_mm"][0] == CFG.carriage.track_max_mm


@pytest.mark.parametrize(
    ("y", "low", "high"),
    [
        (0.0, 1, 0),
        (0.4, 1, 0),
        (0.7, 0, 0),
        (600.0, 0, 0),
        (1199.3, 0, 0),
        (1199.6, 0, 1),
        (1200.0, 0, 1),
    ],
)
def test_track_limit_switches_at_the_ends(y: float, low: int, high: int) -> None:
    s = settle(plant(), (y, 130.0, 0.0), 20.0)
    assert (s["limit_low"], s["limit_high"]) == (low, high)


def test_enable_zero_de_energises_everything() -> None:
    p = plant()
    settle(p, (320.0, 130.0, 16.0))
    for i in range(300):  # cruise up at 100 mm/s, kneading, tapping, heating
        p.step(
            {
                "pos_mm": (320.0 + 0.1 * i, 130.0, 16.0),
                "vel_mm_s": (100.0, 0.0, 0.0),
                "knead_rpm": 40.0,
                "tap_hz": 8.0,
                "heater_duty": 1.0,
            }
        )
    assert p.state()["vel_mm_s"][0] == pytest.approx(100.0, abs=1.0)
    s = p.step({"enable": 0}, n=100)
    state = p.state()
    assert state["vel_mm_s"] == (0.0, 0.0, 0.0)  # coasted to rest within 100 ms
    assert s["current_a"] == (0.0,) * 5
    assert state["heater_w"] == 0.0
    s = p.step({"enable": 0}, n=2000)
    assert abs(s["knead_rpm"]) < 0.1 and abs(s["tap_hz"]) < 0.1


def test_kneading_and_tapping_follow_their_commanded_rates() -> None:
    p = plant()
    s = p.step({"pos_mm": HOLD, "knead_rpm": -45.0, "tap_hz": 10.0}, n=500)
    assert s["knead_rpm"] == pytest.approx(-45.0, abs=0.01)
    assert s["tap_hz"] == pytest.approx(10.0, abs=0.01)
    s = p.step({"knead_rpm": 0.0, "tap_hz": 0.0}, n=20)
    assert 0 < abs(s["knead_rpm"]) < 45.0  # first order: still running down after 20 ms


def test_supply_reads_about_24_volts_with_a_little_noise() -> None:
    p = plant()
    volts = [p.step({"pos_mm": HOLD})["supply_v"] for _ in range(500)]
    assert all(23.0 < v < 24.5 for v in volts)
    assert len(set(volts)) > 400


# ---- body ---------------------------------------------------------------------------------------


def test_contact_switch_reads_the_back_up_to_the_true_shoulder() -> None:
    p = plant(body_height_cm=175, seed=3)
    sh = p.true_shoulder_mm
    assert settle(p, (sh - 2.0, 130.0, 16.0))["arm_contact"] == 1
    assert settle(p, (sh + 2.0, 130.0, 16.0))["arm_contact"] == 0  # nothing to press above it
    assert settle(p, (sh - 2.0, 130.0, 2.0))["arm_contact"] == 0  # heads back
    assert settle(p, (CFG.carriage.seat_mm - 5.0, 130.0, 16.0))["arm_contact"] == 0
    assert settle(p, (CFG.carriage.seat_mm + 5.0, 130.0, 16.0))["arm_contact"] == 1
    p.set_occupied(False)
    s = settle(p, (sh - 100.0, 130.0, 16.0))
    assert (s["arm_contact"], s["seat_occupied"]) == (0, 0)


def test_contact_is_lost_within_a_tick_of_crossing_the_shoulder_during_a_scan() -> None:
    p = plant(body_height_cm=160, seed=11)
    settle(p, (500.0, 130.0, 16.0))
    y, lost_at = 500.0, None
    while y < 1100.0 and lost_at is None:
        y += 0.04  # the scan's 40 mm/s
        s = p.step({"pos_mm": (y, 130.0, 16.0), "vel_mm_s": (40.0, 0.0, 0.0)})
        if s["arm_contact"] == 0:
            lost_at = s["pos_mm"][0]
    assert lost_at is not None
    assert lost_at == pytest.approx(p.true_shoulder_mm, abs=0.1)


def test_shoulder_varies_with_height_and_seed_but_deterministically() -> None:
    def shoulder(h: float, seed: int) -> float:
        return plant(body_height_cm=h, seed=seed).true_shoulder_mm

    assert shoulder(175, 5) == shoulder(175, 5)
    by_seed = {shoulder(175, seed) for seed in range(20)}
    assert len(by_seed) == 20
    mean = CFG.shoulder_for_height_mm(175)
    assert all(abs(s - mean) <= PlantParams().body.shoulder_variation_mm for s in by_seed)
    assert max(by_seed) - min(by_seed) > 5.0
    assert shoulder(190, 5) - shoulder(150, 5) == pytest.approx(
        CFG.shoulder_for_height_mm(190) - CFG.shoulder_for_height_mm(150)
    )
    assert (
        plant(params=PlantParams(body=BodyParams(shoulder_variation_mm=0))).true_shoulder_mm == mean
    )


def test_a_body_whose_shoulder_is_off_the_track_is_refused() -> None:
    with pytest.raises(ValueError, match="shoulder line"):
        plant(body_height_cm=300)


# ---- heat ---------------------------------------------------------------------------------------


def run_pi(p: SimPlant, target_c: float, seconds: float) -> list[tuple[float, float]]:
    """The config's PI at 10 Hz with conditional integration; returns (t_s, thermistor) samples."""
    h = CFG.heater
    integral, duty, out = 0.0, 0.0, []
    for k in range(int(seconds * 10)):
        s = p.step({"pos_mm": HOLD, "heater_duty": duty}, n=100)
        err = target_c - s["thermistor_c"]
        u = h.kp_duty_per_c * err + h.ki_duty_per_c_s * integral
        if 0.0 < u < 1.0 or (u >= 1.0) == (err < 0):
            integral += err * 0.1
        duty = min(max(h.kp_duty_per_c * err + h.ki_duty_per_c_s * integral, 0.0), 1.0)
        out.append(((k + 1) / 10, s["thermistor_c"]))
    return out


@pytest.mark.parametrize("seated", [True, False])
def test_heater_reaches_the_high_level_and_holds_it_under_a_pi(seated: bool) -> None:
    p = plant()
    p.set_occupied(seated)
    target = CFG.heater.levels_c["high"]
    log = run_pi(p, target, 360.0)
    reached = next(t for t, c in log if c >= target - 0.5)
    assert reached < 180.0
    steady = [c for t, c in log if t >= reached + 60.0]
    assert max(steady) < target + CFG.heater.steady_band_c
    assert min(steady) > target - CFG.heater.steady_band_c
    assert p.state()["fuse_blown"] is False


def test_full_duty_for_long_exceeds_the_trip() -> None:
    p = plant()
    p.step({"pos_mm": HOLD, "heater_duty": 1.0}, n=90_000)
    assert p.state()["pad_c"] > CFG.heater.trip_c


# ---- faults at their times ----------------------------------------------------------------------

AT_S = 1.0
ACTIVE: dict[str, Any] = {
    "pos_mm": HOLD,
    "knead_rpm": 30.0,
    "tap_hz": 6.0,
    "heater_duty": 0.3,
    "enable": 1,
}


def just_before_and_after(spec: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Statuses of the tick before the fault's time and of the tick at it."""
    p = plant(faults=[spec], params=PlantParams(start_mm=HOLD))
    p.set_epoch(0)
    p.step(ACTIVE, n=round(AT_S * 1000) - 1)
    before = p.step(ACTIVE)
    assert before["t_ns"] == round(AT_S * 1e9)
    return before, p.step(ACTIVE)


@pytest.mark.parametrize("motor", MOTORS)
def test_overcurrent_shows_at_its_time(motor: str) -> None:
    i = MOTORS.index(motor)
    before, after = just_before_and_after(f"overcurrent:{motor}@{AT_S}s")
    limit = CFG.faults.overcurrent_a[i]
    assert max(before["current_a"]) < min(CFG.faults.overcurrent_a)
    assert after["current_a"][i] >= 1.5 * limit


@pytest.mark.parametrize(
    ("kind", "shows"),
    [
        ("thermistor_open", lambda s: s["thermistor_c"] < CFG.heater.thermistor_min_c),
        ("thermistor_short", lambda s: s["thermistor_c"] > CFG.heater.thermistor_max_c),
        ("limit_switch_both", lambda s: s["limit_low"] == 1 and s["limit_high"] == 1),
        ("supply_low", lambda s: s["supply_v"] < CFG.faults.supply_min_v - 2),
        ("supply_high", lambda s: s["supply_v"] > CFG.faults.supply_max_v + 2),
        ("occupant_leaves", lambda s: s["seat_occupied"] == 0 and s["arm_contact"] == 0),
    ],
)
def test_sensor_faults_show_at_their_time(kind: str, shows: Any) -> None:
    before, after = just_before_and_after(f"{kind}@{AT_S}s")
    assert not shows(before)
    assert shows(after)


@pytest.mark.parametrize(
    ("axis", "start", "speed"), [(0, 500.0, 50.0), (1, 100.0, 20.0), (2, 8.0, 10.0)]
)
def test_stall_freezes_the_driven_encoder_and_raises_the_current(
    axis: int, start: float, speed: float
) -> None:
    pos = list(HOLD)
    pos[axis] = start
    p = plant(
        faults=[FaultSpec("stall", AT_S, POSITION_AXES[axis])],
        params=PlantParams(start_mm=(pos[0], pos[1], pos[2])),
    )
    p.set_epoch(0)
    vel = [0.0, 0.0, 0.0]
    vel[axis] = speed
    samples = []
    for _ in range(round((AT_S + CFG.faults.stall_ms / 1000) * 1000)):
        pos[axis] += speed * 1e-3
        s = p.step({"pos_mm": tuple(pos), "vel_mm_s": tuple(vel)})
        samples.append((s["t_ns"], s["pos_mm"][axis], s["current_a"][axis]))
    moving = [x for t, x, _ in samples if 0.5e9 <= t <= AT_S * 1e9]
    assert moving[-1] - moving[0] > 0.4 * speed * 0.5
    after = [(x, i) for t, x, i in samples if t > AT_S * 1e9]
    assert len({x for x, _ in after}) == 1  # encoder frozen while driven
    cruising = next(i for t, _, i in samples if t == round(AT_S * 1e9))
    assert after[-1][1] > 2 * cruising
    assert after[-1][1] < CFG.faults.overcurrent_a[axis]  # a stall is not an over-current
    assert p.state()["stalled"] == (POSITION_AXES[axis],)


def test_heater_dead_does_not_heat() -> None:
    p = plant(faults=["heater_dead@0s"])
    start = p.step({"pos_mm": HOLD, "heater_duty": 1.0})["thermistor_c"]
    end = p.step(n=60_000)["thermistor_c"]
    assert end - start < CFG.heater.not_heating_rise_c / 4
    assert p.state()["heater_w"] == 0.0


def test_heater_stuck_on_overheats_whatever_the_duty() -> None:
    p = plant(faults=[f"heater_stuck_on@{AT_S}s"])
    p.step({"pos_mm": HOLD, "heater_duty": 0.0}, n=1000)
    assert p.state()["heater_w"] == 0.0
    s = p.step(n=90_000)
    assert s["thermistor_c"] > CFG.heater.trip_c
    assert p.state()["heater_w"] == p.params.heater.heater_w


def test_thermal_fuse_ends_a_stuck_on_heater() -> None:
    p = plant(faults=["heater_stuck_on@0s"])
    p.step({"pos_mm": HOLD}, n=300_000)
    state = p.state()
    assert state["fuse_blown"] is True and state["heater_w"] == 0.0
    assert state["pad_c"] < p.params.heater.thermal_fuse_c


def test_session_faults_are_handed_over_not_acted_out() -> None:
    p = plant(faults=["estop@0.5s", "link_loss@0.5s"])
    q = plant()
    a, b = p.step(ACTIVE, n=1000), q.step(ACTIVE, n=1000)
    assert a == b
    assert [str(s) for s in p.session_faults()] == ["estop@0.5s", "link_loss@0.5s"]
    assert p.active_faults() == []


def test_faults_injected_at_run_time_apply_at_their_time_or_at_once_if_past() -> None:
    p = plant()
    p.step(ACTIVE, n=2000)  # epoch = first exchange
    p.inject("supply_high@3s")
    p.inject(FaultSpec("supply_low", 1.0))  # already past: next exchange
    assert p.step(ACTIVE)["supply_v"] < 20.0
    p.step(ACTIVE, n=998)
    assert p.step(ACTIVE)["supply_v"] < 20.0  # status at 3.000 s: fault due at the next exchange
    assert p.step(ACTIVE)["supply_v"] > 30.0
    assert [str(s) for s in p.active_faults()] == ["supply_low@1s", "supply_high@3s"]


def test_fault_times_count_from_the_first_exchange() -> None:
    p = plant(faults=["thermistor_open@0.01s"])
    p.step({"t_ns": 5_000 * MS})
    assert p.epoch_ns == 5_000 * MS
    assert p.step(n=8)["thermistor_c"] > 0
    assert p.step()["thermistor_c"] > 0
    assert p.step()["thermistor_c"] < -10


# ---- determinism and cost -----------------------------------------------------------------------


def record(seed: int) -> list[dict[str, Any]]:
    p = plant(seed=seed, faults=["supply_low@1.5s", "stall:width@1s"])
    out = []
    for i in range(2500):
        y = 400.0 + 200.0 * math.sin(i * 2e-3)
        out.append(
            p.step(
                {
                    "pos_mm": (y, 130.0 + (i % 7), 16.0),
                    "vel_mm_s": (0.4 * math.cos(i * 2e-3), 0, 0),
                    "knead_rpm": 30.0,
                    "tap_hz": 5.0,
                    "heater_duty": 0.7,
                }
            )
        )
    out.append(p.state())
    return out


def test_same_seed_and_inputs_give_bit_identical_statuses() -> None:
    assert repr(record(7)) == repr(record(7))


def test_a_different_seed_gives_different_noise() -> None:
    a, b = record(7), record(8)
    assert [s["pos_mm"] for s in a[:-1]] == [s["pos_mm"] for s in b[:-1]]
    assert [s["thermistor_c"] for s in a[:-1]] != [s["thermistor_c"] for s in b[:-1]]
    assert [s["supply_v"] for s in a[:-1]] != [s["supply_v"] for s in b[:-1]]


def test_bench_exchange_reports_a_cost() -> None:
    # speed is shown by `chair bench`, never asserted here; this only checks the helper works
    ns = bench_exchange(1_000)
    assert ns > 0 and math.isfinite(ns)


def test_step_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="unknown setpoint fields"):
        plant().step({"position": 1.0})


# ---- fault specs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("stall:carriage@120s", FaultSpec("stall", 120.0, "carriage")),
        ("thermistor_open@300s", FaultSpec("thermistor_open", 300.0)),
        ("occupant_leaves@200s", FaultSpec("occupant_leaves", 200.0)),
        ("estop@60s", FaultSpec("estop", 60.0)),
        ("overcurrent:tapping@0.25s", FaultSpec("overcurrent", 0.25, "tapping")),
        (" supply_low@7 ", FaultSpec("supply_low", 7.0)),
    ],
)
def test_parse_fault_accepts_the_documented_syntax(text: str, spec: FaultSpec) -> None:
    assert parse_fault(text) == spec
    assert parse_fault(str(spec)) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty fault spec"),
        ("stall:carriage", "missing time"),
        ("melt@10s", "unknown fault kind 'melt'"),
        ("stall@10s", "needs a target: one of carriage, width, depth"),
        ("stall:kneading@10s", "unknown target 'kneading'"),
        ("estop:carriage@10s", "takes no target"),
        ("estop@-5s", "must be >= 0"),
        ("estop@soon", "not a number of seconds"),
        ("estop@1e3s", "not a number of seconds"),
        ("est op@1s", "not a name"),
        ("estop@" + "9" * 400, "too large"),
    ],
)
def test_parse_fault_rejects_garbage_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fault(text)


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("stalcrigeo_pn:@0123456789.s- xé"), max_size=30) | st.text()
)
def test_parse_fault_returns_a_spec_or_raises_value_error(text: str) -> None:
    try:
        spec = parse_fault(text)
    except ValueError as e:
        assert str(e)
    else:
        assert spec.kind in FAULT_KINDS and spec.at_s >= 0
        assert parse_fault(str(spec)).kind == spec.kind


@given(
    st.sampled_from(sorted(FAULT_KINDS)).flatmap(
        lambda kind: st.tuples(
            st.just(kind),
            st.sampled_from(FAULT_TARGETS.get(kind, (None,))),
            st.floats(0, 1e5, allow_nan=False),
        )
    )
)
def test_every_valid_spec_round_trips_through_its_text(args: tuple[str, str | None, float]) -> None:
    kind, target, at_s = args
    spec = FaultSpec(kind, round(at_s, 3), target)
    assert parse_fault(str(spec)) == spec


def test_every_fault_kind_is_described() -> None:
    assert all(FAULT_KINDS[k] for k in FAULT_KINDS)
    assert set(FAULT_TARGETS) <= set(FAULT_KINDS)


def test_a_coarser_period_is_sub_stepped_and_still_tracks() -> None:
    p = SimPlant(CFG, period_ns=4 * MS)  # 250 Hz, the slowest tick the config allows
    s = p.step((0, HOLD), n=2000)
    assert s["t_ns"] == 8_000 * MS
    assert s["pos_mm"] == pytest.approx(HOLD, abs=0.02)
