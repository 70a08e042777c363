"""The MQTT daemon against a real mosquitto: actions in every state, a whole session, bad input,
replies, idempotency, retained and busy commands (docs/mqtt.md, "Commands and replies")."""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import pytest

from chair.api import ERROR_CODES
from chair.lifecycle import SessionState
from tests.mqtt_broker import Mosquitto
from tests.mqtt_helpers import (
    BAD_PAYLOADS,
    STATE_FIELDS,
    Chair,
    ChairFactory,
    Observer,
    advance_until,
    hold,
    inject_fault,
    v5_properties,
)

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = pytest.mark.broker

SESSION = ("scanning", "adjusting", "running", "paused")
TELEMETRY_FIELDS = {
    "t", "state", "step", "technique", "zone", "y_mm", "v_mm_s", "a_mm_s2", "width_mm",
    "left_x_mm", "right_x_mm", "depth_mm", "knead_rpm", "tap_hz", "heat_target_c", "heat_c",
    "fault", "surface_mm", "press_mm", "y_meas_mm", "depth_meas_mm", "depth_load_a",
}  # fmt: skip


def significant(state: dict[str, Any]) -> dict[str, Any]:
    """What a command could change (not the clocks or the pad temperature)."""
    keep = ("state", "program", "intensity", "session_id", "fault", "shoulder_mm")
    return {k: state.get(k) for k in keep} | {"heat": (state.get("heat") or {}).get("level")}


# ---- every action in every state ----------------------------------------------------------------

# action -> {state it is allowed in: the state it leads to}; everywhere else: not_allowed.
STATES = tuple(SessionState)
ALLOWED: dict[str, dict[str, str]] = {
    "start": {"idle": "scanning"},
    "pause": {"running": "paused"},
    "resume": {"paused": "running"},
    "stop": dict.fromkeys(SESSION, "settling"),
    "estop": dict.fromkeys(STATES, "estop"),
    "reset": {"fault": "idle", "estop": "idle"},
    "set": {s: s for s in ("idle", *SESSION)},
    "adjust_shoulder": {"adjusting": "adjusting"},
    "status": {s: s for s in STATES},
    "preset": {s: s for s in STATES},
}


async def drive_to(chair: Chair, target: str) -> None:
    """Bring the (held) controller to `target` through its own API; see it on the state topic."""
    ctl, obs = chair.ctl, chair.obs
    await hold(ctl)
    mark = obs.mark()
    if ctl.state()["state"] == target == "idle":
        await obs.wait_state("idle")  # nothing to do: the current state is it
        return
    if ctl.state()["state"] != "idle":
        await ctl.estop()
        await ctl.reset()
    if target == "fault":
        await inject_fault(ctl)
    elif target == "estop":
        await ctl.estop()
    elif target != "idle":
        await ctl.start(ctl.programs()[0])
        if target != "scanning":
            await advance_until(ctl, "adjusting")
        if target in ("running", "paused", "settling"):
            await advance_until(ctl, "running")
        if target == "paused":
            await ctl.pause()
        elif target == "settling":
            await ctl.stop()
    assert ctl.state()["state"] == target
    await obs.wait_state(target, since=mark)


@pytest.mark.parametrize("state", STATES)
async def test_every_action_in_this_state(chair: Chair, state: str) -> None:
    fields: dict[str, dict[str, Any]] = {
        "start": {"program": chair.ctl.programs()[0], "minutes": 10},
        "set": {"intensity": 4},
        "adjust_shoulder": {"mm": 12.5},
        "preset": {"minutes": 20},
    }
    wrong = []
    for action, allowed in ALLOWED.items():
        await drive_to(chair, state)
        reply = await chair.obs.cmd(action, **fields.get(action, {}))
        expected = allowed.get(state)
        got = (reply["ok"], reply["error"] and reply["error"]["code"], reply["state"]["state"])
        want = (expected is not None, None if expected else "not_allowed", expected or state)
        if got != want:
            wrong.append(f"{action} in {state}: got {got}, want {want}")
        assert reply["action"] == action
        assert set(reply["state"]) >= STATE_FIELDS
        if not reply["ok"]:
            assert reply["error"]["message"]
    assert not wrong, "\n".join(wrong)


# ---- a whole session, remotely ------------------------------------------------------------------


