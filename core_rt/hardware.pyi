# Type stub of the hardware seam (core_rt/hardware.pyx); the seam itself is C-level (exchange).
class Hardware:
    period_ns: int
    def __init__(self, *args: object, **kwargs: object) -> None: ...
