"""Pressing relative to the surface (docs/chair.md §10): the scanned back as the core's surface.

Once the contour scan has measured the back (`chair.contour`), a depth level means a press into
the tissue: the core's depth axis commands the press plus the surface under the carriage
(docs/core.md, Pressing relative to the surface). This module turns the scan into what the core
and the planner need:

- `surface_from_contour`: the surface as a uniform cubic B-spline, its control points a
  least-squares fit to the scanned skin with a penalty on bending (a P-spline: the scan's noise
  smoothed away, the back's curves kept). The core evaluates the same spline every tick
  (`core_rt.surface`); a B-spline's derivatives are bounded by its control points' differences,
  which is what the planner needs.
- `PressSurface.follow_limits`: how fast the carriage may stroke over a stretch of the back so
  that the depth axis, following the surface, keeps within `contour.follow_fraction` of its own
  speed, acceleration and jerk (the chain rule, term by term).
- `PressSurface.reach_mm`: the deepest press the depth's range allows over a stretch.
- `load_bounds`: the guard's bound on the depth drive's load per zone, from the zone's cap and its
  stiffest scanned tissue (a wrong surface cannot press harder than the cap allows).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from chair.contour import BackContour
from core_rt.config import ZONES, ChairConfig, MotionLimits
from core_rt.surface import surface_at

PAD = 2
"""Equal control points the core adds at each end (with the end one: three), so the surface
continues flat beyond the scanned span with every derivative continuous."""


@dataclass(frozen=True)
class PressSurface:
    """The surface the heads press relative to: control points `control_mm`, `step_mm` apart
    from `y0_mm` (as `Core.set_surface` takes them), and the zones' load bounds."""

    y0_mm: float
    step_mm: float
    control_mm: tuple[float, ...]
    load_max_a: Mapping[str, float]

    @property
    def padded(self) -> tuple[float, ...]:
        c = self.control_mm
        return (c[0],) * PAD + c + (c[-1],) * PAD

    @property
    def is_flat(self) -> bool:
        return min(self.control_mm) == max(self.control_mm)

    def flattened(self) -> PressSurface:
        """The same span held at its nearest skin (the smallest control point: the spline never
        comes nearer than it): pressing relative to it follows nothing and is never deeper than
        pressing relative to the back itself."""
        near = min(self.control_mm)
        return PressSurface(self.y0_mm, self.step_mm, (near,) * len(self.control_mm),
                            self.load_max_a)  # fmt: skip

    def at(self, y_mm: float) -> float:
        """The surface at `y_mm`: the core's own evaluation."""
        h = self.step_mm
        return surface_at(self.y0_mm - PAD * h, h, self.padded, y_mm)[0]

    def _window(self, lo_mm: float, hi_mm: float) -> tuple[float, ...]:
        """The padded control points that shape the surface over [lo_mm, hi_mm]."""
        c = self.padded
        n = len(c)
        h = self.step_mm
        y0 = self.y0_mm - PAD * h

        def seg(y: float) -> int:
            u = min(max((y - y0) / h, 1.0), n - 2.0)
            return min(math.floor(u), n - 3)

        a, b = sorted((lo_mm, hi_mm))
        return c[seg(a) - 1 : seg(b) + 3]

    def bounds(self, lo_mm: float, hi_mm: float) -> tuple[float, float, float]:
        """Upper bounds of |s'|, |s''|, |s'''| over [lo_mm, hi_mm] (mm/mm, 1/mm, 1/mm²): the
        largest first, second and third differences of the control points there."""
        w = self._window(lo_mm, hi_mm)
        h = self.step_mm
        d1 = [b - a for a, b in itertools.pairwise(w)]
        d2 = [b - a for a, b in itertools.pairwise(d1)]
        d3 = [b - a for a, b in itertools.pairwise(d2)]
        return (
            max(map(abs, d1), default=0.0) / h,
            max(map(abs, d2), default=0.0) / h**2,
            max(map(abs, d3), default=0.0) / h**3,
        )

    def deepest_mm(self, lo_mm: float, hi_mm: float) -> float:
        """The deepest the surface lies over [lo_mm, hi_mm] (at most its control points')."""
        return max(self._window(lo_mm, hi_mm))

    def reach_mm(self, config: ChairConfig, lo_mm: float, hi_mm: float) -> float:
        """The deepest press the depth's range allows everywhere over [lo_mm, hi_mm]."""
        return config.depth.max_mm - self.deepest_mm(lo_mm, hi_mm) - config.contour.reach_margin_mm

    def follow_limits(
        self, config: ChairConfig, lo_mm: float, hi_mm: float, v_max: float
    ) -> tuple[float, float, float]:
        """(v, a, j) for a carriage move between `lo_mm` and `hi_mm` at up to `v_max`, within
        the carriage's limits, such that the depth following the surface (the press at rest)
        keeps within `contour.follow_fraction` f of the depth's limits. By the chain rule, with
        S1, S2, S3 the bounds of the surface's first three derivatives over the stretch:

            v_d = s1·v                     ≤ S1·v                  ≤ f·v_max_d
            a_d = s2·v² + s1·a             ≤ S2·v² + S1·a          ≤ f·a_max_d
            j_d = s3·v³ + 3·s2·v·a + s1·j  ≤ S3·v³ + 3·S2·v·a + S1·j ≤ f·j_max_d

        The speed takes at most half of the acceleration's and the jerk's budgets, the carriage's
        acceleration what is left of the first, its jerk what is left of the second."""
        f = config.contour.follow_fraction
        c: MotionLimits = config.carriage.limits
        d: MotionLimits = config.depth.limits
        s1, s2, s3 = self.bounds(lo_mm, hi_mm)
        v = min(v_max, c.v_max)
        if s1 > 0:
            v = min(v, f * d.v_max / s1)
        if s2 > 0:
            v = min(v, math.sqrt(0.5 * f * d.a_max / s2))
        if s3 > 0:
            v = min(v, (0.5 * f * d.j_max / s3) ** (1 / 3))
        a, j = c.a_max, c.j_max
        if s1 > 0:
            a = min(a, (f * d.a_max - s2 * v * v) / s1)
        rest = f * d.j_max - s3 * v**3  # ≥ half of the jerk's budget
        if s2 > 0:
            a = min(a, 0.5 * rest / (3 * s2 * v))
        if s1 > 0:
            j = min(j, (rest - 3 * s2 * v * a) / s1)
        return v, a, j