async def test_remote_session_start_pause_set_resume_stop(chair_factory: ChairFactory) -> None:
    chair = await chair_factory(speed=60)
    obs, program = chair.obs, chair.ctl.programs()[0]
    mark = obs.mark()

    r = await obs.cmd("start", program=program, minutes=5, intensity=2, heat="low")
    assert r["ok"], r
    assert r["state"]["program"] == program and r["state"]["session_id"]
    session_id = r["state"]["session_id"]
    running = await obs.wait_state("running", since=mark)
    assert running["session_id"] == session_id and running["intensity"] == 2

    r = await obs.cmd("pause")
    assert r["ok"] and r["state"]["state"] == "paused", r
    paused = await obs.wait_state("paused")
    elapsed_at_pause = paused["elapsed_s"]
    tmark = obs.mark()
    r = await obs.cmd("set", intensity=4, heat="high")
    assert r["ok"], r
    assert r["state"]["intensity"] == 4 and r["state"]["heat"]["level"] == "high"
    await obs.wait_for("state", lambda m: m.json()["intensity"] == 4, since=tmark)
    await asyncio.sleep(0.5)  # while paused, the clock of the program holds
    paused_now = chair.ctl.state()
    assert paused_now["state"] == "paused" and paused_now["elapsed_s"] == elapsed_at_pause

    r = await obs.cmd("resume")
    assert r["ok"] and r["state"]["state"] == "running", r
    resumed = await obs.wait_state("running")
    assert elapsed_at_pause <= resumed["elapsed_s"] <= elapsed_at_pause + 30  # no skip
    assert resumed["intensity"] == 4 and resumed["heat"]["level"] == "high"

    r = await obs.cmd("stop")
    assert r["ok"] and r["state"]["state"] in ("settling", "idle"), r
    await obs.wait_state("idle", timeout=15)
    await obs.wait_for("event", lambda m: m.json()["event"] == "session_finished", since=mark)
    end = obs.mark()

    # The state stream went through the life cycle in order, with one session id.
    states = [s["state"] for s in obs.json_on("state", mark)]
    order = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
    if order[0] == "idle":  # accepted, not yet scanning
        order = order[1:]
    assert order == ["scanning", "adjusting", "running", "paused", "running", "settling", "idle"]
    assert {s["session_id"] for s in obs.json_on("state", mark) if s["state"] in SESSION} == {
        session_id
    }
    assert all(set(s) >= STATE_FIELDS for s in obs.json_on("state", mark))
    # Events, in order.
    events = [e["event"] for e in obs.json_on("event", mark)]
    firsts = [e for i, e in enumerate(events) if e not in events[:i]]
    assert firsts[:3] == ["session_started", "shoulder_detected", "step_started"]
    assert events[-1] == "session_finished"
    # Telemetry: complete samples, a steady clock, only while the session was in progress.
    samples = obs.on("telemetry", mark)
    assert len(samples) >= 10
    data = [m.json() for m in samples]
    assert all(set(d) == TELEMETRY_FIELDS for d in data)
    ts = [d["t"] for d in data]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    assert sum(1 for d in data if d["state"] not in (*SESSION, "settling")) <= 1
    assert not any(m.retain for m in samples)
    paused_samples = [m for m in samples if m.json()["state"] == "paused"]
    span = paused_samples[-1].t - paused_samples[0].t
    assert len(paused_samples) >= 0.5 * 10 * span  # ~10 Hz
    await asyncio.sleep(0.5)  # an observation window: nothing may come in it
    assert len(obs.on("telemetry", end)) <= 1  # nothing more once idle


# ---- bad input ----------------------------------------------------------------------------------

WIRE_ONLY: list[tuple[bytes, str]] = [
    (b'{"action":"start","program":"no_such_program"}', "unknown_program"),
    (b'{"action":"preset","program":"no_such_program"}', "unknown_program"),
    (b'{"action":"resume"}', "not_allowed"),
    (b'{"action":"reset"}', "not_allowed"),
    (b'{"action":"adjust_shoulder","mm":10}', "not_allowed"),
]


async def test_bad_input_changes_nothing_and_never_disturbs_a_session(
    chair_factory: ChairFactory,
) -> None:
    chair = await chair_factory(speed=60)
    obs, ctl = chair.obs, chair.ctl
    program = ctl.programs()[0]
    assert (await obs.cmd("start", program=program, minutes=30, intensity=3, heat="medium"))["ok"]
    before = await obs.wait_state("running", timeout=15)
    mark = obs.mark()
    calls_before = len(getattr(ctl, "calls", []))
    start_program = json.dumps({"action": "start", "program": program}).encode()
    cases = [*BAD_PAYLOADS, *WIRE_ONLY, (start_program, "not_allowed")]
    wrong = []
    for payload, code in cases:  # one at a time: each payload's reply is the next one
        m = obs.mark()
        await obs.send(payload)
        reply = (await obs.wait_for("reply", since=m)).json()
        if reply["ok"] or reply["error"]["code"] != code:
            wrong.append(f"{payload[:60]!r}: {reply['error']} (want {code})")
        assert set(reply) == {"id", "action", "ok", "state", "error"}
        assert reply["error"]["code"] in ERROR_CODES and reply["error"]["message"]
        if payload == b'{"id":"a1"}':
            assert reply["id"] == "a1"
        assert reply["state"]["state"] == "running"
    assert not wrong, "\n".join(wrong)
    after = ctl.state()
    assert significant(after) == significant(before)
    assert after["elapsed_s"] > before["elapsed_s"]  # the session kept running
    assert after["state"] == "running"
    events = {e["event"] for e in obs.json_on("event", mark)}
    assert events <= {"step_started"}
    # Nothing but the refused actions reached the controller.
    calls = getattr(ctl, "calls", None)
    if calls is not None:  # only what the controller itself had to refuse (not_allowed)
        reached = {name for name, _ in calls[calls_before:]}
        assert reached == {"start", "resume", "reset", "adjust_shoulder"}, reached


