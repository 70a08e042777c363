"""Whole sessions pressing relative to the scanned surface (docs/chair.md §10), on generated
bodies: every built-in program on every curve family passes the independent checker; while the
carriage strokes, the heads' measured press stays within ±2 mm of the level (against the surface
the chair scanned) and, against the plant's hidden truth, never deeper than the scan's error; the
depth drive's load stays under its zone's bound. Beside it, the same bodies with fixed depths
(the baseline): how far they stray from the intended press. Every body and program here runs in
virtual time against the real compiled core and the simulated plant. The full matrix (every
program × family × five heights) is `python -m chair.bench.contour` (README, Measured)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chair.bench.contour import press_deviation
from chair.programs.model import builtin_programs
from core_rt.config import ChairConfig
from sim.back import BACK_SHAPES
from tests.session_helpers import Run, run_session

CFG = ChairConfig()
PROGRAMS = builtin_programs()
HEIGHTS = (140.0, 152.0, 164.0, 176.0, 188.0, 200.0)
CASES = [
    (PROGRAMS[i % len(PROGRAMS)], BACK_SHAPES[i % len(BACK_SHAPES)], HEIGHTS[(5 * i) % 6])
    for i in range(max(len(PROGRAMS), 2 * len(BACK_SHAPES)))
]
"""Every program and every family at least once (each family twice), heights 140–200 cm."""
FOLLOW_MM = 2.0
"""The measured press against the scanned surface, while the carriage strokes (issue: ±2 mm)."""
DEEPER_MAX_MM = 3.0
"""Against the plant's truth, on the back: never deeper than intended by more than the scan's
error there (docs/chair.md §10, Measured: ≤ 3 mm)."""


def _strokes(run: Run) -> list[dict[str, Any]]:
    """Samples of the program where the carriage strokes with the heads pressing."""
    return [
        s
        for s in run.telemetry
        if s["state"] == "running" and abs(s["v_mm_s"]) > 1.0 and (s["press_mm"] or 0.0) > 1.0
    ]


def _check(run: Run) -> dict[str, float]:
    assert run.result.completed and run.violations == [], (run.result.notes, run.violations[:5])
    plan = run.result.plan
    assert plan is not None and plan.surface is not None  # pressing relative to the surface
    surface = plan.surface
    plant = run.controller.hardware
    strokes = _strokes(run)
    assert strokes
    follow = [s["depth_meas_mm"] - surface.at(s["y_meas_mm"]) - s["press_mm"] for s in strokes]
    assert max(map(abs, follow)) <= FOLLOW_MM, (min(follow), max(follow))
    shoulder = run.result.shoulder_mm
    assert shoulder is not None
    on_back = [
        s["depth_meas_mm"] - plant.true_surface_mm(s["y_meas_mm"]) - s["press_mm"]
        for s in strokes
        if s["y_meas_mm"] <= shoulder
    ]
    assert max(on_back) <= DEEPER_MAX_MM, max(on_back)
    loads = [
        s["depth_load_a"] / surface.load_max_a[s["zone"]]
        for s in run.telemetry
        if s["state"] == "running" and s["zone"] and s["depth_load_a"] is not None
    ]
    assert max(loads) < 1.0
    return {
        "follow_max_mm": max(map(abs, follow)),
        "deeper_max_mm": max(on_back),
        "load_of_bound_max": max(loads),
    }


@pytest.mark.parametrize(("program", "back", "height"), CASES)
def test_every_builtin_program_presses_relative_on_every_family(
    program: str, back: str, height: float
) -> None:
    run = run_session(program, minutes=5, height=height, seed=len(program), back=back)
    print(program, back, height, _check(run))


@settings(max_examples=6, deadline=None)
@given(
    back=st.sampled_from(BACK_SHAPES),
    height=st.floats(140.0, 200.0),
    seed=st.integers(0, 10**6),
    intensity=st.integers(1, 5),
)
def test_generated_bodies_press_relative_within_the_caps(
    back: str, height: float, seed: int, intensity: int
) -> None:
    run = run_session("quick", minutes=5, intensity=intensity, height=height, seed=seed, back=back)
    _check(run)


@pytest.mark.parametrize("back", ["lordosis", "broad_blades"])
def test_pressing_relative_beside_fixed_depths_on_the_same_body(back: str) -> None:
    """The figure that says why this matters: on the same body's back (glutes to the shoulder
    line), relative to the surface the heads press what the program intends (a fraction of a
    millimetre off, touching throughout); with fixed depths from home they stray by several
    millimetres and touch nothing for part of the program."""
    fixed_cfg = CFG.model_copy(
        update={"contour": CFG.contour.model_copy(update={"press_relative": False})}
    )
    figures = {}
    for name, cfg in (("relative", CFG), ("fixed", fixed_cfg)):
        run = run_session("relax", minutes=5, height=175.0, seed=7, back=back, config=cfg)
        assert run.result.completed and run.violations == []
        assert run.result.shoulder_mm is not None  # on the back: glutes to the shoulder line
        dev, untouched = press_deviation(
            cfg, run.telemetry, run.controller.hardware, hi_mm=run.result.shoulder_mm
        )
        figures[name] = (
            sum(map(abs, dev)) / len(dev),  # mean |true − intended|, mm
            100.0 * untouched / len(dev),  # % of the pressing time touching nothing
        )
    print(back, figures)
    (rel_mean, rel_untouched), (fix_mean, fix_untouched) = figures["relative"], figures["fixed"]
    assert rel_untouched == 0.0 and rel_mean < 1.5
    assert fix_mean > 3.0 * rel_mean and fix_mean > 4.0 and fix_untouched > 5.0


def test_a_program_too_short_for_the_backs_strokes_presses_from_the_nearest_skin() -> None:
    """sports_recovery in 5 minutes on a tall body with broad shoulder blades: its whole-back
    effleurage step cannot hold one stroke slowed to follow the back. Instead of ending the
    session (plan_error), the heads press relative to a flat surface at the back's nearest skin:
    full-speed strokes, lighter where the back lies deeper, never deeper than the level; the
    note says so and the independent checker passes it."""
    run = run_session("sports_recovery", minutes=5, height=200.0, seed=11, back="broad_blades")
    assert run.result.completed and run.violations == [], (run.result.notes, run.violations[:3])
    assert any("nearest skin" in n for n in run.result.notes), run.result.notes
    plan = run.result.plan
    assert plan is not None and plan.surface is not None and plan.surface.is_flat
    assert run.result.shoulder_mm is not None
    dev, _ = press_deviation(
        CFG, run.telemetry, run.controller.hardware, hi_mm=run.result.shoulder_mm
    )
    assert dev and max(dev) <= 0.5  # never deeper than intended (lighter where it is deeper)
