# The scanned back's surface on the depth axis, as the tick uses it (docs/core.md, Pressing
# relative to the surface). Contract used by the tick (core_rt/core.pyx); implemented in
# core_rt/surface.pyx.
from core_rt.chair_core cimport CHAIR_N_ZONES

cdef enum:
    SURFACE_MAX = 512   # control points (5 mm apart: 2.5 m of track)

# A uniform cubic B-spline: control point i at y0_mm + i·step_mm. It is C2 everywhere, and the
# first and last three control points are equal (the loader pads them), so beyond its ends the
# surface continues flat with its derivatives continuous: a carriage that walks past the scanned
# span never meets a kink. n == 0: no surface.
cdef struct Surface:
    int n
    double y0_mm
    double step_mm
    double c[SURFACE_MAX]
    double load_max_a[CHAIR_N_ZONES]   # the guard's pressing-force bound per zone (A)

# No surface.
cdef void surface_clear(Surface* s) noexcept nogil

# The surface at y and its first three derivatives along the track (mm, mm/mm, 1/mm, 1/mm²).
# Requires s.n >= 4.
cdef void surface_eval(const Surface* s, double y, double* f0, double* f1, double* f2,
                       double* f3) noexcept nogil
