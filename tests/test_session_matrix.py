"""Every built-in program × body heights × intensities, run whole on the simulated chair and
judged by the independent checker on its telemetry and summary (issue: programmed sessions)."""

from __future__ import annotations

import pytest

from chair.program import builtin_programs
from tests.session_helpers import run_session

HEIGHTS = (140.0, 155.0, 175.0, 190.0, 200.0)
INTENSITIES = (1, 3, 5)
HEAT = {1: "low", 3: "medium", 5: "high"}


@pytest.mark.parametrize("program", builtin_programs())
@pytest.mark.parametrize("height", HEIGHTS)
def test_builtin_program_is_safe_for_every_body_and_intensity(program: str, height: float) -> None:
    for intensity in INTENSITIES:
        run = run_session(program, intensity=intensity, heat=HEAT[intensity], height=height,
                          seed=int(height) + intensity, telemetry_hz=25)
        where = f"{program} h={height:g} i={intensity}"
        assert run.result.completed, (where, run.result.end_reason, run.result.notes)
        assert run.violations == [], (where, run.violations)
        assert run.summary["zone_order_observed"] == run.summary["zone_order_planned"], where
        assert run.summary["safety"]["spine_clearance_min_mm"] >= 0.0, where
