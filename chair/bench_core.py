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
        self.core.start_realtime(self.config.loop.rt_priority)
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
