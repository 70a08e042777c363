"""Pressing relative to the scanned surface (docs/chair.md §10, docs/core.md): in the core, the
depth axis commands the press plus the surface under the carriage, within the depth's limits;
the guard judges the press against the zone caps and bounds the depth drive's load; a wrong
surface cannot press harder than a zone allows. Real compiled core, real simulated plant."""

from __future__ import annotations

import itertools
import math

import pytest

from chair.surface import PressSurface
from core_rt.config import ZONES, ChairConfig
from core_rt.core import FAULT_CODES, Core, Telemetry
from sim import PlantParams, SimPlant
from sim.model import BodyParams

CFG = ChairConfig()
S = 1_000_000_000
MS = 1_000_000
HEIGHT_CM = 175.0
LOAD_LOOSE_A = {z: 5.0 for z in ZONES}
"""Load bounds no press of these tests reaches (the tests of the bound set their own)."""


class Chair:
    """A core and a plant with a contoured back, in virtual time, telemetry every tick."""

    def __init__(self, shape: str = "broad_blades", *, faults: list[str] | None = None) -> None:
        body = BodyParams(back=shape)  # type: ignore[arg-type]
        self.plant = SimPlant(
            CFG,
            body_height_cm=HEIGHT_CM,
            seed=2,
            faults=faults or [],
            params=PlantParams(body=body),
        )
        self.core = Core(CFG, self.plant, telemetry_hz=float(CFG.loop.tick_hz))
        self.t = 0
        self.tel: list[Telemetry] = []
        self.events: list = []
        back = self.plant.back
        assert back is not None
        self.zones = CFG.zones_for_shoulder(back.shoulder_mm)
        self.core.set_body(self.zones)

    def run(self, seconds: float) -> None:
        end = self.t + round(seconds * S)
        while self.t < end:
            self.core.heartbeat()
            self.t = self.core.run_until(min(end, self.t + 100 * MS), stop_on_event=False)
            self.tel += self.core.drain_telemetry()
            self.events += self.core.drain_events()

    def faults(self) -> list[str]:
        return [FAULT_CODES[e.code] for e in self.events if e.kind == "fault"]

    def truth(self, offset_mm: float = 0.0, lo: float = 150.0) -> PressSurface:
        """The plant's own skin as the surface (every 5 mm), `offset_mm` deeper than it is."""
        back = self.plant.back
        assert back is not None
        n = int((back.shoulder_mm - lo) / 5.0)
        pts = tuple(back.surface_at(lo + 5.0 * i) + offset_mm for i in range(n))
        return PressSurface(lo, 5.0, pts, LOAD_LOOSE_A)

    def set_surface(self, sf: PressSurface) -> None:
        self.core.set_surface(sf.y0_mm, sf.step_mm, sf.control_mm, sf.load_max_a)

    def to_skin(self, y_mm: float, press_mm: float) -> None:
        """Carriage to `y_mm` with the heads home, then pressing `press_mm` relative."""
        self.core.move("depth", 0.0)
        self.core.move("width", CFG.width.medium_mm)
        self.core.move("carriage", y_mm)
        self.run(12.0)
        self.core.press_relative(True)
        self.core.move("depth", press_mm)
        self.run(4.0)


def _mid(zones: dict[str, tuple[float, float]], z: str) -> float:
    return 0.5 * (zones[z][0] + zones[z][1])


