"""The daemon when things go wrong: broker loss, forbidden clients, TLS and secrets."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from pathlib import Path

import pytest

from chair.mqtt.settings import MqttSettings
from tests.mqtt_broker import Mosquitto, have_mosquitto, make_certificates
from tests.mqtt_helpers import ChairFactory, ControllerFactory, Observer

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = pytest.mark.broker

DISCOVERY = "homeassistant/device/massagechair_chair1/config"

BACK_WITHIN_S = 2 * MqttSettings().reconnect_max_s + 2.0
"""The daemon is back within two back-off periods (their ceiling) of the broker, plus the time
to connect and announce on a busy 2-core machine. Measured alone: 0.02–2.34 s (the attempt in
flight when the broker comes up can fail and cost a whole period); once 4.39 s in a full
fresh-clone run, so one period was too tight (the reason for the second is not known yet)."""


async def test_broker_killed_mid_session(chair_factory: ChairFactory, broker: Mosquitto) -> None:
    chair = await chair_factory(speed=20)
    obs, ctl, bridge = chair.obs, chair.ctl, chair.bridge
    r = await obs.cmd("start", program=ctl.programs()[0], minutes=30)
    assert r["ok"], r
    await obs.wait_state("running", timeout=15)
    session_id = ctl.state()["session_id"]
    elapsed0 = ctl.state()["elapsed_s"]

    broker.stop(kill=True)  # a crash: no clean disconnect, no last will
    await asyncio.wait_for(_cleared(bridge.connected), 5)
    await asyncio.sleep(1.5)
    during = ctl.state()  # the session does not notice
    assert during["state"] == "running" and during["session_id"] == session_id
    assert during["elapsed_s"] > elapsed0

    broker.start()
    t_up = time.monotonic()
    async with Observer(broker.url, chair.base) as fresh:  # retained messages are gone with it
        await fresh.wait_for("availability", lambda m: m.payload == b"online", timeout=5)
        back_s = time.monotonic() - t_up
        assert back_s <= BACK_WITHIN_S, f"daemon back {back_s:.2f} s after the broker"
        state = (await fresh.wait_for("state", timeout=2)).json()
        assert state["state"] == "running" and state["session_id"] == session_id
        assert state["elapsed_s"] >= during["elapsed_s"]
        await fresh.wait_for(DISCOVERY, timeout=2)
        await fresh.wait_for("telemetry", timeout=2)
        r = await fresh.cmd("status")
        assert r["ok"] and r["state"]["session_id"] == session_id
    assert bridge.connections == 2
    assert ctl.state()["state"] == "running"


async def _cleared(event: asyncio.Event) -> None:
    while event.is_set():
        await asyncio.sleep(0.01)


async def test_daemon_waits_for_a_broker_that_is_not_there_yet(
    tmp_path: Path, controller_factory: ControllerFactory
) -> None:
    if not have_mosquitto():
        pytest.skip("mosquitto is not installed")
    from chair.mqtt.bridge import MqttBridge

    late = Mosquitto(tmp_path / "late")
    ctl = await controller_factory()
    bridge = MqttBridge(ctl, MqttSettings(broker=late.url))
    task = asyncio.create_task(bridge.run())
    try:
        await bridge.wait_failed_attempts(5, 30)  # the back-off is at its ceiling
        assert not bridge.connected.is_set() and not task.done()
        late.start()
        t_up = time.monotonic()
        await asyncio.wait_for(bridge.connected.wait(), 5)
        back_s = time.monotonic() - t_up
        print(f"daemon back {back_s:.2f} s after the broker")
        assert back_s <= BACK_WITHIN_S, f"daemon back {back_s:.2f} s after the broker"
    finally:
        await bridge.stop()
        await asyncio.wait_for(task, 5)
        late.stop()


# ---- authorisation ----------------------------------------------------------------------------

ACL = """\
# Each chair daemon logs in with its chair id as user name and may touch only its own topics.
pattern read massagechair/%u/cmd
pattern write massagechair/%u/availability
pattern write massagechair/%u/state
pattern write massagechair/%u/telemetry
pattern write massagechair/%u/event
pattern write massagechair/%u/reply
pattern write massagechair/%u/reply/#
pattern write homeassistant/device/massagechair_%u/config
pattern read homeassistant/status

user owner
topic write massagechair/chair1/cmd
topic read massagechair/chair1/#
topic read homeassistant/#

