"""The real-time core (core_rt.core) on the simulated chair: the guard, the watchdogs, the heater,
braking, timed moves, determinism and the real-time loop.

Every test drives the real compiled `Core` against the real `SimPlant` (no mocks), in virtual time
with `Core.run_until`, feeding the controller watchdog every 100 ms of core time unless the test is
about the watchdog. Faults are injected into the plant (`KIND[:TARGET]@SECONDSs`, seconds from the
plant's epoch, which is core time 0 here), so an injection time is exact and every detection time
below is measured from it to the fault event's `t_ns`, against its deadline in DOMAIN §6.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import pytest

from core_rt.config import ChairConfig, Kneading, Loop, MotionLimits
from core_rt.core import AXES, FAULT_CODES, MODES, TELEMETRY_FIELDS, Core
from core_rt.hardware import Hardware
from core_rt.motion import plan_move
from sim import SimPlant

CFG = ChairConfig()
MS = 1_000_000
S = 1_000_000_000
TICK = CFG.loop.period_ns
FEED_NS = 100 * MS
"""How often the tests feed the core: well inside the 500 ms controller watchdog."""

Event = tuple[int, str, int, float, float]

LIMITS = {
    "carriage": CFG.carriage.limits,
    "width": CFG.width.limits,
    "depth": CFG.depth.limits,
    "kneading": CFG.kneading.limits,
    "tapping": CFG.tapping.limits,
}
RANGES = {
    "carriage": (CFG.carriage.track_min_mm, CFG.carriage.track_max_mm),
    "width": (CFG.width.min_mm, CFG.width.max_mm),
    "depth": (CFG.depth.min_mm, CFG.depth.max_mm),
}
CAPS = CFG.body.zone_caps
SHOULDER_MM = 900.0
BANDS = CFG.zones_for_shoulder(SHOULDER_MM)
NECK_TOP_MM = BANDS["neck"][1]
TOL = 1e-9  # relative: float round-off only


class Rec(NamedTuple):
    """One telemetry record (the core's TELEMETRY_FIELDS, checked at import)."""

    t_ns: int
    mode: int
    fault: int
    zone: int
    flags: int
    y_mm: float
    v_mm_s: float
    a_mm_s2: float
    width_mm: float
    left_x_mm: float
    right_x_mm: float
    depth_mm: float
    knead_rpm: float
    tap_hz: float
    heat_target_c: float
    heat_c: float
    heater_duty: float
    y_meas_mm: float


assert Rec._fields == TELEMETRY_FIELDS


def mid(zone: str) -> float:
    lo, hi = BANDS[zone]
    return (lo + hi) / 2.0


def level_mm(level: int) -> float:
    return CFG.depth.level_mm(level)


class Rig:
    """One chair: a SimPlant behind a Core, telemetry every tick, driven in virtual time."""

    def __init__(
        self, faults: Iterable[str] = (), *, config: ChairConfig = CFG, seed: int = 1
    ) -> None:
        self.config = config
        self.plant = SimPlant(config, seed=seed, faults=list(faults))
        self.core = Core(config, self.plant, telemetry_hz=float(config.loop.tick_hz))
        self.tick = config.loop.period_ns
        self.events: list[Event] = []
        self.telemetry: list[Rec] = []
        self.heat_c: float | None = None
        """When set, every feed refreshes the heater target too."""
        self.last_fed_ns = -1

    @property
    def now(self) -> int:
        """Time of the next tick to run."""
        return int(self.core.now_ns)

    def feed(self) -> None:
        self.core.heartbeat()
        if self.heat_c is not None:
            self.core.heat(self.heat_c)
        self.last_fed_ns = self.now  # the tick at this time takes the commands

    def collect(self) -> None:
        self.events += self.core.drain_events()
        self.telemetry += [Rec(*r) for r in self.core.drain_telemetry()]

    def run(
        self,
        seconds: float,
        *,
        feed: bool = True,
        stop_on: Callable[[Event], bool] | None = None,
    ) -> Event | None:
        """Run `seconds` of core time, feeding every 100 ms unless `feed` is False. With `stop_on`,
        stop right after the tick that emitted a matching event and return that event."""
        end = self.now + round(seconds * S)
        while self.now < end:
            if feed and (self.last_fed_ns < 0 or self.now - self.last_fed_ns >= FEED_NS):
                self.feed()
            seen = len(self.events)
            # chunks of at most 100 ms: feeding, and draining before the rings fill
            limit = min(end, (self.last_fed_ns if feed else self.now) + FEED_NS)
            self.core.run_until(limit, stop_on is not None)
            self.collect()
            if stop_on is not None:
                for e in self.events[seen:]:
                    if stop_on(e):
                        return e
        return None

    def run_to_fault(self, within_s: float) -> Event:
        e = self.run(within_s, stop_on=lambda e: e[1] in ("fault", "estop"))
        assert e is not None, f"no fault within {within_s} s; events: {self.events[-5:]}"
        return e

    def step(self) -> None:
        self.core.run_until(self.now + self.tick, False)
        self.collect()

    def trace(self, seconds: float) -> list[tuple[int, dict[str, tuple[float, float, float]]]]:
        """Per-tick commanded state of every axis, (tick time, {axis: (p, v, a)})."""
        out = []
        for _ in range(round(seconds * S / self.tick)):
            if self.now - self.last_fed_ns >= FEED_NS:
                self.feed()
            t = self.now
            self.step()
            out.append((t, self.core.snapshot()["axes"]))
        return out

    def since(self, t_ns: int) -> list[Rec]:
        return [r for r in self.telemetry if r.t_ns >= t_ns]

    def find(self, kind: str, since: int = 0, code: int | None = None) -> list[Event]:
        return [
            e
            for e in self.events
            if e[1] == kind and e[0] >= since and (code is None or e[2] == code)
        ]


def at_rest(snap: dict[str, Any]) -> bool:
    return all(v == 0.0 and a == 0.0 for _, v, a in snap["axes"].values())


def fault_code(e: Event) -> str | None:
    code: str | None = FAULT_CODES[e[2]]
    return code


# ---- the reaction every latched fault must show ------------------------------------------------


def check_fault_reaction(
    rig: Rig,
    event: Event,
    code: str,
    *,
    persistent: bool,
    recover: Callable[[Rig], None] | None = None,
    move_axis: str = "carriage",
    feed: bool = True,
) -> None:
    """The fault is reported and latched, the chair stops under control with the heater off,
    nothing moves until reset(), reset() is refused while anything moves and accepted at rest.

    `persistent`: the cause is still there after the reset (a plant fault), so the same fault must
    latch again. Otherwise the chair must move again after the reset (`recover` runs first, in
    the same tick as the reset, for faults whose stop position still violates the guard), shown
    by a small move of `move_axis`. `feed=False`: the stop must come without the controller."""
    t_fault = event[0]
    assert event[1] == "fault"
    assert fault_code(event) == code, f"expected {code}, got {fault_code(event)}: {event}"
    snap = rig.core.snapshot()
    assert (snap["mode"], snap["fault"]) == ("fault", code)
    fault_rec = rig.telemetry[-1]
    assert fault_rec.t_ns == t_fault
    assert fault_rec.heater_duty == 0.0, "heater must be off in the fault's own tick"
    assert MODES[fault_rec.mode] == "fault"

    if not at_rest(snap):
        # still braking: reset refused, and a move is ignored (not queued for later)
        rig.core.reset()
        rig.core.move("carriage", 600.0)
        rig.step()
        assert rig.find("reset", since=t_fault) == [(t_fault + rig.tick, "reset", 0, 0.0, 0.0)]
        assert rig.core.snapshot()["mode"] == "fault"

    rig.run(3.0, feed=feed)
    snap = rig.core.snapshot()
    assert (snap["mode"], snap["fault"]) == ("fault", code)
    assert at_rest(snap), snap["axes"]
    assert not any(snap["busy"].values()), snap["busy"]
    assert snap["heater_duty"] == 0.0 and snap["heat_target_c"] == 0.0
    assert rig.find("at_rest", since=t_fault), "no at_rest event after the fault"
    after = rig.since(t_fault)
    lim = LIMITS["carriage"]
    assert all(r.heater_duty == 0.0 for r in after)
    assert max(abs(r.a_mm_s2) for r in after) <= lim.a_max * (1 + TOL)
    assert max(abs(r.v_mm_s) for r in after) <= lim.v_max * (1 + TOL)
    assert after[-1].v_mm_s == 0.0 and after[-1].a_mm_s2 == 0.0
    assert not rig.find("fault", since=t_fault + 1), "only the first fault is latched"

    # latched: nothing moves until reset
    y = snap["axes"]["carriage"][0]
    rig.core.move("carriage", 700.0 if y > 750.0 else 800.0)
    rig.run(1.0)
    snap = rig.core.snapshot()
    assert snap["axes"]["carriage"][0] == y and not snap["busy"]["carriage"]

    t_reset = rig.now
    rig.core.reset()
    if recover is not None:
        recover(rig)
    rig.run(0.3)
    assert rig.find("reset", since=t_reset)[0] == (t_reset, "reset", 1, 0.0, 0.0)
    if persistent:
        again = rig.find("fault", since=t_reset)
        assert again and fault_code(again[0]) == code, "the cause persists: the fault re-latches"
        return
    assert rig.core.snapshot()["mode"] == "run"
    assert not rig.find("fault", since=t_reset)
    p = rig.core.snapshot()["axes"][move_axis][0]
    goal = p - 10.0 if p - 10.0 >= RANGES[move_axis][0] else p + 10.0
    rig.core.move(move_axis, goal)
    rig.run(2.0)
    snap = rig.core.snapshot()
    assert snap["mode"] == "run", rig.events[-3:]
    assert snap["axes"][move_axis][0] == goal


def cruising(rig: Rig, *, heat_c: float = 40.0) -> None:
    """Carriage walking down the back at full speed, heater on, kneading: about 9 s of motion."""
    rig.core.move("carriage", 300.0)
    rig.core.rate("kneading", 20.0)
    rig.heat_c = heat_c


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


def test_raised_fault_latches_with_a_controlled_stop() -> None:
    rig = Rig()
    cruising(rig)
    rig.run(2.0)
    rig.core.raise_fault("track_range")
    e = rig.run_to_fault(0.01)
    assert e[0] == 2 * S
    check_fault_reaction(rig, e, "track_range", persistent=False)


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
    assert e[3] > NECK_TOP_MM and e[3] - NECK_TOP_MM < 100.0 * TICK / S + 1e-6
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
    assert e[0] == t_cmd + TICK, "the first tick with a non-zero kneading rate"
    expected = (
        CFG.width.min_mm / 2
        - CFG.kneading.eccentricity_mm
        - CFG.body.contact_radius_mm
        - CFG.body.keep_out_mm
    )
    assert e[3] == pytest.approx(expected)
    check_fault_reaction(rig, e, "spine_clearance", persistent=False)


@pytest.mark.parametrize("knead_rpm", [0.0, 30.0])
def test_kneading_at_the_safe_minimum_width_is_allowed(knead_rpm: float) -> None:
    rig = Rig()
    rig.core.move("width", CFG.min_width_mm(kneading=True))
    rig.core.rate("kneading", knead_rpm, at_ns=3 * S)
    rig.run(6.0)
    assert not rig.find("fault")


def _into_zone(rig: Rig, zone: str) -> None:
    rig.core.set_body(BANDS)
    rig.core.move("carriage", mid(zone))
    rig.run(10.0)
    assert not rig.find("fault")
    assert rig.telemetry[-1].zone == list(CAPS).index(zone)


def test_depth_above_the_zone_cap_is_a_zone_depth_fault() -> None:
    rig = Rig()
    _into_zone(rig, "lumbar")
    cap = level_mm(CAPS["lumbar"].depth_level)
    rig.core.move("depth", level_mm(CAPS["lumbar"].depth_level + 1))
    e = rig.run_to_fault(3.0)
    assert fault_code(e) == "zone_depth"
    assert e[4] == cap
    assert cap < e[3] <= cap + LIMITS["depth"].v_max * TICK / S
    check_fault_reaction(
        rig, e, "zone_depth", persistent=False, recover=lambda r: r.core.set_body(None)
    )


def test_pressing_heads_carried_into_the_neck_is_a_zone_depth_fault() -> None:
    rig = Rig()
    _into_zone(rig, "shoulders")
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
    _into_zone(rig, "neck")
    rig.core.rate("tapping", 2.0)
    t_cmd = rig.now
    e = rig.run_to_fault(0.5)
    assert fault_code(e) == "zone_tapping"
    assert e[0] == t_cmd + TICK
    check_fault_reaction(rig, e, "zone_tapping", persistent=False)


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_kneading_above_the_neck_cap_is_a_zone_kneading_fault(direction: float) -> None:
    rig = Rig()
    _into_zone(rig, "neck")
    cap = CAPS["neck"].knead_rpm
    rig.core.rate("kneading", direction * cap)  # at the cap: allowed
    rig.run(2.0)
    assert not rig.find("fault")
    rig.core.rate("kneading", direction * (cap + 10.0))
    e = rig.run_to_fault(2.0)
    assert fault_code(e) == "zone_kneading"
    assert abs(e[3]) > cap and e[4] == cap
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
    assert e[0] == t_cmd, "in the tick the width move starts"
    check_fault_reaction(rig, e, "tapping_width", persistent=False)


def test_tapping_may_start_once_the_width_is_reached() -> None:
    rig = Rig()
    rig.core.move("width", CFG.width.narrow_mm)
    idle = rig.run(5.0, stop_on=lambda e: e[1] == "axis_idle" and e[2] == AXES.index("width"))
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
            with pytest.raises(ValueError, match=f"{name} \\S+ exceeds the configured limit"):
                rig.core.move(axis, RANGES[axis][1], **{name: value * 1.001})
            rig.core.move(axis, RANGES[axis][1], **{name: value})  # at the limit: accepted
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
    axis, value = divmod(e[3], 1000.0)  # value0 packs axis * 1000 + |v|
    assert AXES[int(axis)] == "kneading"
    assert 40.0 < value < 40.0 + lim.a_max * TICK / S
    assert e[4] == 40.0
    check_fault_reaction(rig, e, "velocity", persistent=False)


# ---- guard: measured values (faults injected into the plant) ----------------------------------

INJECT_S = 2.0
T_INJECT = round(INJECT_S * S)


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
    assert AXES[int(e[3])] == axis
    detect_ns = e[0] - round(inject_s * S)
    assert 0 <= detect_ns <= 500 * MS
    # the jammed axis stays jammed: show the recovery on another one
    other = "width" if axis == "carriage" else "carriage"
    check_fault_reaction(rig, e, "stall", persistent=False, move_axis=other)


def test_a_stall_during_a_slow_move_is_a_stall_fault_within_500_ms() -> None:
    rig = Rig(["stall:depth@1s"])
    rig.core.move("depth", CFG.depth.max_mm, v_max=4.0)  # a gentle press, within the limits
    e = rig.run(20.0, stop_on=lambda e: e[1] == "fault")
    assert e is not None, "a jammed depth axis went unnoticed"
    assert fault_code(e) == "stall"
    assert e[0] - 1 * S <= 500 * MS


def test_a_hardware_that_stops_answering_is_a_link_lost_fault_within_100_ms() -> None:
    # The seam's base class is a chair with nothing attached: every exchange reports no status.
    core = Core(CFG, Hardware(), telemetry_hz=1000.0)
    core.heartbeat()
    core.move("carriage", 600.0)
    core.heat(40.0)
    core.run_until(300 * MS, False)
    events = core.drain_events()
    assert events[0] == (0, "link", 0, 0.0, 0.0)
    faults = [e for e in events if e[1] == "fault"]
    assert [fault_code(e) for e in faults] == ["link_lost"]
    assert faults[0][0] <= 100 * MS
    snap = core.snapshot()
    assert snap["mode"] == "fault" and at_rest(snap) and snap["heater_duty"] == 0.0


def test_both_limit_switches_are_a_limit_switch_fault_in_one_tick() -> None:
    rig = Rig([f"limit_switch_both@{INJECT_S}s"])
    cruising(rig)
    e = rig.run_to_fault(3.0)
    assert fault_code(e) == "limit_switch"
    assert e[0] - T_INJECT < TICK
    check_fault_reaction(rig, e, "limit_switch", persistent=True)


@pytest.mark.parametrize("motor", ["carriage", "width", "depth", "kneading", "tapping"])
def test_motor_overcurrent_is_an_overcurrent_fault_within_10_ms(motor: str) -> None:
    rig = Rig([f"overcurrent:{motor}@{INJECT_S}s"])
    cruising(rig)
    e = rig.run_to_fault(3.0)
    assert fault_code(e) == "overcurrent"
    assert AXES[int(e[3])] == motor
    assert 0 <= e[0] - T_INJECT <= 10 * MS
    check_fault_reaction(rig, e, "overcurrent", persistent=True)


@pytest.mark.parametrize("kind", ["supply_low", "supply_high"])
def test_supply_outside_its_range_is_a_supply_voltage_fault_within_100_ms(kind: str) -> None:
    rig = Rig([f"{kind}@{INJECT_S}s"])
    cruising(rig)
    e = rig.run_to_fault(3.0)
    assert fault_code(e) == "supply_voltage"
    assert not CFG.faults.supply_min_v <= e[3] <= CFG.faults.supply_max_v
    assert 0 <= e[0] - T_INJECT <= 100 * MS
    check_fault_reaction(rig, e, "supply_voltage", persistent=True)


@pytest.mark.parametrize("kind", ["thermistor_open", "thermistor_short"])
def test_a_broken_thermistor_cuts_the_heater_at_once_and_faults_within_100_ms(kind: str) -> None:
    rig = Rig([f"{kind}@{INJECT_S}s"])
    cruising(rig)
    rig.run(INJECT_S)
    assert rig.telemetry[-1].heater_duty > 0.0
    e = rig.run_to_fault(1.0)
    assert fault_code(e) == "thermistor"
    assert 0 <= e[0] - T_INJECT <= 100 * MS
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
    before = [r for r in rig.telemetry if r.t_ns < e[0]]
    assert max(r.heat_c for r in before) < trip, "tripped on the first reading at the trip point"
    assert trip <= e[3] < trip + 0.2
    assert rig.telemetry[-1].heat_c == e[3]
    check_fault_reaction(rig, e, "over_temperature", persistent=True)


def test_after_an_over_temperature_trip_a_stuck_heater_stops_heating() -> None:
    rig = Rig([f"heater_stuck_on@{INJECT_S}s"])
    rig.heat_c = CFG.heater.levels_c["low"]
    rig.run_to_fault(200.0)
    peak = 0.0
    for _ in range(60):
        rig.run(1.0)
        peak = max(peak, rig.plant.state()["pad_c"])
    assert not rig.plant.state()["fuse_blown"]
    assert peak < CFG.heater.trip_c + 2.0


def test_a_dead_heater_is_a_not_heating_fault_within_60_s_of_full_duty() -> None:
    rig = Rig([f"heater_dead@{INJECT_S}s"])
    rig.core.move("carriage", 900.0)
    rig.run(INJECT_S)
    rig.heat_c = CFG.heater.levels_c["high"]
    e = rig.run_to_fault(120.0)
    assert fault_code(e) == "heater_not_heating"
    saturated = next(r.t_ns for r in rig.telemetry if r.heater_duty >= 1.0)
    assert 0 < e[0] - saturated <= 60 * S
    assert e[3] < CFG.heater.not_heating_rise_c
    check_fault_reaction(rig, e, "heater_not_heating", persistent=False)


def test_a_working_heater_at_full_duty_is_not_a_fault() -> None:
    rig = Rig()
    rig.heat_c = CFG.heater.levels_c["high"]
    rig.run(120.0)
    assert not rig.find("fault")


def test_the_occupant_leaving_is_reported_within_500_ms_and_is_not_a_fault() -> None:
    rig = Rig([f"occupant_leaves@{INJECT_S}s"])
    cruising(rig)
    rig.run(4.0)
    gone = rig.find("occupancy")
    assert [e[2] for e in gone] == [0]
    assert 0 <= gone[0][0] - T_INJECT <= 500 * MS
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
    e = rig.run(1.0, feed=False, stop_on=lambda e: e[1] == "fault")
    assert e is not None
    assert fault_code(e) == "controller_stalled"
    assert 0 < e[0] - last <= 500 * MS
    check_fault_reaction(rig, e, "controller_stalled", persistent=False, feed=False)


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
    assert events and events[0][0] == t_e
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
    assert rig.find("reset", since=t_e) == [(t_e + TICK, "reset", 0, 0.0, 0.0)]
    rig.run(2.0)
    snap = rig.core.snapshot()
    assert snap["mode"] == "estop" and at_rest(snap)
    y = snap["axes"]["carriage"][0]
    t_reset = rig.now
    rig.core.reset()
    rig.run(2.0)
    assert rig.find("reset", since=t_reset) == [(t_reset, "reset", 1, 0.0, 0.0)]
    snap = rig.core.snapshot()
    assert snap["mode"] == "run" and at_rest(snap)
    assert snap["axes"]["carriage"][0] == y, "nothing resumes by itself"
    assert snap["heat_target_c"] == 0.0 and snap["heater_duty"] == 0.0
    rig.core.move("carriage", y + 50.0)
    rig.run(2.0)
    assert rig.core.snapshot()["axes"]["carriage"][0] == y + 50.0


def test_after_a_zone_depth_fault_reset_and_retract_recover_the_chair() -> None:
    rig = Rig()
    _into_zone(rig, "lumbar")
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
    assert [e[0] for e in idle] == [release + math.ceil(second * S - 1e-3)]


def test_a_single_move_with_a_hold_reports_idle_after_the_hold() -> None:
    rig = Rig()
    rig.core.move("width", CFG.width.medium_mm, hold_s=1.5)
    rig.run(5.0)
    plan = plan_move(CFG.width.park_mm, CFG.width.medium_mm, *_vaj("width"))
    idle = rig.find("axis_idle", code=AXES.index("width"))
    assert [e[0] for e in idle] == [math.ceil(plan.duration * S - 1e-3) + 1_500 * MS]


# ---- heater ------------------------------------------------------------------------------------


def test_heater_holds_its_target_within_one_degree_once_settled() -> None:
    target = CFG.heater.levels_c["high"]
    rig = Rig()
    rig.heat_c = target
    rig.run(400.0)
    settled = [r.heat_c for r in rig.since(200 * S)]
    assert max(settled) <= target + CFG.heater.steady_band_c
    assert sum(settled) / len(settled) == pytest.approx(target, abs=0.2)
    assert max(r.heat_c for r in rig.telemetry) <= target + CFG.heater.steady_band_c
    assert not rig.find("fault")


def test_heater_turns_off_when_its_target_is_not_refreshed_for_3_s() -> None:
    rig = Rig()
    rig.core.heat(CFG.heater.levels_c["medium"])
    t_set = rig.now
    rig.run(5.0)  # heartbeats only
    off = rig.find("heater_off")
    assert [(e[0], e[2]) for e in off] == [(t_set + round(CFG.heater.refresh_timeout_s * S), 1)]
    assert all(r.heater_duty > 0.0 for r in rig.telemetry if r.t_ns < off[0][0])
    assert all(r.heater_duty == 0.0 for r in rig.since(off[0][0]))
    snap = rig.core.snapshot()
    assert snap["heat_target_c"] == 0.0 and snap["mode"] == "run"
    assert not rig.find("fault")


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
    assert [e[1:3] for e in a.find("fault")] == [("fault", FAULT_CODES.index("supply_voltage"))]
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
    for r in real.telemetry:
        assert r.t_ns % TICK == 0 and r.t_ns in by_t, r.t_ns
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
    woken: list[Event] = []
    got_idle = asyncio.Event()

    def on_wake() -> None:
        core.clear_wakeup()
        woken.extend(core.drain_events())
        if any(e[1] == "axis_idle" for e in woken):
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
    idle = [e for e in woken if e[1] == "axis_idle"]
    assert idle and AXES[idle[0][2]] == "depth"
    assert not [e for e in woken if e[1] == "fault"]


@pytest.mark.realtime
def test_the_loop_runs_pinned_to_the_configured_cpu_and_says_so() -> None:
    import os

    cpus = sorted(os.sched_getaffinity(0))
    core = Core(CFG, SimPlant(CFG, seed=1))
    outcome = core.start_realtime(CFG.loop.rt_priority, cpus[-1])
    try:
        time.sleep(0.05)
    finally:
        core.stop_realtime()
    assert outcome["cpu"] == cpus[-1]
    assert core.loop_stats()["cycles"] > 0


@pytest.mark.realtime
def test_an_unavailable_cpu_runs_unpinned_with_a_warning() -> None:
    core = Core(CFG, SimPlant(CFG, seed=1))
    outcome = core.start_realtime(CFG.loop.rt_priority, 1000)
    try:
        time.sleep(0.05)
    finally:
        core.stop_realtime()
    assert outcome["cpu"] is None
    assert "CPU 1000" in outcome["warning"]
    assert core.loop_stats()["cycles"] > 0
