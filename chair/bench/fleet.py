"""Fleet benchmark (`chair bench --only fleet`, docs/fleet-sim.md, Benchmark): how many simulated
chairs this machine holds, `chair fleet-sim` stepped up N = 50, 100, 200, 400, 800, 1000, ...
until a step fails (then once between the last that held and it), beside a plain aiomqtt
publisher's message rate to the same broker in the same run (the baseline).

A step holds when every chair came online, no command went unanswered, every chair's virtual
clock kept up with the wall clock (the worst lag seen under `LAG_LIMIT_MS`: the pace's 200 ms
chunks plus the event loop's lateness) and command → reply p99 stayed under `P99_LIMIT_MS`.

Each step is a fresh fleet of N chairs (chair ids ``n<N>-<k>``) on one private mosquitto, for
`STEP_S` seconds at speed 1: a share `BUSY` of the chairs start a session of the default program
(spread evenly over the step), the rest idle, sending heartbeats; every chair is asked its
`status` every 10 s. A session's first minute is its body scan, the chair's most expensive part
(docs/fleet-sim.md, Where the time goes): so many sessions starting within a minute is a storm a
fleet in steady state never sees. A second ladder, from where the first failed, runs the chairs
idle (heartbeats and `status` only): the floor, what the chairs cost without sessions.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
import uuid
from typing import Any

from chair.mqtt.settings import MqttSettings

STEPS = (50, 100, 200, 400, 800, 1000, 1200, 1600, 2000)
QUICK_STEPS = (50, 100, 200)
QUICK_IDLE_STEPS = (400,)
STEP_S = 60.0
QUICK_STEP_S = 30.0
BUSY = 0.3
"""The share of chairs in a session: a busy hour's (docs/fleet.md, Sizing)."""
LAG_LIMIT_MS = 1000.0
P99_LIMIT_MS = 250.0
TARGET_CHAIRS = 1000
BASELINE_MESSAGES = 20_000
PAYLOAD_BYTES = 450
"""About one fleet telemetry sample (docs/fleet.md, Sizing)."""


def run(
    *,
    quick: bool = False,
    broker_url: str | None = None,
    steps: tuple[int, ...] | None = None,
    step_s: float | None = None,
    busy: float = BUSY,
    config_path: str | None = None,
) -> dict[str, Any]:
    """The ladder and the baseline; a private mosquitto unless `broker_url` is given."""
    _raise_open_files()
    return asyncio.run(
        _run(
            steps or (QUICK_STEPS if quick else STEPS),
            step_s or (QUICK_STEP_S if quick else STEP_S),
            busy,
            broker_url,
            config_path,
            QUICK_IDLE_STEPS if quick else None,
        )
    )


async def _run(
    steps: tuple[int, ...],
    step_s: float,
    busy: float,
    broker_url: str | None,
    config_path: str | None,
    idle_steps: tuple[int, ...] | None,
) -> dict[str, Any]:
    """The busy ladder, then the idle one (`idle_steps`; None: the ladder's steps from the busy
    ladder's first failure on, none when it never failed)."""
    from chair.bench.mqtt import private_broker

    async with private_broker(broker_url) as url:
        settings = MqttSettings(broker=url, telemetry_hz=1.0, state_interval_s=30.0)
        baseline = await publisher_baseline(settings)
        results = await _ladder(settings, steps, step_s, busy, config_path)
        if idle_steps is None:
            failed = [s["chairs"] for s in results if not s["held"]]
            idle_steps = tuple(n for n in STEPS if failed and n >= min(failed))
        idle = await _ladder(settings, idle_steps, step_s, 0.0, config_path)
    best = _best(results)
    best_idle = _best(idle)
    return {
        "chairs_held": best["chairs"] if best else 0,
        "target_chairs": TARGET_CHAIRS,
        "target_met": bool(best and best["chairs"] >= TARGET_CHAIRS),
        "first_failed": min((s["chairs"] for s in results if not s["held"]), default=None),
        "cmd_reply_p50_ms": best["cmd_reply_p50_ms"] if best else None,
        "cmd_reply_p99_ms": best["cmd_reply_p99_ms"] if best else None,
        "lag_max_ms": best["lag_max_ms"] if best else None,
        "msgs_per_s_offered": best["msgs_per_s_offered"] if best else None,
        "msgs_per_s_delivered": best["msgs_per_s_delivered"] if best else None,
        "baseline_publisher_msgs_per_s": baseline["msgs_per_s"],
        "cpu_s_per_chair_hour": best["cpu_s_per_chair_hour"] if best else None,
        "limits": {"lag_ms": LAG_LIMIT_MS, "p99_ms": P99_LIMIT_MS},
        "step_s": step_s,
        "busy": busy,
        "workers": results[0]["workers"] if results else None,
        "cpus": _cpus(),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "chairs_held_idle": max(
            best_idle["chairs"] if best_idle else 0, best["chairs"] if best else 0
        ),
        "idle_cpu_s_per_chair_hour": best_idle["cpu_s_per_chair_hour"] if best_idle else None,
        "baseline": baseline,
        "steps": results,
        "idle_steps": idle,
    }


