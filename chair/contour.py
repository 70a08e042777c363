"""The back's contour from the contour scan's samples (docs/chair.md §10).

While the carriage walks up the back, the core's depth axis follows the skin at a light touch by
the depth drive's load (`Core.follow_contour`) and samples it every few millimetres of travel
(`core_rt.records.SurfaceSample`: where the carriage and the depth axis were, and the load).
The load is the tissue pressed times its stiffness, ``load = c · k · (depth − surface)`` with
`c` the chair's calibration (`contour.load_a_per_mm`), and the touch alternates between two
loads sample by sample. So around each sample, over a few centimetres where the skin is nearly a
parabola and the tissue alike, ``depth = a + b·dy + e·dy² + load / (c·k)`` is a linear fit whose
last coefficient gives the tissue's stiffness `k`, and the skin is ``depth − load / (c·k)``: the
contour never depends on guessing the tissue. Where the fit cannot tell (too few samples, or the
loads too alike) the reference stiffness stands in, and the sample says so.

The shoulder line is where the neck begins: above the lowest plausible shoulder, the first
stretch of soft tissue (`contour.neck_stiffness`) that lasts `contour.neck_min_mm`.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core_rt.config import Contour
from core_rt.records import SurfaceSample


@dataclass(frozen=True)
class SkinPoint:
    """Where the skin is at one place of the track, and how stiff the tissue is there."""

    y_mm: float
    surface_mm: float
    stiffness: float
    fitted: bool
    """False: the fit could not tell the stiffness; the reference tissue's stands in."""


@dataclass(frozen=True)
class BackContour:
    """The scanned back: the skin along the track, bottom to top (in contact only)."""

    points: tuple[SkinPoint, ...]

    def __bool__(self) -> bool:
        return bool(self.points)

    @property
    def y_range_mm(self) -> tuple[float, float]:
        return (self.points[0].y_mm, self.points[-1].y_mm)

    def surface_at(self, y_mm: float) -> float:
        """The skin at `y_mm`, linear between points, the end points' beyond them."""
        pts = self.points
        ys = [p.y_mm for p in pts]
        i = bisect.bisect_left(ys, y_mm)
        if i <= 0:
            return pts[0].surface_mm
        if i >= len(pts):
            return pts[-1].surface_mm
        a, b = pts[i - 1], pts[i]
        f = (y_mm - a.y_mm) / (b.y_mm - a.y_mm) if b.y_mm > a.y_mm else 0.0
        return a.surface_mm + (b.surface_mm - a.surface_mm) * f

    def largest_gap_mm(self, lo_mm: float, hi_mm: float) -> float:
        """The longest stretch of [lo_mm, hi_mm] without a point (the contour's resolution)."""
        ys = [lo_mm] + [p.y_mm for p in self.points if lo_mm < p.y_mm < hi_mm] + [hi_mm]
        return max(b - a for a, b in itertools.pairwise(ys))

    def as_pairs(self, step_mm: float = 0.0) -> list[list[float]]:
        """``[[y_mm, surface_mm], ...]`` (the summary's `body.contour`), `step_mm` or more
        apart. Every state payload carries it: the rounding is done once per contour."""
        cache = self._pairs_cache
        if step_mm not in cache:
            cache[step_mm] = _pairs(self.points, step_mm)
        return [list(pair) for pair in cache[step_mm]]

    @functools.cached_property
    def _pairs_cache(self) -> dict[float, tuple[tuple[float, float], ...]]:
        return {}


def in_contact(s: SurfaceSample, contour: Contour) -> bool:
    """The heads touched the skin at this sample (its load is above the contact threshold)."""
    return (
        math.isfinite(s.load_a) and s.load_a >= contour.contact_min_press_mm * contour.load_a_per_mm
    )


def _fit(
    arr: np.ndarray, y_mm: float, w: float, c: float, spread_min: float
) -> tuple[float, float] | None:
    """``depth = a + b·dy + e·dy² + q·load`` over the samples `arr` (rows of y_mm, depth_mm,
    load_a): (rms residual in A of load, q), or None when the loads are too alike, the samples
    too few, or the tissue implausible. The residual is in load, not in mm: a load's noise is
    the same on any tissue, while in mm it grows on soft tissue (mm = q · A), and the fits of
    different windows must compare alike."""
    if len(arr) < 6:
        return None
    loads = arr[:, 2]
    if loads.max() - loads.min() < spread_min:
        return None
    dy = (arr[:, 0] - y_mm) / w
    rows = np.column_stack([np.ones_like(dy), dy, dy * dy, loads])
    sol, _, rank, _ = np.linalg.lstsq(rows, arr[:, 1], rcond=None)
    q = float(sol[3])
    # a plausible tissue: between a fifth and ten times the reference's stiffness
    if rank < 4 or not 0.1 / c <= q <= 5.0 / c:
        return None
    res = rows @ sol - arr[:, 1]
    return (float(np.sqrt(np.mean(res * res))) / q, q)