def test_the_depth_follows_the_surface_within_its_limits_and_keeps_the_press() -> None:
    """A stroke over the lumbar hollow and the shoulder blades at the speed and limits the
    planner coordinates (`PressSurface.follow_limits`): the press stays at its level, the
    depth axis (press + surface) within the follow fraction of its speed, acceleration and jerk,
    and the heads' measured press within ±2 mm of the level."""
    ch = Chair()
    sf = ch.truth()
    ch.set_surface(sf)
    lo, hi = _mid(ch.zones, "lumbar"), _mid(ch.zones, "upper_back")
    ch.to_skin(lo, 16.0)
    v, a, j = sf.follow_limits(CFG, lo, hi, 60.0)
    assert v < 60.0  # the surface is steep enough here to slow the stroke
    n0 = len(ch.tel)
    ch.core.move("carriage", hi, v_max=v, a_max=a, j_max=j)
    ch.run(2.0 + (hi - lo) / v)
    ch.core.move("carriage", lo, v_max=v, a_max=a, j_max=j)
    ch.run(2.0 + (hi - lo) / v)
    assert ch.faults() == []
    stroke = ch.tel[n0:]
    assert max(r.depth_mm for r in stroke) - min(r.depth_mm for r in stroke) > 10.0
    assert all(abs(r.press_mm - 16.0) < 1e-9 for r in stroke)
    dt = 1.0 / CFG.loop.tick_hz
    d = [r.depth_mm for r in stroke]
    vel = [(b - a_) / dt for a_, b in itertools.pairwise(d)]
    acc = [(b - a_) / dt for a_, b in itertools.pairwise(vel)]
    jerk = [(b - a_) / dt for a_, b in itertools.pairwise(acc)]
    lim, f = CFG.depth.limits, CFG.contour.follow_fraction
    assert max(map(abs, vel)) <= f * lim.v_max * 1.01
    assert max(map(abs, acc)) <= f * lim.a_max * 1.01
    assert max(map(abs, jerk)) <= f * lim.j_max * 1.05
    back = ch.plant.back
    assert back is not None
    measured = [r.depth_meas_mm - back.surface_at(r.y_meas_mm) for r in stroke]
    assert max(abs(m - 16.0) for m in measured) <= 2.0, (min(measured), max(measured))


def test_an_uncoordinated_stroke_is_a_fault_not_a_silent_violation() -> None:
    """The carriage at its own full limits over a steep stretch: the depth axis cannot follow
    within its limits, and the guard stops the chair (velocity or acceleration on the depth)."""
    ch = Chair()
    ch.set_surface(ch.truth())
    lo, hi = _mid(ch.zones, "lumbar"), _mid(ch.zones, "shoulders")
    ch.to_skin(lo, 8.0)
    ch.core.move("carriage", hi)
    ch.run(10.0)
    faults = [e for e in ch.events if e.kind == "fault"]
    assert faults and FAULT_CODES[faults[0].code] in ("velocity", "acceleration")
    assert faults[0].axis == 2  # the depth
    snap = ch.core.snapshot()
    assert not snap["press_relative"]  # a latched chair's depth is absolute


def test_the_zone_cap_applies_to_the_press_not_the_depth() -> None:
    """Over the lumbar hollow the depth from home is far beyond the lumbar cap (level 3, 24 mm)
    while the press is within it: no fault. A press past the cap: zone_depth, the heads
    retracted home."""
    ch = Chair("lordosis")
    ch.set_surface(ch.truth())
    cap = CFG.depth.level_mm(CFG.body.zone_caps["lumbar"].depth_level)
    ch.to_skin(_mid(ch.zones, "lumbar"), cap)
    snap = ch.core.snapshot()
    assert snap["depth_mm"] > cap + 10.0 and abs(snap["press_mm"] - cap) < 1e-9
    assert ch.faults() == []
    ch.core.move("depth", cap + 4.0)
    ch.run(6.0)
    assert ch.faults() == ["zone_depth"]
    assert ch.core.snapshot()["depth_mm"] == CFG.depth.min_mm


@pytest.mark.parametrize(("offset_mm", "planned_mm"), [(8.0, 36.0), (15.0, 32.0), (8.0, 32.0)])
def test_a_wrong_surface_cannot_press_harder_than_the_zone_allows(
    offset_mm: float, planned_mm: float
) -> None:
    """The surface the core is given lies `offset_mm` deeper than the skin (a scan gone wrong
    in a way no check saw): the heads press that much harder than planned. Past the zone's cap
    plus the allowance, the guard's bound on the depth drive's load stops the chair (the heads
    then brake: a stop that starts at full depth speed ends at most 4 mm further in, as for
    every pressing fault); up to it, nothing (8 mm too deep on a press planned 8 mm under the
    cap presses at the cap)."""
    ch = Chair("normal")
    k = CFG.contour
    y = _mid(ch.zones, "mid_back")
    back = ch.plant.back
    assert back is not None
    stiff = max(back.stiffness_at(y + dy) for dy in range(-60, 61))
    cap = CFG.depth.level_mm(CFG.body.zone_caps["mid_back"].depth_level)
    bound = k.load_a_per_mm * stiff * (cap + k.load_allowance_mm)
    sf = ch.truth(offset_mm)
    ch.set_surface(PressSurface(sf.y0_mm, sf.step_mm, sf.control_mm, dict.fromkeys(ZONES, bound)))
    ch.to_skin(y, planned_mm)
    true_press = [r.depth_meas_mm - back.surface_at(r.y_meas_mm) for r in ch.tel]
    if planned_mm + offset_mm <= cap:
        assert ch.faults() == []
        assert max(true_press) <= cap + 0.5
        return
    assert ch.faults() == ["zone_load"]
    e = next(e for e in ch.events if e.kind == "fault")
    assert e.axis == 2 and e.value > bound and e.limit == pytest.approx(bound)
    assert max(true_press) <= cap + k.load_allowance_mm + 4.0
    ch.run(4.0)
    assert ch.core.snapshot()["depth_mm"] == CFG.depth.min_mm  # retracted home


