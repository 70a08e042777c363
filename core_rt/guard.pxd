# The guard: what the tick checks on what it commands and on what the sensors say.
# Contract used by the tick (core_rt/core.pyx); implemented in core_rt/guard.pyx.
from libc.stdint cimport int64_t
from core_rt.chair_core cimport (
    chair_limits, chair_status, CHAIR_N_AXES, CHAIR_N_POSITION_AXES, CHAIR_N_MOTORS, CHAIR_N_ZONES,
)
from core_rt.motion cimport Axis

# How the guard (and the heater) tell the tick what they found, at the moment they find it:
# kind CHAIR_EVT_FAULT (code = chair_fault, the tick latches the first one and stops the chair)
# or an event the tick publishes as it is (CHAIR_EVT_LINK, CHAIR_EVT_OCCUPANCY,
# CHAIR_EVT_HEATER_OFF). `axis`: the axis (or motor) it is about, -1 if none.
ctypedef void (*report_fn)(void* ctx, int kind, int code, int axis, double value,
                           double limit) noexcept nogil

cdef struct Guard:
    report_fn report
    void* ctx
    # the commanded checks' thresholds, their tolerance included (computed once from the limits)
    double v_over[CHAIR_N_AXES]           # |v| above: a velocity fault
    double a_over[CHAIR_N_AXES]           # |a| above: an acceleration fault
    double a_over_estop[CHAIR_N_AXES]     # the same while braking from an e-stop
    double p_under[CHAIR_N_POSITION_AXES] # position below / above: out of its range
    double p_over[CHAIR_N_POSITION_AXES]
    # the body's zone bands (set_body): edges bottom to top
    int body_set
    double zone_edge[CHAIR_N_ZONES + 1]
    # found by guard_commanded, for the tick's bookkeeping and telemetry
    int zone                 # zone of the carriage (CHAIR_ZONE_NONE without a body)
    int pressing             # heads past the retracted depth, or kneading, or tapping
    double left_x_mm, right_x_mm   # lateral contact points, kneading orbit included
    # controller watchdog
    int64_t last_cmd_ns
    int watchdog_armed
    # stall windows, per position axis: encoder and setpoint at the window's start
    double stall_enc_mm[CHAIR_N_POSITION_AXES]
    double stall_cmd_mm[CHAIR_N_POSITION_AXES]
    int64_t stall_since_ns[CHAIR_N_POSITION_AXES]
    # debounce: bad since (-1: fine)
    int64_t overcurrent_since_ns[CHAIR_N_MOTORS]
    int64_t supply_bad_ns
    int64_t thermistor_bad_ns    # the heater reads it: no heating on a bad reading
    int64_t seat_empty_ns
    int64_t link_bad_ns
    int link_was_ok
    int occupied
    # the pressing force per zone (guard_set_load): the depth drive's load above it for
    # zone_load_ns is a fault
    int load_on
    double load_max_a[CHAIR_N_ZONES]
    double load_min_a                # outside every zone: the softest zone's bound
    int64_t load_bad_ns

# A fresh guard for the limits L (kept constant for its life), reporting through
# report(ctx, ...): link up, seat occupied, no body, no timer running, the controller watchdog
# not armed yet.
cdef void guard_init(Guard* g, const chair_limits* L, report_fn report, void* ctx) noexcept nogil

# A command of any kind reached the tick at `now`: it feeds (and arms) the controller watchdog.
cdef void guard_fed(Guard* g, int64_t now) noexcept nogil

# The body's zone bands (CHAIR_N_ZONES + 1 edges, bottom to top); NULL clears them.
cdef void guard_set_body(Guard* g, const double* edges) noexcept nogil

# The zones' bounds on the depth drive's load, A (CHAIR_N_ZONES, ZONE order); NULL: none.
cdef void guard_set_load(Guard* g, const double* load_max_a) noexcept nogil

# Position axis i was set at rest at p (start, reseat): its stall window restarts there at `now`.
cdef void guard_rest(Guard* g, int i, double p, int64_t now) noexcept nogil

# On what the tick is about to command (`ax`, CHAIR_N_AXES of them, read as they are when each
# check runs): axis ranges, velocity and acceleration (the e-stop's acceleration limits when
# `estop`), spine clearance, tapping while the width is busy, the body's top, the zone caps.
# `press_mm`: how far the heads press into the tissue (depth − the scanned surface; NaN without
# a surface: the depth itself is judged). Sets g.zone, g.pressing, g.left_x_mm, g.right_x_mm.
cdef void guard_commanded(Guard* g, const chair_limits* L, const Axis* ax, int estop,
                          double press_mm) noexcept nogil

# On what the sensors say: the link first (a stale status says nothing about the chair: returns 0
# and checks nothing else), then board faults, the controller watchdog, the track limits, stall
# and tracking per position axis, motor currents, supply, the pad thermistor (range, debounced;
# over-temperature at once), the depth drive's load against its zone's bound and seat
# occupancy (not a fault: a CHAIR_EVT_OCCUPANCY report).
# Returns 1 when the status was fresh.
cdef int guard_measured(Guard* g, const chair_limits* L, const chair_status* st, const Axis* ax,
                        int64_t now) noexcept nogil
