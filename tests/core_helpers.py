"""The core's test rig, shared by the tests of the tick (test_core.py), the guard (test_guard.py)
and the heater (test_heater.py).

Every test drives the real compiled `Core` against the real `SimPlant` (no mocks), in virtual time
with `Core.run_until`, feeding the controller watchdog every 100 ms of core time unless the test is
about the watchdog. Faults are injected into the plant (`KIND[:TARGET]@SECONDSs`, seconds from the
plant's epoch, which is core time 0 here), so an injection time is exact and every detection time
is measured from it to the fault event's `t_ns`, against its deadline (docs/core.md, "The guard").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from core_rt.config import ChairConfig
from core_rt.core import FAULT_CODES, MODES, Core, CoreEvent, Telemetry
from sim import PlantParams, SimPlant

CFG = ChairConfig()
MS = 1_000_000
S = 1_000_000_000
TICK = CFG.loop.period_ns
FEED_NS = 100 * MS
"""How often the tests feed the core: well inside the 500 ms controller watchdog."""

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


def mid(zone: str) -> float:
    lo, hi = BANDS[zone]
    return (lo + hi) / 2.0


def level_mm(level: int) -> float:
    return CFG.depth.level_mm(level)


class Rig:
    """One chair: a SimPlant behind a Core, telemetry every tick, driven in virtual time."""

    def __init__(
        self,
        faults: Iterable[str] = (),
        *,
        config: ChairConfig = CFG,
        seed: int = 1,
        start_mm: tuple[float, float, float] | None = None,
    ) -> None:
        """`start_mm`: where the plant is at power-on (carriage, width, depth; None = park)."""
        self.config = config
        params = PlantParams(start_mm=start_mm)
        self.plant = SimPlant(config, seed=seed, faults=list(faults), params=params)
        self.core = Core(config, self.plant, telemetry_hz=float(config.loop.tick_hz))
        self.tick = config.loop.period_ns
        self.events: list[CoreEvent] = []
        self.telemetry: list[Telemetry] = []
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
        self.telemetry += self.core.drain_telemetry()

    def run(
        self,
        seconds: float,
        *,
        feed: bool = True,
        stop_on: Callable[[CoreEvent], bool] | None = None,
    ) -> CoreEvent | None:
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

    def run_to_fault(self, within_s: float) -> CoreEvent:
        e = self.run(within_s, stop_on=lambda e: e.kind in ("fault", "estop"))
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

    def since(self, t_ns: int) -> list[Telemetry]:
        return [r for r in self.telemetry if r.t_ns >= t_ns]

    def find(self, kind: str, since: int = 0, code: int | None = None) -> list[CoreEvent]:
        return [
            e
            for e in self.events
            if e.kind == kind and e.t_ns >= since and (code is None or e.code == code)
        ]


def into_zone(rig: Rig, zone: str) -> None:
    """The carriage in the middle of `zone` with the body set, no fault on the way."""
    rig.core.set_body(BANDS)
    rig.core.move("carriage", mid(zone))
    rig.run(10.0)
    assert not rig.find("fault")
    assert rig.telemetry[-1].zone == list(CAPS).index(zone)


def at_rest(snap: dict[str, Any]) -> bool:
    return all(v == 0.0 and a == 0.0 for _, v, a in snap["axes"].values())


def fault_code(e: CoreEvent) -> str | None:
    code: str | None = FAULT_CODES[e.code]
    return code


# ---- the reaction every latched fault must show ------------------------------------------------


def check_fault_reaction(
    rig: Rig,
    event: CoreEvent,
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
    t_fault = event.t_ns
    assert event.kind == "fault"
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
        assert rig.find("reset", since=t_fault) == [CoreEvent(t_fault + rig.tick, "reset", 0)]
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
    assert rig.find("reset", since=t_reset)[0] == CoreEvent(t_reset, "reset", 1)
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


INJECT_S = 2.0
"""When the plant faults of the measured checks' tests strike (core time, s)."""
T_INJECT = round(INJECT_S * S)


def wait_cycles(
    stats: Callable[[], Mapping[str, Any]], n: int = 10, timeout_s: float = 5.0
) -> None:
    """Wait until a real-time loop has ticked `n` times by its `stats()` (a `Core`'s
    `loop_stats`, a `TimerLoop`'s `stats`), or fail after `timeout_s`. Polled: the loop has no
    event for the test's thread."""
    end = time.monotonic() + timeout_s
    while stats()["cycles"] < n:
        assert time.monotonic() < end, f"the loop did not tick {n} times in {timeout_s} s"
        time.sleep(0.005)
