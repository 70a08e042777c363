"""Per-zone strength (docs/chair.md §8, "more here, softer there"): an offset of −2..2 depth
levels per zone on top of the intensity, for programs and manual mode alike, always clamped to the
zone's cap and to level 1. Checked on plans, on whole sessions in virtual time (the real core and
plant; the independent checker judges the caps per zone from telemetry) and on bad input."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest

from chair.api import CommandError
from chair.checker import zone_at
from chair.controller import Controller
from chair.programs.model import load_program
from chair.programs.plan import SessionPlan, build_plan, zone_of
from chair.programs.validate import check_plan
from chair.requests import StartRequest, parse_request
from core_rt.config import ZONES, ChairConfig
from tests.session_helpers import Run, press_of, run_session

CONFIG = ChairConfig()
SHOULDER = CONFIG.shoulder_for_height_mm(175)
UP = dict.fromkeys(ZONES, 2)
DOWN = dict.fromkeys(ZONES, -2)


def cap_mm(zone: str) -> float:
    return CONFIG.depth.level_mm(CONFIG.body.zone_caps[zone].depth_level)


def deepest_by_zone(plan: SessionPlan) -> dict[str, float]:
    """The deepest depth goal the plan reaches in each zone (where the carriage stands)."""
    y = plan.start_y_mm
    out: dict[str, float] = defaultdict(float)
    for a in plan.actions:
        if a.axis == "carriage":
            y = a.value
        elif a.axis == "depth":
            z = zone_of(plan.zones, y)
            if z is not None:
                out[z] = max(out[z], a.value)
    return dict(out)


@pytest.mark.parametrize("name", ["deep_tissue", "shiatsu", "neck_shoulders"])
def test_extremes_change_depth_within_every_cap(name: str) -> None:
    prog = load_program(name)
    plans = {
        key: build_plan(prog, CONFIG, SHOULDER, 10, 4, "off", zone_intensity=zi)
        for key, zi in (("none", {}), ("up", UP), ("down", DOWN))
    }
    for plan in plans.values():
        assert check_plan(plan, prog, CONFIG) == []
    deep = {k: deepest_by_zone(p) for k, p in plans.items()}
    level1 = CONFIG.depth.level_mm(1) * CONFIG.session.depth_factor(4)
    for z in deep["none"]:
        assert deep["down"][z] <= deep["none"][z] + 1e-9 <= deep["up"][z] + 2e-9, z
        # never deeper than the cap, however strong
        assert deep["up"][z] <= cap_mm(z) + 1e-9, z
        # never lighter than level 1 where the step presses
        assert deep["down"][z] >= level1 - 1e-9, z
    # where the cap leaves room, +2 presses deeper and -2 lighter
    room = [z for z in deep["none"] if deep["none"][z] < cap_mm(z) * 0.8 - 1e-9]
    assert room and all(deep["up"][z] > deep["none"][z] + 1 for z in room), (room, deep)
    if "neck" in deep["none"]:
        assert deep["up"]["neck"] <= CONFIG.depth.level_mm(1) + 1e-9  # the neck stays light


def test_one_zone_changes_only_where_the_heads_press_in_it() -> None:
    prog = load_program("deep_tissue")
    base = build_plan(prog, CONFIG, SHOULDER, 10, 3, "off")
    up = build_plan(prog, CONFIG, SHOULDER, 10, 3, "off", zone_intensity={"upper_back": 2})
    # the friction step works in the upper back alone: deeper; the trigger points (shoulders
    # alone) are untouched; a pass crossing mid_back..shoulders takes the softest offset (0)
    by_step: dict[int, list[float]] = defaultdict(list)
    for a, b in zip(base.actions, up.actions, strict=True):
        if a.axis == "depth":
            by_step[a.step].append(b.value - a.value)
    techniques = [s.technique for s in base.steps]
    friction, trigger = techniques.index("friction"), techniques.index("trigger_point")
    assert max(by_step[friction]) > 1
    assert all(abs(d) < 1e-9 for d in by_step[trigger])
    assert all(abs(d) < 1e-9 for d in by_step[1])  # rolling mid_back..shoulders


def _deepest_in_telemetry(run: Run, since_s: float = 0.0) -> dict[str, float]:
    zones = run.summary["body"]["zones"]
    out: dict[str, float] = defaultdict(float)
    for s in run.telemetry:
        if s["state"] == "running" and s["t"] >= since_s:
            z = zone_at(s["y_mm"], zones)
            if z is not None:
                out[z] = max(out[z], press_of(s))
    return dict(out)


def test_a_whole_session_at_the_extremes_keeps_every_cap() -> None:
    run = run_session("neck_shoulders", minutes=5, intensity=5, zone_intensity=UP, telemetry_hz=25)
    assert run.result.completed and run.violations == [], run.violations
    assert run.summary["zone_intensity"] == UP
    deep = _deepest_in_telemetry(run)
    for z, d in deep.items():
        assert d <= cap_mm(z) + 1e-6, (z, d)
    assert deep["neck"] <= CONFIG.depth.level_mm(1) + 1e-6  # the neck stays light at +2
    assert deep["shoulders"] > CONFIG.depth.level_mm(4)  # +2 reaches past the program's level


def test_a_set_mid_session_takes_effect() -> None:
    # shoulders softened by 2 levels from 150 s: the trigger points there press lighter
    prog = load_program("deep_tissue")
    change_s = 150.0
    run = run_session(
        prog, minutes=5, intensity=5, telemetry_hz=25,
        script=[(change_s, lambda s: s.request("zone_intensity", {"shoulders": -2}))],
    )  # fmt: skip
    assert run.result.completed and run.violations == [], run.violations
    assert run.summary["zone_intensity"] == {"shoulders": -2}
    plain = build_plan(prog, CONFIG, run.result.shoulder_mm or SHOULDER, 5, 5, "off")
    trigger = next(s for s in plain.steps if s.technique == "trigger_point")
    start = next(s["t"] for s in run.telemetry if s["state"] == "running")
    assert start + trigger.start_s > change_s  # the step runs after the change
    held = [
        press_of(s) for s in run.telemetry
        if s["state"] == "running" and s["technique"] == "trigger_point"
    ]  # fmt: skip
    program_level = CONFIG.depth.level_mm(4)  # trigger_point at depth 4, intensity 5
    assert held and max(held) <= CONFIG.depth.level_mm(2) + 1e-6 < program_level


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ({"neck": 3}, "out_of_range"),
        ({"lumbar": -3}, "out_of_range"),
        ({"head": 1}, "unknown_zone"),
        ({"neck": "1"}, "bad_field"),
        ({"neck": 1.5}, "bad_field"),
        ({"neck": True}, "bad_field"),
        ([1, 2], "bad_field"),
        ("neck=1", "bad_field"),
    ],
)
def test_bad_zone_intensity_is_refused_with_its_code(value: Any, code: str) -> None:
    with pytest.raises(CommandError) as e:
        parse_request(StartRequest, {"program": "relax", "zone_intensity": value}, CONFIG)
    assert e.value.code == code and "zone_intensity" in e.value.message


def test_a_refused_set_changes_nothing() -> None:
    async def main() -> None:
        ctl = Controller.create(CONFIG, speed=None, pacing="fast")
        async with ctl:
            await ctl.set(zone_intensity={"shoulders": 1, "lumbar": -1})
            before = ctl.state()
            for bad in ({"shoulders": 3}, {"head": 1}, {"lumbar": "x"}):
                with pytest.raises(CommandError):
                    await ctl.set(zone_intensity=bad)
                assert ctl.state() == before
            assert before["zone_intensity"] == {"lumbar": -1, "shoulders": 1}
            await ctl.set(zone_intensity={"lumbar": 0})  # 0 clears a zone
            assert ctl.state()["zone_intensity"] == {"shoulders": 1}

    asyncio.run(main())