# ---- requests and replies -----------------------------------------------------------------------


async def test_idempotent_by_id(chair: Chair) -> None:
    obs, ctl = chair.obs, chair.ctl
    # the clock held from the start: at speed 600 the program's default minutes pass in about a
    # wall second, less than three round trips take on a loaded machine (fresh-clone run: "still
    # idle after 30 s" — the session had ended before `advance_until`)
    await hold(ctl)
    mark = obs.mark()
    first = await obs.cmd("start", id="same-1", program=ctl.programs()[0])
    assert first["ok"]
    again = await obs.cmd("start", id="same-1", program=ctl.programs()[0])
    assert again == first  # the first reply, state snapshot included
    other_action = await obs.cmd("stop", id="same-1")
    assert other_action == first
    await advance_until(ctl, "running")  # the session went on: the stop was not executed
    assert [e["event"] for e in obs.json_on("event", mark)].count("session_started") == 1
    # the clock is held in `running` now: the session cannot end under the commands below
    # Pipelined duplicates: the second waits for the first one's reply, and gets it.
    m = obs.mark()
    for _ in range(2):
        await obs.send(json.dumps({"id": "same-2", "action": "pause"}))
    first_dup = await obs.wait_for("reply", lambda x: x.json()["id"] == "same-2", since=m)
    await obs.wait_for(
        "reply", lambda x: x.json()["id"] == "same-2", since=obs.messages.index(first_dup) + 1
    )
    replies = [x.json() for x in obs.on("reply", m) if x.json()["id"] == "same-2"]
    assert len(replies) == 2 and replies[0] == replies[1] and replies[0]["ok"], replies
    assert replies[0]["state"]["state"] == "paused"
    # A fresh id is executed.
    assert (await obs.cmd("resume", id="fresh-3"))["ok"]


async def test_status_carries_the_full_state(chair: Chair) -> None:
    r = await chair.obs.cmd("status")
    assert r["ok"] and r["error"] is None and r["action"] == "status"
    assert set(r["state"]) >= STATE_FIELDS
    assert set(r["state"]["heat"]) >= {"level", "target_c", "temp_c"}
    retained = chair.obs.on("state")[-1]
    assert retained.json()["state"] == r["state"]["state"]


async def test_mqtt5_response_topic_and_correlation_data(chair_factory: ChairFactory) -> None:
    chair = await chair_factory(observer={"subscriptions": ("massagechair/chair1/#", "clients/#")})
    obs = chair.obs
    for response_topic in ("clients/abc/inbox", "massagechair/chair1/reply/app-7"):
        m = obs.mark()
        corr = b"\x00\x01corr-" + response_topic.encode()[:4]
        await obs.send(
            '{"action":"status","id":"rr"}', properties=v5_properties(response_topic, corr)
        )
        direct = await obs.wait_for(response_topic, since=m)
        assert direct.json()["ok"] and direct.json()["id"] == "rr"
        assert direct.properties.CorrelationData == corr
        shared = await obs.wait_for("reply", since=m)
        assert shared.json() == direct.json()
        assert shared.properties.CorrelationData == corr
    # A response topic that would clobber the chair's own topics is not used.
    m = obs.mark()
    await obs.send(
        '{"action":"status","id":"evil"}',
        properties=v5_properties("massagechair/chair1/state", b"x"),
    )
    await obs.reply_to("evil", since=m)
    assert all("ok" not in s.json() for s in obs.on("state", m))


async def test_mqtt311_daemon_and_client(chair_factory: ChairFactory) -> None:
    chair = await chair_factory(protocol="3.1.1", observer={"protocol": "3.1.1"})
    obs = chair.obs
    r = await obs.cmd("status")
    assert r["ok"] and r["state"]["state"] == "idle"
    mark = obs.mark()
    r = await obs.cmd("start", program=chair.ctl.programs()[0], minutes=5)
    assert r["ok"], r
    await obs.wait_state("running", since=mark)
    assert (await obs.cmd("estop"))["state"]["state"] == "estop"
    assert obs.on("homeassistant/device/massagechair_chair1/config")


