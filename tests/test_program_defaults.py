"""A program's `default_intensity`/`default_heat` apply when the user does not choose
(docs/chair.md §3), on every path: `chair run`, the controller's `start` (MQTT, `chair remote`).
Precedence: the start's own value > a `set` between sessions (for the next session only) > the
program's default (docs/mqtt.md, Commands and replies). The state's `heat.target_c` is the
chosen level's target for the whole session, and the live view shows it with the intensity.

The controller tests hold the simulated clock (`chair.testing`): each check happens in a known
state, and every wait is on a state, never on a fixed time.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from rich.console import Console

from chair.cli import main as chair_main
from chair.cli.common import EXIT_OK
from chair.display import LiveView
from chair.programs.model import load_program
from chair.testing import TestingController
from core_rt.config import ChairConfig

CONFIG = ChairConfig()
DEEP, LUMBAR, QUICK = (load_program(n) for n in ("deep_tissue", "lumbar_heat", "quick"))


def test_the_programs_used_here_have_defaults_worth_testing() -> None:
    """The tests below prove nothing if the defaults were the chair's own."""
    assert DEEP.default_intensity == 4 != CONFIG.session.default_intensity
    assert LUMBAR.default_heat not in ("off", None) and QUICK.default_heat == "off"


# ---- chair run -----------------------------------------------------------------------------------


def chair_run(tmp_path: Path, *args: str) -> dict[str, Any]:
    """`chair run ... --fast` in this process; returns the summary."""
    summary = tmp_path / "summary.json"
    rc = chair_main(
        ["run", *args, "--fast", "--quiet", "--minutes", "5", "--summary", str(summary)]
    )
    assert rc == EXIT_OK  # the session ran to its end and every safety check held
    result: dict[str, Any] = json.loads(summary.read_text())
    return result


@pytest.mark.parametrize(
    ("program", "intensity", "heat"),
    [("deep_tissue", DEEP.default_intensity, DEEP.default_heat), ("lumbar_heat", 3, "medium")],
)
def test_chair_run_without_intensity_or_heat_runs_at_the_programs_defaults(
    tmp_path: Path, program: str, intensity: int, heat: str
) -> None:
    summary = chair_run(tmp_path, program)
    assert (summary["intensity"], summary["heat"]) == (intensity, heat)
    assert summary["completed"]


def test_chair_run_options_win_over_the_programs_defaults(tmp_path: Path) -> None:
    summary = chair_run(tmp_path, "lumbar_heat", "--intensity", "2", "--heat", "low")
    assert (summary["intensity"], summary["heat"]) == (2, "low")


# ---- the controller's start (MQTT `start`, `chair remote start`) ---------------------------------


@pytest_asyncio.fixture
async def ctl() -> AsyncIterator[TestingController]:
    # paced at 600 x like the MQTT tests' controller: well within what the core keeps up with
    c = TestingController.create(CONFIG, speed=600)
    assert isinstance(c, TestingController)
    await c.open()
    c.serve()
    c.hold()  # simulated time runs only when a command grants it or a test advances it
    try:
        yield c
    finally:
        await c.close()


class Events:
    def __init__(self, c: TestingController) -> None:
        self.seen: list[dict[str, Any]] = []
        c.on_event(self.seen.append)

    def started(self) -> dict[str, Any]:
        found = [e for e in self.seen if e["event"] == "session_started"]
        assert len(found) == 1, self.seen
        return found[0]


async def start(c: TestingController, program: str, **choices: Any) -> dict[str, Any]:
    """Start with the clock held: the session stays in its scan (the answer to the start)."""
    await c.start(program, **choices)
    st = c.state()
    assert st["state"] == "scanning" and st["program"] == program, st
    return st


async def finish(c: TestingController) -> dict[str, Any]:
    """Stop the session, let it settle; the controller's summary of it."""
    c.release()
    await c.stop()
    await c.wait_session()
    c.hold()
    assert c.last_summary is not None
    return c.last_summary


def chosen(st: dict[str, Any]) -> tuple[int | None, str | None, float]:
    return st["intensity"], st["heat"]["level"], st["heat"]["target_c"]


async def test_start_without_intensity_runs_at_the_programs_default(ctl: TestingController) -> None:
    events = Events(ctl)
    st = await start(ctl, "deep_tissue")
    assert st["intensity"] == DEEP.default_intensity == 4
    await ctl.advance_until("running")
    assert ctl.state()["intensity"] == 4
    assert events.started()["intensity"] == 4
    summary = await finish(ctl)
    assert summary["intensity"] == 4 and summary["program"] == "deep_tissue"


