# cython: language_level=3
"""The guard: every check the tick makes on what it commands and on what the sensors say.

The C contract (``guard.pxd``) is what the tick uses, once per tick, in this order:

1. ``guard_commanded``, before the hardware exchange, on the setpoints the tick is about to send:
   axis ranges, velocity and acceleration limits, the spine keep-out, tapping while the width
   moves, the body's top and the zone caps (on the press into the tissue once the surface is
   known). It fires in the tick the violation starts.
2. ``guard_measured`` on the status the exchange brought back: the link first (a stale status
   says nothing about the chair), then the board's own faults, the controller watchdog, the track
   limits, stall and tracking per position axis, motor currents, the supply, the pad thermistor
   (out of range: the heater stops at once, ``heater.pxd``; a fault after the debounce), the
   depth drive's load against its zone's bound (while a surface is set) and the seat's occupancy.

A broken rule is reported at once through the ``report`` callback the tick gave ``guard_init``
(the tick latches the first fault and starts the controlled stop right there), so every later
check of the same tick sees the axes as the stop left them. The debounce timers and the stall
windows advance every tick, whatever was found. A broken rule is the rare case: every check is
written ``if rarely(...)`` so the compiler keeps the reports off the tick's straight path. Nothing
here takes the GIL or allocates. See docs/core.md, "The guard".
"""

from libc.math cimport fabs, cos, isfinite, M_PI
from libc.stdint cimport int64_t

from core_rt.chair_core cimport *
from core_rt.motion cimport Axis

cdef extern from *:
    """
    #if defined(__GNUC__)
    #define CHAIR_RARELY(x) __builtin_expect(!!(x), 0)
    #else
    #define CHAIR_RARELY(x) (x)
    #endif
    """
    bint rarely "CHAIR_RARELY"(bint) noexcept nogil


cdef inline void _fault(Guard* g, int code, int axis, double value, double limit) noexcept nogil:
    g.report(g.ctx, CHAIR_EVT_FAULT, code, axis, value, limit)


cdef void guard_init(Guard* g, const chair_limits* L, report_fn report, void* ctx) noexcept nogil:
    cdef int i
    cdef double tol = L.limit_tolerance_rel
    g.report = report
    g.ctx = ctx
    for i in range(CHAIR_N_AXES):
        g.v_over[i] = L.axis[i].v_max * (1 + tol) + 1e-12
        g.a_over[i] = L.axis[i].a_max * (1 + tol) + 1e-12
        g.a_over_estop[i] = L.axis[i].estop_a_max * (1 + tol) + 1e-12
    for i in range(CHAIR_N_POSITION_AXES):
        g.p_under[i] = L.axis[i].min_mm - 1e-9
        g.p_over[i] = L.axis[i].max_mm + 1e-9
    g.body_set = 0
    for i in range(CHAIR_N_ZONES + 1):
        g.zone_edge[i] = 0
    g.zone = CHAIR_ZONE_NONE
    g.pressing = 0
    g.left_x_mm = 0
    g.right_x_mm = 0
    g.last_cmd_ns = 0
    g.watchdog_armed = 0
    for i in range(CHAIR_N_POSITION_AXES):
        guard_rest(g, i, 0.0, 0)
    for i in range(CHAIR_N_MOTORS):
        g.overcurrent_since_ns[i] = -1
    g.supply_bad_ns = -1
    g.thermistor_bad_ns = -1
    g.seat_empty_ns = -1
    g.link_bad_ns = 0
    g.link_was_ok = 1
    g.occupied = 1
    g.load_on = 0
    g.load_bad_ns = -1
    for i in range(CHAIR_N_ZONES):
        g.load_max_a[i] = 0


cdef void guard_fed(Guard* g, int64_t now) noexcept nogil:
    g.last_cmd_ns = now
    g.watchdog_armed = 1


cdef void guard_set_body(Guard* g, const double* edges) noexcept nogil:
    cdef int i
    if edges == NULL:
        g.body_set = 0
        return
    for i in range(CHAIR_N_ZONES + 1):
        g.zone_edge[i] = edges[i]
    g.body_set = 1


