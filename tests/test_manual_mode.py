"""Manual mode (docs/chair.md §8) without a broker: the cap matrix — every technique × area ×
zone × tempo {1, 5} × width {narrow, wide} × strength {1, 5} × per-zone strength {−2, +2} — as
segment plans that `check_plan` verifies, and a representative set of whole manual sessions in
virtual time (the real core and plant) that the independent checker passes with live changes."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from chair.api import CommandError
from chair.controller import Controller
from chair.programs.manual import (
    AREAS,
    MANUAL_TECHNIQUES,
    ManualSettings,
    manual_program,
    plan_segment,
    zone_centre_mm,
)
from chair.programs.validate import check_plan
from chair.session import S
from core_rt.config import ZONES, ChairConfig
from tests.session_helpers import press_of

CONFIG = ChairConfig()
SHOULDER = CONFIG.shoulder_for_height_mm(175)
ZONE_BANDS = CONFIG.zones_for_shoulder(SHOULDER)
FAR_POSE = (SHOULDER, CONFIG.width.park_mm, 0.0)  # where the scan leaves the heads


@pytest.mark.parametrize("technique", MANUAL_TECHNIQUES)
def test_every_manual_segment_keeps_every_rule(technique: str) -> None:
    cases = 0
    for area in AREAS:
        zones = ("upper_back",) if area == "whole" else ZONES  # whole: the zone does not matter
        for zone, tempo, width, strength, offset in itertools.product(
            zones, (1, 5), ("narrow", "wide"), (1, 5), (-2, 2)
        ):
            ms = ManualSettings(technique, area, zone, tempo, width)
            found = plan_segment(
                ms, zone_centre_mm(ZONE_BANDS, zone), CONFIG, SHOULDER, 1800.0, strength,
                "medium", FAR_POSE, dict.fromkeys(ZONES, offset),
            )  # fmt: skip
            assert found is not None, ms
            plan, step, _ = found
            label = f"{ms} strength {strength} offset {offset}"
            assert check_plan(plan, manual_program(ms), CONFIG, label=label) == []
            lo, hi = step.span_mm or (0.0, 0.0)
            assert plan.duration_s <= CONFIG.manual.max_segment_s + 1e-9
            # pressing (deeper than level 1) only inside the area, after the setup's travel
            deep = [a for a in plan.actions if a.axis == "depth" and a.value > _light(strength)]
            y = plan.start_y_mm
            for a in plan.actions:
                if a.axis == "carriage":
                    y = a.value
                elif a in deep:
                    assert lo - 1e-6 <= y <= hi + 1e-6, (label, y, lo, hi)
            cases += 1
    assert cases == 2 * 2 * 2 * 2 * (1 + 2 * len(ZONES))


def _light(strength: int) -> float:
    return CONFIG.depth.level_mm(1) * CONFIG.session.depth_factor(strength) + 1e-6


Script = list[tuple[float, Callable[[Any], Any]]]


def run_manual(
    manual: dict[str, Any],
    *,
    intensity: int = 3,
    zone_intensity: dict[str, int] | None = None,
    script: Script = (),  # type: ignore[assignment]
    minutes: float = 5,
    height: float = 175.0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One whole manual session in virtual time; `script`: (s, fn(session)) at that tick."""
    ctl = Controller.create(CONFIG, speed=None, pacing="fast", body_height_cm=height,
                            telemetry_hz=25)  # fmt: skip

    async def main() -> None:
        async with ctl:
            s = ctl._make_session(
                "manual", minutes=minutes, intensity=intensity, manual=manual,
                zone_intensity=zone_intensity,
            )  # fmt: skip
            ctl.session = s
            t0 = ctl.driver.now_ns()
            for at, fn in script:
                ctl.driver.call_at(t0 + round(at * S), lambda fn=fn: fn(s))  # type: ignore[misc]
            await ctl._run_session(s)

    asyncio.run(main())
    assert ctl.last_summary is not None
    return ctl.last_summary, ctl.last_telemetry


SESSIONS = [
    ({"technique": "kneading", "area": "whole", "tempo": 5, "width": "narrow"}, 5, {}),
    ({"technique": "knead_tap", "area": "partial", "zone": "lumbar", "tempo": 5}, 5,
     dict.fromkeys(ZONES, 2)),
    ({"technique": "tapping", "area": "spot", "zone": "neck", "tempo": 5, "width": "wide"}, 5,
     {"neck": 2}),
    ({"technique": "rolling", "area": "whole", "tempo": 1}, 1, dict.fromkeys(ZONES, -2)),
    ({"technique": "shiatsu", "area": "partial", "zone": "shoulders", "tempo": 1}, 5,
     {"shoulders": 2}),
    ({"technique": "vibration", "area": "spot", "zone": "glutes", "tempo": 5}, 5,
     dict.fromkeys(ZONES, 2)),
]  # fmt: skip


