"""``chair remote`` and ``chair serve`` as processes, against a real mosquitto."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.mqtt_broker import Mosquitto
from tests.mqtt_helpers import ChairFactory, Observer

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
}
for _k in [k for k in ENV if k.startswith("CHAIR_")]:
    del ENV[_k]  # settings come from the flags below only


async def chair_cli(*args: str, timeout: float = 30.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chair", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_chair_remote_against_the_daemon(chair_factory: ChairFactory) -> None:
    chair = await chair_factory(speed=60)
    url = ("--broker", chair.broker.url)
    program = chair.ctl.programs()[0]

    rc, out, err = await chair_cli("remote", "status", *url, "--json")
    assert rc == 0, err
    reply = json.loads(out)
    assert reply["ok"] and reply["action"] == "status" and reply["state"]["state"] == "idle"

    rc, out, err = await chair_cli(
        "remote", "start", "--program", program, "--minutes", "30", "--intensity", "2", *url
    )
    assert rc == 0, err + out
    assert out.startswith("start: ok") and f"program {program}" in out
    await chair.obs.wait_state("running", timeout=15)

    rc, out, err = await chair_cli("remote", "resume", *url)  # not while running
    assert rc == 1 and "refused (not_allowed)" in out, out + err

    rc, out, err = await chair_cli("remote", "set", "--intensity", "9", *url, "--json")
    assert rc == 1 and json.loads(out)["error"]["code"] == "out_of_range"

    rc, out, err = await chair_cli("remote", "status", *url, "--mqtt-version", "3.1.1", "--json")
    assert rc == 0 and json.loads(out)["state"]["state"] == "running", err

    watch = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chair", "remote", "watch", *url,
        "--until", "idle", "--timeout", "25",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**ENV, "PYTHONUNBUFFERED": "1"}, cwd=ROOT,
    )  # fmt: skip
    assert watch.stdout is not None
    first = await asyncio.wait_for(watch.stdout.readline(), 30)  # it follows the chair now
    rc, out, err = await chair_cli("remote", "stop", *url)
    assert rc == 0, out + err
    rest, werr = await asyncio.wait_for(watch.communicate(), 30)
    assert watch.returncode == 0, werr.decode()
    lines = (first + rest).decode().splitlines()
    assert "state running" in lines[0] or "chair online" in lines[0]
    assert any("state settling" in ln for ln in lines) and "state idle" in lines[-1]


async def test_chair_remote_steers_manual_mode_and_zone_strength(
    chair_factory: ChairFactory,
) -> None:
    """The remote's manual-mode and per-zone options reach the chair as `start`/`set`/`move`
    fields; the chair's own request model judges them (docs/chair.md §8)."""
    chair = await chair_factory(speed=60)
    url = ("--broker", chair.broker.url)
    rc, out, err = await chair_cli(
        "remote", "start", "--program", "manual", "--minutes", "30", "--technique", "kneading",
        "--area", "spot", "--zone", "shoulders", "--tempo", "2",
        "--zone-intensity", "shoulders=-1", *url, "--json",
    )  # fmt: skip
    assert rc == 0, err + out
    state = json.loads(out)["state"]
    assert state["manual"]["technique"] == "kneading" and state["manual"]["area"] == "spot"
    assert state["manual"]["tempo"] == 2 and state["zone_intensity"] == {"shoulders": -1}
    await chair.obs.wait_state("running", timeout=15)
    rc, out, err = await chair_cli(
        "remote", "set", "--technique", "tapping", "--width", "wide", *url, "--json"
    )
    assert rc == 0, err + out
    manual = json.loads(out)["state"]["manual"]
    assert manual["technique"] == "tapping" and manual["width"] == "wide"
    rc, out, err = await chair_cli("remote", "move", "--mm", "30", *url)
    assert rc == 0, err + out
    rc, out, err = await chair_cli("remote", "set", "--tempo", "6", *url, "--json")
    assert rc == 1 and json.loads(out)["error"]["code"] == "out_of_range", out
    rc, out, err = await chair_cli("remote", "pause", "--technique", "rolling", *url)
    assert rc == 1 and "pause takes no --technique" in err, err
    rc, out, err = await chair_cli("remote", "set", "--zone-intensity", "shoulders", *url)
    assert rc == 1 and "expected ZONE=N" in err, err
    assert chair.ctl.state()["manual"]["technique"] == "tapping"  # nothing changed by those
    rc, out, err = await chair_cli("remote", "stop", *url)
    assert rc == 0, out + err


