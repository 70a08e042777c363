# cython: language_level=3
"""The core's outputs as named, read-only records: `Telemetry` and `CoreEvent`.

``Core.drain_telemetry()`` and ``Core.drain_events()`` hand these out, one per record the tick
pushed into its rings (the C structs ``chair_telemetry`` and ``chair_event`` of
include/chair_core.h). Fields are typed and read-only, named in the chair's words with their
units, so nothing above the core reads a position in a tuple. Records compare equal when every
field is equal, hash, pickle and print with their field names. See docs/core.md, "Events and
telemetry".
"""

cimport cython

from core_rt.chair_core cimport *

EVENT_KINDS = {
    CHAIR_EVT_FAULT: "fault", CHAIR_EVT_ESTOP: "estop", CHAIR_EVT_RESET: "reset",
    CHAIR_EVT_AXIS_IDLE: "axis_idle", CHAIR_EVT_CONTACT: "contact",
    CHAIR_EVT_OCCUPANCY: "occupancy", CHAIR_EVT_ZONE: "zone", CHAIR_EVT_HEATER_OFF: "heater_off",
    CHAIR_EVT_AT_REST: "at_rest", CHAIR_EVT_LINK: "link",
}
"""Event kind names, by the C enum chair_event_kind."""

TELEMETRY_FIELDS = (
    "t_ns", "mode", "fault", "zone", "flags", "y_mm", "v_mm_s", "a_mm_s2", "width_mm",
    "left_x_mm", "right_x_mm", "depth_mm", "knead_rpm", "tap_hz", "heat_target_c", "heat_c",
    "heater_duty", "y_meas_mm", "surface_mm", "press_mm", "depth_load_a",
    "depth_meas_mm",
)
"""The fields of a `Telemetry` record, in the order of its constructor."""

EVENT_FIELDS = ("t_ns", "kind", "code", "value", "limit", "axis")
"""The fields of a `CoreEvent`, in the order of its constructor."""

SURFACE_FIELDS = ("t_ns", "y_mm", "depth_mm", "load_a", "target_a")
"""The fields of a `SurfaceSample`, in the order of its constructor."""


@cython.freelist(64)
cdef class Telemetry:
    """One telemetry record: what the tick commanded at `t_ns` and what the sensors said.

    `mode` indexes core.MODES, `fault` core.FAULT_CODES (0: none), `zone` ZONES (-1: outside
    every zone, or no body set); `flags`: bit0 arm contact, bit1 seat occupied, bit2 heater on.
    y/v/a are the carriage's, `left_x_mm`/`right_x_mm` the heads' lateral contact points (spine at
    0, kneading orbit included), `y_meas_mm` the carriage encoder. `surface_mm` is the scanned
    back's surface under the carriage and `press_mm` = `depth_mm` − `surface_mm` (both NaN
    without a surface), `depth_load_a` the depth drive's load (NaN: not measured), `depth_meas_mm` the depth encoder."""

    def __init__(self, int64_t t_ns, int mode, int fault, int zone, int flags, double y_mm,
                 double v_mm_s, double a_mm_s2, double width_mm, double left_x_mm,
                 double right_x_mm, double depth_mm, double knead_rpm, double tap_hz,
                 double heat_target_c, double heat_c, double heater_duty, double y_meas_mm,
                 double surface_mm, double press_mm, double depth_load_a,
                 double depth_meas_mm):
        self.t_ns = t_ns
        self.mode = mode
        self.fault = fault
        self.zone = zone
        self.flags = flags
        self.y_mm = y_mm
        self.v_mm_s = v_mm_s
        self.a_mm_s2 = a_mm_s2
        self.width_mm = width_mm
        self.left_x_mm = left_x_mm
        self.right_x_mm = right_x_mm
        self.depth_mm = depth_mm
        self.knead_rpm = knead_rpm
        self.tap_hz = tap_hz
        self.heat_target_c = heat_target_c
        self.heat_c = heat_c
        self.heater_duty = heater_duty
        self.y_meas_mm = y_meas_mm
        self.surface_mm = surface_mm
        self.press_mm = press_mm
        self.depth_load_a = depth_load_a
        self.depth_meas_mm = depth_meas_mm

    def __eq__(self, other):
        if not isinstance(other, Telemetry):
            return NotImplemented
        return _key(_telemetry_values(self)) == _key(_telemetry_values(<Telemetry>other))

    def __hash__(self):
        return hash(_key(_telemetry_values(self)))

    def __reduce__(self):
        return (Telemetry, _telemetry_values(self))

    def __repr__(self):
        return _repr("Telemetry", TELEMETRY_FIELDS, _telemetry_values(self))


