"""The real chair for the jitter benchmark: the core with the simulated plant in real time,
walking carriage strokes, fed by a heartbeat thread like the asyncio side would."""

from __future__ import annotations

import threading
from typing import Any

from core_rt.config import ChairConfig
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
    return {
        "tick_with_plant_ns": round(total_ns, 1),
        "plant_exchange_ns": round(plant_ns, 1),
        "core_tick_us": round(max(total_ns - plant_ns, 0.0) / 1000, 4),
        "fault": core.snapshot()["fault"],
    }
