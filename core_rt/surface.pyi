# Type stub of the surface's B-spline (core_rt/surface.pyx).
from collections.abc import Sequence

def surface_at(
    y0_mm: float, step_mm: float, controls: Sequence[float], y_mm: float
) -> tuple[float, float, float, float]: ...
