"""Fixtures of the MQTT tests; load them with ``pytest_plugins = ["tests.mqtt_fixtures"]``.

Every test takes its controller from ONE fixture, `controller_factory`: the real controller on the
simulated chair, virtual time paced at `speed`. Tests wait for states on the state topic, never
for fixed times.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chair.api import ControllerAPI
from chair.mqtt.bridge import MqttBridge
from chair.mqtt.settings import MqttSettings
from core_rt.config import ChairConfig
from tests.mqtt_broker import Mosquitto, have_mosquitto
from tests.mqtt_helpers import Chair, ChairFactory, ControllerFactory, Observer

# ---- the controller (one switch) ----------------------------------------------------------------


@pytest_asyncio.fixture
async def controller_factory() -> AsyncIterator[ControllerFactory]:
    """`await controller_factory(speed=...)` → a live controller, closed after the test.

    `speed` is simulated seconds per wall second.
    """
    made: list[Any] = []

    async def make(speed: float = 600.0) -> ControllerAPI:
        from chair.testing import TestingController  # the real controller, holdable clock

        real = TestingController.create(ChairConfig(), speed=speed)
        await real.open()
        real.serve()
        made.append(real)
        return real

    yield make
    for ctl in made:
        await ctl.close()


# ---- the broker ---------------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    if not have_mosquitto():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


# ---- a running daemon ---------------------------------------------------------------------------


@pytest_asyncio.fixture
async def chair_factory(
    broker: Mosquitto, controller_factory: ControllerFactory
) -> AsyncIterator[ChairFactory]:
    """`await chair_factory(speed=..., **settings)` → a `Chair` announced online."""
    chairs: list[Chair] = []
    observers: list[Observer] = []

    async def make(
        speed: float = 600.0,
        *,
        observer: dict[str, Any] | None = None,
        ctl: Any = None,
        **settings: Any,
    ) -> Chair:
        settings.setdefault("broker", broker.url)
        s = MqttSettings(**settings)
        obs = Observer(broker.url, s.topics.base, **(observer or {}))
        await obs.__aenter__()
        observers.append(obs)
        if ctl is None:
            ctl = await controller_factory(speed=speed)
        bridge = MqttBridge(ctl, s)
        task = asyncio.create_task(bridge.run())
        c = Chair(broker, ctl, bridge, task, obs)
        chairs.append(c)
        await asyncio.wait_for(bridge.connected.wait(), 10)
        await obs.wait_for("availability", lambda m: m.payload == b"online")
        return c

    yield make
    for c in chairs:
        with contextlib.suppress(Exception):
            await c.stop()
        if not c.task.done():
            c.task.cancel()
    for o in observers:
        await o.__aexit__(None, None, None)


@pytest_asyncio.fixture
async def chair(chair_factory: ChairFactory) -> Chair:
    """The default daemon: MQTT 5, discovery on, the controller at speed 600."""
    return await chair_factory()
