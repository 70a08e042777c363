"""Every number of the chair, in one pydantic model.

`ChairConfig()` is the reference chair of docs/chair.md §1; `load_config(path)` reads a TOML file
whose tables mirror the model (``[carriage]``, ``[width]``, ...) and overrides only what it names.
The core's limits (`chair_limits` in C), the simulator's plant, the program validator and the
session all read their numbers from here; nothing else in the tree spells a number of the chair.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

ZONES: tuple[str, ...] = (
    "glutes",
    "sacrum",
    "lumbar",
    "mid_back",
    "upper_back",
    "shoulders",
    "neck",
)
"""Body zones, bottom to top (the index is the core's zone number)."""

AXES: tuple[str, ...] = ("carriage", "width", "depth", "kneading", "tapping")
"""The chair's axes in the core's order: the position axes first, then the rate axes."""
POSITION_AXES: tuple[str, ...] = AXES[:3]
RATE_AXES: tuple[str, ...] = AXES[3:]

HeatLevel = Literal["off", "low", "medium", "high"]
"""The heat key's words; `Heater.levels_c` gives each one but ``off`` its pad temperature."""
HEAT_OFF: HeatLevel = "off"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MotionLimits(_Model):
    v_max: float = Field(gt=0)
    a_max: float = Field(gt=0)
    j_max: float = Field(gt=0)
    estop_a_max: float = Field(gt=0)
    estop_j_max: float = Field(gt=0)


class Carriage(_Model):
    """The roller carriage ("walk") on the L-track; y in mm from the bottom end."""

    track_min_mm: float = 0.0
    track_max_mm: float = 1200.0
    seat_mm: float = 320.0
    park_mm: float = 1200.0
    """Park at the top of the track, heads retracted (docs/chair.md §4 settle)."""
    limits: MotionLimits = MotionLimits(
        v_max=100.0, a_max=400.0, j_max=4000.0, estop_a_max=3000.0, estop_j_max=100000.0
    )


class Width(_Model):
    """Spacing of the two roller heads, centre to centre."""

    min_mm: float = 90.0
    max_mm: float = 170.0
    narrow_mm: float = 100.0
    medium_mm: float = 130.0
    wide_mm: float = 160.0
    park_mm: float = 160.0
    limits: MotionLimits = MotionLimits(
        v_max=40.0, a_max=200.0, j_max=2000.0, estop_a_max=1000.0, estop_j_max=40000.0
    )


class Depth(_Model):
    """How far the heads protrude into the body ("3D")."""

    min_mm: float = 0.0
    max_mm: float = 80.0
    """The heads' reach from their home: a back's deepest hollow (the lumbar curve, up to about
    40 mm from the backrest, docs/simulator.md Back) plus the deepest level, so a level means the
    same press into the tissue everywhere on the back (docs/chair.md §10)."""
    levels_mm: tuple[float, float, float, float, float] = (8.0, 16.0, 24.0, 32.0, 40.0)
    """Levels 1..5: press depths into the tissue once the back's surface is scanned; depths from
    the heads' home on a chair that cannot scan it (its skin taken at home)."""
    retracted_mm: float = 1.0
    """At or below this depth the heads do not press (park, light returns are level 1 = 8 mm)."""
    limits: MotionLimits = MotionLimits(
        v_max=20.0, a_max=100.0, j_max=1000.0, estop_a_max=500.0, estop_j_max=20000.0
    )

    def level_mm(self, level: int) -> float:
        """Depth of a level 1..5 (0 = retracted)."""
        return 0.0 if level <= 0 else self.levels_mm[level - 1]


class Kneading(_Model):
    max_rpm: float = 60.0
    eccentricity_mm: float = 8.0
    limits: MotionLimits = MotionLimits(
        v_max=60.0, a_max=60.0, j_max=600.0, estop_a_max=600.0, estop_j_max=20000.0
    )
    """Rate axis: v = rpm, a = rpm/s, j = rpm/s²."""


class Tapping(_Model):
    max_hz: float = 12.0
    limits: MotionLimits = MotionLimits(
        v_max=12.0, a_max=24.0, j_max=240.0, estop_a_max=240.0, estop_j_max=10000.0
    )
    """Rate axis: v = Hz, a = Hz/s, j = Hz/s²."""


class Heater(_Model):
    levels_c: dict[str, float] = {"low": 38.0, "medium": 42.0, "high": 45.0}
    trip_c: float = 48.0
    max_target_c: float = 45.0
    """The highest target the heater accepts (the high level); the core refuses more."""
    steady_band_c: float = 1.0
    thermistor_min_c: float = -10.0
    thermistor_max_c: float = 90.0
    refresh_timeout_s: float = 3.0
    kp_duty_per_c: float = 0.25
    ki_duty_per_c_s: float = 0.004
    not_heating_duty: float = 0.8
    not_heating_rise_c: float = 2.0
    not_heating_window_s: float = 45.0
    """Shorter than the 60 s deadline so the check fires in time after the duty saturates."""
    pause_hold_s: float = 300.0

    @model_validator(mode="after")
    def _check(self) -> Heater:
        words = set(get_args(HeatLevel)) - {HEAT_OFF}
        if set(self.levels_c) != words:
            raise ValueError(f"heater.levels_c needs exactly {sorted(words)}")
        if max(self.levels_c.values()) > self.max_target_c:
            raise ValueError("heater.levels_c: a level is above max_target_c")
        return self

    @property
    def level_names(self) -> tuple[str, ...]:
        """Every heat level a user may choose, ``off`` first."""
        return (HEAT_OFF, *self.levels_c)

    def target_c(self, level: str) -> float:
        return 0.0 if level == HEAT_OFF else self.levels_c[level]


class ZoneCaps(_Model):
    depth_level: int = Field(ge=0, le=5)
    tap_hz: float = Field(ge=0)
    knead_rpm: float = Field(ge=0)


def _default_caps() -> dict[str, ZoneCaps]:
    back = ZoneCaps(depth_level=5, tap_hz=12.0, knead_rpm=60.0)
    low = ZoneCaps(depth_level=3, tap_hz=6.0, knead_rpm=45.0)
    return {
        "glutes": back,
        "sacrum": low,
        "lumbar": low,
        "mid_back": back,
        "upper_back": back,
        "shoulders": back,
        "neck": ZoneCaps(depth_level=1, tap_hz=0.0, knead_rpm=30.0),
    }


class Body(_Model):
    """Spine geometry, zones from the scanned shoulder, body scan numbers."""

    contact_radius_mm: float = 20.0
    spine_half_width_mm: float = 15.0
    spine_margin_mm: float = 5.0
    zone_caps: dict[str, ZoneCaps] = Field(default_factory=_default_caps)
    zone_edges: tuple[float, ...] = (-0.25, 0.0, 0.12, 0.35, 0.60, 0.85, 1.05, 1.22)
    """Zone boundaries as fractions of the back length B = shoulder − seat, measured from the seat
    crease: zone i spans [seat + edge[i]·B, seat + edge[i+1]·B], clamped to the track."""
    shoulder_per_height: float = 0.345
    """Seated shoulder height above the seat crease per cm of body height (anthropometric mean)."""
    shoulder_offset_mm: float = 10.0
    """Added to the y where the arm loses contact to get the shoulder line."""
    shoulder_min_above_seat_mm: float = 380.0
    """Loss of contact below seat + this is not a plausible shoulder."""
    shoulder_max_mm: float = 1010.0
    """Top-most allowed shoulder line (so the neck zone stays on the track)."""
    scan_start_zone: str = "lumbar"
    scan_depth_level: int = 2
    scan_speed_mm_s: float = 40.0
    adjust_mm: float = 50.0
    adjust_window_s: float = 10.0
    height_min_cm: float = 140.0
    height_max_cm: float = 200.0

    @property
    def keep_out_mm(self) -> float:
        """Half-width of the band no contact patch may enter: |x| < this."""
        return self.spine_half_width_mm + self.spine_margin_mm

    @model_validator(mode="after")
    def _check(self) -> Body:
        if len(self.zone_edges) != len(ZONES) + 1:
            raise ValueError(f"zone_edges needs {len(ZONES) + 1} values")
        if list(self.zone_edges) != sorted(self.zone_edges):
            raise ValueError("zone_edges must increase")
        missing = set(ZONES) - set(self.zone_caps)
        if missing:
            raise ValueError(f"zone_caps missing {sorted(missing)}")
        return self


class Contour(_Model):
    """The contour scan (docs/chair.md §10): while the carriage walks up the back, the depth axis
    follows the skin by the depth drive's load, touching it lightly; the samples give where the
    skin is and how stiff the tissue under it is (`chair.contour`)."""

    load_a_per_mm: float = Field(default=0.03, gt=0)
    """The depth drive's load per mm pressed into the reference tissue (stiffness 1): the
    chair's calibration of its drive."""
    touch_press_mm: tuple[float, float] = (1.0, 2.2)
    """The light touch the depth axis follows, in mm of the reference tissue, alternated every
    `touch_samples` samples: two loads at one place tell the tissue's stiffness from the skin's
    position."""
    touch_samples: int = Field(default=3, ge=1)
    contact_min_press_mm: float = Field(default=0.2, gt=0)
    """Below this load (in mm of the reference tissue) the heads are off the skin."""
    gain_per_s: float = Field(default=4.0, gt=0)
    """Depth speed per mm of missing (or excess) touch, on top of following the skin's slope."""
    search_mm_s: float = Field(default=10.0, gt=0)
    """Off the skin (a hollow the carriage walks into) the depth reaches for it this fast, on
    top of the skin's slope, never past `reach_mm`."""
    sample_mm: float = Field(default=5.0, gt=0, le=10.0)
    """One sample per this much carriage travel (the contour's resolution: ≤ 10 mm)."""
    reach_mm: float = Field(default=20.0, gt=0)
    """The heads never reach further than this past the last skin they touched (nothing to
    chase when the back leaves: a user leaning forward, the top of the head)."""
    margin_mm: float = Field(default=2.0, ge=0)
    """The following stays this far below the depth axis's maximum..."""
    floor_mm: float = Field(default=0.3, ge=0)
    """...and this far above its minimum (a back may touch the heads at their home)."""
    speed_mm_s: float = Field(default=20.0, gt=0)
    """Carriage speed of the contour scan (slow enough that the depth axis keeps up with the
    steepest skin, the neck: 0.8 mm/mm × 25 mm/s = 20 mm/s, the depth's v_max)."""
    fit_half_window_mm: float = Field(default=20.0, gt=0)
    """The surface and the stiffness at a sample come from the samples within ± this."""
    neck_stiffness: float = Field(default=0.7, gt=0)
    """Tissue softer than this (relative to the reference) above the lowest plausible shoulder
    is the neck: where it begins is the shoulder line."""
    neck_min_mm: float = Field(default=15.0, gt=0)
    """...once it lasts this long along the track (a single soft sample is not a neck)."""
    neck_confirm_mm: float = Field(default=20.0, ge=0)
    """Once a neck is seen, the scan walks on this far (never past the neck's top for the
    shoulder seen then) and looks again over every sample: the fits at the neck's start need
    samples above it as well as below, else where the tissue turns soft comes out 10-30 mm off
    on some backs, and a stretch of the back fitted soft is taken for the neck."""
    gap_max_mm: float = Field(default=25.0, gt=0)
    """Below the shoulder, the heads off the skin for longer than this is a scan gone wrong (a
    user leaning forward): the session ends rather than trust it (a good scan: ≤ 10 mm)."""
    jump_max_mm: float = Field(default=4.5, gt=0)
    """Below the shoulder, the skin moving more than this between neighbouring samples is a
    user moving during the scan (a back's curve: ≤ 3 mm in 5 mm of track)."""
    knee_rise_mm: float = Field(default=2.5, gt=0)
    """A neck this much or more off the back below it is recessed: points within this of its
    level belong to it."""
    knee_slope: float = Field(default=0.25, gt=0)
    """The shoulder line is where the skin, followed down from the neck, stops climbing this
    steeply (mm on the depth axis per mm of track): where the neck began to curve away (a
    shoulder blade's flank is gentler)."""
    # pressing relative to the surface (docs/chair.md §10, `chair.surface`)
    press_relative: bool = True
    """Once the contour is scanned, depth levels are presses into the tissue, relative to its
    surface. False: fixed depths from the heads' home, as a chair without a contour (the
    baseline the contour is measured against)."""
    surface_smoothing: float = Field(default=4.0, ge=0)
    """The surface the heads follow is a least-squares B-spline through the scanned skin with
    this weight on its bending (second differences of its control points): the scan's noise
    smoothed away, the back's curves kept."""
    follow_fraction: float = Field(default=0.8, gt=0, le=1)
    """While the carriage strokes with the heads pressing, the depth axis follows the surface
    under it: the carriage's speed, acceleration and jerk are lowered where the surface is steep
    so that following takes at most this fraction of the depth's limits."""
    load_allowance_mm: float = Field(default=3.0, ge=0)
    """A zone's bound on the depth drive's load is its cap's press plus this (the scan's and the
    following's error), on the zone's stiffest scanned tissue..."""
    load_stiffness_margin: float = Field(default=1.25, ge=1)
    """...taken this much stiffer (the stiffness fit's error)."""
    reach_margin_mm: float = Field(default=2.0, ge=0)
    """A press is never planned deeper than the depth's reach over the surface less this."""

    @model_validator(mode="after")
    def _check(self) -> Contour:
        lo, hi = self.touch_press_mm
        if not self.contact_min_press_mm < lo < hi:
            raise ValueError("contour: need contact_min_press_mm < touch_press_mm[0] < [1]")
        return self


class Faults(_Model):
    """Detection deadlines and thresholds (docs/chair.md §6)."""

    stall_ms: float = 200.0
    """Stall window: the encoder must follow at least a quarter of the setpoint's travel once that
    travel reaches stall_min_mm (slower moves take a longer window; deadline 500 ms)."""
    stall_min_mm: float = 1.0
    overcurrent_a: tuple[float, float, float, float, float] = (4.0, 2.0, 3.0, 3.0, 3.0)
    """carriage, width, depth, kneading, tapping."""
    overcurrent_ms: float = 5.0
    supply_min_v: float = 20.0
    supply_max_v: float = 30.0
    supply_ms: float = 50.0
    thermistor_ms: float = 50.0
    occupant_ms: float = 300.0
    link_lost_ms: float = 50.0
    controller_watchdog_ms: float = 500.0
    overtravel_mm: float = 1.0
    """Carriage encoder this far past a track end is a limit-switch fault."""
    tracking_error_max_mm: tuple[float, float, float] = (40.0, 15.0, 10.0)
    """Carriage, width, depth: encoder this far from its setpoint is a fault (above what an axis
    travels in one stall window plus its brake, so a jam is reported as the stall it is)."""
    zone_load_ms: float = Field(default=20.0, ge=0)
    """While a scanned surface is set, the depth drive's load above its zone's bound (or missing)
    this long is a `zone_load` fault: the pressing force is bounded whatever the surface says
    (docs/chair.md §10)."""


class Link(_Model):
    """The board link's own numbers (docs/board-protocol.md): the controller's side of the wire."""

    deadline_ms: float = Field(default=100.0, gt=0)
    """A lost link is detected, and the chair stopped, within this (docs/chair.md §6): the
    link's stale time + `faults.link_lost_ms` + a frame period and a tick stay inside it."""
    hello_retry_ms: float = Field(default=100.0, gt=0)
    """HELLO is repeated this often until the board answers."""
    reconnect_margin_ms: float = Field(default=20.0, ge=0)
    """After a connection ends, a new one starts no sooner than the deadline after the last
    round trip plus this: the core has latched link_lost by then."""
    goodbye_ms: float = Field(default=50.0, gt=0)
    """On close, drives-off SETPOINTs go out until one is echoed, for at most this."""
    engage_tolerance_mm: float = Field(default=2.0, gt=0)
    """The board may be energised only when every commanded axis is this close to its encoder..."""
    engage_max_speed_mm_s: float = Field(default=5.0, gt=0)
    engage_max_rpm: float = Field(default=5.0, gt=0)
    engage_max_hz: float = Field(default=1.0, gt=0)
    """...and the commanded motion is this slow (a move just starting is; a stale one is not)."""
    rt_priority: int = Field(default=60, ge=1, le=99)
    """SCHED_FIFO priority of the link's I/O thread when permitted (below the core's loop)."""


class Loop(_Model):
    tick_hz: int = Field(default=1000, ge=250, le=2000)
    rt_priority: int = Field(default=80, ge=1, le=99)
    rt_cpu: int = Field(default=-2, ge=-2, le=1023)
    """CPU the real-time loop is pinned to: -2 = the last CPU when there are two or more, -1 =
    not pinned. A production board isolates that core (isolcpus) and keeps the rest off it."""

    def rt_cpu_resolved(self) -> int:
        """The CPU to pin to on this machine (-1: none)."""
        if self.rt_cpu != -2:
            return self.rt_cpu
        import os

        cpus = sorted(os.sched_getaffinity(0))
        return cpus[-1] if len(cpus) >= 2 else -1

    heartbeat_ms: float = 100.0
    """How often the asyncio side feeds the core (must be well under the controller watchdog)."""
    limit_tolerance_rel: float = 1e-9

    @property
    def period_ns(self) -> int:
        return round(1_000_000_000 / self.tick_hz)


class Session(_Model):
    default_minutes: float = 15.0
    min_minutes: float = 5.0
    max_minutes: float = 30.0
    """Hard cap: nothing can exceed it."""
    min_intensity: int = Field(default=1, ge=1)
    max_intensity: int = 5
    """Intensity scales every depth: level_mm × (intensity + max) / (2 · max), so the highest
    intensity presses exactly the program's level (never past the zone's cap)."""
    default_intensity: int = 3
    """What a session runs at when nobody chooses."""
    max_rest_pressing_s: float = Field(default=1.0, gt=0)
    """Longest the roller may stand still pressing deeper than depth level 1, outside the
    press-and-hold techniques (docs/chair.md §3: strokes never stand still under pressure)."""
    rest_speed_mm_s: float = Field(default=1.0, gt=0)
    """Below this carriage speed the roller counts as standing still (for the rule above)."""
    max_zone_offset: int = Field(default=2, ge=0, le=4)
    """Per-zone strength (docs/chair.md §8): a zone's offset is −this..this depth levels on top
    of the intensity's, always clamped to the zone's cap and to level 1."""

    @property
    def zone_offsets(self) -> tuple[int, ...]:
        """Every per-zone offset a user may choose, lowest first."""
        return tuple(range(-self.max_zone_offset, self.max_zone_offset + 1))

    @property
    def intensities(self) -> tuple[int, ...]:
        """Every intensity a user may choose, lowest first."""
        return tuple(range(self.min_intensity, self.max_intensity + 1))

    def depth_factor(self, intensity: int) -> float:
        """Scale of every depth at `intensity` (1 at the highest)."""
        return (intensity + self.max_intensity) / (2.0 * self.max_intensity)


class Manual(_Model):
    """Manual mode's numbers (docs/chair.md §8): the user steers technique, area, tempo and width
    live; the session plans short segments of them with the programs' planner."""

    partial_half_mm: float = Field(default=100.0, gt=0)
    """A `partial` area is the band centre ± this."""
    spot_half_mm: float = Field(default=10.0, gt=0)
    """A `spot` area is the band centre ± this (also the shortest band any area keeps)."""
    move_step_mm: float = Field(default=25.0, gt=0)
    """One press of the remote's Up/Down moves the centre this far."""
    move_max_mm: float = Field(default=200.0, gt=0)
    """The most one `move` may ask for (either way); the centre stays on the body."""
    tempo_fractions: tuple[float, float, float, float, float] = (0.3, 0.45, 0.6, 0.8, 1.0)
    """Tempo 1..5: the technique's rate as a fraction of its top (kneading rpm and tapping Hz:
    the lowest cap of the area's zones and the motor's maximum; strokes: `stroke_speed_max_mm_s`;
    shiatsu: the pulse rate, from the longest press to the shortest)."""
    stroke_speed_max_mm_s: float = Field(default=60.0, gt=0)
    """Rolling's stroke speed at the highest tempo (within the carriage's v_max)."""
    segment_s: float = Field(default=30.0, gt=0)
    """The session plans this much ahead (whole passes or presses) and plans again from where the
    heads are when it ends or when a setting changes."""
    max_segment_s: float = Field(default=240.0, gt=0)
    """A segment grows up to this when one pass (a long whole-back stroke at tempo 1) needs it."""

    @property
    def tempos(self) -> tuple[int, ...]:
        """Every tempo a user may choose, lowest first."""
        return tuple(range(1, len(self.tempo_fractions) + 1))


class ChairConfig(_Model):
    """The reference chair (docs/chair.md §1). Load another with `load_config`."""

    name: str = "reference L-track chair"
    carriage: Carriage = Carriage()
    width: Width = Width()
    depth: Depth = Depth()
    kneading: Kneading = Kneading()
    tapping: Tapping = Tapping()
    heater: Heater = Heater()
    body: Body = Body()
    contour: Contour = Contour()
    faults: Faults = Faults()
    link: Link = Link()
    loop: Loop = Loop()
    session: Session = Session()
    manual: Manual = Manual()

    @model_validator(mode="after")
    def _check(self) -> ChairConfig:
        c = self.carriage
        if not c.track_min_mm < c.seat_mm < c.track_max_mm:
            raise ValueError("carriage: need track_min_mm < seat_mm < track_max_mm")
        if not c.track_min_mm <= c.park_mm <= c.track_max_mm:
            raise ValueError("carriage.park_mm must be on the track")
        w = self.width
        if not w.min_mm <= w.narrow_mm <= w.medium_mm <= w.wide_mm <= w.max_mm:
            raise ValueError("width: stops must lie in min_mm..max_mm, narrow <= medium <= wide")
        s = self.session
        if s.max_minutes > 30.0:
            raise ValueError("session.max_minutes: 30 min is a hard cap")
        if not s.min_intensity <= s.default_intensity <= s.max_intensity:
            raise ValueError("session: need min_intensity <= default_intensity <= max_intensity")
        return self

    # ---- derived numbers used by several floors -------------------------------------------------

    def min_width_mm(self, kneading: bool) -> float:
        """Smallest centre-to-centre width that keeps both contact patches off the spine band."""
        b = self.body
        orbit = self.kneading.eccentricity_mm if kneading else 0.0
        return 2.0 * (b.keep_out_mm + b.contact_radius_mm + orbit)

    def shoulder_for_height_mm(self, height_cm: float) -> float:
        """Expected shoulder line for a body height (used by the simulator and validation)."""
        return self.carriage.seat_mm + self.body.shoulder_per_height * height_cm * 10.0

    def zones_for_shoulder(self, shoulder_mm: float) -> dict[str, tuple[float, float]]:
        """Zone bands [lo, hi] in track mm for a scanned shoulder line, bottom to top."""
        c, b = self.carriage, self.body
        back = shoulder_mm - c.seat_mm
        edges = [
            min(max(c.seat_mm + f * back, c.track_min_mm), c.track_max_mm) for f in b.zone_edges
        ]
        return {z: (edges[i], edges[i + 1]) for i, z in enumerate(ZONES)}

    def contour_scan_span_mm(self) -> tuple[float, float]:
        """Where the contour scan walks (docs/chair.md §10): from the glutes of the tallest body
        (the lowest any zone reaches) to the neck's top of the top-most shoulder."""
        c, b = self.carriage, self.body
        tallest = self.zones_for_shoulder(self.shoulder_for_height_mm(b.height_max_cm))
        start = max(c.track_min_mm, tallest["glutes"][0])
        end = min(c.track_max_mm, self.zones_for_shoulder(b.shoulder_max_mm)["neck"][1])
        return (start, end)


def load_config(path: str | Path | None = None) -> ChairConfig:
    """The reference chair, overridden by the TOML file at `path` if given."""
    if path is None:
        return ChairConfig()
    p = Path(path)
    try:
        data: dict[str, Any] = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"{p}: cannot read chair config: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{p}: not valid TOML: {e}") from e
    return ChairConfig.model_validate(data)
