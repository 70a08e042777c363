"""Starting from where the chair is (issue 13): at the first fresh status the core takes the
encoders as its pose, and a session walks from anywhere on the track, heads back first.

In-process and in virtual time: the real core against the real plant started at the extremes of
every axis (docs/core.md, Starting from where the chair is). The same start on a real link:
tests/test_hil_mqtt.py (a whole session over MQTT from a board found low, narrow and pressing).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from chair.cli import main
from core_rt.board.mailbox import LinkHardware, now_ns
from core_rt.config import POSITION_AXES, ChairConfig
from core_rt.core import FAULT_CODES, Core
from sim.model import check_start_mm
from tests.core_helpers import FEED_NS, LIMITS, MS, TOL, Rig
from tests.session_helpers import SHORT, Run, run_session

CFG = ChairConfig()
CAR, WID, DEP = CFG.carriage, CFG.width, CFG.depth
Pose = tuple[float, float, float]

CORNERS: list[Pose] = list(
    itertools.product(
        (CAR.track_min_mm, CAR.track_max_mm), (WID.min_mm, WID.max_mm), (DEP.min_mm, DEP.max_mm)
    )
)
"""Every combination of every position axis at either end of its range."""
ISSUE_POSES: list[Pose] = [(100.0, 130.0, DEP.max_mm), (1197.0, WID.park_mm, DEP.min_mm)]
"""The chairs of the issue: low on the track pressing in, and 3 mm short of park."""
EXTREMES: dict[str, Pose] = {
    "low_narrow_pressing": (CAR.track_min_mm, WID.min_mm, DEP.max_mm),
    "high_wide_pressing": (CAR.track_max_mm, WID.max_mm, DEP.max_mm),
}
"""Two sessions that between them start every axis at both ends (depth at its deepest)."""
TELEMETRY_HZ = 200.0
"""The sessions' telemetry: fine enough to bound the jerk between records, quick to check."""


def pose_id(pose: Pose) -> str:
    return "-".join(f"{v:g}" for v in pose)


def pose_of(axes: dict[str, tuple[float, float, float]]) -> Pose:
    c, w, d = (axes[a][0] for a in POSITION_AXES)
    return (c, w, d)


# ---- the core ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pose", CORNERS + ISSUE_POSES, ids=pose_id)
def test_the_core_takes_its_pose_from_the_encoders_and_holds_it_without_a_fault(
    pose: Pose,
) -> None:
    rig = Rig(start_mm=pose)
    assert not rig.core.snapshot()["pose_known"]  # nothing heard from the chair yet
    rig.run(1.0)
    assert not rig.find("fault"), rig.find("fault")
    snap = rig.core.snapshot()
    assert snap["pose_known"] and snap["mode"] == "run"
    assert pose_of(snap["axes"]) == pose
    # the very first record is already the chair where it is, and it stays there
    first = rig.telemetry[0]
    assert first.t_ns == 0
    assert {(r.y_mm, r.width_mm, r.depth_mm) for r in rig.telemetry} == {pose}
    assert rig.plant.state()["pos_mm"] == pytest.approx(pose, abs=0.01)


def follow(rig: Rig, limit_s: float = 20.0) -> list[dict[str, tuple[float, float, float]]]:
    """(p, v, a) of every axis at every tick until nothing is busy any more."""
    out = []
    for _ in range(round(limit_s * 1e9 / rig.tick)):
        if rig.last_fed_ns < 0 or rig.now - rig.last_fed_ns >= FEED_NS:
            rig.feed()
        rig.step()
        snap = rig.core.snapshot()
        out.append(snap["axes"])
        if not any(snap["busy"].values()):
            return out
    raise AssertionError(f"still moving after {limit_s} s")


def check_within_limits(trace: list[dict[str, tuple[float, float, float]]], dt_s: float) -> None:
    """Every position axis within its speed, acceleration and jerk limits at every tick."""
    for axis in POSITION_AXES:
        lim = LIMITS[axis]
        prev_a = 0.0
        for k, axes in enumerate(trace):
            _, v, a = axes[axis]
            assert abs(v) <= lim.v_max * (1 + TOL), (axis, k, v)
            assert abs(a) <= lim.a_max * (1 + TOL), (axis, k, a)
            assert abs(a - prev_a) <= lim.j_max * dt_s * (1 + 1e-6) + 1e-9, (axis, k, a, prev_a)
            prev_a = a


