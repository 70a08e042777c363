"""Keep one MQTT client connected: connect, serve until the connection is lost, back off, retry.

Shared by the chair's bridge (`chair.mqtt.bridge`) and the operator's service
(`chair.fleet.service`), so both behave alike when the broker goes away (docs/mqtt.md,
Reconnection): the pause after the n-th failure in a row is ``min(max_s, min_s × 2ⁿ)`` with 20 %
jitter (so a fleet that lost its broker does not come back in one wave), and a connection that
stayed up longer than `LONG_LIVED_S` ends the streak.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

LONG_LIVED_S = 10.0
"""A connection up longer than this (s) resets the back-off."""

Connection = Callable[[int], Coroutine[Any, Any, float | None]]
"""One connection from connect to loss, given the failures so far in a row; returns how long it
was up (s), None when it never came up."""


async def keep_connected(
    connection: Connection,
    *,
    stopping: asyncio.Event,
    connected: asyncio.Event,
    reconnect_min_s: float,
    reconnect_max_s: float,
    log: logging.Logger,
) -> None:
    """Run `connection` again and again until `stopping` is set.

    When `stopping` is set while a connection is up (`connected` set), that connection is left
    to finish by itself (it sees `stopping` and says goodbye); one still connecting is
    cancelled, as nothing is there to say goodbye to. Cancelling this coroutine cancels the
    connection with it."""
    failures = 0
    while not stopping.is_set():
        attempt = asyncio.create_task(connection(failures))
        stop_wait = asyncio.create_task(stopping.wait())
        try:
            await asyncio.wait({attempt, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # cancelled ourselves: take the attempt along
            attempt.cancel()
            raise
        finally:
            stop_wait.cancel()
        if not attempt.done() and not connected.is_set():
            attempt.cancel()  # still connecting: nothing to say goodbye to
        try:
            up_s = await attempt
        except asyncio.CancelledError:
            if not stopping.is_set():
                raise
            break
        if stopping.is_set():
            break
        if up_s is not None and up_s > LONG_LIVED_S:
            failures = 0  # a long-lived connection ends the back-off streak
        delay = min(reconnect_max_s, reconnect_min_s * 2.0**failures)
        failures += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay * random.uniform(0.8, 1.0))
    log.info("stopped")
