"""The independent checker's therapist rules (docs/chair.md §3), judged from telemetry alone: the
roller never stands still deeper than level 1 for more than 1 s outside the press-and-hold
techniques, and the session's heat level holds from the program's start to the settle. Each rule
is shown to pass a real session and to catch the violation written into its telemetry."""

from __future__ import annotations

import copy
from typing import Any

from chair.checker import check_session
from core_rt.config import ChairConfig
from tests.session_helpers import Run, run_session

CONFIG = ChairConfig()


def _run() -> Run:
    run = run_session("relax", minutes=5, intensity=5, heat="medium", telemetry_hz=25)
    assert run.result.completed and run.violations == []
    return run


def _running(tlm: list[dict[str, Any]], technique: str) -> list[int]:
    return [i for i, s in enumerate(tlm) if s["state"] == "running" and s["technique"] == technique]


def test_a_halt_under_pressure_in_a_stroke_step_is_caught() -> None:
    run = _run()
    tlm = copy.deepcopy(run.telemetry)
    kneading = _running(tlm, "kneading")
    level1 = CONFIG.depth.level_mm(1)
    # a 1.5 s halt in the middle of a kneading pass, pressing at the depth it was at
    i = next(i for i in kneading[len(kneading) // 3 :] if tlm[i]["depth_mm"] > level1 + 1)
    for s in tlm[i : i + 38]:  # 25 Hz
        s["v_mm_s"] = 0.0
        s["depth_mm"] = tlm[i]["depth_mm"]
    found = check_session(tlm, run.summary, CONFIG)
    assert any("standing still pressing" in v for v in found), found
    # a 0.8 s halt is within the bound
    tlm = copy.deepcopy(run.telemetry)
    for s in tlm[i : i + 20]:
        s["v_mm_s"] = 0.0
        s["depth_mm"] = tlm[i]["depth_mm"]
    assert check_session(tlm, run.summary, CONFIG) == []


def test_holds_are_not_halts() -> None:
    run = run_session("shiatsu", minutes=5, intensity=5, telemetry_hz=25)
    assert run.violations == []
    # the shiatsu presses stand still deeper than level 1 (that is the technique)
    level1 = CONFIG.depth.level_mm(1)
    held = [
        s for s in run.telemetry
        if s["technique"] == "shiatsu" and s["v_mm_s"] == 0.0 and s["depth_mm"] > level1
    ]  # fmt: skip
    assert held


def test_heat_that_is_not_held_through_the_program_is_caught() -> None:
    run = _run()
    tlm = copy.deepcopy(run.telemetry)
    running = [s for s in tlm if s["state"] == "running"]
    target = CONFIG.heater.target_c("medium")
    assert all(s["heat_target_c"] == target for s in running[5:])  # held: the real session
    for s in running[len(running) // 2 : len(running) // 2 + 10]:
        s["heat_target_c"] = 0.0
    found = check_session(tlm, run.summary, CONFIG)
    assert any("heat target 0" in v for v in found), found


def test_a_heat_change_mid_session_moves_the_target_it_is_judged_by() -> None:
    run = run_session(
        "quick", minutes=5, heat="low", telemetry_hz=25,
        script=[(120.0, lambda s: s.request("heat", "high"))],
    )  # fmt: skip
    assert run.violations == [], run.violations
    assert [lv for _, lv in run.summary["heat_levels"]] == ["low", "high"]
    late = [s for s in run.telemetry if s["state"] == "running" and s["t"] > 121.0]
    assert late and all(s["heat_target_c"] == CONFIG.heater.target_c("high") for s in late)


def _manual_run() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from tests.test_manual_mode import run_manual

    changes = [(80.0, lambda s: s.request("manual", {"area": "spot", "zone": "lumbar"}))]
    summary, tlm = run_manual(
        {"technique": "knead_tap", "area": "partial", "zone": "upper_back", "tempo": 5},
        intensity=5, script=changes,
    )  # fmt: skip
    assert summary["completed"] and summary["safety"]["violations"] == []
    return summary, tlm


def _press(s: dict[str, Any]) -> float:
    """How far the heads press into the tissue (docs/chair.md §10)."""
    return float(s["depth_mm"] if s["press_mm"] is None else s["press_mm"])


def test_pressing_outside_the_manual_area_is_caught() -> None:
    summary, tlm = _manual_run()
    (_, first), (t_change, spot) = summary["manual"]
    level1 = CONFIG.depth.level_mm(1)
    # well after the change the heads press only in the spot; one sample moved 30 mm above it
    # (in the program: the manual area rules the running and paused states, not the settle)
    late = [
        i
        for i, s in enumerate(tlm)
        if s["t"] > t_change + 20 and _press(s) > level1 + 0.01 and s["state"] == "running"
    ]
    assert late
    bad = copy.deepcopy(tlm)
    bad[late[len(late) // 2]]["y_mm"] = spot["span_mm"][1] + 30.0
    found = check_session(bad, summary, CONFIG)
    assert any("outside the manual area" in v for v in found), found
    # the old area is allowed only until the heads have eased off: pressing back in it later
    # is caught too
    bad = copy.deepcopy(tlm)
    bad[late[-1]]["y_mm"] = 0.5 * sum(first["span_mm"])
    assert any("outside the manual area" in v for v in check_session(bad, summary, CONFIG))


def test_tapping_before_the_width_is_reached_is_caught() -> None:
    summary, tlm = _manual_run()
    bad = copy.deepcopy(tlm)
    i = next(i for i, s in enumerate(bad) if s["tap_hz"] > 0 and s["state"] == "running")
    bad[i]["width_mm"] += 5.0  # the width still moving while the heads tap
    found = check_session(bad, summary, CONFIG)
    assert any("while the width moves" in v for v in found), found


def test_a_surface_deeper_than_the_scan_is_caught_by_the_scans_accuracy_there() -> None:
    # docs/chair.md §10: within 3 mm of the scanned contour on the back, 5 mm above the shoulder
    # line (the scan's own accuracy on each)
    run = _run()
    shoulder = run.summary["body"]["shoulder_mm"]
    with_surface = [i for i, s in enumerate(run.telemetry) if s.get("surface_mm") is not None]
    back = next(i for i in with_surface if run.telemetry[i]["y_mm"] < shoulder - 50)
    neck = next(i for i in with_surface if run.telemetry[i]["y_mm"] > shoulder + 5)

    def deeper(i: int, mm: float) -> list[str]:
        tlm = copy.deepcopy(run.telemetry)
        tlm[i]["surface_mm"] += mm
        return [v for v in check_session(tlm, run.summary, CONFIG) if "scanned contour" in v]

    assert deeper(back, 4.0)
    assert deeper(neck, 4.0) == []
    assert deeper(neck, 6.0)
