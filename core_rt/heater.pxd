# The pad heater: its PI loop, its refresh watchdog and its not-heating check.
# Contract used by the tick (core_rt/core.pyx); implemented in core_rt/heater.pyx.
from libc.stdint cimport int64_t
from core_rt.chair_core cimport chair_limits
from core_rt.guard cimport report_fn

cdef enum:
    NH_SLOTS = 32        # "not heating": the sliding window in this many steps

cdef struct Heater:
    report_fn report     # faults and the refresh timeout go out through it (guard.pxd)
    void* ctx
    double target_c      # 0: off
    double integral      # °C·s, the PI's integral of the error
    double duty          # 0..1: what the tick sends
    int64_t refresh_ns   # when the target was last set (heat(target > 0))
    int64_t nh_start_ns  # at high duty since (-1: not at high duty)
    int64_t nh_next_ns   # next sample of the not-heating window
    int nh_count         # samples taken since nh_start_ns
    double nh_hist[NH_SLOTS + 1]  # pad temperature every window / NH_SLOTS

# A heater that is off, reporting through report(ctx, ...).
cdef void heater_init(Heater* h, report_fn report, void* ctx) noexcept nogil

# Off at once: target, integral and duty to 0 (fault, e-stop, heat(0), refresh timeout).
cdef void heater_off(Heater* h) noexcept nogil

# A heat command reached its tick: a target > 0 sets and refreshes the heater, anything else
# (0, NaN) turns it off.
cdef void heater_set(Heater* h, double target_c, int64_t now) noexcept nogil

# One tick of the heater, after the guard: off while latched or without a target, the refresh
# timeout (a CHAIR_EVT_HEATER_OFF report, code 1), no duty while the guard finds the thermistor
# out of range (`thermistor_ok` 0: cut in the very tick of the first bad reading), the PI loop
# with anti-windup on the pad reading `pad_c`, and the not-heating check (at high duty the pad
# must rise by not_heating_rise_c over a sliding window: a fault report).
cdef void heater_step(Heater* h, const chair_limits* L, double pad_c, int thermistor_ok,
                      int latched, int64_t now) noexcept nogil