def _weights(u: float, n: int) -> tuple[int, tuple[float, float, float, float]]:
    """The segment of padded control points (n of them) at spline parameter `u` and the cubic
    B-spline basis weights of its four control points (as `core_rt.surface` evaluates)."""
    u = min(max(u, 1.0), n - 2.0)
    i = min(math.floor(u), n - 3)
    t = u - i
    return i, (
        (1 - t) ** 3 / 6,
        (3 * t**3 - 6 * t**2 + 4) / 6,
        (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
        t**3 / 6,
    )


def surface_from_contour(
    contour: BackContour,
    config: ChairConfig,
    zones: Mapping[str, tuple[float, float]],
    shoulder_mm: float,
) -> PressSurface:
    """The scanned skin as a surface: control points every `contour.sample_mm` from the scan's
    start to the shoulder line, fitted by least squares with `contour.surface_smoothing` on
    their second differences, kept inside the depth's range; and the zones' load bounds
    (`load_bounds`). Above the shoulder line the surface stays at the shoulder's level: the neck
    curves away from the heads (up to 15 mm over 3 cm) faster than the depth can follow a stroke
    up the back, so over it the heads press lighter than their level, never deeper."""
    k = config.contour
    h = k.sample_mm
    pts = tuple(p for p in contour.points if p.y_mm <= shoulder_mm) or contour.points[:1]
    y0, y1 = pts[0].y_mm, pts[-1].y_mm
    n = max(2, math.ceil((y1 - y0) / h - 1e-9) + 1)
    npad = n + 2 * PAD
    rows = np.zeros((len(pts), n))
    for r, p in enumerate(pts):
        i, w = _weights((p.y_mm - (y0 - PAD * h)) / h, npad)
        for off, wk in enumerate(w):
            col = min(max(i - 1 + off - PAD, 0), n - 1)
            rows[r, col] += wk
    target = np.array([p.surface_mm for p in pts])
    lhs = rows.T @ rows
    if n >= 3:
        d2 = np.diff(np.eye(n), 2, axis=0)
        lhs += k.surface_smoothing * d2.T @ d2
    ctl = np.linalg.lstsq(lhs, rows.T @ target, rcond=None)[0]
    lo, hi = config.depth.min_mm, config.depth.max_mm
    control = tuple(float(min(max(c, lo), hi)) for c in ctl)
    return PressSurface(y0, h, control, load_bounds(contour, config, zones))


def load_bounds(
    contour: BackContour, config: ChairConfig, zones: Mapping[str, tuple[float, float]]
) -> dict[str, float]:
    """Per zone, the most the depth drive may load pressing there: the zone's cap (its deepest
    level) plus `contour.load_allowance_mm`, on the zone's stiffest scanned tissue taken
    `contour.load_stiffness_margin` stiffer (where the scan saw none of a zone, the stiffest
    tissue of the whole back)."""
    k = config.contour
    caps = config.body.zone_caps
    stiffest = max(p.stiffness for p in contour.points)
    out: dict[str, float] = {}
    for z in ZONES:
        lo, hi = zones[z]
        ks = [p.stiffness for p in contour.points if lo <= p.y_mm <= hi]
        stiff = max(ks) if ks else stiffest
        cap = config.depth.level_mm(caps[z].depth_level)
        out[z] = k.load_a_per_mm * stiff * k.load_stiffness_margin * (cap + k.load_allowance_mm)
    return out