user viewer
topic read massagechair/chair1/#
"""
USERS = {"chair1": "chair-pw-1", "owner": "owner-pw", "viewer": "viewer-pw"}


async def test_acl_a_client_without_write_rights_cannot_start_the_chair(
    tmp_path: Path, controller_factory: ControllerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    if not have_mosquitto():
        pytest.skip("mosquitto is not installed")
    from chair.mqtt.bridge import MqttBridge

    caplog.set_level(logging.DEBUG)
    broker = Mosquitto(tmp_path / "acl", allow_anonymous=False, users=USERS, acl=ACL)
    broker.start()
    ctl = await controller_factory()
    settings = MqttSettings(broker=broker.url, username="chair1", password=USERS["chair1"])
    bridge = MqttBridge(ctl, settings)
    task = asyncio.create_task(bridge.run())
    try:
        owner = Observer(broker.url, username="owner", password=USERS["owner"])
        viewer = Observer(broker.url, username="viewer", password=USERS["viewer"])
        async with owner, viewer:
            await owner.wait_for("availability", lambda m: m.payload == b"online")
            await viewer.wait_for("availability", lambda m: m.payload == b"online")
            # The daemon could publish its discovery (a %u inside a topic level works).
            await owner.wait_for("homeassistant/device/massagechair_chair1/config")
            # The viewer publishes a start: the broker drops it (it may still PUBACK it).
            mark = owner.mark()
            program = ctl.programs()[0]
            await viewer.send(f'{{"id":"v-1","action":"start","program":"{program}"}}')
            await viewer.send('{"id":"v-2","action":"estop"}')
            r = await owner.cmd("status")  # the daemon has seen everything before this
            assert r["state"]["state"] == "idle"
            assert not [m for m in owner.on("reply", mark) if m.json()["id"] in ("v-1", "v-2")]
            assert not owner.on("event", mark)
            assert ctl.state()["state"] == "idle"
            # The owner may: the same command works for them.
            r = await owner.cmd("start", program=program)
            assert r["ok"], r
        assert not task.done()  # the daemon had all the rights it needed
    finally:
        await bridge.stop()
        await asyncio.wait_for(task, 5)
        broker.stop()
    assert USERS["chair1"] not in caplog.text  # secrets are never logged


async def test_wrong_password_keeps_retrying_quietly(
    tmp_path: Path, controller_factory: ControllerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    if not have_mosquitto():
        pytest.skip("mosquitto is not installed")
    from chair.mqtt.bridge import MqttBridge

    caplog.set_level(logging.DEBUG)
    broker = Mosquitto(tmp_path / "pw", allow_anonymous=False, users=USERS, acl=ACL)
    broker.start()
    ctl = await controller_factory()
    bridge = MqttBridge(
        ctl, MqttSettings(broker=broker.url, username="chair1", password="wrong-Secret-9")
    )
    task = asyncio.create_task(bridge.run())
    await bridge.wait_failed_attempts(2, 30)  # refused, and it keeps trying
    assert not task.done() and not bridge.connected.is_set()
    await bridge.stop()
    await asyncio.wait_for(task, 5)
    broker.stop()
    assert "wrong-Secret-9" not in caplog.text
    warnings = [
        r for r in caplog.records if r.name == "chair.mqtt" and r.levelno >= logging.WARNING
    ]
    assert 1 <= len(warnings) <= 2  # said once, not once per attempt


# ---- TLS --------------------------------------------------------------------------------------


async def test_tls_with_client_certificate(
    tmp_path: Path, controller_factory: ControllerFactory
) -> None:
    if not have_mosquitto():
        pytest.skip("mosquitto is not installed")
    from chair.mqtt.bridge import MqttBridge

    try:
        tls = make_certificates(tmp_path / "certs")
    except (OSError, subprocess.CalledProcessError) as e:  # no openssl
        pytest.skip(f"cannot make certificates: {e}")
    broker = Mosquitto(tmp_path / "tls", tls=tls, require_certificate=True)
    broker.start()
    assert broker.url.startswith("mqtts://")
    ctl = await controller_factory()
    settings = MqttSettings(
        broker=broker.url, ca_file=tls.ca, cert_file=tls.client_cert, key_file=tls.client_key
    )
    bridge = MqttBridge(ctl, settings)
    task = asyncio.create_task(bridge.run())
    try:
        obs = Observer(
            broker.url, ca_file=tls.ca, cert_file=tls.client_cert, key_file=tls.client_key
        )
        async with obs:
            await obs.wait_for("availability", lambda m: m.payload == b"online")
            r = await obs.cmd("status")
            assert r["ok"]
        # Without a client certificate the broker refuses us: the daemon keeps trying.
        plain = MqttBridge(ctl, MqttSettings(broker=broker.url, ca_file=tls.ca, chair_id="c2"))
        plain_task = asyncio.create_task(plain.run())
        # refused (the refusal shows as the connect timing out: 10 s), and it keeps trying
        await plain.wait_failed_attempts(1, 30)
        assert not plain.connected.is_set() and not plain_task.done()
        await plain.stop()
        await asyncio.wait_for(plain_task, 5)
    finally:
        await bridge.stop()
        await asyncio.wait_for(task, 5)
        broker.stop()
