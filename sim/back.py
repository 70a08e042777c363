"""The seated user's back on the depth axis: its contour and its tissue (docs/simulator.md, Back).

A back is not flat (docs/chair.md §10): the lumbar hollow, the thoracic curve and the shoulder
blades move the skin 20–60 mm along the depth axis over the track. `back_contour` builds one back
of a family — a curve family (`BACK_SHAPES`) scaled to the body's height and varied by a seed —
as two tables over the whole track, sampled every `BackContour.step_mm`:

- ``surface_mm``: where the skin is on the depth axis (the depth at which the heads first touch
  it; the heads' home is 0, so a larger value is a hollow the heads must reach into);
- ``stiffness``: how hard the tissue resists a millimetre of pressing, relative to the back's
  muscle (1): stiffer where bone lies under thin tissue (sacrum, shoulder blades), softer over
  thick muscle (glutes, lumbar) and on the neck.

The plant (`sim.plant.SimPlant`) presses against these tables: the depth drive's load is
``press_a_per_mm · stiffness(y) · max(0, depth − surface(y))``. They are the plant's hidden truth:
the controller learns the contour only from the depth drive's load (its body scan).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from core_rt.config import ChairConfig

BackShape = Literal["flat", "normal", "lordosis", "kyphosis", "slim_blades", "broad_blades"]
BACK_SHAPES: tuple[str, ...] = get_args(BackShape)
"""The curve families, each a sagittal profile of the back (see `SHAPES`)."""

NO_BODY_MM = 1.0e6
"""The surface where there is no body (above the head): the heads never reach it."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShapeParams(_Model):
    """One curve family's profile, in mm on the depth axis and in fractions u of the back length
    B = shoulder − seat (u = 0 the seat crease, u = 1 the shoulder line), so that it scales with
    the body's height."""

    lumbar_hollow_mm: float = Field(ge=0)
    """Depth of the lumbar hollow (lordosis) at its deepest, against the sacrum and the blades."""
    lumbar_centre: float = 0.24
    lumbar_half_width: float = 0.17
    """The hollow spans lumbar_centre ± this (a raised cosine: smooth, no edge)."""
    thoracic_recess_mm: float = Field(ge=0)
    """How far the mid and upper back sit off the backrest between the hollow and the blades
    (small for a rounded, kyphotic back that leans into the chair)."""
    blade_mm: float = Field(ge=0)
    """How far the shoulder blades stand out of the upper back, toward the heads."""
    blade_centre: float = 0.80
    blade_half_width: float = 0.16
    blade_stiffness: float = Field(default=0.5, ge=0)
    """Extra stiffness on the blades (bone under thin tissue), at their centre."""


SHAPES: dict[str, ShapeParams] = {
    # a straight, "military" back: little lordosis, little kyphosis
    "flat": ShapeParams(lumbar_hollow_mm=8.0, thoracic_recess_mm=4.0, blade_mm=3.0),
    "normal": ShapeParams(lumbar_hollow_mm=22.0, thoracic_recess_mm=8.0, blade_mm=6.0),
    # hyperlordosis: a deep lumbar hollow (and the sacrum tipped back)
    "lordosis": ShapeParams(
        lumbar_hollow_mm=25.0, lumbar_half_width=0.19, thoracic_recess_mm=9.0, blade_mm=7.0
    ),
    # hyperkyphosis: a rounded upper back leaning into the chair along a wide band
    "kyphosis": ShapeParams(
        lumbar_hollow_mm=14.0,
        thoracic_recess_mm=3.0,
        blade_mm=3.0,
        blade_centre=0.74,
        blade_half_width=0.22,
    ),
    "slim_blades": ShapeParams(
        lumbar_hollow_mm=22.0,
        thoracic_recess_mm=8.0,
        blade_mm=3.0,
        blade_half_width=0.11,
        blade_stiffness=0.3,
    ),
    # broad blades hold the upper back further off the backrest between them
    "broad_blades": ShapeParams(
        lumbar_hollow_mm=22.0,
        thoracic_recess_mm=13.0,
        blade_mm=12.0,
        blade_half_width=0.20,
        blade_stiffness=0.7,
    ),
}


class BackParams(_Model):
    """Numbers of every back of the family (the curve family's own are in `SHAPES`)."""

    cover_mm: float = Field(default=3.0, ge=0)
    """The skin's nearest approach to the heads' home (the backrest's cover and padding): at or
    below this depth nothing presses, so retracted heads never load the back."""
    glutes_mm: float = Field(default=5.0, ge=0)
    """The glutes, below the seat crease, sit this far off the cover (the seat takes the weight)."""
    neck_recess_mm: float = Field(default=15.0, ge=0)
    """Above the shoulder line the neck curves away from the backrest by this much..."""
    neck_ramp_mm: float = Field(default=30.0, gt=0)
    """...over this length of track (a smooth ramp starting at the shoulder line)."""
    variation: float = Field(default=0.15, ge=0, lt=1)
    """Per-seed variation of a family's depths (hollow, recess, blades), uniform ±this."""
    centre_variation: float = Field(default=0.03, ge=0)
    """Per-seed shift of the hollow's and the blades' centres, uniform ±this (fractions of B)."""
    stiffness_variation: float = Field(default=0.15, ge=0, lt=1)
    """Per-seed scale of the whole back's tissue stiffness, uniform ±this."""
    stiffness_knots: tuple[tuple[float, float], ...] = (
        (-0.30, 0.6),  # glutes: thick muscle and fat
        (-0.03, 0.6),
        (0.03, 1.6),  # sacrum: bone under thin tissue
        (0.10, 1.6),
        (0.17, 0.8),  # lumbar: thick erector spinae
        (0.33, 0.8),
        (0.45, 1.0),  # mid and upper back: the reference muscle
        (0.95, 1.1),
        (1.00, 1.3),  # the shoulder's top: trapezius over the scapular spine
    )
    """Relative stiffness at fractions u of the back length (linear between, constant beyond);
    the blades add their own (`ShapeParams.blade_stiffness`)."""
    neck_stiffness: float = Field(default=0.3, ge=0)
    """The neck yields: the same as the flat back's neck load (`BodyParams.neck_load`)."""
    step_mm: float = Field(default=1.0, gt=0)
    """Spacing of the tables along the track."""


