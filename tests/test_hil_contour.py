"""Hardware in the loop: the contour scan and pressing relative to the scanned back over the
board link (docs/chair.md §10, docs/board-protocol.md version 3: the STATUS carries the depth
drive's load). The real controller in real time against `chair board` over loopback TCP, the board
seating a contoured back; nothing is mocked. A board that does not measure the load is the
session test of tests/test_hil.py (its scan is the arm switch's)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from core_rt.config import ChairConfig
from core_rt.core import Telemetry
from sim import PlantParams, SimPlant
from sim.model import BodyParams
from tests.board_helpers import board
from tests.test_hil import controller, reach, until

pytestmark = [pytest.mark.hil, pytest.mark.realtime]

HEIGHT, SEED, BACK = 140.0, 5, "normal"


async def test_the_contour_scan_and_pressing_relative_over_the_board_link(tmp_path: Path) -> None:
    """The scan follows the skin by the load the board reports; the contour matches the board's
    back within the in-process bounds (3 mm on the back); the program then presses relative to
    it: while the carriage strokes, the measured press (depth encoder against the scanned
    surface under the carriage encoder) stays within ±2 mm of the level and, against the board's
    hidden skin, never deeper than the scan's error; Stop settles the heads home."""
    cfg = ChairConfig.model_validate({"body": {"adjust_window_s": 1.0}})
    truth = SimPlant(
        cfg, body_height_cm=HEIGHT, seed=SEED, params=PlantParams(body=BodyParams(back=BACK))
    )
    tel: list[Telemetry] = []
    with board(tmp_path, "--body-height", f"{HEIGHT:g}", "--seed", str(SEED), "--back", BACK) as b:
        async with controller(b, cfg) as w:
            ctl = w.ctl
            ctl.driver.telemetry_sinks.append(tel.extend)
            await ctl.start("quick", minutes=5)
            await reach(ctl, "adjusting", 120, "the contour scan to finish")
            session = ctl.session
            assert session is not None and session.contour, session and session.notes
            shoulder = session.shoulder_mm
            assert shoulder is not None
            errors = [
                p.surface_mm - truth.true_surface_mm(p.y_mm)
                for p in session.contour.points
                if p.y_mm <= truth.true_shoulder_mm
            ]
            print(f"scan over the link: {len(errors)} points, max error "
                  f"{max(map(abs, errors)):.2f} mm")  # fmt: skip
            assert max(map(abs, errors)) <= 3.0
            await reach(ctl, "running", 30, "the program to start")
            surface = session.surface
            assert surface is not None  # pressing relative to the scanned surface

            on_back: list[Telemetry] = []
            taken = 0

            def strokes() -> list[Telemetry]:
                # only the records since the last look: this runs in the controller's own event
                # loop, and going over every record of the session (1 kHz, 100 000 and more)
                # ten times a second kept that loop from feeding the core on a loaded machine
                # (controller_stalled, fresh-clone run 11)
                nonlocal taken
                new, taken = tel[taken:], len(tel)
                on_back.extend(
                    r for r in new
                    if abs(r.v_mm_s) > 1.0 and r.press_mm > 1.0 and r.y_meas_mm <= shoulder
                )  # fmt: skip
                return on_back

            # 4 s of pressing strokes on the back
            await until(lambda: len(strokes()) > 4_000, 90, "4 s of pressing strokes", 0.1, ctl)
            await ctl.stop()
            await ctl.wait_session()
    assert ctl.last_result is not None and ctl.last_result.faults == []
    assert ctl.last_result.end_reason == "stopped"
    strokes()
    follow = [r.depth_meas_mm - surface.at(r.y_meas_mm) - r.press_mm for r in on_back]
    deeper = [r.depth_meas_mm - truth.true_surface_mm(r.y_meas_mm) - r.press_mm for r in on_back]
    loads = [r.depth_load_a for r in on_back]
    print(
        f"following over the link: {len(on_back)} stroke ticks, measured press off the level "
        f"{min(follow):+.2f}…{max(follow):+.2f} mm, against the true skin at most "
        f"{max(deeper):+.2f} mm deeper, load {min(loads):.2f}…{max(loads):.2f} A"
    )
    assert max(map(abs, follow)) <= 2.0
    assert max(deeper) <= 3.0
    assert all(math.isfinite(x) and x > 0 for x in loads)  # the board's load, on the link
    # the summary publishes the scanned contour (every sample), the state a coarser one
    summary = ctl.last_summary
    assert summary is not None and summary["safety"]["ok"] is True
    published = summary["body"]["contour"]
    assert published == session.contour.as_pairs() and len(published) >= len(errors)
    last = tel[-1]
    assert last.depth_mm <= cfg.depth.retracted_mm and math.isnan(last.surface_mm)