FitMemo = dict[tuple[bytes, float, float, float, float], tuple[float, float] | None]
"""The window fits made so far in one scan, by their inputs (the window's samples as bytes, its
centre, the fit's constants): the neck checks every few samples refit mostly the windows the
check before fitted, and the scan's final contour all of them again (`neck_seen`,
`skin_points`). A fit is a pure function of these, so a memo changes no result."""


def neck_seen(
    samples: Sequence[SurfaceSample],
    lowest_mm: float,
    contour: Contour,
    memo: FitMemo | None = None,
) -> float | None:
    """While the scan walks: the shoulder below the neck that the samples of the last
    `NECK_LOOKBACK_MM` already show above `lowest_mm` (`find_shoulder` on them), None while
    they show none. Cheap enough to ask every few samples, the more so with the scan's `memo`."""
    if not samples or samples[-1].y_mm < lowest_mm:
        return None
    y_from = samples[-1].y_mm - NECK_LOOKBACK_MM
    recent = [s for s in samples if s.y_mm >= y_from]
    return find_shoulder(skin_points(recent, contour, memo), lowest_mm, contour)


NECK_LOOKBACK_MM = 120.0
"""`neck_seen` looks this far back down the track (a neck and the shoulder's level below)."""


def skin_points(
    samples: Sequence[SurfaceSample], contour: Contour, memo: FitMemo | None = None
) -> BackContour:
    """The skin at every sample in contact, its tissue's stiffness fitted from its neighbours
    (the fits looked up in, and added to, `memo` when one is given: `FitMemo`)."""
    c = contour.load_a_per_mm
    touched = [s for s in samples if in_contact(s, contour)]
    touched.sort(key=lambda s: s.y_mm)
    ys = [s.y_mm for s in touched]
    w = contour.fit_half_window_mm
    spread_min = 0.1 * (contour.touch_press_mm[1] - contour.touch_press_mm[0]) * c
    # the samples as one array, each window a slice of it: building a small array per window
    # cost as much as its fit (three windows a sample, every few samples while the scan walks)
    arr = np.array([(s.y_mm, s.depth_mm, s.load_a) for s in touched]).reshape(-1, 3)
    fits: list[float | None] = []
    for s in touched:
        # the centred window, and the one below and above it: at an edge of the tissue (the
        # sacrum's, the neck's) the window on one side of it fits best
        best: tuple[float, float] | None = None  # (residual, q)
        for lo_mm, hi_mm in ((-w, w), (-2 * w, 0.0), (0.0, 2 * w)):
            lo = bisect.bisect_left(ys, s.y_mm + lo_mm)
            hi = bisect.bisect_right(ys, s.y_mm + hi_mm)
            if memo is None:
                fit = _fit(arr[lo:hi], s.y_mm, w, c, spread_min)
            else:
                key = (arr[lo:hi].tobytes(), s.y_mm, w, c, spread_min)
                if key not in memo:
                    memo[key] = _fit(arr[lo:hi], s.y_mm, w, c, spread_min)
                fit = memo[key]
            if fit is not None and (best is None or fit[0] < best[0]):
                best = fit
        fits.append(None if best is None else best[1])
    # a fit that straddles where the heads came back onto the skin can be wild: each one is
    # replaced by the median of its fitted neighbours (two on each side)
    fits = [
        statistics.median(near) if (near := [q for q in fits[max(0, i - 2) : i + 3] if q]) else None
        for i in range(len(fits))
    ]
    # where the fit cannot tell, the nearest fitted tissue's stiffness stands in (tissue changes
    # smoothly), else the reference tissue's
    fitted_at = [i for i, q in enumerate(fits) if q is not None]
    points: list[SkinPoint] = []
    for i, s in enumerate(touched):
        q = fits[i]
        fitted = q is not None
        if q is None:
            near_i = min(fitted_at, key=lambda j: abs(ys[j] - s.y_mm), default=None)
            if near_i is not None and abs(ys[near_i] - s.y_mm) <= 4 * w:
                q = fits[near_i]
        if q is None:
            q = 1.0 / c
        points.append(
            SkinPoint(
                y_mm=s.y_mm,
                surface_mm=s.depth_mm - s.load_a * q,
                stiffness=1.0 / (c * q),
                fitted=fitted,
            )
        )
    return BackContour(tuple(points))


