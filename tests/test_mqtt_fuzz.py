"""Thousands of hostile payloads on ``<base>/cmd`` during a running session: every one answered,
none executed, the session and its telemetry undisturbed."""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from chair.api import ERROR_CODES
from chair.commands.parse import ACTIONS
from tests.mqtt_helpers import ChairFactory

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = pytest.mark.broker

N_PAYLOADS = 2000
SAFE_WHILE_RUNNING = ("start", "resume", "reset", "adjust_shoulder")
"""Actions the controller refuses while running, whatever their fields."""
MUTATING = ("pause", "stop", "estop", "set", "preset")
"""Actions that would change a running session: only ever sent poisoned."""

scalars = (
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats() | st.text(max_size=24)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
field_names = st.sampled_from(["program", "minutes", "intensity", "heat", "mm", "id"]) | st.text(
    max_size=12
)
fields = st.dictionaries(field_names, json_values, max_size=5)


@st.composite
def harmless_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Objects whose action cannot change a running session, whatever else they hold."""
    obj = draw(fields)
    obj.pop("action", None)
    action = draw(
        st.sampled_from([*SAFE_WHILE_RUNNING, "status"])
        | st.text(max_size=16).filter(lambda a: a not in ACTIONS)
        | json_values.filter(lambda v: not isinstance(v, str))
        | st.just(None)
    )
    if action is not None:
        obj["action"] = action
    return obj


@st.composite
def poisoned_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A state-changing action with at least one field that must be refused."""
    action = draw(st.sampled_from(MUTATING))
    obj = {k: v for k, v in draw(fields).items() if k != "action"}
    poison: tuple[str, Any] = draw(
        st.sampled_from(
            [
                ("zz_unknown", 1),
                ("intensity", 0),
                ("intensity", 6),
                ("intensity", "3"),
                ("intensity", 2.5),
                ("heat", "warm"),
                ("heat", 3),
                ("minutes", 31),
                ("minutes", "20"),
                ("program", 5),
                ("mm", 99),
                ("id", 7),
                ("id", ""),
            ]
        )
    )
    name, value = poison
    obj[name] = value  # a bad value, or a field this action does not take
    obj["action"] = action
    return obj


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


payloads = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=100).map(str.encode),
    json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
    harmless_objects().map(encode),
    poisoned_objects().map(encode),
    st.integers(4097, 6000).map(lambda n: b'{"action":"stop"' + b" " * n + b"}"),  # too large,
)


def collect_payloads(n: int) -> list[bytes]:
    """`n` or more payloads drawn by hypothesis (the sending happens in one pipelined burst)."""
    out: list[bytes] = []

    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(payloads)
    def draw(payload: bytes) -> None:
        out.append(payload)

    while len(out) < n:
        draw()
    return out


def harmful(payload: bytes) -> bool:
    """Would this payload, if valid, change a running session? (It must never be valid.)"""
    try:
        obj = json.loads(payload)
    except ValueError:
        return False
    return isinstance(obj, dict) and obj.get("action") in MUTATING


# The burst comes from another process, as it would: the test's own client shares the daemon's
# event loop, and 2000 publishes from it would measure the test, not the daemon.
PUBLISHER = """
import struct, sys
import paho.mqtt.client as mqtt
host, port, topic, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
data = open(path, "rb").read()
payloads, i = [], 0
while i < len(data):
    (n,) = struct.unpack_from(">I", data, i)
    payloads.append(data[i + 4 : i + 4 + n])
    i += 4 + n
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
c.max_inflight_messages_set(100)
c.connect(host, port)
c.loop_start()
infos = [c.publish(topic, p, qos=1) for p in payloads]
for info in infos:
    info.wait_for_publish(30)
c.disconnect()
c.loop_stop()
"""


async def publish_burst(url: str, topic: str, payloads: list[bytes], tmp_path: Path) -> None:
    path = tmp_path / "payloads.bin"
    path.write_bytes(b"".join(struct.pack(">I", len(p)) + p for p in payloads))
    host, port = url.removeprefix("mqtt://").rsplit(":", 1)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISHER, host, port, topic, str(path),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()


async def test_fuzzed_commands_during_a_session(
    chair_factory: ChairFactory, tmp_path: Path
) -> None:
    sent = collect_payloads(N_PAYLOADS)
    assert len(sent) >= N_PAYLOADS
    assert sum(map(harmful, sent)) > N_PAYLOADS // 10  # state-changing actions were tried
    base = "massagechair/chair1"
    watch = tuple(f"{base}/{t}" for t in ("availability", "state", "telemetry", "event", "reply"))
    chair = await chair_factory(speed=60, observer={"subscriptions": watch})
    obs, ctl = chair.obs, chair.ctl
    program = ctl.programs()[0]
    assert (await obs.cmd("start", program=program, minutes=30, intensity=2, heat="low"))["ok"]
    before = await obs.wait_state("running", timeout=15)
    calls_before = len(getattr(ctl, "calls", []))
    mark = obs.mark()
    t0 = asyncio.get_running_loop().time()

    await publish_burst(chair.broker.url, f"{base}/cmd", sent, tmp_path)
    sync = await obs.cmd("status", id="fuzz-sync", timeout=30)
    deadline = asyncio.get_running_loop().time() + 30
    while len(obs.on("reply", mark)) < len(sent) + 1:
        assert asyncio.get_running_loop().time() < deadline, "some payloads got no reply"
        await asyncio.sleep(0.05)
    t1 = asyncio.get_running_loop().time()

    replies = [m.json() for m in obs.on("reply", mark)]
    assert len(replies) == len(sent) + 1  # one reply each: nothing crashed, nothing dropped
    for r in replies:
        assert set(r) == {"id", "action", "ok", "state", "error"}
        if r["ok"]:
            assert r["action"] == "status", r
        else:
            assert r["error"]["code"] in ERROR_CODES and r["error"]["message"]
    # No state changed: the session runs on with the settings it had.
    after = ctl.state()
    assert sync["state"]["state"] == after["state"] == "running"
    for key in ("program", "session_id", "intensity", "fault"):
        assert after[key] == before[key], key
    assert after["heat"]["level"] == before["heat"]["level"]
    assert after["elapsed_s"] > before["elapsed_s"]
    assert {s["state"] for s in obs.json_on("state", mark)} <= {"running"}
    assert {e["event"] for e in obs.json_on("event", mark)} <= {"step_started"}
    calls = getattr(ctl, "calls", None)
    if calls is not None:
        assert {name for name, _ in calls[calls_before:]} <= set(SAFE_WHILE_RUNNING)
    # Telemetry went on at its rate throughout.
    samples = [m for m in obs.on("telemetry", mark) if m.t <= obs.on("reply", mark)[-1].t]
    times = [m.t for m in samples]
    assert len(samples) >= 0.5 * 10 * (t1 - t0)
    # No stall: this test's client reads 2000 replies in the daemon's own loop and stamps
    # arrivals late itself, so the bound is 20 periods, not one (10 were exceeded once, 1.06 s,
    # in a fresh-clone run on a 2-vCPU VM about twice slower than the one the bound was set on;
    # a daemon that stopped publishing would still fail it)
    assert max(b - a for a, b in itertools.pairwise(times)) < 2.0
    ts = [m.json()["t"] for m in samples]
    assert ts == sorted(ts)
    assert chair.bridge.connections == 1  # the session with the broker never broke