@pytest.mark.parametrize("pose", list(EXTREMES.values()), ids=list(EXTREMES))
def test_moves_sent_before_the_first_status_start_from_the_found_pose_within_the_limits(
    pose: Pose,
) -> None:
    """The session's opening, sent before the core has heard from the chair: the moves wait for
    the pose, then run from it, jerk-limited, with no jump (heads back first, then the walk)."""
    rig = Rig(start_mm=pose)
    rig.core.move("depth", DEP.min_mm)
    opening = follow(rig)
    assert pose_of(opening[0]) == pose  # the first tick commands where the chair is
    assert all(pose_of(axes)[:2] == pose[:2] for axes in opening)
    rig.core.move("width", WID.medium_mm)
    rig.core.move("carriage", 600.0)
    walk = follow(rig)
    check_within_limits(opening + walk, rig.tick / 1e9)
    assert pose_of(walk[-1]) == (600.0, WID.medium_mm, DEP.min_mm)
    assert not rig.find("fault"), rig.find("fault")
    assert rig.plant.state()["pos_mm"] == pytest.approx(
        (600.0, WID.medium_mm, DEP.min_mm), abs=0.05
    )


def linked_core(pos_mm: tuple[float, float, float], **readings: float) -> Core:
    """A core on a board link whose board says its encoders read `pos_mm` (fresh: it echoes a
    SETPOINT sent just now), run for 5 ticks."""
    hw = LinkHardware()
    status: dict[str, Any] = {
        "pos_mm": pos_mm,
        "knead_rpm": 0.0,
        "tap_hz": 0.0,
        "current_a": (0.1, 0.05, 0.05, 0.0, 0.0),
        "thermistor_c": 27.0,
        "supply_v": 24.0,
        "limit_low": False,
        "limit_high": pos_mm[0] >= CAR.track_max_mm - 0.5,
        "arm_contact": False,
        "seat_occupied": True,
        "board_faults": 0,
    }
    status.update(readings)
    hw.put_status(status, now_ns())
    core = Core(CFG, hw, telemetry_hz=1000.0)
    core.heartbeat()
    core.run_until(5 * MS, False)
    return core


def test_a_reading_just_past_the_end_of_the_track_is_held_at_the_end() -> None:
    core = linked_core((CAR.track_max_mm + 0.4, 130.0, 0.0))  # inside the overtravel allowed
    assert [e for e in core.drain_events() if e.kind == "fault"] == []
    snap = core.snapshot()
    assert snap["pose_known"] and pose_of(snap["axes"]) == (CAR.track_max_mm, 130.0, 0.0)


def test_an_encoder_without_a_reading_is_a_tracking_fault_at_once() -> None:
    core = linked_core((600.0, float("nan"), 0.0))
    faults = [e for e in core.drain_events() if e.kind == "fault"]
    assert [(FAULT_CODES[e.code], POSITION_AXES[e.axis], e.t_ns) for e in faults] == [
        ("tracking", "width", 0)
    ]


@pytest.mark.parametrize(("reading", "axis"), [("knead_rpm", 3), ("tap_hz", 4)])
def test_a_motor_rate_without_a_reading_is_a_tracking_fault_at_once(
    reading: str, axis: int
) -> None:
    """docs/board-protocol.md: a missing reading travels as its sentinel (NaN): a broken sensor."""
    core = linked_core((600.0, 130.0, 0.0), **{reading: float("nan")})
    faults = [e for e in core.drain_events() if e.kind == "fault"]
    assert [(FAULT_CODES[e.code], e.axis) for e in faults] == [("tracking", axis)]


# ---- whole sessions ------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=list(EXTREMES), ids=list(EXTREMES))
def found(request: pytest.FixtureRequest) -> tuple[Pose, Run]:
    pose = EXTREMES[request.param]
    return pose, run_session(SHORT, start_mm=pose, telemetry_hz=TELEMETRY_HZ)


def test_a_session_from_an_extreme_pose_completes_and_the_checker_passes(
    found: tuple[Pose, Run],
) -> None:
    pose, run = found
    assert run.result.completed, (run.result.end_reason, run.result.notes)
    assert run.result.faults == []
    assert run.violations == [] and run.summary["safety"]["ok"]
    first, last = run.telemetry[0], run.telemetry[-1]
    assert (first["t"], first["y_mm"], first["width_mm"], first["depth_mm"]) == (0.0, *pose)
    assert (last["y_mm"], last["width_mm"], last["depth_mm"]) == (
        CAR.park_mm,
        WID.park_mm,
        DEP.min_mm,
    )


