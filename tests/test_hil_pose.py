"""Hardware in the loop, starting from where the chair is (issue 13): `chair board --start-pose`
puts the simulated chair low on the track, heads narrow and pressing in, as a power cut would have
left it; the real controller takes its pose from the board's encoders and a session walks from
there, heads back first. The core-level checks at every extreme are in tests/test_start_pose.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core_rt.config import POSITION_AXES, ChairConfig
from tests.board_helpers import board
from tests.session_helpers import SHORT
from tests.test_hil import controller, reach

pytestmark = [pytest.mark.hil, pytest.mark.realtime]

CFG = ChairConfig()
FOUND = (100.0, CFG.width.min_mm, CFG.depth.max_mm)
"""Low on the track, below the seat, heads at their narrowest and pressing in as far as they go."""
FAST = ChairConfig.model_validate(
    {"body": {"adjust_window_s": 1.0, "scan_speed_mm_s": CFG.carriage.limits.v_max}}
)
"""The quickest session the controller allows: a one-second adjust window, the body scan at the
carriage's top speed (the arm's switch is read every tick: 0.1 mm a tick)."""


async def test_a_session_starts_from_a_board_found_low_narrow_and_pressing(tmp_path: Path) -> None:
    pose = ",".join(f"{v:g}" for v in FOUND)
    with board(tmp_path, "--start-pose", pose, "--body-height", "140") as b:
        assert b.state()["plant"]["pos_mm"] == pytest.approx(FOUND, abs=1e-6)
        async with controller(b, FAST) as w:
            ctl = w.ctl
            snap = ctl.core.snapshot()
            assert snap["pose_known"], "the core has not taken the board's encoders"
            assert [snap["axes"][a][0] for a in POSITION_AXES] == pytest.approx(FOUND, abs=0.02)
            await ctl.start(SHORT, minutes=5)
            session = ctl.session
            assert session is not None
            await reach(ctl, "running", 30, "the program to start")
            assert [e for e in w.events if e.kind == "fault"] == []
            shoulder = ctl.state()["shoulder_mm"]
            true_line = b.state()["plant"]["shoulder_mm"] + CFG.body.shoulder_offset_mm
            assert shoulder == pytest.approx(true_line, abs=3), session.notes
            # what the controller commanded: from the found pose, heads back before any walk
            tlm = session.telemetry
            first = tlm[0]
            assert (first["y_mm"], first["width_mm"]) == pytest.approx(FOUND[:2], abs=0.02)
            k = next(
                i
                for i, s in enumerate(tlm)
                if (s["y_mm"], s["width_mm"]) != (first["y_mm"], first["width_mm"])
            )
            assert tlm[k - 1]["depth_mm"] <= CFG.depth.retracted_mm
            # stopped there, it settles to park; the independent checker judges the whole of it
            await ctl.stop()
            await asyncio.wait_for(ctl.wait_session(), 20)
            summary = ctl.last_summary
            assert summary is not None and summary["end_reason"] == "stopped"
            assert summary["safety"]["violations"] == [] and summary["faults"] == []
            s = b.state()
            park = (CFG.carriage.park_mm, CFG.width.park_mm, CFG.depth.min_mm)
            assert s["plant"]["pos_mm"] == pytest.approx(park, abs=0.5)
            assert s["watchdog"]["trips"] == 0 and not s["board_faults"]
