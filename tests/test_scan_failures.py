"""Body scans that go wrong (docs/chair.md §10): detected, said in words, the session ends
safely — the heads never press deeper than the scan's light touch and come back first."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from chair.contour import scan_problem
from chair.store import outcome_of
from core_rt.config import ChairConfig
from core_rt.records import SurfaceSample
from sim import PlantParams, SimPlant
from sim.model import BodyParams
from tests.session_helpers import run_session

CFG = ChairConfig()
K = CFG.contour


def _after_scanning(telemetry: list[dict[str, Any]]) -> tuple[float, list[dict[str, Any]]]:
    """The depth at the scan's last sample, and every sample after the scan."""
    last = max(i for i, s in enumerate(telemetry) if s["state"] == "scanning")
    return telemetry[last]["depth_mm"], telemetry[last + 1 :]


@pytest.mark.parametrize("back", [None, "normal"])
@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("lean_forward@25s", "leaning forward"),  # low on the back
        ("lean_forward@45s", "leaning forward"),  # near the shoulders
        ("shift@30s", "a jump in its contour"),
        ("shift@48s", "a jump in its contour"),
    ],
)
def test_a_scan_gone_wrong_ends_the_session_with_its_reason_and_never_presses_deeper(
    fault: str, says: str, back: str | None
) -> None:
    run = run_session(faults=[fault], back=back)
    assert run.result.end_reason == "scan_failed"
    assert any("body scan went wrong" in n and says in n for n in run.result.notes)
    assert outcome_of(run.result.end_reason) == "stopped"
    assert run.summary["body"]["contour"] == [] and run.result.contour is None
    assert run.result.plan is None  # no program ran on a contour that cannot be trusted
    assert run.violations == []
    depth_at_end_of_scan, after = _after_scanning(run.telemetry)
    assert after and all(s["depth_mm"] <= depth_at_end_of_scan + 1e-9 for s in after)
    depths = [s["depth_mm"] for s in after]
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(depths))  # only back
    assert depths[-1] <= CFG.depth.retracted_mm


def test_a_scan_interrupted_by_a_fault_stops_where_it_is_and_presses_no_deeper() -> None:
    """The carriage jams mid-scan: the fault is latched, the core brakes every axis (the
    following ends with it), the depth never goes further in."""
    run = run_session(faults=["stall:carriage@35s"], back="lordosis")
    assert run.result.end_reason == "fault"
    assert [f.code for f in run.result.faults] == ["stall"]
    assert not any("body scan went wrong" in n for n in run.result.notes)  # a fault, no verdict
    t_fault = run.result.faults[0].t
    at_fault = max(s["depth_mm"] for s in run.telemetry if abs(s["t"] - t_fault) <= 0.02)
    after = [s for s in run.telemetry if s["t"] > t_fault + 0.02]
    assert after and max(s["depth_mm"] for s in after) <= at_fault + 0.5  # braking from v
    assert run.result.contour is None


def _sample(y: float, skin: float, press_mm: float = 1.5) -> SurfaceSample:
    load = press_mm * K.load_a_per_mm
    return SurfaceSample(0, y, skin + press_mm, load, load)


def test_scan_problem_golden_cases() -> None:
    good = [_sample(300.0 + 5 * i, 5.0 + 0.3 * i) for i in range(100)]
    assert scan_problem(good, 790.0, K) is None
    # a hollow 3 mm deeper every 5 mm is a back's curve, not a jump
    steep = [_sample(300.0 + 5 * i, 5.0 + 3.0 * i) for i in range(10)]
    assert scan_problem(steep, 340.0, K) is None
    gap = good[:40] + good[46:]  # 35 mm without contact
    assert "left the heads between 495 and 530 mm" in (scan_problem(gap, 790.0, K) or "")
    jump = good[:50] + [_sample(s.y_mm, s.depth_mm - 1.5 - 6.0) for s in good[50:]]
    assert "moved -6 mm at 550 mm" in (scan_problem(jump, 790.0, K) or "")
    leaves = good[:40]  # never touched again up to the shoulder
    assert "left the heads above 495 mm" in (scan_problem(leaves, 790.0, K) or "")
    off = [SurfaceSample(0, 300.0 + 5 * i, 20.0, 0.0, 0.03) for i in range(20)]
    assert scan_problem(off, 790.0, K) == "the heads touched no back"
    # above the shoulder (the neck's ramp) gaps are no problem
    assert scan_problem(good[:80] + good[95:], 690.0, K) is None


@pytest.mark.parametrize("back", [None, "normal"])
def test_leaning_forward_and_shifting_move_the_whole_back(back: str | None) -> None:
    plant = SimPlant(CFG, seed=1, params=PlantParams(body=BodyParams(back=back)))  # type: ignore[arg-type]
    y = 600.0
    before = plant.true_surface_mm(y)
    plant.inject("shift@0s")
    plant.step({"pos_mm": (y, 130.0, 0.0)})
    assert plant.true_surface_mm(y) == pytest.approx(before - BodyParams().shift_mm)
    plant.inject("lean_forward@0s")
    s = plant.step({"pos_mm": (y, 130.0, before + 10.0)}, n=8000)
    assert plant.true_surface_mm(y) == pytest.approx(
        before - BodyParams().shift_mm + BodyParams().lean_forward_mm
    )
    assert abs(s["depth_load_a"]) < 0.01  # out of reach of a light touch