def test_the_heads_retract_before_the_carriage_or_the_width_moves(found: tuple[Pose, Run]) -> None:
    pose, run = found
    tlm = run.telemetry
    k = next(i for i, s in enumerate(tlm) if (s["y_mm"], s["width_mm"]) != pose[:2])
    assert k > 0 and tlm[k - 1]["depth_mm"] <= DEP.retracted_mm
    before = tlm[:k]
    depths = [s["depth_mm"] for s in before]
    assert depths == sorted(depths, reverse=True)  # only ever going back
    assert all(s["knead_rpm"] == 0.0 and s["tap_hz"] == 0.0 for s in before)


def test_the_first_walk_is_within_the_carriage_limits_jerk_included(
    found: tuple[Pose, Run],
) -> None:
    _, run = found
    lim = CFG.carriage.limits
    dt = 1.0 / TELEMETRY_HZ  # |Δa| between records is at most j_max · their interval
    scan = [s for s in run.telemetry if s["state"] == "scanning"]
    assert any(s["v_mm_s"] != 0.0 for s in scan)
    for prev, s in itertools.pairwise(scan):
        assert abs(s["v_mm_s"]) <= lim.v_max * (1 + TOL)
        assert abs(s["a_mm_s2"]) <= lim.a_max * (1 + TOL)
        assert abs(s["a_mm_s2"] - prev["a_mm_s2"]) <= lim.j_max * dt * (1 + 1e-6) + 1e-9


def test_the_checker_catches_motion_before_the_heads_found_pressing_are_back(
    found: tuple[Pose, Run],
) -> None:
    """The checker's own rule for a chair found pressing (it shares nothing with the session)."""
    from chair.checker import check_session

    pose, run = found
    k = round(0.5 * TELEMETRY_HZ)  # 0.5 s in: the heads are still on their way back
    assert run.telemetry[k]["depth_mm"] > DEP.retracted_mm
    opening = run.telemetry[: 10 * k]  # the rules at stake are about the first seconds

    def violations(**change: float) -> list[str]:
        tlm = [dict(s) for s in opening]
        tlm[k].update(change)
        return check_session(tlm, run.summary, CFG)

    assert not any("before" in v for v in violations())
    sideways = pose[1] - 1.0 if pose[1] > WID.min_mm else pose[1] + 1.0
    assert any("carriage or width moving" in v for v in violations(y_mm=abs(pose[0] - 1.0)))
    assert any("carriage or width moving" in v for v in violations(width_mm=sideways))
    deeper = run.telemetry[k - 1]["depth_mm"] + 0.5
    assert any("pressing further in" in v for v in violations(depth_mm=deeper))
    assert any("kneading or tapping" in v for v in violations(knead_rpm=5.0))


# ---- the command line ----------------------------------------------------------------------------


def test_start_pose_is_checked_against_the_chair_s_ranges() -> None:
    assert check_start_mm(CFG, [100, 130, 40]) == (100.0, 130.0, 40.0)
    for bad, axis in (((1300.0, 130.0, 0.0), "carriage"), ((100.0, 60.0, 0.0), "width")):
        with pytest.raises(ValueError, match=f"start_mm: {axis} .* outside its range"):
            check_start_mm(CFG, bad)
    with pytest.raises(ValueError, match="depth nan mm is outside"):
        check_start_mm(CFG, (100.0, 130.0, float("nan")))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["board", "--pty", "--start-pose", "1300,130,0"], "carriage 1300 mm is outside its range"),
        (
            ["board", "--pty", "--start-pose", "100,130,81"],
            "depth 81 mm is outside its range 0..80",
        ),
        (["run", SHORT, "--fast", "--start-pose", "100,60,0"], "width 60 mm is outside its range"),
        (["run", SHORT, "--fast", "--start-pose", "100,130"], "expected CARRIAGE,WIDTH,DEPTH"),
        (["run", SHORT, "--fast", "--start-pose", "a,b,c"], "expected CARRIAGE,WIDTH,DEPTH"),
        (
            ["run", SHORT, "--hardware", "tcp:127.0.0.1:9", "--start-pose", "100,130,0"],
            "--start-pose applies to the simulated chair",
        ),
    ],
)
def test_a_bad_start_pose_is_a_usage_error(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code: int | str | None
    try:
        code = main(args)
    except SystemExit as e:  # a malformed value: argparse's error (our parser exits 1 too)
        code = e.code
    assert code == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_chair_run_starts_from_the_given_pose(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["run", SHORT, "--fast", "--json", "--start-pose", "100,130,40"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["completed"] and summary["safety"]["ok"] and summary["faults"] == []
