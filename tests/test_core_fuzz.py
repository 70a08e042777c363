"""Bad input to the core's Python API, and random command sequences against a running core.

The first half throws NaN, infinities, zero and negative limits, absurd sizes, wrong types and
unknown names at every command and at the constructor: each must be refused with a clear
`ValueError` (a `TypeError` is tolerated for a non-number where a number is due: that is what
Cython's typed arguments raise) and must never reach the tick.

The second half is a hypothesis fuzz: random sequences of valid and invalid commands, plant faults
and silences, run in virtual time against the real core and the real simulated chair. The process
never crashes, every accepted move or rate either runs to its goal or is cut short by a stop that
the events explain, every stop ends at rest with the heater off, and the guard's invariants hold in
every tick's telemetry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core_rt.config import ZONES
from core_rt.core import FAULT_CODES, MODES, Core, CoreEvent
from sim import SimPlant
from tests.core_helpers import CFG, LIMITS, MS, TICK, S
from tests.core_helpers import RANGES as POSITION_RANGES

NAN, INF = math.nan, math.inf
RANGES = {
    **POSITION_RANGES,
    "kneading": (-CFG.kneading.max_rpm, CFG.kneading.max_rpm),
    "tapping": (0.0, CFG.tapping.max_hz),
}
BANDS = CFG.zones_for_shoulder(900.0)
TOL = 1e-9


def new_core(telemetry_hz: float = 50.0) -> Core:
    return Core(CFG, SimPlant(CFG, seed=1), telemetry_hz=telemetry_hz)


@pytest.fixture
def core() -> Core:
    return new_core()


def still_clean(core: Core) -> None:
    """Refused input never reached the tick: the chair runs on, unfaulted and unmoved."""
    core.heartbeat()
    core.run_until(core.now_ns + 50 * MS, False)
    snap = core.snapshot()
    assert snap["mode"] == "run" and snap["fault"] is None
    assert not any(snap["busy"].values())
    assert not [e for e in core.drain_events() if e.kind == "fault"]


# ---- numbers out of range: ValueError --------------------------------------------------------


BAD_NUMBERS = [NAN, INF, -INF]


@pytest.mark.parametrize("axis", ["carriage", "width", "depth"])
@pytest.mark.parametrize("goal", [*BAD_NUMBERS, -1e-6, 1e6, -1e300, 1e300])
def test_move_refuses_a_goal_outside_the_axis_range(core: Core, axis: str, goal: float) -> None:
    lo, hi = RANGES[axis]
    goal = hi + 1e-6 if goal == 1e6 else (lo - 1e-6 if goal == -1e-6 else goal)
    with pytest.raises(ValueError, match="goal must be a finite number"):
        core.move(axis, goal)
    still_clean(core)


@pytest.mark.parametrize("name", ["v_max", "a_max", "j_max"])
@pytest.mark.parametrize("value", [0, 0.0, -0.0, -1, -1e-300, *BAD_NUMBERS, 1e300, "above"])
def test_move_refuses_bad_limits(core: Core, name: str, value: Any) -> None:
    if value == "above":
        value = getattr(LIMITS["carriage"], name) * 1.000001
    with pytest.raises(ValueError, match=name):
        core.move("carriage", 600.0, **{name: value})
    still_clean(core)


@pytest.mark.parametrize("hold_s", [*BAD_NUMBERS, -1.0, -1e-9, 3600.001, 1e300])
def test_move_refuses_a_bad_hold(core: Core, hold_s: float) -> None:
    with pytest.raises(ValueError, match="hold_s"):
        core.move("carriage", 600.0, hold_s=hold_s)
    still_clean(core)


@pytest.mark.parametrize(
    "axis", ["walk", "", "Carriage", "carriage ", None, -1, 5, 99, 1.0, b"width"]
)
def test_commands_refuse_an_unknown_axis(core: Core, axis: Any) -> None:
    with pytest.raises(ValueError, match="unknown axis"):
        core.move(axis, 100.0)
    with pytest.raises(ValueError, match="unknown axis"):
        core.rate(axis, 1.0)
    still_clean(core)


def test_move_and_rate_refuse_the_wrong_kind_of_axis(core: Core) -> None:
    for axis in ("kneading", "tapping"):
        with pytest.raises(ValueError, match="rate axis"):
            core.move(axis, 1.0)
    for axis in ("carriage", "width", "depth"):
        with pytest.raises(ValueError, match="position axis"):
            core.rate(axis, 1.0)
    still_clean(core)


@pytest.mark.parametrize("axis", ["kneading", "tapping"])
@pytest.mark.parametrize("value", [*BAD_NUMBERS, "below", "above", 1e300, -1e300])
def test_rate_refuses_a_rate_outside_the_axis_range(core: Core, axis: str, value: Any) -> None:
    lo, hi = RANGES[axis]
    value = {"below": lo - 1e-6, "above": hi + 1e-6}.get(value, value)
    with pytest.raises(ValueError, match="rate must be a finite number"):
        core.rate(axis, value)
    still_clean(core)


@pytest.mark.parametrize("target_c", [*BAD_NUMBERS, -1e-9, -40.0, 47.5, 48.0, 1e300])
def test_heat_refuses_a_target_outside_0_to_below_the_trip(core: Core, target_c: float) -> None:
    with pytest.raises(ValueError, match="target_c must be a finite number"):
        core.heat(target_c)
    still_clean(core)


def _bands(**change: tuple[float, float]) -> list[tuple[float, float]]:
    return [change.get(z, BANDS[z]) for z in ZONES]


@pytest.mark.parametrize(
    ("bands", "match"),
    [
        ([], "need 7 zone bands"),
        (_bands()[:6], "need 7 zone bands"),
        ([*_bands(), (1200.0, 1200.0)], "need 7 zone bands"),
        (_bands(lumbar=(BANDS["lumbar"][0] + 1.0, BANDS["lumbar"][1])), "contiguous"),
        (_bands(neck=(BANDS["neck"][0], BANDS["neck"][0] - 1.0)), "increasing"),
        (_bands(glutes=(NAN, BANDS["glutes"][1])), "contiguous"),
        (_bands(neck=(BANDS["neck"][0], NAN)), "contiguous"),
        (_bands(neck=(BANDS["neck"][0], INF)), "zone edge must be a finite number"),
        (_bands(neck=(BANDS["neck"][0], 1200.5)), "zone edge must be a finite number"),
        (_bands(glutes=(-0.5, BANDS["glutes"][1])), "zone edge must be a finite number"),
        (list(reversed(_bands())), "contiguous"),
        ({z: BANDS[z] for z in reversed(ZONES)}, "zones must be exactly"),
    ],
)
def test_set_body_refuses_bad_zone_bands(core: Core, bands: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        core.set_body(bands)
    still_clean(core)


@pytest.mark.parametrize(
    "code",
    [
        0,
        -1,
        len(FAULT_CODES),
        99,
        pytest.param("bogus"),
        pytest.param(""),
        pytest.param(1.7),
        pytest.param(True),
        pytest.param(2**40),
    ],
)
def test_raise_fault_refuses_an_unknown_code(core: Core, code: Any) -> None:
    with pytest.raises(ValueError, match="unknown fault code"):
        core.raise_fault(code)
    still_clean(core)


@pytest.mark.parametrize("hz", [*BAD_NUMBERS, 0.0, -0.0, -50.0, 2000.001, 1e300])
def test_core_refuses_a_bad_telemetry_rate(hz: float) -> None:
    with pytest.raises(ValueError, match="telemetry_hz"):
        Core(CFG, SimPlant(CFG), telemetry_hz=hz)


@pytest.mark.parametrize("priority", [0, -1, 100])
def test_start_realtime_refuses_a_bad_priority(core: Core, priority: int) -> None:
    with pytest.raises(ValueError, match="priority"):
        core.start_realtime(priority)
    assert not core.realtime
    still_clean(core)


# ---- wrong types ------------------------------------------------------------------------------

NOT_NUMBERS = ["600", None, [1.0], object(), 1j]


def _call(core: Core, what: str, value: Any) -> None:
    calls: dict[str, Callable[[], object]] = {
        "move.goal": lambda: core.move("carriage", value),
        "move.v_max": lambda: core.move("carriage", 600.0, v_max=value),
        "move.hold_s": lambda: core.move("carriage", 600.0, hold_s=value),
        "move.at_ns": lambda: core.move("carriage", 600.0, at_ns=value),
        "rate.value": lambda: core.rate("kneading", value),
        "heat.target_c": lambda: core.heat(value),
        "set_body": lambda: core.set_body(value),
        "Core.telemetry_hz": lambda: Core(CFG, SimPlant(CFG), telemetry_hz=value),
        "Core.config": lambda: Core(value, SimPlant(CFG)),
        "Core.hardware": lambda: Core(CFG, value),
    }
    calls[what]()


def _type_cases() -> list[Any]:
    out: list[Any] = []
    for what in (
        "move.goal",
        "move.hold_s",
        "move.at_ns",
        "rate.value",
        "heat.target_c",
        "Core.telemetry_hz",
        "Core.hardware",
    ):
        out += [pytest.param(what, v, id=f"{what}-{type(v).__name__}") for v in NOT_NUMBERS]
    out += [
        pytest.param("move.v_max", v, id=f"move.v_max-{type(v).__name__}")
        for v in NOT_NUMBERS
        if v is not None and v != "600"  # None means "the config's limit"
    ]
    out += [
        pytest.param("set_body", 5, id="set_body-int"),
        pytest.param("set_body", [None] * 7, id="set_body-None-bands"),
        pytest.param("set_body", "abcdefg", id="set_body-str"),
        pytest.param(
            "move.v_max",
            "50",
            id="move.v_max-numeric-str",
        ),
        pytest.param(
            "move.v_max",
            True,
            id="move.v_max-bool",
        ),
        pytest.param(
            "move.at_ns",
            1.5,
            id="move.at_ns-float",
        ),
        pytest.param(
            "move.at_ns",
            2**70,
            id="move.at_ns-huge",
        ),
        pytest.param(
            "move.goal",
            10**400,
            id="move.goal-huge-int",
        ),
        pytest.param(
            "Core.config",
            None,
            id="Core.config-None",
        ),
        pytest.param(
            "Core.config",
            {},
            id="Core.config-dict",
        ),
    ]
    return out


@pytest.mark.parametrize(("what", "value"), _type_cases())
def test_a_value_of_the_wrong_type_is_refused(core: Core, what: str, value: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        _call(core, what, value)
    still_clean(core)


def test_a_bool_is_not_an_axis(core: Core) -> None:
    with pytest.raises(ValueError, match="unknown axis"):
        core.move(True, 100.0)


def test_set_body_refuses_unknown_zone_names(core: Core) -> None:
    with pytest.raises(ValueError):
        core.set_body({f"zone{i}": BANDS[z] for i, z in enumerate(ZONES)})


# ---- the rings' edges -------------------------------------------------------------------------


def test_a_full_command_ring_is_a_clear_error_and_drains() -> None:
    core = new_core()
    sent = 0
    with pytest.raises(RuntimeError, match="command ring full"):
        for _ in range(100_000):
            core.heartbeat()
            sent += 1
    assert sent >= 256
    core.run_until(TICK, False)  # one tick takes them all: commands flow again
    core.move("carriage", 1100.0)
    for _ in range(15):
        core.heartbeat()
        core.run_until(core.now_ns + 100 * MS, False)
    snap = core.snapshot()
    assert snap["mode"] == "run"
    assert snap["axes"]["carriage"][0] < CFG.carriage.track_max_mm


def test_an_overfull_move_queue_is_a_command_fault_with_a_clean_stop() -> None:
    core = new_core()
    core.heartbeat()
    for k in range(300):
        core.move("depth", 8.0 if k % 2 else 0.0, at_ns=S)
    core.run_until(2 * TICK, False)
    faults = [e for e in core.drain_events() if e.kind == "fault"]
    assert [FAULT_CODES[e.code] for e in faults] == ["command"]
    core.heartbeat()
    core.run_until(S // 2, False)
    snap = core.snapshot()
    assert snap["mode"] == "fault" and not any(snap["busy"].values())
    assert snap["axes"]["depth"] == (0.0, 0.0, 0.0), "the queue was dropped, nothing ran"


# ---- random command sequences against a running core ------------------------------------------

PLANT_FAULTS = [
    "supply_low",
    "overcurrent:kneading",
    "stall:carriage",
    "occupant_leaves",
    "thermistor_open",
    "limit_switch_both",
]

bad_float = st.sampled_from([NAN, INF, -INF, 1e300, -1e300])


def _goal(axis: str) -> st.SearchStrategy[float]:
    lo, hi = RANGES.get(axis, (0.0, 100.0))
    valid = st.floats(lo, hi)
    if axis == "depth":  # mostly gentle, so that long stretches run without a cap fault
        valid = st.one_of(st.floats(lo, CFG.depth.level_mm(1)), valid)
    return st.one_of(valid, valid, valid, st.floats(lo - 50.0, hi + 50.0), bad_float)


def _move() -> st.SearchStrategy[tuple[Any, ...]]:
    limit = st.one_of(st.none(), st.none(), st.floats(0.5, 1.2), st.sampled_from([0.0, -1.0, NAN]))
    hold = st.one_of(st.just(0.0), st.floats(0.0, 2.0), st.just(-1.0))
    at_ms = st.one_of(st.none(), st.integers(0, 3000))
    axis = st.sampled_from(["carriage", "carriage", "width", "depth", "depth", "kneading", "walk"])
    return axis.flatmap(
        lambda a: st.tuples(st.just("move"), st.just(a), _goal(a), limit, hold, at_ms)
    )


def _rate() -> st.SearchStrategy[tuple[Any, ...]]:
    axis = st.sampled_from(["kneading", "kneading", "tapping", "width", "walk"])
    return axis.flatmap(lambda a: st.tuples(st.just("rate"), st.just(a), _goal(a)))


_OPS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "move": _move(),
    "rate": _rate(),
    "heat": st.tuples(
        st.just("heat"), st.one_of(st.floats(0.0, 47.0), st.floats(-5.0, 60.0), bad_float)
    ),
    "brake": st.just(("brake",)),
    "estop": st.just(("estop",)),
    "reset": st.just(("reset",)),
    "body": st.tuples(st.just("body"), st.one_of(st.none(), st.floats(700.0, 1010.0))),
    "fault": st.tuples(st.just("fault"), st.sampled_from([*FAULT_CODES[1:], "bogus", 0, 22])),
    "plant": st.tuples(st.just("plant"), st.sampled_from(PLANT_FAULTS)),
    "run": st.tuples(st.just("run"), st.integers(1, 5000), st.sampled_from([False] * 19 + [True])),
}
_WEIGHTS = {
    "move": 20,
    "rate": 8,
    "heat": 3,
    "brake": 1,
    "estop": 1,
    "reset": 4,
    "body": 4,
    "fault": 1,
    "plant": 1,
    "run": 14,
}


def _op_strategy() -> st.SearchStrategy[tuple[Any, ...]]:
    """Commands in the mix a session sends (mostly moves and time), stops and faults rarer."""
    kinds = [k for k, w in _WEIGHTS.items() for _ in range(w)]
    return st.sampled_from(kinds).flatmap(lambda k: _OPS[k])


def _zone_of(edges: list[float], y: float) -> int:
    """The core's zone rule: -1 outside the bands, else the top-most band whose bottom is <= y."""
    if y < edges[0] or y > edges[-1]:
        return -1
    for i in range(len(ZONES) - 1, -1, -1):
        if y >= edges[i]:
            return i
    return -1


