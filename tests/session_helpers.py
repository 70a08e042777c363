"""Run whole sessions in virtual time for the tests: the real core, the real plant, no mocks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chair.controller import Controller
from chair.programs.model import Program, load_program
from chair.session import S, Session, SessionResult
from core_rt.config import ChairConfig

DATA = Path(__file__).parent / "data"
SHORT = str(DATA / "short.toml")

Script = Sequence[tuple[float, Callable[[Session], None]]]
"""(session seconds, action on the session) pairs, fired exactly at that core tick."""


@dataclass
class Run:
    result: SessionResult
    summary: dict[str, Any]
    telemetry: list[dict[str, Any]]
    violations: list[str]
    controller: Controller


def run_session(
    program: str | Program = SHORT,
    *,
    minutes: float | None = None,
    intensity: int = 3,
    heat: str = "off",
    zone_intensity: dict[str, int] | None = None,
    height: float = 175.0,
    seed: int = 0,
    faults: Sequence[str] = (),
    script: Script = (),
    config: ChairConfig | None = None,
    telemetry_hz: float = 50.0,
    start_mm: tuple[float, float, float] | None = None,
    back: str | None = None,
) -> Run:
    """One whole session; `start_mm` puts the simulated chair there at power-on (None: park);
    `back` seats a back of that curve family (`sim.back.BACK_SHAPES`; None: the flat back)."""
    config = config or ChairConfig()
    prog = load_program(program) if isinstance(program, str) else program
    controller = Controller.create(
        config,
        pacing="fast",
        body_height_cm=height,
        seed=seed,
        faults=faults,
        telemetry_hz=telemetry_hz,
        start_pose_mm=start_mm,
        back=back,
    )

    async def main() -> SessionResult:
        async with controller:
            session = controller._make_session(
                prog, minutes=minutes, intensity=intensity, heat=heat, zone_intensity=zone_intensity
            )
            controller.session = session
            t0 = controller.driver.now_ns()
            for at_s, action in script:
                controller.driver.call_at(t0 + round(at_s * S), lambda a=action: a(session))  # type: ignore[misc]
            return await controller._run_session(session)

    result = asyncio.run(main())
    # the controller's one summary: the independent checker's verdict is in it
    summary = controller.last_summary
    assert summary is not None
    telemetry = controller.last_telemetry
    violations = list(summary["safety"]["violations"])
    return Run(result, summary, telemetry, violations, controller)


def at_state(telemetry: list[dict[str, Any]], state: str) -> list[dict[str, Any]]:
    return [s for s in telemetry if s["state"] == state]


def press_of(sample: dict[str, Any]) -> float:
    """How far the heads press into the tissue at a telemetry sample: `press_mm` once the
    back's surface is scanned, else the depth from home (docs/chair.md §10)."""
    press = sample.get("press_mm")
    return float(sample["depth_mm"] if press is None else press)
