"""Every built-in program × body heights × intensities, run whole on the simulated chair and
judged by the independent checker on its telemetry and summary (issue: programmed sessions)."""

from __future__ import annotations

import pytest

from chair.programs.model import builtin_programs
from tests.session_helpers import run_session

HEIGHTS = (140.0, 155.0, 175.0, 190.0, 200.0)
INTENSITIES = (1, 5)
"""The extremes: intensity only scales depths between them (docs/programs.md, Intensity) and the
plan's timeline is the same at every intensity (tests/test_plan.py checks plans at 1, 3 and 5)."""
HEATS = ("low", "medium", "high")


@pytest.mark.parametrize("program", builtin_programs())
@pytest.mark.parametrize("height", HEIGHTS)
def test_builtin_program_is_safe_for_every_body_and_intensity(program: str, height: float) -> None:
    for k, intensity in enumerate(INTENSITIES):
        run = run_session(
            program,
            intensity=intensity,
            heat=HEATS[(HEIGHTS.index(height) + k) % len(HEATS)],
            height=height,
            seed=int(height) + intensity,
            telemetry_hz=25,
        )
        where = f"{program} h={height:g} i={intensity}"
        assert run.result.completed, (where, run.result.end_reason, run.result.notes)
        assert run.violations == [], (where, run.violations)
        assert run.summary["zone_order_observed"] == run.summary["zone_order_planned"], where
        assert run.summary["safety"]["spine_clearance_min_mm"] >= 0.0, where


# ---- generated programs, run whole and checked ---------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from chair.programs.model import Program  # noqa: E402
from tests.test_programs import valid_programs  # noqa: E402


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    program=valid_programs(),
    height=st.sampled_from(HEIGHTS),
    intensity=st.integers(1, 5),
    minutes=st.sampled_from([5.0, 6.0, 8.0]),
    heat=st.sampled_from(["off", "low", "medium", "high"]),
)
def test_generated_valid_programs_run_safely_on_the_chair(
    program: Program, height: float, intensity: int, minutes: float, heat: str
) -> None:
    run = run_session(
        program, minutes=minutes, intensity=intensity, heat=heat, height=height, telemetry_hz=10
    )
    assert run.result.completed, (run.result.end_reason, run.result.faults, run.result.notes)
    assert run.violations == [], run.violations