def test_a_lost_load_reading_while_a_surface_is_set_is_a_fault() -> None:
    """Without the load the bound cannot be checked: a missing reading (NaN) is a zone_load
    fault within its debounce."""
    ch = Chair("normal", faults=["depth_load_lost@30s"])
    ch.set_surface(ch.truth())
    ch.to_skin(_mid(ch.zones, "mid_back"), 8.0)
    assert ch.faults() == []
    ch.run(15.0)
    faults = [e for e in ch.events if e.kind == "fault"]
    assert [FAULT_CODES[e.code] for e in faults] == ["zone_load"]
    assert math.isnan(faults[0].value)
    assert 30 * S + CFG.faults.zone_load_ms * MS <= faults[0].t_ns <= 30 * S + 25 * MS


def test_switching_and_surface_commands_are_refused_where_they_would_jump() -> None:
    """Press relative without a surface, or a new surface while pressing relative: a command
    fault (the depth would jump). Sent while the carriage moves, the switch waits for it to
    stop, as a press move does (the carriage and the press take turns). Bad arguments: a
    ValueError and nothing sent."""
    ch = Chair()
    ch.run(1.0)
    ch.core.press_relative(True)
    ch.run(0.1)
    assert ch.faults() == ["command"]

    ch = Chair()
    ch.set_surface(ch.truth())
    ch.core.move("carriage", 600.0)
    ch.run(0.5)
    ch.core.press_relative(True)
    ch.core.move("depth", 4.0)
    ch.run(0.1)
    assert not ch.core.snapshot()["press_relative"]
    ch.run(12.0)
    snap = ch.core.snapshot()
    assert ch.faults() == [] and snap["press_relative"] and snap["press_mm"] == 4.0

    ch = Chair()
    sf = ch.truth()
    ch.set_surface(sf)
    ch.to_skin(600.0, 8.0)
    ch.set_surface(sf)
    ch.run(0.1)
    assert ch.faults() == ["command"]

    ch = Chair()
    for bad in (
        dict(y0_mm=math.nan),
        dict(step_mm=0.0),
        dict(control_mm=[1.0]),
        dict(control_mm=[1.0, 2.0, 500.0]),
        dict(load_max_a=[1.0] * 6),
        dict(load_max_a=dict.fromkeys(ZONES, -1.0)),
    ):
        args = dict(y0_mm=150.0, step_mm=5.0, control_mm=[5.0] * 10, load_max_a=LOAD_LOOSE_A)
        args.update(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            ch.core.set_surface(**args)  # type: ignore[arg-type]
    ch.run(0.2)
    assert ch.faults() == [] and not ch.core.snapshot()["surface"]


def test_a_pause_brakes_within_the_coordinated_limits_and_an_estop_retracts_nothing() -> None:
    """A brake mid-stroke keeps to the stroke's own limits (the depth following the surface
    stays within its limits: no fault) and the heads keep pressing relative; an e-stop brakes
    the depth where it is in absolute terms and the press mode ends."""
    ch = Chair()
    sf = ch.truth()
    ch.set_surface(sf)
    lo, hi = _mid(ch.zones, "lumbar"), _mid(ch.zones, "upper_back")
    ch.to_skin(lo, 16.0)
    v, a, j = sf.follow_limits(CFG, lo, hi, 60.0)
    ch.core.move("carriage", hi, v_max=v, a_max=a, j_max=j)
    ch.run(1.5)
    ch.core.brake()
    ch.run(3.0)
    assert ch.faults() == []
    snap = ch.core.snapshot()
    assert snap["press_relative"] and abs(snap["press_mm"] - 16.0) < 1e-9
    ch.core.move("carriage", hi, v_max=v, a_max=a, j_max=j)
    ch.run(1.0)
    ch.core.estop()
    ch.run(2.0)
    snap = ch.core.snapshot()
    assert snap["mode"] == "estop" and not snap["press_relative"]
    assert ch.faults() == []
