"""What every remote sends out: compact JSON without NaN (`dumps`), the state paced
(`StatePacer`) and the telemetry sampled (`telemetry_samples`) the same way over MQTT and the web
remote (docs/mqtt.md, "State"; docs/web.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from chair.api import ControllerAPI
from chair.lifecycle import MOVING, SessionState

log = logging.getLogger("chair.commands")


def dumps(obj: Any) -> bytes:
    """Compact JSON; non-finite floats become null (JSON has no NaN)."""
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        text = json.dumps(_finite(obj), separators=(",", ":"), default=str)
    return text.encode("utf-8")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def significant(state: dict[str, Any]) -> dict[str, Any]:
    """The state without what changes continuously (clocks, pad temperature, the board link's
    counters): a remote sends the state at once when this part changes, and the rest at most
    every so often."""
    view = {k: v for k, v in state.items() if k not in ("elapsed_s", "remaining_s", "link")}
    heat = view.get("heat")
    if isinstance(heat, dict):
        view["heat"] = {k: v for k, v in heat.items() if k != "temp_c"}
    return view


class StatePacer:
    """When a remote sends the state: at once when its `significant` part changed, otherwise (the
    clocks, the pad temperature) at most every `interval_s`; never the same bytes twice.

    The controller tells of its transitions, not of its clocks: while a session is under way
    (scanning to settling) the pacer also reads the state afresh (`refresh()`) every
    `interval_s`, so the clocks move and a new zone goes out within that time.

    `send(data)` is called on the event loop with the encoded state."""

    def __init__(
        self,
        send: Callable[[bytes], None],
        interval_s: float,
        refresh: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._send = send
        self.interval_s = interval_s
        self._refresh = refresh
        self._refresh_timer: asyncio.TimerHandle | None = None
        self.latest: dict[str, Any] | None = None
        self._last_sig: dict[str, Any] | None = None
        self._last_data: bytes | None = None
        self._last_t = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def offer(self, payload: dict[str, Any]) -> None:
        """A new state payload."""
        self.latest = payload
        sig = significant(payload)
        loop = asyncio.get_running_loop()
        if sig != self._last_sig:
            self._last_sig = sig
            self._emit(payload)
        elif self._timer is None:
            wait = self._last_t + self.interval_s - time.monotonic()
            self._timer = loop.call_later(max(0.0, wait), self._emit_latest)
        if self._refresh is not None and self._refresh_timer is None and _under_way(payload):
            self._refresh_timer = loop.call_later(self.interval_s, self._reread)

    def _reread(self) -> None:
        self._refresh_timer = None
        if self._refresh is not None:
            self.offer(self._refresh())

    def sent(self, payload: dict[str, Any]) -> bytes:
        """`payload` went out by other means (a connection's announcement): remember it as the
        last one sent; its encoding."""
        data = dumps(payload)
        self.latest = payload
        self._last_sig = significant(payload)
        self._last_data = data
        self._last_t = time.monotonic()
        return data

    def close(self) -> None:
        self._cancel_emit()
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None

    def _cancel_emit(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _emit_latest(self) -> None:
        self._timer = None
        if self.latest is not None:
            self._emit(self.latest)

    def _emit(self, payload: dict[str, Any]) -> None:
        self._cancel_emit()
        data = dumps(payload)
        if data == self._last_data:
            return
        self._last_data = data
        self._last_t = time.monotonic()
        self._send(data)


def _under_way(state: dict[str, Any]) -> bool:
    """A session is under way (scanning to settling): its clocks move."""
    try:
        name = SessionState(str(state.get("state")))
    except ValueError:
        return False
    return name.in_session or name == SessionState.SETTLING


async def telemetry_samples(
    controller: ControllerAPI, hz: float, *, keep_going: Callable[[], bool] = lambda: True
) -> AsyncIterator[dict[str, Any]]:
    """The controller's telemetry at `hz` while the chair moves (and the first sample after it
    stopped), each sample once; a busy loop skips samples rather than bursting."""
    period = 1.0 / hz
    loop = asyncio.get_running_loop()
    next_t = loop.time()
    last_key: tuple[Any, Any] | None = None
    last_active = False
    while keep_going():
        next_t += period
        now = loop.time()
        if next_t < now - period:
            next_t = now  # fell behind (busy machine): skip, don't burst
        await asyncio.sleep(max(0.0, next_t - now))
        try:
            sample = controller.telemetry()
        except Exception:
            log.exception("controller.telemetry() failed")
            continue
        if sample is None:
            continue
        key = (sample.get("t"), sample.get("state"))
        active = sample.get("state") in MOVING
        if key == last_key or not (active or last_active):
            continue
        last_key, last_active = key, active
        yield sample
