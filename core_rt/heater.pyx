# cython: language_level=3
"""The pad heater: a PI loop on the pad thermistor, its refresh watchdog and its not-heating check.

The C contract (``heater.pxd``) is what the tick uses: ``heater_set`` when a heat command reaches
its tick, ``heater_step`` once per tick after the guard, and ``heater_off`` from a fault or an
e-stop. The thermistor's range and the over-temperature trip are the guard's measured checks
(guard.pyx); the heater gives no duty from the first tick the guard finds the reading bad.

- **PI**: duty = kp·error + ki·∫error, clamped to 0…1; the integral does not grow while the output
  is saturated in the error's direction (anti-windup).
- **Refresh**: only ``heat(target > 0)`` refreshes the target; without a refresh for
  ``heater_refresh_ns`` the heater turns off and says so (not a fault).
- **Bad reading**: no duty while the thermistor reads out of range (open or shorted sensor).
- **Not heating**: at duty ≥ ``not_heating_duty`` the pad must rise by ``not_heating_rise_c`` over
  a whole window. The window slides (sampled ``NH_SLOTS`` times per window), so a heater that dies
  mid-window is caught one window later, not two.

The fault and the timeout go out through the ``report`` callback at once (guard.pxd); the tick
latches the first fault, which turns this heater off. Nothing here takes the GIL or allocates.
See docs/core.md, "Heater".
"""

from libc.math cimport isfinite
from libc.stdint cimport int64_t

from core_rt.chair_core cimport *


cdef void heater_init(Heater* h, report_fn report, void* ctx) noexcept nogil:
    cdef int i
    h.report = report
    h.ctx = ctx
    heater_off(h)
    h.refresh_ns = 0
    h.nh_next_ns = 0
    h.nh_count = 0
    for i in range(NH_SLOTS + 1):
        h.nh_hist[i] = 0


cdef void heater_off(Heater* h) noexcept nogil:
    h.target_c = 0
    h.integral = 0
    h.duty = 0
    h.nh_start_ns = -1


cdef void heater_set(Heater* h, double target_c, int64_t now) noexcept nogil:
    if target_c <= 0 or not isfinite(target_c):
        heater_off(h)
        return
    if target_c != h.target_c:
        h.nh_start_ns = -1  # a new target: the not-heating window starts again
    h.target_c = target_c
    h.refresh_ns = now


cdef void heater_step(Heater* h, const chair_limits* L, double pad_c, int thermistor_ok,
                      int latched, int64_t now) noexcept nogil:
    cdef double err, u, dt, rise
    if h.target_c <= 0 or latched:
        h.duty = 0
        return
    if now - h.refresh_ns >= L.heater_refresh_ns:
        heater_off(h)
        h.report(h.ctx, CHAIR_EVT_HEATER_OFF, 1, -1, 0, 0)
        return
    if not thermistor_ok:
        h.duty = 0
        return
    dt = L.period_ns * 1e-9
    err = h.target_c - pad_c
    u = L.heater_kp * err + L.heater_ki * h.integral
    # integrate only when not saturated in the direction of the error (anti-windup)
    if not ((u >= 1.0 and err > 0) or (u <= 0.0 and err < 0)):
        h.integral += err * dt
    if u < 0:
        u = 0
    elif u > 1:
        u = 1
    h.duty = u
    if u >= L.not_heating_duty:
        if h.nh_start_ns < 0:
            h.nh_start_ns = now
            h.nh_next_ns = now
            h.nh_count = 0
        if now >= h.nh_next_ns:
            h.nh_hist[h.nh_count % (NH_SLOTS + 1)] = pad_c
            h.nh_count += 1
            h.nh_next_ns += L.not_heating_window_ns // NH_SLOTS
            if h.nh_count > NH_SLOTS:
                # the oldest sample is one whole window back
                rise = pad_c - h.nh_hist[h.nh_count % (NH_SLOTS + 1)]
                if rise < L.not_heating_rise_c:
                    h.report(h.ctx, CHAIR_EVT_FAULT, CHAIR_FAULT_HEATER_NOT_HEATING, -1, rise,
                             L.not_heating_rise_c)
    else:
        h.nh_start_ns = -1
