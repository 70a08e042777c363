"""The real chair for the jitter benchmark: the core with the simulated plant in real time,
walking carriage strokes, fed by a heartbeat thread like the asyncio side would."""

from __future__ import annotations

import threading
from typing import Any

from core_rt.config import ZONES, ChairConfig
from core_rt.core import Core


class RealtimeChair:
    """start/stop/stats like rtloop.TimerLoop, but the whole tick: axes, guard, plant."""

    def __init__(self, config: ChairConfig) -> None:
        from sim.plant import SimPlant

        self.config = config
        self.core = Core(config, SimPlant(config, seed=1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        c = self.config.carriage
        lo, hi = c.seat_mm + 100, c.park_mm - 100
        for _ in range(40):  # strokes for the whole measurement
            self.core.move("carriage", lo)
            self.core.move("carriage", hi)
        self.core.start_realtime(self.config.loop.rt_priority, self.config.loop.rt_cpu_resolved())
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        period = self.config.loop.heartbeat_ms / 1000
        while not self._stop.wait(period):
            self.core.heartbeat()
            self.core.drain_events()
            self.core.drain_telemetry()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.core.stop_realtime()

    def stats(self) -> dict[str, Any]:
        s = dict(self.core.loop_stats())
        s["fault"] = self.core.snapshot()["fault"]
        return s


def tick_cost(config: ChairConfig, seconds: float = 60.0) -> dict[str, float]:
    """The core's per-tick cost in virtual time: all five axes, guard, heater, telemetry, with
    carriage strokes, kneading and the heater running; the plant's own cost measured alone and
    subtracted (the baseline)."""
    import time

    from sim.plant import SimPlant, bench_exchange

    plant = SimPlant(config, seed=1)
    core = Core(config, plant)
    c = config.carriage
    core.move("width", config.width.medium_mm)
    core.rate("kneading", 30.0)
    core.heat(config.heater.target_c("medium"))
    for _ in range(int(seconds / 10) + 1):
        core.move("carriage", c.seat_mm + 100)
        core.move("carriage", c.park_mm - 100)
    n = int(seconds * config.loop.tick_hz)
    t0 = time.perf_counter_ns()
    step = int(config.loop.heartbeat_ms * 1e6)
    t = core.now_ns
    while t < n * core.period_ns:
        core.heartbeat()
        core.heat(config.heater.target_c("medium"))
        t = core.run_until(t + step, stop_on_event=False)
        core.drain_events()
        core.drain_telemetry()
    total_ns = (time.perf_counter_ns() - t0) / n
    plant_ns = bench_exchange(n, SimPlant(config, seed=1))
    following = _following_tick_ns(config, seconds)
    return {
        "tick_with_plant_ns": round(total_ns, 1),
        "plant_exchange_ns": round(plant_ns, 1),
        "core_tick_us": round(max(total_ns - plant_ns, 0.0) / 1000, 4),
        "fault": core.snapshot()["fault"],
        # the same strokes pressing relative to a back's surface (docs/core.md, Pressing
        # relative to the surface): the surface's spline and the chain rule every tick, and
        # the guard's press and load checks; the baseline is core_tick_us above
        "core_tick_following_us": round(max(following[0] - following[1], 0.0) / 1000, 4),
        "following_fault": following[2],
    }


def _following_tick_ns(config: ChairConfig, seconds: float) -> tuple[float, float, str | None]:
    """(ns per tick with the plant, the plant's own ns, the fault if any) for coordinated
    strokes over a contoured back with the depth pressing relative to its surface."""
    import time

    from chair.surface import PressSurface
    from sim.model import BodyParams, PlantParams
    from sim.plant import SimPlant, bench_exchange

    def plant() -> SimPlant:
        body = BodyParams(back="normal")
        return SimPlant(config, seed=1, params=PlantParams(body=body))

    p = plant()
    back = p.back
    assert back is not None
    core = Core(config, p)
    y0, step = 150.0, 5.0
    pts = tuple(back.surface_at(y0 + step * i) for i in range(int((back.shoulder_mm - y0) / step)))
    surface = PressSurface(y0, step, pts, dict.fromkeys(ZONES, 5.0))
    core.set_body(config.zones_for_shoulder(back.shoulder_mm))
    core.set_surface(y0, step, pts, surface.load_max_a)
    lo, hi = config.carriage.seat_mm + 100, back.shoulder_mm - 50
    core.move("depth", 0.0)
    core.move("width", config.width.medium_mm)
    core.move("carriage", lo)
    core.press_relative(True)
    core.move("depth", 16.0)
    core.rate("kneading", 30.0, at_ns=15_000_000_000)  # once on the back
    v, a, j = surface.follow_limits(config, lo, hi, 60.0)
    for _ in range(int(seconds / 10) + 2):
        core.move("carriage", hi, v_max=v, a_max=a, j_max=j)
        core.move("carriage", lo, v_max=v, a_max=a, j_max=j)
    n = int(seconds * config.loop.tick_hz)
    step_ns = int(config.loop.heartbeat_ms * 1e6)
    t = core.now_ns
    while t < 20_000_000_000:  # to the skin, pressing
        core.heartbeat()
        t = core.run_until(t + step_ns, stop_on_event=False)
        core.drain_events()
        core.drain_telemetry()
    t0 = time.perf_counter_ns()
    end = t + n * core.period_ns
    while t < end:
        core.heartbeat()
        t = core.run_until(t + step_ns, stop_on_event=False)
        core.drain_events()
        core.drain_telemetry()
    total_ns = (time.perf_counter_ns() - t0) / n
    return total_ns, bench_exchange(n, plant()), core.snapshot()["fault"]