@cython.freelist(16)
cdef class CoreEvent:
    """One event of the core at `t_ns`; `kind` is one of EVENT_KINDS' names.

    fault: `code` indexes core.FAULT_CODES, `value` is the offending value, `limit` the limit it
    broke, `axis` the axis (or motor) it is about (core.AXES index; -1 if none). estop: `code` is
    the fault latched before (0 if none). reset: 1 accepted, 0 refused. axis_idle: `code` and
    `axis` the axis, `value` where it stopped. contact: `code` the new arm contact, `value` the
    measured carriage y. occupancy: 0 gone, 1 back. zone: `code` the zone entered, `value` the
    carriage y. heater_off: 1 refresh timeout. at_rest: `code` the mode, `value` the carriage y.
    link: 0 lost, 1 back."""

    def __init__(self, int64_t t_ns, str kind not None, int code, double value=0.0,
                 double limit=0.0, int axis=-1):
        self.t_ns = t_ns
        self.kind = kind
        self.code = code
        self.value = value
        self.limit = limit
        self.axis = axis

    def __eq__(self, other):
        if not isinstance(other, CoreEvent):
            return NotImplemented
        return _event_values(self) == _event_values(<CoreEvent>other)

    def __hash__(self):
        return hash(_event_values(self))

    def __reduce__(self):
        return (CoreEvent, _event_values(self))

    def __repr__(self):
        return _repr("CoreEvent", EVENT_FIELDS, _event_values(self))


@cython.freelist(64)
cdef class SurfaceSample:
    """One sample of the contour scan (`Core.follow_contour`): where the carriage and the depth
    axis were (encoders) and the depth drive's load there, with the load the axis was following.
    Where the skin is follows from these (`chair.contour`); a load below the contact threshold
    means the heads were off the skin."""

    def __init__(self, int64_t t_ns, double y_mm, double depth_mm, double load_a,
                 double target_a):
        self.t_ns = t_ns
        self.y_mm = y_mm
        self.depth_mm = depth_mm
        self.load_a = load_a
        self.target_a = target_a

    def __eq__(self, other):
        if not isinstance(other, SurfaceSample):
            return NotImplemented
        return _surface_values(self) == _surface_values(<SurfaceSample>other)

    def __hash__(self):
        return hash(_surface_values(self))

    def __reduce__(self):
        return (SurfaceSample, _surface_values(self))

    def __repr__(self):
        return _repr("SurfaceSample", SURFACE_FIELDS, _surface_values(self))


cdef tuple _surface_values(SurfaceSample s):
    return (s.t_ns, s.y_mm, s.depth_mm, s.load_a, s.target_a)


cdef SurfaceSample surface_record(const chair_surface_sample* s):
    cdef SurfaceSample r = SurfaceSample.__new__(SurfaceSample)
    r.t_ns = s.t_ns
    r.y_mm = s.y_mm
    r.depth_mm = s.depth_mm
    r.load_a = s.load_a
    r.target_a = s.target_a
    return r


cdef tuple _telemetry_values(Telemetry r):
    return (r.t_ns, r.mode, r.fault, r.zone, r.flags, r.y_mm, r.v_mm_s, r.a_mm_s2, r.width_mm,
            r.left_x_mm, r.right_x_mm, r.depth_mm, r.knead_rpm, r.tap_hz, r.heat_target_c,
            r.heat_c, r.heater_duty, r.y_meas_mm, r.surface_mm, r.press_mm, r.depth_load_a,
            r.depth_meas_mm)


cdef tuple _key(tuple values):
    """The values with NaN as None: a field that is absent (NaN) in both records is equal, and
    hashes alike (a NaN's hash is its identity's)."""
    return tuple([None if v != v else v for v in values])


cdef tuple _event_values(CoreEvent e):
    return (e.t_ns, e.kind, e.code, e.value, e.limit, e.axis)


cdef str _repr(str name, tuple fields, tuple values):
    return f"{name}({', '.join(f'{f}={v!r}' for f, v in zip(fields, values))})"


cdef Telemetry telemetry_record(const chair_telemetry* r):
    cdef Telemetry t = Telemetry.__new__(Telemetry)
    t.t_ns = r.t_ns
    t.mode = r.mode
    t.fault = r.fault
    t.zone = r.zone
    t.flags = r.flags
    t.y_mm = r.y_mm
    t.v_mm_s = r.v_mm_s
    t.a_mm_s2 = r.a_mm_s2
    t.width_mm = r.width_mm
    t.left_x_mm = r.left_x_mm
    t.right_x_mm = r.right_x_mm
    t.depth_mm = r.depth_mm
    t.knead_rpm = r.knead_rpm
    t.tap_hz = r.tap_hz
    t.heat_target_c = r.heat_target_c
    t.heat_c = r.heat_c
    t.heater_duty = r.heater_duty
    t.y_meas_mm = r.y_meas_mm
    t.surface_mm = r.surface_mm
    t.press_mm = r.press_mm
    t.depth_load_a = r.depth_load_a
    t.depth_meas_mm = r.depth_meas_mm
    return t


cdef CoreEvent event_record(const chair_event* e):
    cdef CoreEvent ev = CoreEvent.__new__(CoreEvent)
    ev.t_ns = e.t_ns
    ev.kind = EVENT_KINDS.get(e.kind, str(e.kind))
    ev.code = e.code
    ev.value = e.value
    ev.limit = e.limit
    ev.axis = e.axis
    return ev
