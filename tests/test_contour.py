"""The contour scan (docs/chair.md §10): the depth axis follows the skin by its load in the core,
the session turns the samples into the back's contour and the shoulder line."""

from __future__ import annotations

import itertools
import math

import pytest

from chair.contour import BackContour, SkinPoint, find_shoulder, skin_points
from chair.session import Session
from core_rt.config import ChairConfig
from core_rt.core import Core
from sim import PlantParams, SimPlant
from sim.back import BACK_SHAPES
from sim.model import BodyParams
from tests.session_helpers import run_session

CFG = ChairConfig()
S = 1_000_000_000
FAMILIES = (None, *BACK_SHAPES)
SCAN_ERROR_MAX_MM = 3.0
"""On the back, from the glutes to the shoulder line."""
NECK_ERROR_MAX_MM = 5.0
"""On the neck, whose soft tissue the light touch presses furthest."""
SCAN_ERROR_RMS_MM = 1.0
SHOULDER_ERROR_MM = 10.0


def _errors(back: BackContour, plant: SimPlant, lo: float = 0.0, hi: float = 1e9) -> list[float]:
    return [p.surface_mm - plant.true_surface_mm(p.y_mm) for p in back.points if lo <= p.y_mm <= hi]


@pytest.mark.parametrize("height", [140.0, 200.0])
@pytest.mark.parametrize("back", FAMILIES)
def test_a_session_scans_the_contour_and_the_shoulder_from_the_load(
    back: str | None, height: float
) -> None:
    """Every back family at both ends of the heights: the scanned surface within 3 mm of the
    plant's truth on the back and 5 mm on the neck (RMS 1 mm), at most 10 mm apart from the
    glutes to the shoulder, and the shoulder within 10 mm; published in the summary and the
    state."""
    run = run_session(height=height, seed=3, back=back)
    plant = run.controller.hardware
    assert isinstance(plant, SimPlant)
    contour = run.result.contour
    assert contour
    errors = _errors(contour, plant)
    back_errors = _errors(contour, plant, hi=plant.true_shoulder_mm)
    assert max(abs(e) for e in back_errors) <= SCAN_ERROR_MAX_MM
    assert max(abs(e) for e in errors) <= NECK_ERROR_MAX_MM
    assert math.sqrt(sum(e * e for e in errors) / len(errors)) <= SCAN_ERROR_RMS_MM
    glutes_lo = run.summary["body"]["zones"]["glutes"][0]
    assert contour.largest_gap_mm(glutes_lo + CFG.contour.sample_mm, plant.true_shoulder_mm) <= 10.0
    assert run.result.shoulder_mm is not None
    assert abs(run.result.shoulder_mm - plant.true_shoulder_mm) <= SHOULDER_ERROR_MM
    pairs = run.summary["body"]["contour"]
    assert pairs == contour.as_pairs()
    assert all(b[0] > a[0] for a, b in itertools.pairwise(pairs))
    state = run.controller.state()["contour"]
    assert state and all(b[0] - a[0] >= 10.0 for a, b in itertools.pairwise(state))
    if back is None:  # the flat back: depth is press, and the whole session is judged by it
        assert run.violations == []


def test_the_contour_is_the_loads_not_the_plants_truth() -> None:
    """The contour comes from what the core sampled: the same samples give the same contour
    whatever the plant says now, and shifting every sample's depth shifts the skin with it."""
    core, plant = _scan_core("lordosis")
    samples = core.drain_surface()
    assert len(samples) > 100
    back = skin_points(samples, CFG.contour)
    plant.set_occupied(False)  # the truth changes; the samples do not
    assert skin_points(samples, CFG.contour) == back
    from core_rt.records import SurfaceSample

    shifted = [
        SurfaceSample(s.t_ns, s.y_mm, s.depth_mm + 5.0, s.load_a, s.target_a) for s in samples
    ]
    moved = skin_points(shifted, CFG.contour)
    assert [round(p.surface_mm - 5.0, 9) for p in moved.points] == [
        round(p.surface_mm, 9) for p in back.points
    ]