async def test_start_without_heat_runs_at_the_programs_default_heat(
    ctl: TestingController,
) -> None:
    events = Events(ctl)
    medium = CONFIG.heater.target_c("medium")
    st = await start(ctl, "lumbar_heat")
    assert chosen(st) == (LUMBAR.default_intensity, "medium", medium)
    await ctl.advance_until("running")
    assert chosen(ctl.state()) == (3, "medium", medium)
    assert events.started()["heat"] == "medium"
    summary = await finish(ctl)
    assert summary["heat"] == "medium"


async def test_the_starts_own_values_win_over_the_programs_defaults(
    ctl: TestingController,
) -> None:
    events = Events(ctl)
    st = await start(ctl, "lumbar_heat", intensity=5, heat="off")
    assert chosen(st) == (5, "off", 0.0)
    assert (events.started()["intensity"], events.started()["heat"]) == (5, "off")
    summary = await finish(ctl)
    assert (summary["intensity"], summary["heat"]) == (5, "off")


async def test_a_set_between_sessions_is_for_the_next_session_only(
    ctl: TestingController,
) -> None:
    # nothing chosen yet: the idle state says so
    assert chosen(ctl.state()) == (None, None, 0.0)
    await ctl.set(intensity=2, heat="high")
    assert chosen(ctl.state()) == (2, "high", CONFIG.heater.target_c("high"))

    events = Events(ctl)
    st = await start(ctl, "deep_tissue")  # deep_tissue's own: 4, off
    assert chosen(st) == (2, "high", CONFIG.heater.target_c("high"))
    assert (events.started()["intensity"], events.started()["heat"]) == (2, "high")
    summary = await finish(ctl)
    assert (summary["intensity"], summary["heat"]) == (2, "high")

    # consumed by that start: the next session is back to the program's defaults
    assert chosen(ctl.state()) == (None, None, 0.0)
    st = await start(ctl, "deep_tissue")
    assert chosen(st) == (4, "off", 0.0)
    await finish(ctl)


async def test_the_starts_own_value_wins_over_a_set_between_sessions(
    ctl: TestingController,
) -> None:
    await ctl.set(intensity=1, heat="low")
    st = await start(ctl, "lumbar_heat", intensity=5)
    assert chosen(st) == (5, "low", CONFIG.heater.target_c("low"))  # heat: the set's
    await finish(ctl)
    st = await start(ctl, "lumbar_heat", heat="high")  # the set was consumed by the last start
    assert chosen(st) == (LUMBAR.default_intensity, "high", CONFIG.heater.target_c("high"))
    await finish(ctl)


# ---- heat.target_c and the live view -------------------------------------------------------------


def render(c: TestingController) -> str:
    console = Console(width=160, record=True, color_system=None)
    console.print(LiveView(c, CONFIG, QUICK).render())
    return console.export_text()


async def test_the_states_target_is_the_chosen_levels_all_session(ctl: TestingController) -> None:
    """Whatever the heater regulates to at the moment (the telemetry's `heat_target_c`: 0 during
    the scan, before the program starts), the state's `heat.target_c` is the target of the level
    the user chose (`quick` has no heat step of its own)."""
    low = CONFIG.heater.target_c("low")
    assert low > 0
    st = await start(ctl, "quick", heat="low")
    assert st["heat"] == {**st["heat"], "level": "low", "target_c": low}
    tl = ctl.telemetry()
    assert tl is not None and tl["state"] == "scanning" and tl["heat_target_c"] == 0.0
    text = render(ctl)
    assert f"target {low:g} °C" in text
    assert f"{QUICK.default_intensity}/{CONFIG.session.max_intensity}" in text

    await ctl.advance_until("running")
    st = ctl.state()
    assert st["heat"]["level"] == "low" and st["heat"]["target_c"] == low
    assert st["intensity"] == QUICK.default_intensity
    text = render(ctl)
    assert "intensity" in text and f"{QUICK.default_intensity}/5" in text
    assert f"low (target {low:g} °C, pad " in text
    assert "target 0 °C" not in text

    await ctl.set(intensity=5)  # a set during the session shows at once
    assert "5/5" in render(ctl)
    await finish(ctl)


async def test_heat_off_shows_no_target(ctl: TestingController) -> None:
    st = await start(ctl, "quick")
    assert chosen(st) == (QUICK.default_intensity, "off", 0.0)
    text = render(ctl)
    assert "off (pad " in text and "target" not in text
    await finish(ctl)
