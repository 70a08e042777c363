"""Manual mode over a real mosquitto (docs/chair.md §8, docs/mqtt.md): start it, change technique,
area, tempo, width and strength live, move the area to the neck and below the sacrum (clamped),
per-zone strength at the extremes — each change seen in the telemetry within 0.5 s of simulated
time, without a stop — and bad input refused with its stable code, nothing changed, the session
undisturbed. One session, the simulated clock held between commands (each command lets it run
`chair.testing.GRACE_S`), so the timing is judged in simulated time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.mqtt_helpers import Chair, advance_until, hold
from tests.session_helpers import press_of

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = pytest.mark.broker

EFFECT_S = 0.5


def kept(state: dict[str, Any]) -> dict[str, Any]:
    keep = ("state", "program", "session_id", "intensity", "zone_intensity", "manual", "step")
    return {k: state[k] for k in keep}


async def _held(chair: Chair) -> float:
    """Wait until the simulated time a command granted has run out (the clock is held again);
    the session's time then. (A bounded wait on the test hook's clock, not a fixed sleep.)"""
    ctl = chair.ctl
    for _ in range(2000):
        if ctl._clock._grace_until_ns <= ctl.core.now_ns:
            break
        await asyncio.sleep(0.002)
    else:
        raise AssertionError("the granted simulated time did not run out")
    return float(ctl.session.now_s())


async def change(chair: Chair, action: str, **fields: Any) -> dict[str, Any]:
    """Send one change to the held chair; the first telemetry sample of the new segment (the
    session's telemetry, every sample in simulated time) must come within 0.5 s of it."""
    t_sent = await _held(chair)
    reply = await chair.obs.cmd(action, **fields)
    assert reply["ok"], reply
    step = reply["state"]["step"]
    await _held(chair)
    tlm = chair.ctl.session.telemetry
    sample: dict[str, Any] = next(s for s in tlm if s["t"] >= t_sent and s["step"] == step)
    assert sample["t"] - t_sent <= EFFECT_S, (action, fields, sample, t_sent)
    assert sample["state"] == "running"
    return {"reply": reply, "sample": sample}


async def refused(chair: Chair, code: str, action: str, **fields: Any) -> None:
    before = chair.ctl.state()
    reply = await chair.obs.cmd(action, **fields)
    assert not reply["ok"] and reply["error"]["code"] == code, (action, fields, reply)
    assert kept(reply["state"]) == kept(before)


async def test_manual_mode_over_mqtt(chair_factory: Any) -> None:
    chair = await chair_factory(speed=200)
    ctl, obs = chair.ctl, chair.obs
    await hold(ctl)
    r = await obs.cmd(
        "start", program="manual", minutes=30, intensity=3,
        manual={"technique": "kneading", "area": "partial", "zone": "upper_back", "tempo": 3},
    )  # fmt: skip
    assert r["ok"], r
    assert r["state"]["program"] == "manual" and r["state"]["manual"]["technique"] == "kneading"
    await advance_until(ctl, "running")
    session_id = ctl.state()["session_id"]
    zones = ctl.state()["zones"]

    got = await change(chair, "set", manual={"technique": "tapping"})
    assert got["sample"]["technique"] == "tapping"
    got = await change(chair, "set", manual={"area": "spot", "tempo": 5, "width": "wide"})
    now = got["reply"]["state"]["manual"]
    assert (now["area"], now["tempo"], now["width"]) == ("spot", 5, "wide")
    await change(chair, "set", intensity=5)
    await change(chair, "set", zone_intensity={"upper_back": 2, "neck": 2})
    # up to the neck, and past it: the centre stops at the body's top
    for _ in range(3):
        got = await change(chair, "move", mm=200)
    top = got["reply"]["state"]["manual"]
    assert top["zone"] == "neck" and top["centre_mm"] <= zones["neck"][1]
    got = await change(chair, "set", manual={"technique": "knead_tap", "tempo": 1})
    await _held(chair)
    at_neck = [s for s in ctl.session.telemetry if s["t"] >= got["sample"]["t"]]
    light = ctl.config.depth.level_mm(1)
    assert all(press_of(s) <= light + 1e-6 for s in at_neck if s["zone"] == "neck")
    assert all(s["tap_hz"] == 0 for s in at_neck if s["zone"] == "neck")
    # down below the sacrum: the centre stops at the body's bottom
    for _ in range(5):
        got = await change(chair, "move", mm=-200)
    bottom = got["reply"]["state"]["manual"]
    assert bottom["zone"] == "glutes" and bottom["centre_mm"] >= zones["glutes"][0]
    await change(chair, "set", zone_intensity={"glutes": -2})
    got = await change(chair, "set", manual={"technique": "shiatsu", "area": "whole"})
    assert got["sample"]["technique"] == "shiatsu"

    # bad input: refused with its code, nothing changed, the session goes on
    for code, action, fields in [
        ("out_of_range", "set", {"manual": {"technique": "tickle"}}),
        ("out_of_range", "set", {"manual": {"area": "everywhere"}}),
        ("unknown_zone", "set", {"manual": {"zone": "head"}}),
        ("out_of_range", "set", {"manual": {"tempo": 0}}),
        ("out_of_range", "set", {"manual": {"tempo": 6}}),
        ("bad_field", "set", {"manual": {"tempo": 2.5}}),
        ("bad_field", "set", {"manual": {"speed": 2}}),
        ("out_of_range", "move", {"mm": 201}),
        ("out_of_range", "move", {"mm": -1000}),
        ("bad_field", "move", {"mm": "up"}),
        ("out_of_range", "set", {"zone_intensity": {"neck": 3}}),
        ("unknown_zone", "set", {"zone_intensity": {"head": 1}}),
    ]:
        await refused(chair, code, action, **fields)
    assert ctl.state()["state"] == "running" and ctl.state()["session_id"] == session_id
    summary_rows = ctl.session.manual_history
    assert len(summary_rows) >= 10

    # manual settings in a program session, a move outside manual mode
    r = await obs.cmd("estop")
    assert r["ok"], r
    await advance_until(ctl, "estop")
    assert (await obs.cmd("reset"))["ok"]
    await refused(chair, "not_manual", "move", mm=25)
    await refused(chair, "not_manual", "start", program="relax", manual={"technique": "kneading"})
    r = await obs.cmd("start", program="relax", minutes=5)
    assert r["ok"], r
    await refused(chair, "not_manual", "set", manual={"technique": "kneading"})
    await refused(chair, "not_manual", "move", mm=-25)
    assert ctl.state()["program"] == "relax" and ctl.state()["state"] == "scanning"
