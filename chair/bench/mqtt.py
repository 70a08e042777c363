"""MQTT benchmark (docs/interfaces.md §5 ``mqtt``): command-to-actuator latency beside the
broker's own round trip, both measured in the same run on the same loopback broker.

- **cmd_to_actuator**: from publishing a command on ``<base>/cmd`` to the first core tick acting on
  it. The command is ``estop`` (the one that matters most); the core stamps the tick that applies
  it (`Controller.last_command_latency()` → ``(sent_ns, applied_ns)`` on CLOCK_MONOTONIC, the clock
  of `time.monotonic_ns`). Between samples the chair is reset, unmeasured.
- **broker_rtt**: one client publishes the same-sized payload at QoS 1, another receives it.

The path measured is everything remote control adds: client → broker → daemon (parse, validate,
controller) → core tick. Target: ``cmd_to_actuator_p99_ms <= broker_rtt_p99_ms + 5``.

- **core jitter with the daemon busy**: the real-time core's wake-up latency over the whole run —
  500 commands and replies, then a session running with the daemon publishing telemetry and
  state — to compare with the jitter section's cyclictest baseline.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from chair.bench import find_tool
from chair.mqtt.bridge import MqttBridge
from chair.mqtt.settings import MqttSettings
from core_rt.config import ChairConfig

Probe = Callable[[], tuple[int, int]]


def run(
    commands: int = 500,
    *,
    config: ChairConfig | None = None,
    broker_url: str | None = None,
) -> dict[str, Any]:
    """Measure over `commands` commands; a private mosquitto unless `broker_url` is given."""
    return asyncio.run(_run(commands, config or ChairConfig(), broker_url))


async def _run(commands: int, config: ChairConfig, broker_url: str | None) -> dict[str, Any]:
    async with (
        private_broker(broker_url) as url,
        realtime_controller(config) as (controller, probe, probe_kind),
    ):
        settings = MqttSettings(broker=url, chair_id=f"bench-{uuid.uuid4().hex[:6]}")
        bridge = MqttBridge(controller, settings, config=config)
        task = asyncio.create_task(bridge.run())
        try:
            await asyncio.wait_for(bridge.connected.wait(), 10)
            latencies = await _command_latencies(settings, controller, probe, commands)
            rtts = await _broker_rtts(settings, commands)
            await controller.start("relax")  # telemetry flows while the chair moves
            await asyncio.sleep(3.0)
            loop = controller.core.loop_stats()
        finally:
            await bridge.stop()
            await asyncio.wait_for(task, 10)
    cmd = percentiles(latencies, 0.50, 0.99)
    rtt = percentiles(rtts, 0.50, 0.99)
    return {
        "commands": commands,
        "cmd_to_actuator_p50_ms": cmd[0],
        "cmd_to_actuator_p99_ms": cmd[1],
        "broker_rtt_p50_ms": rtt[0],
        "broker_rtt_p99_ms": rtt[1],
        "command": "estop",
        "probe": probe_kind,
        "core_p50_us_with_daemon": round(loop["latency_p50_us"], 2),
        "core_p99_us_with_daemon": round(loop["latency_p99_us"], 2),
        "core_max_us_with_daemon": round(loop["latency_max_us"], 2),
        "core_missed_with_daemon": loop["missed"],
        "core_cycles_with_daemon": loop["cycles"],
        "target_met": cmd[1] <= rtt[1] + 5.0,
    }


async def _command_latencies(
    settings: MqttSettings, controller: Any, probe: Probe, commands: int
) -> list[float]:
    t = settings.topics
    out: list[float] = []
    async with settings.client(f"bench-cmd-{uuid.uuid4().hex[:8]}") as client:
        await client.subscribe(t.reply, qos=1)
        replies = aiter(client.messages)
        for i in range(commands):
            before = probe()[0]
            payload = json.dumps({"id": f"b{i}", "action": "estop"})
            sent = time.monotonic_ns()
            await client.publish(t.cmd, payload, qos=1)
            while True:  # its reply (sent once the chair is in estop), so commands never overlap
                msg = await asyncio.wait_for(anext(replies), 5.0)
                if json.loads(bytes(msg.payload or b"")).get("id") == f"b{i}":
                    break
            # the core stamped the tick that applied it: that stamp, not when we look, is measured
            last = probe()
            if last[0] == before or last[0] < sent:
                raise RuntimeError(f"command {i}: no core tick acted on it before the reply")
            out.append((last[1] - sent) / 1e6)
            await controller.reset()
    return out


async def _broker_rtts(settings: MqttSettings, commands: int) -> list[float]:
    topic = f"{settings.topics.base}/bench-rtt"
    payload = json.dumps({"id": "b000", "action": "estop"}).encode()
    out: list[float] = []
    async with (
        settings.client(f"bench-rx-{uuid.uuid4().hex[:8]}") as rx,
        settings.client(f"bench-tx-{uuid.uuid4().hex[:8]}") as tx,
    ):
        await rx.subscribe(topic, qos=1)
        received = aiter(rx.messages)
        for _ in range(commands):
            sent = time.monotonic_ns()
            await tx.publish(topic, payload, qos=1)
            await asyncio.wait_for(anext(received), 5.0)
            out.append((time.monotonic_ns() - sent) / 1e6)
    return out


def percentiles(values: list[float], *qs: float) -> tuple[float, ...]:
    """The `qs` quantiles of `values` (nearest rank), rounded to 3 decimals (µs in ms)."""
    s = sorted(values)

    def at(q: float) -> float:
        return round(s[min(len(s) - 1, max(0, round(q * len(s)) - 1))], 3)

    return tuple(at(q) for q in qs)


# ---- what is measured ---------------------------------------------------------------------------


@asynccontextmanager
async def realtime_controller(config: ChairConfig) -> AsyncIterator[tuple[Any, Probe, str]]:
    """The real controller on the real-time core with the simulated chair, or a stand-in."""
    from chair.controller import Controller
    from chair.driver import keep_off_rt_cpu

    keep_off_rt_cpu(config)  # as `chair serve` does
    controller = Controller.create(config, hardware="sim", speed=None)
    async with controller:
        controller.serve()
        yield controller, controller.last_command_latency, "core_tick"


# ---- the broker ---------------------------------------------------------------------------------


BROKER_POLL_S = 0.02
"""How often the bench tries the private broker's port while it starts."""


def find_mosquitto() -> str:
    """Path of mosquitto, or MissingToolError saying how to install it."""
    return find_tool("mosquitto", "mosquitto", "the MQTT benchmark's private broker")


@asynccontextmanager
async def private_broker(url: str | None) -> AsyncIterator[str]:
    if url is not None:
        yield url
        return
    exe = find_mosquitto()
    with tempfile.TemporaryDirectory(prefix="chair-bench-") as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        conf = Path(tmp) / "mosquitto.conf"
        # set_tcp_nodelay: as docs/mqtt.md recommends for command latency.
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "set_tcp_nodelay true\nlog_dest none\n"
        )
        try:
            proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL)
        except OSError as e:
            raise RuntimeError(f"the MQTT bench needs mosquitto ({exe}): {e}") from None
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("mosquitto did not start") from None
                    await asyncio.sleep(BROKER_POLL_S)  # another process: no event to wait on
            yield f"mqtt://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(5)


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run(), indent=2))
