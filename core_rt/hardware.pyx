# cython: language_level=3
"""The hardware seam (see hardware.pxd). This base class is a chair with nothing attached."""
from libc.string cimport memset
from core_rt.chair_core cimport chair_setpoint, chair_status


cdef class Hardware:
    """Base of every hardware the core can drive. Subclasses override ``exchange`` in Cython."""

    def __cinit__(self, *args, **kwargs):
        self.period_ns = 1_000_000

    cdef int exchange(self, const chair_setpoint* sp, chair_status* st) noexcept nogil:
        memset(st, 0, sizeof(chair_status))
        st.t_ns = sp.t_ns
        st.link_stale_ns = -1  # no link to say how long: the guard times it
        return 1
