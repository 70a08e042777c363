# The core's outputs as named, read-only records (implemented in core_rt/records.pyx).
from libc.stdint cimport int64_t
from core_rt.chair_core cimport chair_event, chair_surface_sample, chair_telemetry

cdef class Telemetry:
    cdef readonly int64_t t_ns
    cdef readonly int mode             # index into core.MODES
    cdef readonly int fault            # index into core.FAULT_CODES (0: none)
    cdef readonly int zone             # index into ZONES, -1 outside every zone or no body
    cdef readonly int flags            # bit0 arm contact, bit1 seat occupied, bit2 heater on
    cdef readonly double y_mm, v_mm_s, a_mm_s2
    cdef readonly double width_mm, left_x_mm, right_x_mm, depth_mm
    cdef readonly double knead_rpm, tap_hz
    cdef readonly double heat_target_c, heat_c, heater_duty
    cdef readonly double y_meas_mm
    cdef readonly double surface_mm    # the scanned surface under the carriage (NaN: none)
    cdef readonly double press_mm      # depth_mm - surface_mm (NaN: no surface)
    cdef readonly double depth_load_a  # the depth drive's load (NaN: not measured)
    cdef readonly double depth_meas_mm # the depth encoder

cdef class CoreEvent:
    cdef readonly int64_t t_ns
    cdef readonly str kind             # a value of EVENT_KINDS
    cdef readonly int code
    cdef readonly double value
    cdef readonly double limit
    cdef readonly int axis             # index into core.AXES, -1 if none

cdef class SurfaceSample:
    cdef readonly int64_t t_ns
    cdef readonly double y_mm          # carriage encoder
    cdef readonly double depth_mm      # depth encoder
    cdef readonly double load_a        # the depth drive's load
    cdef readonly double target_a      # the load the depth axis was following

cdef Telemetry telemetry_record(const chair_telemetry* r)
cdef SurfaceSample surface_record(const chair_surface_sample* s)
cdef CoreEvent event_record(const chair_event* e)