async def test_retained_commands_are_never_executed(
    chair_factory: ChairFactory, broker: Mosquitto
) -> None:
    stale = json.dumps({"id": "stale-1", "action": "start", "program": "relax"})
    async with Observer(broker.url) as early:
        await early.send(stale, retain=True)  # stored by the broker before any daemon runs
    for protocol in ("5", "3.1.1"):
        chair = await chair_factory(protocol=protocol, chair_id="chair1")
        obs = chair.obs
        mark = obs.mark()
        live = json.dumps({"id": f"live-{protocol}", "action": "estop"})
        if protocol == "5":  # MQTT 5 tells a retained publish apart even when it is live
            await obs.send(live, retain=True)
        r = await obs.cmd("status")
        assert r["state"]["state"] == "idle"
        assert not [x for x in obs.on("reply") if x.json()["id"] in ("stale-1", f"live-{protocol}")]
        assert not obs.on("event", mark)
        await obs.send(stale, retain=True)  # put it back for the next round
        await chair.stop()


async def test_busy_is_transient_and_estop_is_never_busy(chair_factory: ChairFactory) -> None:
    chair = await chair_factory(speed=60)
    obs, ctl = chair.obs, chair.ctl
    gate = asyncio.Event()
    pausing = asyncio.Event()
    original = ctl.pause

    async def slow_pause() -> None:
        pausing.set()  # the bridge is executing the pause: it is busy from here on
        await gate.wait()
        await original()

    assert (await obs.cmd("start", program=ctl.programs()[0], minutes=30))["ok"]
    await obs.wait_state("running")
    await hold(ctl)  # the session's 30 minutes are 3 wall seconds at speed 600: keep it running
    ctl.pause = slow_pause
    m = obs.mark()
    await obs.send('{"id":"p1","action":"pause"}')
    await asyncio.wait_for(pausing.wait(), 10)
    busy = await obs.cmd("set", id="b1", intensity=5)
    assert busy["error"]["code"] == "busy"
    estop = await obs.cmd("estop", id="e1")
    assert estop["ok"] and estop["state"]["state"] == "estop"
    gate.set()
    paused = await obs.reply_to("p1", since=m)
    assert paused["error"]["code"] == "not_allowed"  # the e-stop came first
    retry = await obs.cmd("set", id="b1", intensity=5)  # busy was not remembered for the id
    assert retry["error"]["code"] == "not_allowed"


# ---- the command-line clients of mosquitto ------------------------------------------------------


async def _run(*argv: str, timeout: float = 20.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_mosquitto_pub_and_sub_drive_the_daemon(chair_factory: ChairFactory) -> None:
    # paced at 60 x: the session is still running when the retained state is read below (at
    # 600 x a whole program can end while the mosquitto_sub processes start)
    chair = await chair_factory(speed=60.0)
    port, base = str(chair.broker.port), chair.base
    common = ("-h", "127.0.0.1", "-p", port, "-V", "mqttv5")
    # The retained state and availability are there for any subscriber.
    rc, out, _ = await _run("mosquitto_sub", *common, "-t", f"{base}/availability", "-C", "1")
    assert rc == 0 and out.strip() == "online"
    # A request with a response topic, answered there.
    line_buffered = ("stdbuf", "-oL") if shutil.which("stdbuf") else ()
    sub = await asyncio.create_subprocess_exec(
        *line_buffered, "mosquitto_sub", *common, "-t", "cli/inbox", "-C", "1", "-W", "15", "-d",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert sub.stdout is not None
    if line_buffered:  # wait for its subscription
        while b"SUBACK" not in await asyncio.wait_for(sub.stdout.readline(), 10):
            pass
    else:
        await asyncio.sleep(1.0)
    mark = chair.obs.mark()  # the states from the start on: "running" is never missed
    cmd = json.dumps({"id": "cli-1", "action": "start", "program": chair.ctl.programs()[0]})
    rc, _, err = await _run(
        "mosquitto_pub", *common, "-t", f"{base}/cmd", "-q", "1", "-m", cmd,
        "-D", "publish", "response-topic", "cli/inbox",
        "-D", "publish", "correlation-data", "abc",
    )  # fmt: skip
    assert rc == 0, err
    out_b, _ = await asyncio.wait_for(sub.communicate(), 15)
    reply = json.loads([ln for ln in out_b.decode().splitlines() if ln.startswith("{")][-1])
    assert reply["ok"] and reply["id"] == "cli-1" and reply["action"] == "start"
    await chair.obs.wait_state("running", since=mark)
    rc, out, _ = await _run("mosquitto_sub", *common, "-t", f"{base}/state", "-C", "1")
    assert rc == 0 and json.loads(out)["state"] in (*SESSION, "settling")