def _scan_core(shape: str | None, height: float = 175.0) -> tuple[Core, SimPlant]:
    body = BodyParams(back=shape)  # type: ignore[arg-type]
    plant = SimPlant(CFG, body_height_cm=height, seed=1, params=PlantParams(body=body))
    core = Core(CFG, plant)
    t = 0

    def run(seconds: float) -> None:
        nonlocal t
        end = t + round(seconds * S)
        while t < end:
            core.heartbeat()
            t = core.run_until(min(end, t + 100_000_000), stop_on_event=False)

    core.move("depth", 0.0)
    core.move("width", CFG.width.medium_mm)
    core.move("carriage", 150.0)
    run(14)
    core.follow_contour(True)
    run(3)
    core.move("carriage", 1100.0, v_max=CFG.contour.speed_mm_s)
    run(42)
    core.follow_contour(False)
    run(1)
    return core, plant


@pytest.mark.parametrize("shape", ["lordosis", "broad_blades"])
def test_following_the_skin_stays_within_the_depth_axis_limits_and_never_presses_hard(
    shape: str,
) -> None:
    """The core's following is jerk-limited motion like any other (the guard checks every
    tick: no fault), it keeps inside the depth range, and it touches lightly: the tissue is
    never pressed more than the light level (8 mm) anywhere, the neck's soft tissue included."""
    body = BodyParams(back=shape)  # type: ignore[arg-type]
    plant = SimPlant(CFG, body_height_cm=175.0, seed=2, params=PlantParams(body=body))
    core = Core(CFG, plant, telemetry_hz=1000)
    core.move("depth", 0.0)
    core.move("width", CFG.width.medium_mm)
    core.move("carriage", 150.0)
    t = 0
    press_max = 0.0
    depths: list[float] = []

    def run(seconds: float) -> None:
        nonlocal t, press_max
        end = t + round(seconds * S)
        while t < end:
            core.heartbeat()
            t = core.run_until(min(end, t + 20_000_000), stop_on_event=False)
            press_max = max(press_max, plant.state()["press_mm"])
            depths.extend(r.depth_mm for r in core.drain_telemetry())

    run(14)
    depths.clear()
    core.follow_contour(True)
    run(3)
    core.move("carriage", 1050.0, v_max=CFG.contour.speed_mm_s)
    run(40)
    assert core.snapshot()["following"]
    core.follow_contour(False)
    run(1)
    assert not core.snapshot()["following"]
    assert [e for e in core.drain_events() if e.kind == "fault"] == []
    assert core.snapshot()["mode"] == "run"
    assert min(depths) >= CFG.depth.min_mm and max(depths) <= CFG.depth.max_mm
    assert max(depths) > 20.0  # it did reach into the hollow and onto the neck
    assert press_max <= CFG.depth.level_mm(1)
    # jerk-limited: the commanded depth's second difference stays within a_max (1 kHz samples)
    dt = 1e-3
    accel = [
        (a - 2 * b + c) / dt**2 for a, b, c in zip(depths, depths[1:], depths[2:], strict=False)
    ]
    assert max(abs(a) for a in accel) <= CFG.depth.limits.a_max * 1.01


def test_a_brake_or_a_fault_ends_the_following() -> None:
    core, _ = _scan_core("normal")
    core.follow_contour(True)
    t = core.run_until(core.now_ns + 500_000_000, stop_on_event=False)
    assert core.snapshot()["following"]
    core.brake()
    core.run_until(t + 2 * S, stop_on_event=False)
    snap = core.snapshot()
    assert not snap["following"] and not snap["busy"]["depth"]


def test_nobody_seated_the_heads_touch_nothing_and_the_session_says_so() -> None:
    """An empty chair: the scan finds no back (the seat's switch too, in time); the session
    ends with the reason, the heads retracted, and no contour."""
    run = run_session(faults=["occupant_leaves@0s"], back="normal")
    assert run.result.end_reason == "no_occupant"
    assert not run.result.contour
    assert run.telemetry[-1]["depth_mm"] <= CFG.depth.retracted_mm