@dataclass(frozen=True)
class BackContour:
    """One back: the surface and the stiffness along the track, every `step_mm` from `y0_mm`."""

    shape: str
    y0_mm: float
    step_mm: float
    surface_mm: tuple[float, ...]
    stiffness: tuple[float, ...]
    shoulder_mm: float
    neck_top_mm: float

    def _at(self, table: tuple[float, ...], y_mm: float) -> float:
        x = (y_mm - self.y0_mm) / self.step_mm
        if x <= 0.0:
            return table[0]
        i = int(x)
        if i >= len(table) - 1:
            return table[-1]
        f = x - i
        a, b = table[i], table[i + 1]
        if a >= NO_BODY_MM or b >= NO_BODY_MM:
            return a if f < 0.5 else b
        return a + (b - a) * f

    def surface_at(self, y_mm: float) -> float:
        """Where the skin is on the depth axis at `y_mm` (`NO_BODY_MM` above the head)."""
        return self._at(self.surface_mm, y_mm)

    def stiffness_at(self, y_mm: float) -> float:
        """The tissue's relative stiffness at `y_mm` (0 above the head)."""
        return self._at(self.stiffness, y_mm)


def _bump(u: float, centre: float, half_width: float) -> float:
    """A raised cosine: 1 at `centre`, 0 beyond ± `half_width`, smooth in between."""
    d = abs(u - centre) / half_width
    return 0.0 if d >= 1.0 else 0.5 * (1.0 + math.cos(math.pi * d))


def _ramp(x: float) -> float:
    """0 below 0, 1 above 1, a smooth (cosine) step between."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    return 0.5 * (1.0 - math.cos(math.pi * x))


def _knots(u: float, knots: tuple[tuple[float, float], ...]) -> float:
    if u <= knots[0][0]:
        return knots[0][1]
    for (u0, k0), (u1, k1) in itertools.pairwise(knots):
        if u <= u1:
            return k0 + (k1 - k0) * (u - u0) / (u1 - u0)
    return knots[-1][1]


def back_contour(
    config: ChairConfig,
    shape: str,
    shoulder_mm: float,
    neck_mm: float,
    seed: int,
    params: BackParams | None = None,
) -> BackContour:
    """The back of family `shape` for a body whose true shoulder line is `shoulder_mm` and whose
    neck reaches `neck_mm` above it, varied by `seed` (the same seed, the same back)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown back shape {shape!r}; shapes: {', '.join(BACK_SHAPES)}")
    p = params if params is not None else BackParams()
    s = SHAPES[shape]
    rnd = random.Random(f"back:{shape}:{seed}")

    def vary(x: float, by: float) -> float:
        return x * (1.0 + rnd.uniform(-by, by))

    hollow = vary(s.lumbar_hollow_mm, p.variation)
    recess = vary(s.thoracic_recess_mm, p.variation)
    blade = vary(s.blade_mm, p.variation)
    lumbar_c = s.lumbar_centre + rnd.uniform(-p.centre_variation, p.centre_variation)
    blade_c = s.blade_centre + rnd.uniform(-p.centre_variation, p.centre_variation)
    stiff_scale = 1.0 + rnd.uniform(-p.stiffness_variation, p.stiffness_variation)

    seat = config.carriage.seat_mm
    back = shoulder_mm - seat
    neck_top = shoulder_mm + neck_mm
    lo, hi = config.carriage.track_min_mm, config.carriage.track_max_mm
    n = math.floor((hi - lo) / p.step_mm) + 1
    surface: list[float] = []
    stiffness: list[float] = []
    for i in range(n):
        y = lo + i * p.step_mm
        if y > neck_top:
            surface.append(NO_BODY_MM)
            stiffness.append(0.0)
            continue
        u = (y - seat) / back
        # below the crease the glutes; above it the thoracic recess rises out of the sacrum's
        # contact, the hollow sinks into it, the blades stand out of it
        d = p.glutes_mm * (1.0 - _ramp((u + 0.04) / 0.06))
        d += recess * _ramp((u - 0.08) / 0.30)
        d += hollow * _bump(u, lumbar_c, s.lumbar_half_width)
        d -= blade * _bump(u, blade_c, s.blade_half_width)
        d = max(d, 0.0)
        k = _knots(u, p.stiffness_knots) + s.blade_stiffness * _bump(u, blade_c, s.blade_half_width)
        if y > shoulder_mm:
            r = _ramp((y - shoulder_mm) / p.neck_ramp_mm)
            d += p.neck_recess_mm * r
            k += (p.neck_stiffness - k) * r
        else:
            k *= stiff_scale
        surface.append(p.cover_mm + d)
        stiffness.append(k)
    return BackContour(
        shape=shape,
        y0_mm=lo,
        step_mm=p.step_mm,
        surface_mm=tuple(surface),
        stiffness=tuple(stiffness),
        shoulder_mm=shoulder_mm,
        neck_top_mm=neck_top,
    )