async def _ladder(
    settings: MqttSettings,
    steps: tuple[int, ...],
    step_s: float,
    busy: float,
    config_path: str | None,
) -> list[dict[str, Any]]:
    """Step up until a step fails, then once between the last that held and it (to 50)."""
    results: list[dict[str, Any]] = []
    for n in steps:
        step = await _step(settings, n, step_s, busy, config_path)
        results.append(step)
        if not step["held"]:
            break
    held = [s["chairs"] for s in results if s["held"]]
    if held and not results[-1]["held"]:
        mid = round((held[-1] + results[-1]["chairs"]) / 100) * 50
        if held[-1] < mid < results[-1]["chairs"]:
            results.insert(-1, await _step(settings, mid, step_s, busy, config_path))
    return results


def _best(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max((s for s in steps if s["held"]), key=lambda s: s["chairs"], default=None)


async def _step(
    settings: MqttSettings,
    n: int,
    step_s: float,
    busy: float,
    config_path: str | None,
) -> dict[str, Any]:
    from chair.fleet.sim import FleetOptions, FleetSim

    options = FleetOptions(
        chairs=n,
        minutes=step_s / 60.0,
        busy=busy,
        ramp_s=step_s,
        probe_s=10.0,
        id_prefix=f"n{n}{'i' if busy == 0 else ''}-",
        seed=n,
        config_path=config_path,
        drain_s=120.0,
    )
    load0 = os.getloadavg()[0]
    r = await FleetSim(settings, options).run()
    held = (
        r["connected"] == n
        and r["commands_lost"] == 0
        and r["chairs_failed"] == 0
        and r["lag_max_ms"] < LAG_LIMIT_MS
        and r["cmd_reply_p99_ms"] < P99_LIMIT_MS
    )
    return {
        "chairs": n,
        "busy": busy,
        "workers": r["workers"],
        "held": held,
        "connected": r["connected"],
        "sessions_started": r["sessions_started"],
        "sessions_finished": r["sessions_finished"],
        "commands": r["commands"],
        "commands_lost": r["commands_lost"],
        "cmd_reply_p50_ms": r["cmd_reply_p50_ms"],
        "cmd_reply_p99_ms": r["cmd_reply_p99_ms"],
        "lag_max_ms": r["lag_max_ms"],
        "lag_max_ms_first_half": r["lag_max_ms_first_half"],
        "lag_max_ms_second_half": r["lag_max_ms_second_half"],
        "msgs_per_s_offered": r["msgs_published_per_s"],
        "msgs_per_s_delivered": r["msgs_per_s"],
        "cpu_s": r["cpu_s"],
        "cpu_s_per_chair_hour": r["cpu_s_per_chair_hour"],
        "driver_cpu_s": r["driver_cpu_s"],
        "worker_rss_mb": r["worker_rss_mb"],
        "wall_s": r["wall_s"],
        "load_avg_1m_before": round(load0, 2),
    }


async def publisher_baseline(
    settings: MqttSettings, messages: int = BASELINE_MESSAGES
) -> dict[str, Any]:
    """A plain aiomqtt client publishing telemetry-sized QoS 0 messages as fast as it can, and
    a plain subscriber counting them: the messages per second the broker and one client pass
    on this machine (what the fleet's delivered rate compares with)."""
    topic = f"bench-baseline/{uuid.uuid4().hex[:8]}"
    payload = b"x" * PAYLOAD_BYTES
    async with (
        settings.client(f"bench-rx-{uuid.uuid4().hex[:8]}") as rx,
        settings.client(f"bench-tx-{uuid.uuid4().hex[:8]}") as tx,
    ):
        rx.pending_calls_threshold = 10**6
        tx.pending_calls_threshold = 10**6
        await rx.subscribe(topic, qos=0)
        got = 0
        done = asyncio.Event()

        async def count() -> None:
            nonlocal got
            async for _ in rx.messages:
                got += 1
                if got >= messages:
                    done.set()
                    return

        counter = asyncio.create_task(count())
        t0 = time.monotonic()
        for _ in range(messages):
            await tx.publish(topic, payload, qos=0)
        t_sent = time.monotonic()
        try:
            async with asyncio.timeout(30):
                await done.wait()
        except TimeoutError:
            pass
        t1 = time.monotonic()
        counter.cancel()
    return {
        "messages": messages,
        "received": got,
        "payload_bytes": PAYLOAD_BYTES,
        "qos": 0,
        "publish_msgs_per_s": round(messages / (t_sent - t0), 1),
        "msgs_per_s": round(got / (t1 - t0), 1),
    }


def _cpus() -> int:
    return os.cpu_count() or 1


def _raise_open_files() -> None:
    """A thousand chairs are a thousand connections for the private broker (our child): lift
    the soft limit on open files to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run(), indent=2))