cdef void guard_set_load(Guard* g, const double* load_max_a) noexcept nogil:
    cdef int i
    g.load_bad_ns = -1
    if load_max_a == NULL:
        g.load_on = 0
        return
    g.load_min_a = load_max_a[0]
    for i in range(CHAIR_N_ZONES):
        g.load_max_a[i] = load_max_a[i]
        if load_max_a[i] < g.load_min_a:
            g.load_min_a = load_max_a[i]
    g.load_on = 1


cdef void guard_rest(Guard* g, int i, double p, int64_t now) noexcept nogil:
    g.stall_enc_mm[i] = p
    g.stall_cmd_mm[i] = p
    g.stall_since_ns[i] = now


cdef inline int _zone_of(const Guard* g, double y) noexcept nogil:
    cdef int i
    if y < g.zone_edge[0] or y > g.zone_edge[CHAIR_N_ZONES]:
        return CHAIR_ZONE_NONE
    for i in range(CHAIR_N_ZONES - 1, -1, -1):
        if y >= g.zone_edge[i]:
            return i
    return CHAIR_ZONE_NONE


cdef void guard_commanded(Guard* g, const chair_limits* L, const Axis* ax, int estop,
                          double press_mm) noexcept nogil:
    cdef int i, z
    cdef const Axis* x
    cdef double cap, e, th, clear, y, press
    cdef const double* a_over = &g.a_over_estop[0] if estop else &g.a_over[0]
    # the setpoint this tick sends (a fault below starts a stop, which re-evaluates the axes)
    cdef double w = ax[CHAIR_AXIS_WIDTH].p
    cdef double depth = ax[CHAIR_AXIS_DEPTH].p
    cdef double knead = ax[CHAIR_AXIS_KNEADING].v
    cdef double tap = ax[CHAIR_AXIS_TAPPING].v
    for i in range(CHAIR_N_AXES):
        x = &ax[i]
        if rarely(fabs(x.v) > g.v_over[i]):
            _fault(g, CHAIR_FAULT_VELOCITY, i, fabs(x.v), L.axis[i].v_max)
        if rarely(fabs(x.a) > a_over[i]):
            _fault(g, CHAIR_FAULT_ACCELERATION, i, fabs(x.a),
                   L.axis[i].estop_a_max if estop else L.axis[i].a_max)
        if i < CHAIR_N_POSITION_AXES:
            if rarely(x.p < g.p_under[i]):
                _fault(g, CHAIR_FAULT_TRACK_RANGE, i, x.p, L.axis[i].min_mm)
            elif rarely(x.p > g.p_over[i]):
                _fault(g, CHAIR_FAULT_TRACK_RANGE, i, x.p, L.axis[i].max_mm)
    # pressing: into the tissue once its surface is known (the press), from home before
    press = press_mm if isfinite(press_mm) else depth
    g.pressing = press > L.retracted_depth_mm or knead != 0 or tap != 0
    # lateral contact points, kneading orbit included (spine at x = 0)
    e = L.eccentricity_mm if knead != 0 else 0.0
    th = 2.0 * M_PI * ax[CHAIR_AXIS_KNEADING].p / 60.0
    g.left_x_mm = -0.5 * w + e * cos(th)
    g.right_x_mm = 0.5 * w - e * cos(th)
    clear = 0.5 * w - e - L.contact_radius_mm - L.spine_half_width_mm - L.spine_margin_mm
    if rarely(clear < -1e-9):
        _fault(g, CHAIR_FAULT_SPINE_CLEARANCE, -1, clear, 0.0)
    if rarely(tap != 0 and ax[CHAIR_AXIS_WIDTH].busy):
        _fault(g, CHAIR_FAULT_TAPPING_WIDTH, -1, tap, w)
    z = CHAIR_ZONE_NONE
    if g.body_set:
        y = ax[CHAIR_AXIS_CARRIAGE].p
        z = _zone_of(g, y)
        if rarely(g.pressing and y > g.zone_edge[CHAIR_N_ZONES] + 1e-6):
            _fault(g, CHAIR_FAULT_BODY_RANGE, CHAIR_AXIS_CARRIAGE, y, g.zone_edge[CHAIR_N_ZONES])
        if z >= 0:
            # the cap is on the press into the tissue once the surface is known, on the depth
            # from the heads' home before (the surface is never nearer than home: the same or
            # stricter)
            cap = L.zone_depth_max_mm[z]
            if rarely(press > cap + 1e-9):
                _fault(g, CHAIR_FAULT_ZONE_DEPTH, CHAIR_AXIS_DEPTH, press, cap)
            if rarely(fabs(tap) > L.zone_tap_max_hz[z] + 1e-9):
                _fault(g, CHAIR_FAULT_ZONE_TAPPING, CHAIR_AXIS_TAPPING, tap,
                       L.zone_tap_max_hz[z])
            if rarely(fabs(knead) > L.zone_knead_max_rpm[z] + 1e-9):
                _fault(g, CHAIR_FAULT_ZONE_KNEADING, CHAIR_AXIS_KNEADING, knead,
                       L.zone_knead_max_rpm[z])
    g.zone = z