async def test_chair_remote_without_a_daemon(broker: Mosquitto) -> None:
    rc, _, err = await chair_cli(
        "remote", "status", "--broker", broker.url, "--chair-id", "nobody", "--timeout", "1"
    )
    assert rc == 1 and "no reply from chair 'nobody'" in err
    rc, _, err = await chair_cli("remote", "status", "--broker", "mqtt://127.0.0.1:1")
    assert rc == 1 and "broker" in err and "Traceback" not in err


async def _serve_sim(url: str, speed: float = 60.0) -> asyncio.subprocess.Process:
    """`chair serve` on the simulated chair, paced at `speed` (the real controller)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chair", "serve", "--broker", url, "--speed", str(speed),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV, cwd=ROOT,
    )  # fmt: skip


async def test_serve_settles_and_says_offline_on_sigterm(broker: Mosquitto) -> None:
    async with Observer(broker.url) as obs:
        proc = await _serve_sim(broker.url)
        try:
            await obs.wait_for("availability", lambda m: m.payload == b"online", timeout=15)
            r = await obs.cmd("start", program="relax", minutes=30)
            assert r["ok"], r
            await obs.wait_state("running", timeout=15)
            mark = obs.mark()
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err.decode()
            states = [s["state"] for s in obs.json_on("state", mark)]
            assert "settling" in states and states[-1] == "idle"  # settled before leaving
            await obs.wait_for("availability", lambda m: m.payload == b"offline", since=mark)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_last_will_says_offline_when_the_daemon_dies(broker: Mosquitto) -> None:
    async with Observer(broker.url) as obs:
        proc = await _serve_sim(broker.url)
        await obs.wait_for("availability", lambda m: m.payload == b"online", timeout=15)
        mark = obs.mark()
        proc.kill()  # no goodbye: the broker publishes the will
        await proc.wait()
        await obs.wait_for("availability", lambda m: m.payload == b"offline", since=mark)
    async with Observer(broker.url) as late:  # and it stays, retained
        msg = await late.wait_for("availability")
        assert msg.payload == b"offline" and msg.retain


async def test_chair_serve_with_the_real_controller(broker: Mosquitto) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chair", "serve", "--broker", broker.url, "--speed", "600",
        "--telemetry-hz", "20", "--log-level", "warning",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV, cwd=ROOT,
    )  # fmt: skip
    try:
        async with Observer(broker.url) as obs:
            await obs.wait_for("availability", lambda m: m.payload == b"online", timeout=20)
            programs = (
                await obs.wait_for("homeassistant/device/massagechair_chair1/config")
            ).json()
            program = programs["cmps"]["program"]["options"][0]
            mark = obs.mark()
            rc, out, err = await chair_cli(
                "remote", "start", "--program", program, "--minutes", "5", "--broker", broker.url
            )
            assert rc == 0, out + err
            await obs.wait_state("running", since=mark, timeout=20)
            await obs.wait_for("telemetry", since=mark)
            proc.send_signal(signal.SIGTERM)
            _, err_b = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err_b.decode()
            await obs.wait_for("availability", lambda m: m.payload == b"offline", since=mark)
            assert obs.json_on("state", mark)[-1]["state"] in ("idle", "fault")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_bench_mqtt_quick(broker: Mosquitto) -> None:
    from chair.bench.mqtt import run

    result = await asyncio.to_thread(run, commands=50, broker_url=broker.url)
    assert result["commands"] == 50
    for key in ("cmd_to_actuator_p50_ms", "cmd_to_actuator_p99_ms"):
        assert 0 < result[key] < 1000
    for key in ("broker_rtt_p50_ms", "broker_rtt_p99_ms"):
        assert 0 < result[key] < 1000
    assert result["cmd_to_actuator_p50_ms"] <= result["cmd_to_actuator_p99_ms"]
