"""The session plot shows the depth: the roller trace coloured by the depth level the heads press
at (light returns stand out) and a depth panel against the cap of the zone the carriage is in."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from chair.report import depth_level, press_mm, session_figure, write_plot
from core_rt.config import ChairConfig
from tests.session_helpers import SHORT, Run, run_session

CFG = ChairConfig()
DEP = CFG.depth
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run() -> Run:
    """The short program (effleurage strokes, kneading, tapping) in virtual time: under 1 s."""
    return run_session(SHORT, minutes=5, telemetry_hz=10)


@pytest.fixture(scope="module")
def fig(run: Run) -> Figure:
    return session_figure(run.telemetry, run.summary, run.result, CFG)


def depth_axes(fig: Figure) -> Axes:
    (ax,) = [a for a in fig.axes if a.get_ylabel() == "depth (mm)"]
    return ax


def by_gid(ax: Axes, gid: str) -> Any:
    (artist,) = [a for a in ax.get_children() if a.get_gid() == gid]
    return artist


def floats(data: Any) -> list[float]:
    return [float(x) for x in np.asarray(data, dtype=float)]


def expected_cap(zone: str | None) -> float:
    if zone is None:
        return math.nan
    return DEP.level_mm(CFG.body.zone_caps[zone].depth_level)


def test_depth_levels_are_the_configured_level_depths() -> None:
    assert DEP.levels_mm == (8.0, 16.0, 24.0, 32.0, 40.0) and DEP.retracted_mm == 1.0
    cases = {0.0: 0, 1.0: 0, 1.01: 1, 6.4: 1, 8.0: 1, 8.01: 2, 16.0: 2, 19.2: 3, 32.0: 4, 40.0: 5}
    assert {d: depth_level(d, DEP) for d in cases} == cases
    assert depth_level(45.0, DEP) == 5  # past the top level: the top level


def test_the_plot_is_written_as_a_png(run: Run, tmp_path: Any) -> None:
    p = tmp_path / "out" / "session.png"
    write_plot(p, run.telemetry, run.summary, run.result, config=CFG)
    assert p.read_bytes()[:8] == PNG and p.stat().st_size > 50_000


def test_the_depth_panel_draws_the_depth_under_the_cap_of_the_zone(run: Run, fig: Figure) -> None:
    tlm = run.telemetry
    ax = depth_axes(fig)
    roller = fig.axes[0]
    assert roller.get_ylabel() == "track y (mm)"
    assert ax.get_shared_x_axes().joined(roller, ax)  # one time axis
    assert ax.get_title(loc="left")
    depth: Line2D = by_gid(ax, "depth")
    cap: Line2D = by_gid(ax, "zone-cap")
    assert floats(depth.get_xdata()) == [s["t"] for s in tlm]
    assert floats(depth.get_ydata()) == [press_mm(s) for s in tlm]
    caps = floats(cap.get_ydata())
    want = [expected_cap(s["zone"]) for s in tlm]
    assert all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(caps, want, strict=True))
    # the strokes cross the lower back (cap level 3) and the back (cap level 5)
    assert {c for c in caps if not math.isnan(c)} >= {DEP.level_mm(3), DEP.level_mm(5)}
    assert all(press_mm(s) <= c + 1e-6 for s, c in zip(tlm, caps, strict=True) if c == c)
    assert not [a for a in ax.get_children() if a.get_gid() == "over-cap"]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]  # type: ignore[union-attr]
    assert labels == [
        "press into the tissue (from home before the scan)",
        "cap of the zone the carriage is in (zones: from the body scan on)",
    ]


def test_the_roller_is_coloured_by_depth_level_showing_the_light_returns(
    run: Run, fig: Figure
) -> None:
    tlm = run.telemetry
    trace: LineCollection = by_gid(fig.axes[0], "roller-depth-level")
    levels = [int(x) for x in floats(trace.get_array())]
    assert levels == [depth_level(press_mm(s), DEP) for s in tlm[:-1]]
    assert len(trace.get_segments()) == len(tlm) - 1
    # retracted (scan end, settle), light returns, and pressing strokes: several colours
    assert {0, 1} <= set(levels) and max(levels) >= 3
    assert len({tuple(c) for c in trace.to_rgba(np.asarray(levels, dtype=float))}) >= 3
    # effleurage: up with pressure, back down light (depth ≤ level 1)
    stroke = [
        (s["v_mm_s"], k)
        for s, k in zip(tlm, levels, strict=False)
        if s["state"] == "running" and s["technique"] == "effleurage" and abs(s["v_mm_s"]) > 5
    ]
    down = [k for v, k in stroke if v < 0]
    up = [k for v, k in stroke if v > 0]
    assert down and up
    assert all(k <= 1 for k in down)  # the walk to the start is retracted, the returns light
    assert sum(k == 1 for k in down) >= 0.5 * len(down)
    assert sum(k >= 2 for k in up) >= 0.9 * len(up)
    legend = fig.axes[0].get_legend()
    assert legend is not None
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == len(DEP.levels_mm) + 1
    assert texts[0].startswith("0 retracted") and texts[1] == "1 light: 1–8 mm"


def test_a_depth_over_the_zone_cap_is_marked(run: Run) -> None:
    """Not from a real session (the chair never does it): pressing 30 mm in the lumbar zone."""
    lumbar_cap = expected_cap("lumbar")
    tlm = [
        {**s, "depth_mm": lumbar_cap + 6, "press_mm": lumbar_cap + 6}
        if s["zone"] == "lumbar"
        else s
        for s in run.telemetry
    ]
    assert any(s["zone"] == "lumbar" for s in tlm)
    fig = session_figure(tlm, run.summary, run.result, CFG)
    over: PolyCollection = by_gid(depth_axes(fig), "over-cap")
    assert over.get_label() == "over the cap"
    assert len(over.get_paths()) >= 1