cdef inline void _stall_window(Guard* g, int i, double enc_mm, double cmd_mm,
                               int64_t now) noexcept nogil:
    g.stall_enc_mm[i] = enc_mm
    g.stall_cmd_mm[i] = cmd_mm
    g.stall_since_ns[i] = now


cdef int guard_measured(Guard* g, const chair_limits* L, const chair_status* st, const Axis* ax,
                        int64_t now) noexcept nogil:
    cdef int i, z
    cdef const Axis* x
    cdef double err, cmd_d, enc_d, load, bound
    cdef int64_t stale_ns
    # the link first: a stale status says nothing about the chair
    if not st.link_ok:
        if g.link_was_ok:
            g.link_was_ok = 0
            g.link_bad_ns = now
            g.report(g.ctx, CHAIR_EVT_LINK, 0, -1, 0, 0)
        # how long it has been stale: the link's own measure, on its clock, when it has one. The
        # tick's `now` is its deadline, and a tick that ran late would count its own lateness as
        # silence on the link (docs/core.md, link_lost)
        stale_ns = st.link_stale_ns if st.link_stale_ns >= 0 else now - g.link_bad_ns
        if rarely(stale_ns >= L.link_lost_ns):
            _fault(g, CHAIR_FAULT_LINK_LOST, -1, stale_ns * 1e-6, L.link_lost_ns * 1e-6)
        return 0
    if not g.link_was_ok:
        g.link_was_ok = 1
        g.report(g.ctx, CHAIR_EVT_LINK, 1, -1, 0, 0)
    if rarely(st.board_faults != 0):
        _fault(g, CHAIR_FAULT_BOARD, -1, st.board_faults, 0)
    # controller watchdog: the asyncio side must feed the core
    if rarely(g.watchdog_armed and now - g.last_cmd_ns >= L.controller_watchdog_ns):
        _fault(g, CHAIR_FAULT_CONTROLLER_STALLED, -1, (now - g.last_cmd_ns) * 1e-6, 0)
    # track limits
    if rarely(st.limit_low and st.limit_high):
        _fault(g, CHAIR_FAULT_LIMIT_SWITCH, CHAIR_AXIS_CARRIAGE, 2, 0)
    if rarely(st.pos_mm[0] < L.axis[0].min_mm - L.overtravel_mm
              or st.pos_mm[0] > L.axis[0].max_mm + L.overtravel_mm):
        _fault(g, CHAIR_FAULT_LIMIT_SWITCH, CHAIR_AXIS_CARRIAGE, st.pos_mm[0], 0)
    # stall and tracking, per position axis. Stall: over a window of at least stall_ns, the
    # setpoint travelled stall_min_mm or more while the encoder followed less than a quarter of
    # it (slow axes simply take a longer window); tracking: per-axis error limit.
    for i in range(CHAIR_N_POSITION_AXES):
        x = &ax[i]
        if now - g.stall_since_ns[i] >= L.stall_ns:
            cmd_d = fabs(x.p - g.stall_cmd_mm[i])
            enc_d = fabs(st.pos_mm[i] - g.stall_enc_mm[i])
            if cmd_d >= L.stall_min_mm:
                if rarely(enc_d < 0.25 * cmd_d):
                    _fault(g, CHAIR_FAULT_STALL, i, enc_d, 0.25 * cmd_d)
                _stall_window(g, i, st.pos_mm[i], x.p, now)
            elif now - g.stall_since_ns[i] >= 5 * L.stall_ns:
                _stall_window(g, i, st.pos_mm[i], x.p, now)
        err = fabs(st.pos_mm[i] - x.p)
        if rarely(not (err <= L.tracking_error_max_mm[i])):  # a missing reading (NaN) too
            _fault(g, CHAIR_FAULT_TRACKING, i, err, L.tracking_error_max_mm[i])
    # the rate motors' measured rates are not controlled here, but a missing reading (NaN: the
    # board lost that sensor) is a broken chair all the same
    if rarely(not isfinite(st.knead_rpm)):
        _fault(g, CHAIR_FAULT_TRACKING, CHAIR_AXIS_KNEADING, st.knead_rpm, 0)
    if rarely(not isfinite(st.tap_hz)):
        _fault(g, CHAIR_FAULT_TRACKING, CHAIR_AXIS_TAPPING, st.tap_hz, 0)
    # motor currents (motor i drives axis i)
    for i in range(CHAIR_N_MOTORS):
        if st.current_a[i] > L.overcurrent_a[i] or not isfinite(st.current_a[i]):
            if g.overcurrent_since_ns[i] < 0:
                g.overcurrent_since_ns[i] = now
            if rarely(now - g.overcurrent_since_ns[i] >= L.overcurrent_ns):
                _fault(g, CHAIR_FAULT_OVERCURRENT, i, st.current_a[i], L.overcurrent_a[i])
        else:
            g.overcurrent_since_ns[i] = -1
    # supply
    if st.supply_v < L.supply_min_v or st.supply_v > L.supply_max_v or not isfinite(st.supply_v):
        if g.supply_bad_ns < 0:
            g.supply_bad_ns = now
        if rarely(now - g.supply_bad_ns >= L.supply_ns):
            _fault(g, CHAIR_FAULT_SUPPLY_VOLTAGE, -1, st.supply_v, 0)
    else:
        g.supply_bad_ns = -1
    # the pad thermistor: out of range, the heater stops at once (it reads thermistor_bad_ns) and
    # the fault follows after the debounce; in range, the over-temperature trip
    if (st.thermistor_c < L.thermistor_min_c or st.thermistor_c > L.thermistor_max_c
            or not isfinite(st.thermistor_c)):
        if g.thermistor_bad_ns < 0:
            g.thermistor_bad_ns = now
        if rarely(now - g.thermistor_bad_ns >= L.thermistor_ns):
            _fault(g, CHAIR_FAULT_THERMISTOR, -1, st.thermistor_c, 0)
    else:
        g.thermistor_bad_ns = -1
        if rarely(st.thermistor_c >= L.heat_trip_c):
            _fault(g, CHAIR_FAULT_OVER_TEMPERATURE, -1, st.thermistor_c, L.heat_trip_c)
    # the pressing force: the depth drive's load within its zone's bound (where the heads are,
    # by the encoder), so that a wrong surface cannot press harder than the zone allows; a
    # missing reading counts as too high (the bound cannot be checked without it)
    # outside every zone (the seat, the head) the softest zone's bound holds
    if g.load_on and g.body_set:
        z = _zone_of(g, st.pos_mm[CHAIR_AXIS_CARRIAGE])
        bound = g.load_max_a[z] if z >= 0 else g.load_min_a
        load = st.depth_load_a
        if not isfinite(load) or load > bound:
            if g.load_bad_ns < 0:
                g.load_bad_ns = now
            if rarely(now - g.load_bad_ns >= L.zone_load_ns):
                _fault(g, CHAIR_FAULT_ZONE_LOAD, CHAIR_AXIS_DEPTH, load, bound)
        else:
            g.load_bad_ns = -1
    # occupancy (not a fault: the session settles)
    if not st.seat_occupied:
        if g.seat_empty_ns < 0:
            g.seat_empty_ns = now
        if g.occupied and now - g.seat_empty_ns >= L.occupant_ns:
            g.occupied = 0
            g.report(g.ctx, CHAIR_EVT_OCCUPANCY, 0, -1, 0, 0)
    else:
        g.seat_empty_ns = -1
        if not g.occupied:
            g.occupied = 1
            g.report(g.ctx, CHAIR_EVT_OCCUPANCY, 1, -1, 0, 0)
    return 1
