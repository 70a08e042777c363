"""Home Assistant discovery: the message itself, then the daemon announcing it on a real mosquitto
and Home Assistant's templates driving the chair (docs/mqtt.md, "Home Assistant")."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from chair.commands.parse import parse_command
from chair.mqtt.discovery import discovery_config
from chair.mqtt.settings import MqttSettings
from chair.programs.manual import AREAS, MANUAL_TECHNIQUES
from core_rt.config import ChairConfig
from tests.mqtt_helpers import STATE_FIELDS, Chair, ChairFactory, Observer

pytest_plugins = ["tests.mqtt_fixtures"]
CONFIG = ChairConfig()


# ---- the message --------------------------------------------------------------------------------


def test_discovery_lists_every_entity() -> None:
    s = MqttSettings(chair_id="c1")
    topic, payload = discovery_config(s, ["relax", "deep"], ChairConfig())
    assert topic == "homeassistant/device/massagechair_c1/config"
    cmps = payload["cmps"]
    kinds = {k: v["p"] for k, v in cmps.items()}
    assert kinds == {
        "program": "select", "minutes": "number", "intensity": "number", "heat": "select",
        "start": "button", "pause": "button", "resume": "button", "stop": "button",
        "estop": "button", "reset": "button", "state": "sensor", "zone": "sensor",
        "remaining": "sensor", "pad_temperature": "sensor", "fault": "binary_sensor",
        "technique": "select", "area": "select", "up": "button", "down": "button",
    }  # fmt: skip
    assert cmps["program"]["options"] == ["relax", "deep"]
    # manual mode (docs/chair.md §8): technique and area selects, the remote's Up/Down
    assert cmps["technique"]["options"] == list(MANUAL_TECHNIQUES)
    assert cmps["area"]["options"] == list(AREAS)
    for key, sign in (("up", 1), ("down", -1)):
        cmd = parse_command(cmps[key]["payload_press"].encode(), CONFIG)
        assert (cmd.action, cmd.args) == ("move", {"mm": sign * CONFIG.manual.move_step_mm})
    for key in ("technique", "area"):
        value = cmps[key]["options"][-1]
        cmd = parse_command(render(cmps[key]["command_template"], value).encode(), CONFIG)
        assert (cmd.action, cmd.args) == ("set", {"manual": {key: value}})
    assert (cmps["intensity"]["min"], cmps["intensity"]["max"]) == (1, 5)
    assert cmps["heat"]["options"] == ["off", "low", "medium", "high"]
    assert cmps["fault"]["device_class"] == "problem"
    assert len({c["unique_id"] for c in cmps.values()}) == len(cmps)
    assert all(c["availability_topic"] == "massagechair/c1/availability" for c in cmps.values())


# ---- on the broker ------------------------------------------------------------------------------


def render(template: str, value: Any) -> str:
    """The few Jinja forms our command templates use."""
    forms: dict[str, Callable[[Any], str]] = {
        "{{ value | tojson }}": json.dumps,
        "{{ value | int }}": lambda v: str(int(v)),
    }
    for form, fn in forms.items():
        if form in template:
            template = template.replace(form, fn(value))
    return template.replace("{{ value }}", str(value))


@pytest.mark.broker
async def test_home_assistant_discovery(chair: Chair) -> None:
    obs, ctl = chair.obs, chair.ctl
    topic = "homeassistant/device/massagechair_chair1/config"
    async with Observer(chair.broker.url, subscriptions=(topic,)) as late:  # sees it retained
        msg = await late.wait_for(topic)
    assert msg.retain
    cfg = msg.json()
    assert cfg["dev"]["ids"] and cfg["dev"]["name"] and cfg["o"]["name"]
    cmps = cfg["cmps"]
    need = {
        "program": "select", "intensity": "number", "heat": "select", "start": "button",
        "pause": "button", "resume": "button", "stop": "button", "estop": "button",
        "state": "sensor", "zone": "sensor", "remaining": "sensor",
        "pad_temperature": "sensor", "fault": "binary_sensor", "technique": "select",
        "area": "select", "up": "button", "down": "button",
    }  # fmt: skip
    assert {k: cmps[k]["p"] for k in need} == need
    assert cmps["program"]["options"] == ctl.programs()
    assert cmps["fault"]["device_class"] == "problem"
    assert len({c["unique_id"] for c in cmps.values()}) == len(cmps)
    for c in cmps.values():
        assert c["availability_topic"] == "massagechair/chair1/availability"
        assert c.get("state_topic", "massagechair/chair1/state") == "massagechair/chair1/state"
        for key in ("value_template",):
            if key in c:
                fields = re.findall(r"value_json\.(\w+)", c[key])
                assert set(fields) <= STATE_FIELDS | {"preset"}, c[key]
        if c["p"] == "button":
            parse_command(c["payload_press"].encode(), CONFIG)
            assert c["command_topic"] == "massagechair/chair1/cmd"

    # Drive the chair the way Home Assistant does.
    other = ctl.programs()[-1]
    mark = obs.mark()
    await obs.send(render(cmps["program"]["command_template"], other))
    await obs.wait_for("state", lambda m: m.json()["preset"]["program"] == other, since=mark)
    await obs.send(render(cmps["intensity"]["command_template"], 4.0))
    await obs.wait_for("state", lambda m: m.json()["intensity"] == 4, since=mark)
    await obs.send(render(cmps["heat"]["command_template"], "medium"))
    await obs.wait_for("state", lambda m: m.json()["heat"]["level"] == "medium", since=mark)
    await obs.send(cmps["start"]["payload_press"])
    started = await obs.wait_state("scanning", since=mark)
    assert started["program"] == other and started["intensity"] == 4
    if other == "manual":  # the technique select steers a manual session
        await obs.send(render(cmps["technique"]["command_template"], "tapping"))
        await obs.wait_for(
            "state", lambda m: (m.json()["manual"] or {}).get("technique") == "tapping", since=mark
        )
    await obs.send(cmps["estop"]["payload_press"])
    await obs.wait_state("estop", since=mark)
    assert all(r["ok"] for r in obs.json_on("reply", mark)), obs.json_on("reply", mark)

    # Re-sent when Home Assistant comes back online.
    mark = obs.mark()
    await obs.publish("homeassistant/status", "online")
    again = await obs.wait_for(topic, since=mark)
    assert again.json()["cmps"].keys() == cmps.keys()
    await obs.wait_for("availability", lambda m: m.payload == b"online", since=mark)


@pytest.mark.broker
async def test_no_discovery(chair_factory: ChairFactory) -> None:
    chair = await chair_factory(discovery=False)
    obs = chair.obs
    await obs.publish("homeassistant/status", "online")
    await obs.cmd("status")
    assert not [m for m in obs.messages if m.topic.startswith("homeassistant/device/")]