def _points(*yks: tuple[float, float, float]) -> BackContour:
    return BackContour(tuple(SkinPoint(y, s, k, True) for y, s, k in yks))


def test_the_shoulder_is_where_the_neck_curves_away_from_the_back() -> None:
    """Golden cases of `find_shoulder`: a recessed neck (the knee below its soft tissue), a
    neck in line with the back (where the soft tissue begins), none at all."""
    k = CFG.contour
    back = [(700.0 + 5 * i, 10.0, 1.1) for i in range(40)]  # 700..895 at 10 mm
    ramp = [(900.0 + 5 * i, 10.0 + 3.0 * i, 1.0) for i in range(1, 6)]  # climbs 0.6 mm/mm
    neck = [(930.0 + 5 * i, 26.0, 0.3) for i in range(8)]
    assert find_shoulder(_points(*back, *ramp, *neck), 700.0, k) == 895.0
    flat_neck = [(900.0 + 5 * i, 10.0, 0.3) for i in range(8)]
    assert find_shoulder(_points(*back, *flat_neck), 700.0, k) == 900.0
    assert find_shoulder(_points(*back), 700.0, k) is None


def test_a_nudge_down_never_puts_the_neck_top_below_where_the_scan_reached() -> None:
    """The user's nudge opens at −50 mm (a remembered offset): on a short body the contour
    scan's heads reached higher than the neck's top would then be, so the nudge is limited
    (a note says so) and the checker finds the heads never pressed above the neck."""

    def remembered_offset(session: Session) -> None:
        session._start_adjust_mm = -CFG.body.adjust_mm  # what a user's memory opens it at

    run = run_session(height=140.0, seed=3, script=[(1.0, remembered_offset)])
    assert run.violations == []
    assert any("nudge limited" in n for n in run.result.notes)
    scan = [s for s in run.telemetry if s["state"] == "scanning"]
    reached = max(s["y_mm"] for s in scan if s["depth_mm"] > CFG.depth.retracted_mm)
    assert run.summary["body"]["zones"]["neck"][1] >= reached - 0.01  # rounded to 0.01 mm
    assert run.result.shoulder_mm is not None
    plant = run.controller.hardware
    assert isinstance(plant, SimPlant)
    assert run.result.shoulder_mm > plant.true_shoulder_mm - CFG.body.adjust_mm


@pytest.mark.parametrize(
    ("back", "height", "seed"),
    [
        (None, 175.0, 23),
        (None, 175.0, 122),
        ("lordosis", 140.0, 19),
        ("broad_blades", 140.0, 17),
        ("kyphosis", 140.0, 27),
    ],
)
def test_the_shoulder_holds_on_backs_where_it_once_slipped(
    back: str | None, height: float, seed: int
) -> None:
    """Bodies on which the shoulder line once came out 20-168 mm off: the scan stopped as soon
    as a neck was seen, so the fits where its soft tissue begins had no samples above them (and
    on seed 122 a stretch of the back's own tissue fitted soft for 15 mm, 168 mm below the
    neck: walking on and looking again over every sample tells it apart); and the neck's level
    was taken from its first soft points, still on its curve, level with a lumbar curve's crest
    below, which the knee then walked down (docs/chair.md §10). And one whose neck is seen late
    on a short body, where walking on past the neck's top would have lifted the zones (the
    adjust window keeps that top above where the heads reached). Each within 10 mm, with
    nothing for the checker."""
    run = run_session(height=height, seed=seed, back=back)
    plant = run.controller.hardware
    assert isinstance(plant, SimPlant)
    assert run.result.shoulder_mm is not None
    assert abs(run.result.shoulder_mm - plant.true_shoulder_mm) <= SHOULDER_ERROR_MM
    assert not any("nudge limited" in n for n in run.result.notes), run.result.notes
    assert run.violations == []