class Fuzz:
    """Applies random commands to one core and checks what it promises."""

    def __init__(self, seed: int) -> None:
        self.plant = SimPlant(CFG, seed=seed)
        self.core = Core(CFG, self.plant, telemetry_hz=float(CFG.loop.tick_hz))
        self.events: list[CoreEvent] = []
        self.body: list[tuple[int, list[float] | None]] = [(0, None)]
        self.last_cmd: dict[str, tuple[float, int]] = {}  # axis -> (goal or rate, sent at)
        self.stop_cmds: list[int] = []  # times of brake/estop/raise_fault commands
        self.records = 0
        self.goals_checked = 0
        self.raised: set[int] = set()

    @property
    def now(self) -> int:
        return int(self.core.now_ns)

    def apply(self, op: tuple[Any, ...]) -> None:
        c = self.core
        kind = op[0]
        try:
            if kind == "move":
                _, axis, goal, frac, hold_s, at_ms = op
                lim = LIMITS.get(axis)
                v_max = frac
                if frac is not None and frac > 0 and lim is not None:
                    v_max = frac * lim.v_max  # a fraction of the limit; above 1 is refused
                at_ns = 0 if at_ms is None else self.now + at_ms * MS
                c.move(axis, goal, v_max=v_max, hold_s=hold_s, at_ns=at_ns)
                self._accepted(axis, goal)
            elif kind == "rate":
                c.rate(op[1], op[2])
                self._accepted(op[1], op[2])
            elif kind == "heat":
                c.heat(op[1])
            elif kind in ("brake", "estop"):
                getattr(c, kind)()
                self.stop_cmds.append(self.now)
            elif kind == "reset":
                c.reset()
            elif kind == "fault":
                c.raise_fault(op[1])
                self.stop_cmds.append(self.now)
                self.raised.add(self.now)
            elif kind == "body":
                self._set_body(op[1])
            elif kind == "plant":
                self.plant.inject(f"{op[1]}@{self.now / S}s")
            elif kind == "run":
                self.run(op[1] * MS, feed=not op[2])
        except (ValueError, TypeError):
            assert kind in ("move", "rate", "heat", "fault"), f"{op} refused"

    def _accepted(self, axis: str, value: float) -> None:
        # queued only if the core is not latched when the tick takes it; _cut_short decides
        self.last_cmd[axis] = (value, self.now)

    def _set_body(self, shoulder: float | None) -> None:
        self.run(TICK)  # take every earlier command first
        latched = self.core.snapshot()["mode"] in ("fault", "estop")
        if shoulder is None:
            self.core.set_body(None)
            edges = None
        else:
            bands = CFG.zones_for_shoulder(shoulder)
            self.core.set_body(bands)
            edges = [bands[ZONES[0]][0]] + [bands[z][1] for z in ZONES]
        if not latched:  # a latched core drops a body command
            self.body.append((self.now, edges))
        self.run(TICK)

    def run(self, ns: int, *, feed: bool = True) -> None:
        end = self.now + ns
        while self.now < end:
            if feed:
                self.core.heartbeat()
            self.core.run_until(min(end, self.now + 100 * MS), False)
            self.check()

    def settle(self) -> None:
        """Feed the core until nothing is busy any more (bounded)."""
        for _ in range(300):
            self.run(S)
            if not any(self.core.snapshot()["busy"].values()):
                break

    def body_at(self, t_ns: int) -> list[float] | None:
        edges = None
        for t, e in self.body:
            if t <= t_ns:
                edges = e
        return edges

    def check(self) -> None:
        """The guard's invariants in every tick's telemetry."""
        self.events += self.core.drain_events()
        caps = CFG.body.zone_caps
        for r in self.core.drain_telemetry():
            self.records += 1
            mode = MODES[r.mode]
            car = LIMITS["carriage"]
            a_lim = car.estop_a_max if mode == "estop" else car.a_max
            assert abs(r.v_mm_s) <= car.v_max * (1 + TOL), r
            assert abs(r.a_mm_s2) <= a_lim * (1 + TOL), r
            for value, name in (
                (r.y_mm, "carriage"),
                (r.width_mm, "width"),
                (r.depth_mm, "depth"),
                (r.knead_rpm, "kneading"),
                (r.tap_hz, "tapping"),
            ):
                lo, hi = RANGES[name]
                assert lo - 1e-9 <= value <= hi + 1e-9, (name, r)
            assert 0.0 <= r.heater_duty <= 1.0
            if mode in ("fault", "estop"):
                assert r.heater_duty == 0.0, r
            if mode != "run":
                continue  # the guard detects and stops; a stop may carry past what it caught
            pressing = r.depth_mm > CFG.depth.retracted_mm or r.knead_rpm != 0 or r.tap_hz != 0
            if pressing:
                gap = min(abs(r.left_x_mm), abs(r.right_x_mm))
                clearance = gap - CFG.body.contact_radius_mm - CFG.body.keep_out_mm
                assert clearance >= -1e-9, r
            edges = self.body_at(r.t_ns)
            if edges is None:
                assert r.zone == -1
                continue
            assert r.zone == _zone_of(edges, r.y_mm), r
            if pressing:
                assert r.y_mm <= edges[-1] + 1e-6, r
            if r.zone >= 0:
                cap = caps[ZONES[r.zone]]
                assert r.depth_mm <= CFG.depth.level_mm(cap.depth_level) + 1e-9, r
                assert r.tap_hz <= cap.tap_hz + 1e-9, r
                assert abs(r.knead_rpm) <= cap.knead_rpm + 1e-9, r

    def stops_since(self, t_ns: int) -> bool:
        """A stop that may have cut a command sent at t_ns short (or dropped it)."""
        return any(t >= t_ns for t in self.stop_cmds) or any(
            e.kind in ("fault", "estop") and e.t_ns >= t_ns for e in self.events
        )

    def latched_at(self, t_ns: int) -> bool:
        """Was the core latched when the tick at t_ns took its commands?"""
        state = False
        for e in self.events:  # in emission order: a reset and a re-latch share a tick
            if e.t_ns >= t_ns:
                break
            if e.kind in ("fault", "estop"):
                state = True
            elif e.kind == "reset" and e.code == 1:
                state = False
        return state

    def final_checks(self) -> None:
        snap = self.core.snapshot()
        if snap["mode"] in ("fault", "estop"):
            assert all(v == 0.0 and a == 0.0 for _, v, a in snap["axes"].values()), snap
            assert snap["heater_duty"] == 0.0 and snap["heat_target_c"] == 0.0
        assert not any(snap["busy"].values()), snap["busy"]
        for e in self.events:
            if e.kind in ("fault", "estop"):
                assert any(r.kind == "at_rest" and r.t_ns >= e.t_ns for r in self.events), e
        for axis, (value, t_sent) in self.last_cmd.items():
            if self.stops_since(t_sent) or self.latched_at(t_sent):
                continue
            self.goals_checked += 1
            p, v, _ = snap["axes"][axis]
            if axis in ("carriage", "width", "depth"):
                assert p == value, (axis, value, p)
            else:
                assert v == pytest.approx(value, abs=1e-9), (axis, value, v)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    start_y=st.floats(CFG.carriage.seat_mm - 100.0, 1000.0),
    shoulder=st.one_of(st.none(), st.floats(700.0, 1010.0), st.floats(700.0, 1010.0)),
    ops=st.lists(_op_strategy(), min_size=5, max_size=50),
)
def test_random_command_sequences_run_or_stop_cleanly(
    seed: int, start_y: float, shoulder: float | None, ops: list[Any]
) -> None:
    fuzz = Fuzz(seed)
    # start where a session works: on the back, usually with a scanned body
    fuzz.apply(("move", "carriage", start_y, None, 0.0, None))
    fuzz.run(10 * S)
    fuzz.apply(("body", shoulder))
    for op in ops:
        fuzz.apply(op)
    fuzz.settle()
    fuzz.final_checks()
    # epilogue: at rest, a reset (with the body cleared in the same tick, so heads left past a
    # zone cap do not re-latch) and plain moves must work, unless a plant fault persists
    fuzz.core.reset()
    fuzz.core.set_body(None)
    fuzz.body.append((fuzz.now, None))
    fuzz.run(TICK)
    for axis, goal in (("carriage", 700.0), ("width", 130.0), ("depth", 0.0)):
        fuzz.apply(("move", axis, goal, None, 0.0, None))
    fuzz.settle()
    fuzz.final_checks()
    assert fuzz.core.stats()["telemetry_dropped"] == 0
    # what the examples covered (pytest --hypothesis-show-statistics)
    event(f"ended in {fuzz.core.snapshot()['mode']}")
    event(f"goals checked: {min(fuzz.goals_checked, 6)}+")
    event(f"ticks: {10 ** len(str(fuzz.records // 10)) * 10}-")
    for e in fuzz.events:
        if e.kind == "fault":
            event(f"fault {FAULT_CODES[e.code]}{' (raised)' if e.t_ns in fuzz.raised else ''}")
