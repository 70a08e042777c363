"""Programs delivered to a chair (docs/programs.md, Delivered programs): a program file arrives
as a command (`install_program`, from MQTT or any remote), is kept only when it passes `chair
validate`'s full verification, survives a restart, runs like a built-in, and is refused while a
session runs. A bad file changes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chair.commands.desk import CommandDesk
from chair.programs.model import builtin_programs
from chair.testing import TestingController
from core_rt.config import ChairConfig
from tests.mqtt_helpers import ChairFactory

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = pytest.mark.realtime  # paced sessions: with the wall-clock tests

DISCOVERY = "homeassistant/device/massagechair_chair1/config"
ROOT = Path(__file__).resolve().parents[1]
QUICK = (ROOT / "profiles" / "quick.toml").read_text(encoding="utf-8")
MINE = QUICK.replace('name = "quick"', 'name = "lounge_quick"').replace(
    'title = "Quick pick-me-up"', 'title = "Lounge quick"'
)
PRESSING_THE_NECK = MINE.replace(
    'from = "lumbar"\nto = "shoulders"\ndepth = 2', 'from = "lumbar"\nto = "neck"\ndepth = 5', 1
)
BAD = [
    ("not toml = = =", "toml"),
    (MINE.replace("[[steps]]", "[[stepz]]", 1), "stepz"),  # a schema error
    (PRESSING_THE_NECK, "depth"),  # a safety rule: the neck's cap is level 1
    (QUICK, "built-in"),  # a built-in's name
]


@pytest_asyncio.fixture
async def chair(tmp_path: Path) -> AsyncIterator[tuple[TestingController, CommandDesk]]:
    ctl = TestingController.create(ChairConfig(), speed=600, db=tmp_path / "chair.db")
    await ctl.open()
    ctl.serve()
    desk = CommandDesk(ctl, ctl.config)
    desk.attach()
    yield ctl, desk
    await ctl.close()


async def ask(desk: CommandDesk, **command: Any) -> dict[str, Any]:
    return await desk.submit(json.dumps(command).encode())


def test_the_bad_programs_are_what_they_claim() -> None:
    assert PRESSING_THE_NECK != MINE and 'to = "neck"\ndepth = 5' in PRESSING_THE_NECK


async def test_a_program_is_installed_runs_and_survives_a_restart(
    chair: tuple[TestingController, CommandDesk], tmp_path: Path
) -> None:
    ctl, desk = chair
    assert "lounge_quick" not in ctl.programs()
    reply = await ask(desk, id="p1", action="install_program", toml=MINE)
    assert reply["ok"], reply["error"]
    assert reply["program"]["name"] == "lounge_quick" and not reply["program"]["replaced"]
    assert len(reply["program"]["sha256"]) == 64
    assert ctl.programs()[-2:] == ["lounge_quick", "manual"]
    assert (await ask(desk, action="install_program", toml=MINE))["program"]["replaced"]

    # It runs like a built-in, and its record says which program it was.
    assert (await ask(desk, action="start", program="lounge_quick", minutes=5))["ok"]
    await ctl.wait_for_state({"running"}, timeout_s=30, what="running")
    assert ctl.state()["program"] == "lounge_quick"
    # Not while a session runs: neither a new one nor taking this one away.
    for command in ({"action": "install_program", "toml": MINE.replace("lounge_quick", "other")},
                    {"action": "remove_program", "program": "lounge_quick"}):  # fmt: skip
        refused = await ask(desk, **command)
        assert (refused["ok"], refused["error"]["code"]) == (False, "not_allowed"), refused
        assert refused["state"]["state"] == "running"
    assert "other" not in ctl.programs()
    await ctl.stop()
    await ctl.wait_for_state({"idle"}, timeout_s=60, what="settled")

    # A restart finds it in the database.
    await ctl.close()
    again = TestingController.create(ChairConfig(), speed=600, db=tmp_path / "chair.db")
    await again.open()
    try:
        assert "lounge_quick" in again.programs()
        desk2 = CommandDesk(again, again.config)
        desk2.attach()
        gone = await ask(desk2, action="remove_program", program="lounge_quick")
        assert gone["ok"] and "lounge_quick" not in again.programs()
        refused = await ask(desk2, action="remove_program", program="quick")
        assert refused["error"]["code"] == "unknown_program"  # built-ins stay
        assert (await ask(desk2, action="start", program="lounge_quick"))["error"]["code"] == (
            "unknown_program"
        )
    finally:
        await again.close()


@pytest.mark.parametrize(("source", "says"), BAD, ids=[says for _, says in BAD])
async def test_a_bad_program_is_refused_and_changes_nothing(
    chair: tuple[TestingController, CommandDesk], source: str, says: str
) -> None:
    ctl, desk = chair
    before = ctl.programs()
    reply = await ask(desk, action="install_program", toml=source)
    assert reply["ok"] is False and reply["error"]["code"] == "invalid_program", reply
    assert says in reply["error"]["message"], reply["error"]["message"]
    assert ctl.programs() == before
    assert ctl.store is not None and await ctl.store.programs() == {}
    assert set(builtin_programs()) < set(ctl.programs())


async def test_a_program_delivered_over_mqtt_reaches_home_assistants_program_list(
    chair_factory: ChairFactory, tmp_path: Path
) -> None:
    ctl = TestingController.create(ChairConfig(), speed=600, db=tmp_path / "chair.db")
    await ctl.open()
    ctl.serve()
    try:
        chair = await chair_factory(ctl=ctl)
        obs = chair.obs
        mark = obs.mark()
        reply = await obs.cmd("install_program", toml=MINE)
        assert reply["ok"], reply["error"]
        disc = await obs.wait_for(
            DISCOVERY, lambda m: "lounge_quick" in m.payload.decode(), since=mark
        )
        assert "lounge_quick" in disc.json()["cmps"]["program"]["options"]
    finally:
        await ctl.close()


async def test_a_page_learns_of_a_delivered_program_at_once(tmp_path: Path) -> None:
    """The web remote sends every page a fresh `hello` (its program list) when one arrives."""
    from tests.web_helpers import page, web_remote

    async with web_remote(speed=600, db=tmp_path / "chair.db") as remote, page(remote) as p:
        assert "lounge_quick" not in p.on("hello")[0]["programs"]
        reply = await p.command(action="install_program", toml=MINE)
        assert reply["ok"], reply["error"]
        hello = await p.wait_for("a new hello", lambda: p.on("hello")[1:])
        assert "lounge_quick" in hello[0]["programs"]