def find_shoulder(back: BackContour, lowest_mm: float, contour: Contour) -> float | None:
    """The shoulder line: above `lowest_mm`, the first stretch of soft tissue (the neck) at
    least `contour.neck_min_mm` long, followed back down the track while the skin still climbs
    steeply toward it (`contour.knee_slope`: the neck curving away); None if there is no neck."""
    pts = back.points
    start: int | None = None
    knee: int | None = None
    for i, p in enumerate(pts):
        if p.y_mm < lowest_mm:
            continue
        if p.fitted and p.stiffness < contour.neck_stiffness:
            if start is None:
                start = i
            if p.y_mm - pts[start].y_mm >= contour.neck_min_mm:
                knee = start
                break
        elif p.fitted:
            start = None
    if knee is None and start is not None and len(pts) - start >= 3:
        knee = start  # the scan stopped on the neck (`neck_seen`): it lasts to the end
    if knee is None:
        return None
    # how far the neck sits off the back below it: when it is well off, the points still at the
    # neck's level (the heads reached it before its tissue fitted soft) are the neck's too. Its
    # level is where it has curved away, its top-most soft points: the first ones may still be
    # on the curve, whose foot can lie level with the back just below the shoulder (a lumbar
    # curve's crest), and the walk down would go on along the back.
    y_neck = pts[knee].y_mm
    soft = [p.surface_mm for p in pts[knee:] if p.fitted and p.stiffness < contour.neck_stiffness]
    neck_level = statistics.median(soft[-5:])
    below = [p.surface_mm for p in pts if y_neck - 80.0 <= p.y_mm <= y_neck - 40.0]
    recessed = bool(below) and neck_level - statistics.median(below) >= 2 * contour.knee_rise_mm
    while knee > 0 and pts[knee - 1].y_mm >= lowest_mm:
        if recessed and pts[knee - 1].surface_mm >= neck_level - contour.knee_rise_mm:
            knee -= 1
            continue
        # the slope from below over at least a few samples (one sample's noise is no slope)
        j = knee - 1
        while j > 0 and pts[knee].y_mm - pts[j].y_mm < 2 * contour.sample_mm:
            j -= 1
        dy = pts[knee].y_mm - pts[j].y_mm
        if dy <= 0 or (pts[knee].surface_mm - pts[j].surface_mm) / dy < contour.knee_slope:
            break
        knee -= 1
    return pts[knee].y_mm


def scan_problem(
    samples: Sequence[SurfaceSample], shoulder_mm: float, contour: Contour
) -> str | None:
    """Why the scan's contour cannot be trusted, in words; None when it can. Below the shoulder,
    in the order the samples were taken: the back left the heads for more than
    `contour.gap_max_mm` of track (leaning forward, a back out of reach), or the skin moved by
    more than `contour.jump_max_mm` between two neighbouring samples (the user moved: a jump no
    back's curve makes in 5 mm). The check reads the load as the reference tissue's, so it never
    depends on the fit it judges."""
    c = contour.load_a_per_mm
    prev: tuple[float, float] | None = None  # (y, skin) of the last sample in contact
    for s in samples:
        if s.y_mm > shoulder_mm:
            break
        if not in_contact(s, contour):
            continue
        skin = s.depth_mm - s.load_a / c
        if prev is not None:
            dy = s.y_mm - prev[0]
            if dy > contour.gap_max_mm:
                return (
                    f"the back left the heads between {prev[0]:.0f} and {s.y_mm:.0f} mm "
                    "(leaning forward?)"
                )
            if dy <= 1.5 * contour.sample_mm and abs(skin - prev[1]) > contour.jump_max_mm:
                return (
                    f"the back moved {skin - prev[1]:+.0f} mm at {s.y_mm:.0f} mm during the scan "
                    "(a jump in its contour)"
                )
        prev = (s.y_mm, skin)
    if prev is None:
        return "the heads touched no back"
    if shoulder_mm - prev[0] > contour.gap_max_mm:
        return f"the back left the heads above {prev[0]:.0f} mm (leaning forward?)"
    return None


def _pairs(points: tuple[SkinPoint, ...], step_mm: float) -> tuple[tuple[float, float], ...]:
    out: list[tuple[float, float]] = []
    for p in points:
        if out and p.y_mm - out[-1][0] < step_mm:
            continue
        out.append((round(p.y_mm, 1), round(p.surface_mm, 2)))
    return tuple(out)