@pytest.mark.parametrize(("manual", "intensity", "offsets"), SESSIONS, ids=lambda x: str(x)[:40])
def test_whole_manual_sessions_pass_the_independent_checker(
    manual: dict[str, Any], intensity: int, offsets: dict[str, int]
) -> None:
    summary, tlm = run_manual(manual, intensity=intensity, zone_intensity=offsets)
    assert summary["completed"] and summary["safety"]["violations"] == [], summary["safety"]
    assert summary["program"] == "manual" and len(summary["manual"]) == 1
    row = summary["manual"][0][1]
    assert {k: row[k] for k in manual} == manual
    lo, hi = row["span_mm"]
    running = [s for s in tlm if s["state"] == "running"]
    assert all(s["technique"] == manual["technique"] for s in running)
    pressing = [s for s in running if press_of(s) > _light(intensity)]
    assert all(lo - 0.01 <= s["y_mm"] <= hi + 0.01 for s in pressing)
    if row["zone"] == "neck":  # the neck stays light however strong, and is never tapped
        assert not pressing and all(s["tap_hz"] == 0 for s in running if s["zone"] == "neck")
    elif manual["technique"] in ("kneading", "knead_tap", "shiatsu"):  # level 3 presses in
        assert pressing


def test_live_changes_take_effect_within_half_a_second() -> None:
    # from 90 s on: the body scan (with the back's contour, docs/chair.md §10) and the adjust
    # window are over by then
    changes: Script = [
        (90.0, lambda s: s.request("manual", {"technique": "tapping", "area": "spot"})),
        (120.0, lambda s: s.request("move", 200.0)),  # up to the neck: clamped to the body
        (150.0, lambda s: s.request("manual", {"tempo": 1, "width": "wide"})),
        (180.0, lambda s: s.request("manual", {"technique": "shiatsu", "zone": "sacrum"})),
        (210.0, lambda s: s.request("move", -200.0)),  # below the sacrum: clamped
        (240.0, lambda s: s.request("zone_intensity", {"glutes": 2})),
        (270.0, lambda s: s.request("manual", {"area": "whole", "technique": "rolling"})),
    ]
    summary, tlm = run_manual({"technique": "kneading", "zone": "upper_back"}, script=changes)
    assert summary["completed"] and summary["safety"]["violations"] == [], summary["safety"]
    rows = summary["manual"]
    assert len(rows) == 7  # the start and every change of area or settings (not the strength)
    for (t, row), after in zip(rows[1:], [c for c in changes if c[0] != 240.0], strict=True):
        assert t == pytest.approx(after[0], abs=0.01)
        seen = [s for s in tlm if t <= s["t"] <= t + 0.5]
        # the telemetry follows the new segment at once (its step and technique), and the
        # chair acts on it: the heads ease off from pressing, or the motion brakes
        assert seen and seen[-1]["technique"] == row["technique"]
        assert seen[-1]["step"] is not None and seen[-1]["step"] > seen[0]["step"] - 1
    zones = summary["body"]["zones"]
    neck_top = zones["neck"][1]
    at_neck = rows[2][1]
    assert at_neck["span_mm"][1] <= neck_top and at_neck["zone"] == "neck"
    bottom = rows[5][1]
    assert bottom["span_mm"][0] >= zones["glutes"][0] and bottom["zone"] == "glutes"
    assert summary["zone_intensity"] == {"glutes": 2}


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda c: c.set(manual={"technique": "kneading"}), "not_manual"),
        (lambda c: c.move(25), "not_manual"),
        (lambda c: c.move(201), "out_of_range"),
        (lambda c: c.set(manual={"tempo": 0}), "out_of_range"),
        (lambda c: c.set(manual={"tempo": 6}), "out_of_range"),
        (lambda c: c.set(manual={"technique": "tickle"}), "out_of_range"),
        (lambda c: c.set(manual={"area": "half"}), "out_of_range"),
        (lambda c: c.set(manual={"zone": "head"}), "unknown_zone"),
        (lambda c: c.start("relax", manual={"technique": "kneading"}), "not_manual"),
    ],
)
def test_bad_manual_input_is_refused_with_its_code(call: Any, code: str) -> None:
    async def main() -> None:
        ctl = Controller.create(CONFIG, speed=None, pacing="fast")
        async with ctl:
            before = ctl.state()
            with pytest.raises(CommandError) as e:
                await call(ctl)
            assert e.value.code == code, e.value.message
            assert ctl.state() == before

    asyncio.run(main())
