# cython: language_level=3
"""The scanned back's surface on the depth axis: a uniform cubic B-spline the tick evaluates.

While the heads press relative to the surface (docs/core.md, Pressing relative to the surface),
the depth axis's setpoint is the press profile plus the surface under the carriage, so the
surface must be smooth enough that the sum stays within the depth's limits: a cubic B-spline is
C2 (its velocity and acceleration are continuous, its jerk bounded), and its derivatives are
bounded by the differences of its control points (the planner's bounds, `chair.surface`).

The control points come from the session (`chair.surface.surface_controls`, a least-squares fit
to the contour scan); `Core.set_surface` pads three equal points at each end so the surface
continues flat beyond the scanned span with every derivative continuous. `surface_at` is the
same evaluation for Python (tests, plots): one formula, one owner.
"""

from libc.math cimport floor

from core_rt.chair_core cimport CHAIR_N_ZONES


cdef void surface_clear(Surface* s) noexcept nogil:
    cdef int i
    s.n = 0
    s.y0_mm = 0
    s.step_mm = 1
    for i in range(CHAIR_N_ZONES):
        s.load_max_a[i] = 0


cdef void surface_eval(const Surface* s, double y, double* f0, double* f1, double* f2,
                       double* f3) noexcept nogil:
    cdef double h = s.step_mm
    cdef double u = (y - s.y0_mm) / h
    cdef double lo = 1.0
    cdef double hi = s.n - 2.0
    cdef int i, beyond = 0
    cdef double t, t2, t3, c0, c1, c2, c3
    # beyond the control points' span the (padded, flat) end value holds
    if u < lo:
        u = lo
        beyond = 1
    elif u > hi:
        u = hi
        beyond = 1
    i = <int>floor(u)
    if i > s.n - 3:
        i = s.n - 3
    t = u - i
    t2 = t * t
    t3 = t2 * t
    c0 = s.c[i - 1]
    c1 = s.c[i]
    c2 = s.c[i + 1]
    c3 = s.c[i + 2]
    f0[0] = ((1 - t) * (1 - t) * (1 - t) * c0 + (3 * t3 - 6 * t2 + 4) * c1
             + (-3 * t3 + 3 * t2 + 3 * t + 1) * c2 + t3 * c3) / 6.0
    f1[0] = (-(1 - t) * (1 - t) * c0 + (3 * t2 - 4 * t) * c1 + (-3 * t2 + 2 * t + 1) * c2
             + t2 * c3) / (2.0 * h)
    f2[0] = ((1 - t) * c0 + (3 * t - 2) * c1 + (1 - 3 * t) * c2 + t * c3) / (h * h)
    f3[0] = (-c0 + 3 * c1 - 3 * c2 + c3) / (h * h * h)
    if beyond:
        f1[0] = 0
        f2[0] = 0
        f3[0] = 0


def surface_at(double y0_mm, double step_mm, controls, double y_mm):
    """(surface, slope, curvature, third derivative) at `y_mm` of the B-spline with `controls`
    (already padded: the first and last three equal) starting at `y0_mm`, `step_mm` apart."""
    cdef Surface s
    cdef double f0, f1, f2, f3
    cdef int k
    n = len(controls)
    if not 4 <= n <= SURFACE_MAX:
        raise ValueError(f"a surface needs 4..{SURFACE_MAX} control points, got {n}")
    if not step_mm > 0:
        raise ValueError(f"step_mm must be > 0, got {step_mm!r}")
    s.n = n
    s.y0_mm = y0_mm
    s.step_mm = step_mm
    for k in range(n):
        s.c[k] = controls[k]
    surface_eval(&s, y_mm, &f0, &f1, &f2, &f3)
    return (f0, f1, f2, f3)
