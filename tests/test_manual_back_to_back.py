"""Manual mode steered as fast as a remote can send (docs/chair.md §8): each change starts a new
segment from where the heads are, and the next change may come while the last one still eases
off. A change of strength arriving then once crashed the session ("plan timeline changed"), and
the controller e-stopped the chair; every change must be taken, the session running on."""

from __future__ import annotations

import json

import pytest

from chair.commands.desk import CommandDesk
from chair.testing import TestingController
from core_rt.config import ChairConfig

pytestmark = pytest.mark.realtime  # paced virtual time: run with the wall-clock tests

CHANGES = [
    {"action": "set", "manual": {"technique": "tapping"}},
    {"action": "move", "mm": 25},
    {"action": "set", "zone_intensity": {"shoulders": 1}},
    {"action": "set", "intensity": 4},
    {"action": "set", "heat": "low"},
    {"action": "set", "manual": {"area": "partial", "tempo": 5}},
    {"action": "set", "zone_intensity": {"upper_back": -1}},
    {"action": "move", "mm": -50},
    {"action": "set", "intensity": 2},
]


async def test_changes_back_to_back_never_crash_the_session() -> None:
    ctl = TestingController.create(ChairConfig(), speed=60)
    await ctl.open()
    ctl.serve()
    desk = CommandDesk(ctl, ctl.config)
    desk.attach()
    try:
        for attempt in range(5):
            manual = {"technique": "kneading", "area": "spot", "zone": "shoulders"}
            start = {"action": "start", "program": "manual", "manual": manual}
            assert (await desk.submit(json.dumps(start).encode()))["ok"]
            await ctl.wait_for_state({"running"}, timeout_s=30, what="running")
            for change in CHANGES:  # each sent the moment the last one is answered
                reply = await desk.submit(json.dumps(change).encode())
                assert reply["ok"], (attempt, change, reply["error"])
                assert reply["state"]["state"] == "running", (attempt, change, reply["state"])
            state = ctl.state()
            assert state["fault"] is None and state["state"] == "running"
            assert state["intensity"] == 2 and state["heat"]["level"] == "low"
            assert state["zone_intensity"] == {"shoulders": 1, "upper_back": -1}
            assert state["manual"]["technique"] == "tapping" and state["manual"]["tempo"] == 5
            assert (await desk.submit(b'{"action":"stop"}'))["ok"]
            await ctl.wait_for_state({"idle"}, timeout_s=60, what="settled")
    finally:
        await ctl.close()
