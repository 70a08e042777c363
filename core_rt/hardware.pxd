# The hardware seam: what the tick talks to, once per tick, without the GIL.
from libc.stdint cimport int64_t
# The simulator's plant (sim/plant.pyx) and board-link drivers implement it.
from core_rt.chair_core cimport chair_setpoint, chair_status

cdef class Hardware:
    cdef int64_t period_ns
    # Apply `sp` (valid from sp.t_ns for one period) and fill `st` with the state the controller
    # should see at the next tick. Return 0, or non-zero when the hardware is gone (status stale).
    cdef int exchange(self, const chair_setpoint* sp, chair_status* st) noexcept nogil
