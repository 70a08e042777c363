# cython: language_level=3
"""The tick: motion profiles on every axis, run past the guard and beside the heater.

One `Core` owns one chair. Every tick (1 kHz by default) it

1. takes commands from the asyncio side out of a lock-free ring (moves, rates, heat, brake, e-stop,
   reset, heartbeat, body zones) and starts the timed ones at their `at_ns`;
2. evaluates each axis's jerk-limited profile in closed form from the profile's start time;
3. exchanges one setpoint/status pair with the hardware (simulated plant or board link);
4. runs the guard (guard.pyx) on what it commands and on what the sensors say — any violation is
   a latched fault with a controlled stop (an e-stop uses the emergency limits), never a silent
   clamp;
5. runs the heater (heater.pyx): its PI loop on the pad thermistor and its watchdogs;
6. publishes events and decimated telemetry into rings, waking asyncio through an eventfd; the
   Python side gets them as named records (records.pyx).

The same `_tick` runs in virtual time (`run_until`, stepped as fast as possible) and in real time
(`start_realtime`, a native thread on absolute CLOCK_MONOTONIC deadlines). Tick times are the
scheduled grid `t0 + k·period`, so both modes produce bit-identical setpoints for the same inputs.
Nothing in `_tick` takes the GIL or allocates. The guard and the heater own their state (a C
struct each, in this object) and report what they find through `_report`, at once, so the first
fault is latched at the very check that found it.
"""

from libc.math cimport fabs, fmax, fmin, isfinite, ceil, sqrt, NAN
from libc.string cimport memset
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.errno cimport errno

from core_rt.chair_core cimport *
from core_rt.motion cimport (
    Axis, Profile, profile_move, profile_velocity, profile_hold, profile_eval,
)
from core_rt.guard cimport (
    Guard, guard_init, guard_fed, guard_set_body, guard_set_load, guard_rest, guard_commanded,
    guard_measured,
)
from core_rt.heater cimport Heater, heater_init, heater_off, heater_set, heater_step
from core_rt.surface cimport Surface, SURFACE_MAX, surface_clear, surface_eval
from core_rt.records cimport telemetry_record, event_record, surface_record
from core_rt.hardware cimport Hardware
from core_rt.rtloop cimport (
    spsc_ring, spsc_init, spsc_free, spsc_push, spsc_pop, spsc_count, spsc_dropped,
    rt_loop, rt_loop_init, rt_now_ns, rt_loop_start, rt_loop_stop, rt_hist_percentile, rt_stat,
    RT_LAT_NBINS, RT_EXEC_NBINS, RT_LAT_BIN_NS, RT_EXEC_BIN_NS,
)

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_NONBLOCK
    int EFD_CLOEXEC

cdef extern from "<unistd.h>" nogil:
    int close(int fd)
    ssize_t read(int fd, void* buf, size_t n)


from core_rt.config import AXES  # axis names in the core's order (the C enum chair_axis)
from core_rt.records import EVENT_KINDS, TELEMETRY_FIELDS, CoreEvent, SurfaceSample, Telemetry

FAULT_CODES = (
    None, "track_range", "body_range", "spine_clearance", "zone_depth", "zone_tapping",
    "zone_kneading", "velocity", "acceleration", "over_temperature", "thermistor",
    "heater_not_heating", "stall", "limit_switch", "overcurrent", "supply_voltage",
    "controller_stalled", "link_lost", "board", "tracking", "tapping_width", "command",
    "zone_load",
)
"""Stable fault code names, indexed by the C enum chair_fault."""

FAULT_MESSAGES = {
    "track_range": "carriage, width or depth outside its range",
    "body_range": "heads pressing above the neck zone's top",
    "spine_clearance": "a contact patch would enter the spine keep-out band",
    "zone_depth": "depth above the zone's cap",
    "zone_tapping": "tapping above the zone's cap",
    "zone_kneading": "kneading above the zone's cap",
    "velocity": "commanded velocity above the axis limit",
    "acceleration": "commanded acceleration above the axis limit",
    "over_temperature": "pad temperature at or above the trip point",
    "thermistor": "pad thermistor reading out of range (open or short)",
    "heater_not_heating": "heater at high duty without the expected temperature rise",
    "stall": "axis driven but its encoder is not moving",
    "limit_switch": "both track limit switches active, or travel past a limit",
    "overcurrent": "motor current above its limit",
    "supply_voltage": "supply voltage outside its range",
    "controller_stalled": "the controller stopped feeding the core (watchdog)",
    "link_lost": "the hardware link stopped answering",
    "board": "the board reported a fault of its own",
    "tracking": "an axis is far from its setpoint",
    "tapping_width": "tapping while the width axis is moving",
    "command": "an invalid command reached the core",
    "zone_load": "the heads press harder than the zone allows (depth drive's load)",
}

MODES = ("run", "brake", "fault", "estop")

cdef enum:
    QCAP = 256          # timed commands queued per axis (+1 queue for heat)
    CMD_RING = 1024
    EVT_RING = 4096
    TLM_RING = 8192
    SRF_RING = 1024     # contour samples: a whole scan at 5 mm is about 200
    HEAT_Q = CHAIR_N_AXES  # index of the heat queue


cdef struct Queue:
    chair_command item[QCAP]
    int head
    int length


cdef inline int64_t _dur_ns(double seconds) noexcept nogil:
    return <int64_t>ceil(seconds * 1e9 - 1e-3)


cdef inline bint _axis_command(const chair_command* c) noexcept nogil:
    """A move, a rate or a press switch for an axis (what makes the axis busy once the tick
    takes it)."""
    return ((c.kind == CHAIR_CMD_MOVE or c.kind == CHAIR_CMD_RATE or c.kind == CHAIR_CMD_PRESS)
            and 0 <= c.axis < CHAIR_N_AXES)


cdef inline int _q_push(Queue* q, const chair_command* c) noexcept nogil:
    if q.length >= QCAP:
        return -1
    q.item[(q.head + q.length) % QCAP] = c[0]
    q.length += 1
    return 0


cdef inline chair_command* _q_peek(Queue* q) noexcept nogil:
    if q.length == 0:
        return NULL
    return &q.item[q.head]


cdef inline void _q_pop(Queue* q) noexcept nogil:
    q.head = (q.head + 1) % QCAP
    q.length -= 1


cdef inline int64_t _mono_ns() noexcept nogil:
    return rt_now_ns()


cdef int _rt_tick(void* ctx, int64_t tick_ns) noexcept nogil:
    return (<Core>ctx)._rt_tick(tick_ns)


cdef void _report(void* ctx, int kind, int code, int axis, double value,
                  double limit) noexcept nogil:
    (<Core>ctx)._report(kind, code, axis, value, limit)


cdef class Core:
    """One chair's real-time core. See the module docstring and docs/core.md."""

    cdef chair_limits lim
    cdef Hardware hw
    cdef Axis ax[CHAIR_N_AXES]
    cdef Queue q[CHAIR_N_AXES + 1]
    cdef spsc_ring cmd_ring
    cdef spsc_ring evt_ring
    cdef spsc_ring tlm_ring
    cdef spsc_ring srf_ring
    cdef chair_setpoint sp
    cdef chair_status st
    cdef readonly int64_t now_ns        # time of the next tick to run
    cdef int64_t rt_epoch_ns
    cdef int rt_epoch_set
    cdef int mode
    cdef int fault
    cdef int wake
    cdef Guard guard
    cdef Heater heater
    # session bookkeeping
    cdef int program_on
    cdef int scan_on
    # the contour scan: the depth axis follows the skin (_follow) and samples it (_sample_skin)
    cdef int follow_on
    cdef int follow_phase           # which touch load is followed (alternates per sample)
    cdef int64_t follow_samples
    cdef double follow_last_y       # carriage encoder at the last sample
    cdef int follow_touched         # the skin has been touched since the scan began
    cdef double follow_skin_mm      # where the skin was last touched (nominal tissue)
    cdef double follow_slope        # the skin's slope along the track, for the feed-forward
    cdef double follow_prev_y[2]    # the last sample in contact per touch load: y ...
    cdef double follow_prev_skin[2] # ... and skin
    cdef int follow_have_prev[2]
    cdef int zone
    cdef int last_contact
    # pressing relative to the surface (docs/core.md): while press_on, the depth's moves drive
    # `press` (mm into the tissue) and the depth axis commands press + the surface under the
    # carriage
    cdef Surface surf               # the scanned surface (n == 0: none)
    cdef Surface surf_next          # the next one, loaded piece by piece (CHAIR_CMD_SURFACE)
    cdef int press_on
    cdef Axis press
    cdef double surface_now         # the surface under the carriage this tick (NaN: none)
    cdef double press_now           # depth − surface this tick (NaN: no surface)
    # the controlled stop
    cdef int at_rest_pending
    cdef int retract_pending
    cdef int deenergised
    cdef int reseat_pending     # the commanded pose is not the chair's: take the encoders
    # telemetry
    cdef int64_t tlm_every
    cdef int64_t tlm_countdown
    # statistics over program time
    cdef int64_t ticks
    cdef int64_t zone_ticks[CHAIR_N_ZONES]
    cdef double max_speed, max_accel, min_clearance, max_heat_c
    cdef double max_knead_rpm, max_tap_hz
    cdef int64_t last_sent_ns, last_applied_ns
    cdef int64_t late_commands, late_max_ns  # timed commands taken after their start time
    # An axis's moves and rates pushed by the asyncio side / taken by the tick (each array
    # written by one thread only): while they differ a command for the axis is in flight and
    # `snapshot()` counts the axis busy (in real time the tick may be late: "two ticks after
    # sending" is a guess, this is the fact).
    cdef uint64_t moves_sent[CHAIR_N_AXES]
    cdef uint64_t moves_taken[CHAIR_N_AXES]
    # real-time loop
    cdef rt_loop loop
    cdef int efd
    cdef int running_rt
    cdef object config

    def __cinit__(self):
        self.efd = -1
        memset(&self.cmd_ring, 0, sizeof(spsc_ring))
        memset(&self.evt_ring, 0, sizeof(spsc_ring))
        memset(&self.tlm_ring, 0, sizeof(spsc_ring))
        memset(&self.srf_ring, 0, sizeof(spsc_ring))
        if (spsc_init(&self.cmd_ring, CMD_RING, sizeof(chair_command)) != 0
                or spsc_init(&self.evt_ring, EVT_RING, sizeof(chair_event)) != 0
                or spsc_init(&self.tlm_ring, TLM_RING, sizeof(chair_telemetry)) != 0
                or spsc_init(&self.srf_ring, SRF_RING, sizeof(chair_surface_sample)) != 0):
            raise MemoryError("core rings")

    def __init__(self, config, Hardware hardware not None, *, double telemetry_hz=50.0,
                 start_ns=0):
        """`config` is a core_rt.config.ChairConfig; `hardware` the chair the tick drives."""
        from core_rt.config import ChairConfig
        if not (isfinite(telemetry_hz) and 0 < telemetry_hz <= 2000):
            raise ValueError(f"telemetry_hz must be in (0, 2000], got {telemetry_hz!r}")
        if not isinstance(config, ChairConfig):
            raise ValueError(f"config must be a core_rt.config.ChairConfig, got {config!r}")
        self.config = config
        _fill_limits(&self.lim, config)
        if hardware.period_ns != self.lim.period_ns:
            raise ValueError(f"the hardware steps every {hardware.period_ns} ns but the core ticks "
                             f"every {self.lim.period_ns} ns: build both from the same config")
        self.hw = hardware
        start_ns = _time_ns("start_ns", start_ns)
        self.now_ns = start_ns
        self.tlm_every = max(1, <int64_t>(1e9 / telemetry_hz / self.lim.period_ns + 0.5))
        self.tlm_countdown = 0
        guard_init(&self.guard, &self.lim, _report, <void*>self)
        heater_init(&self.heater, _report, <void*>self)
        surface_clear(&self.surf)
        surface_clear(&self.surf_next)
        self.press_on = 0
        self.surface_now = NAN
        self.press_now = NAN
        self.last_contact = -1
        self.zone = CHAIR_ZONE_NONE
        c = config
        # where the chair is, the core does not know yet: the first fresh status tells it (the
        # encoders are the truth, see _reseat). Until then the park pose stands in, the drives
        # stay off and nothing starts (docs/core.md, Starting from where the chair is).
        self._set_rest(CHAIR_AXIS_CARRIAGE, c.carriage.park_mm)
        self._set_rest(CHAIR_AXIS_WIDTH, c.width.park_mm)
        self._set_rest(CHAIR_AXIS_DEPTH, c.depth.min_mm)
        self._set_rest(CHAIR_AXIS_KNEADING, 0.0)
        self._set_rest(CHAIR_AXIS_TAPPING, 0.0)
        self.reseat_pending = 1
        self._clear_stats()

    def __dealloc__(self):
        if self.running_rt:
            with nogil:
                rt_loop_stop(&self.loop)
            self.running_rt = 0
        if self.efd >= 0:
            close(self.efd)
        spsc_free(&self.cmd_ring)
        spsc_free(&self.evt_ring)
        spsc_free(&self.tlm_ring)
        spsc_free(&self.srf_ring)

    cdef void _set_rest(self, int i, double p) noexcept nogil:
        cdef Axis* x = &self.ax[i]
        profile_hold(&x.prof, p, 0.0)
        x.start_ns = self.now_ns
        x.end_ns = self.now_ns
        x.busy = 0
        x.p = p
        x.v = 0
        x.a = 0
        x.j = 0
        x.goal = p
        x.a_lim = self.lim.axis[i].a_max
        x.j_lim = self.lim.axis[i].j_max
        if i < CHAIR_N_POSITION_AXES:
            guard_rest(&self.guard, i, p, self.now_ns)

    cdef void _clear_stats(self) noexcept nogil:
        cdef int i
        self.ticks = 0
        for i in range(CHAIR_N_ZONES):
            self.zone_ticks[i] = 0
        self.max_speed = 0
        self.max_accel = 0
        self.min_clearance = 1e300
        self.max_heat_c = -1e300
        self.max_knead_rpm = 0
        self.max_tap_hz = 0

    # ------------------------------------------------------------------------------------------
    # events and faults
    # ------------------------------------------------------------------------------------------

    cdef void _event(self, int kind, int code, double value, double limit,
                     int axis) noexcept nogil:
        cdef chair_event e
        e.t_ns = self.now_ns
        e.kind = kind
        e.code = code
        e.axis = axis
        e.reserved = 0
        e.value = value
        e.limit = limit
        spsc_push(&self.evt_ring, &e)
        self.wake = 1

    cdef void _report(self, int kind, int code, int axis, double value,
                      double limit) noexcept nogil:
        """What the guard and the heater found, at the moment they found it."""
        if kind == CHAIR_EVT_FAULT:
            self._fault(code, value, limit, axis)
            return
        self._event(kind, code, value, limit, axis)
        if kind == CHAIR_EVT_LINK and code == 1 and (
                self.mode == CHAIR_MODE_FAULT or self.mode == CHAIR_MODE_ESTOP):
            # back while latched: hold where the chair really is once at rest (see _tick)
            self.reseat_pending = 1

    cdef void _brake_all(self, int emergency) noexcept nogil:
        """Replace every profile by the time-optimal brake from its current state; drop queues.

        A normal brake never overshoots the goal of the move it interrupts: if stopping now would
        carry the axis past that goal, the move simply finishes (it decelerates to rest there)."""
        cdef int i
        cdef Axis* x
        cdef Profile br
        cdef double am, jm, pe, ve, ae, je
        if self.follow_on:
            # the depth axis was following the skin, not moving to a goal: it simply brakes
            self.follow_on = 0
            self.ax[CHAIR_AXIS_DEPTH].busy = 0
        for i in range(CHAIR_N_AXES + 1):
            self.q[i].length = 0
            self.q[i].head = 0
        for i in range(CHAIR_N_AXES):
            x = self._drive(i)
            self._eval_now(x)
            am = self.lim.axis[i].estop_a_max if emergency else self.lim.axis[i].a_max
            jm = self.lim.axis[i].estop_j_max if emergency else self.lim.axis[i].j_max
            if self.press_on and i < CHAIR_N_POSITION_AXES:
                # pressing relative to the surface: the depth follows the carriage over the
                # skin, so a brake keeps to the limits the planner coordinated the move with
                # (docs/core.md, Pressing relative to the surface)
                am = fmin(am, x.a_lim)
                jm = fmin(jm, x.j_lim)
            if x.v == 0 and x.a == 0 and i < CHAIR_N_POSITION_AXES:
                profile_hold(&x.prof, x.p, 0.0)
            else:
                if profile_velocity(&br, x.p, x.v, x.a, 0.0, am, jm) != 0:
                    profile_hold(&br, x.p, 0.0)
                if i < CHAIR_N_POSITION_AXES and not emergency and x.busy:
                    profile_eval(&br, br.duration, &pe, &ve, &ae, &je)
                    if (x.goal - x.p) * (pe - x.goal) > 0:
                        # stopping now would pass the goal: let the move finish instead
                        x.end_ns = x.start_ns + _dur_ns(x.prof.duration)
                        continue
                x.prof = br
            x.start_ns = self.now_ns
            x.end_ns = self.now_ns + _dur_ns(x.prof.duration)
            x.goal = x.prof.pb[7]
            x.busy = 1
            x.a_lim = am
            x.j_lim = jm
        if self.press_on:
            self._compose_depth()
        self.at_rest_pending = 1

    cdef inline Axis* _drive(self, int i) noexcept nogil:
        """The profile axis i's commands drive: the press while pressing relative to the
        surface (depth), else the axis itself."""
        if i == CHAIR_AXIS_DEPTH and self.press_on:
            return &self.press
        return &self.ax[i]

    cdef inline void _eval_now(self, Axis* x) noexcept nogil:
        """The axis's state at this tick (a command handled before the tick's own evaluation
        must start from here, or the setpoint would stand still for one tick)."""
        profile_eval(&x.prof, (self.now_ns - x.start_ns) * 1e-9, &x.p, &x.v, &x.a, &x.j)

    cdef void _fault(self, int code, double value, double limit, int axis) noexcept nogil:
        if self.mode == CHAIR_MODE_FAULT or self.mode == CHAIR_MODE_ESTOP:
            return  # the first fault is the one latched and reported
        self.mode = CHAIR_MODE_FAULT
        self.fault = code
        heater_off(&self.heater)
        if self.press_on:
            self._press_off()  # a latched chair's depth is absolute: it brakes where it is
        self._brake_all(0)
        # pressing where it must not: the safe state has the heads retracted (then a reset can
        # never re-latch on the same pressing)
        self.retract_pending = (code == CHAIR_FAULT_BODY_RANGE or code == CHAIR_FAULT_ZONE_DEPTH
                                or code == CHAIR_FAULT_SPINE_CLEARANCE
                                or code == CHAIR_FAULT_ZONE_LOAD)
        self._event(CHAIR_EVT_FAULT, code, value, limit, axis)

    cdef void _estop(self) noexcept nogil:
        if self.mode == CHAIR_MODE_ESTOP:
            return
        self.mode = CHAIR_MODE_ESTOP
        heater_off(&self.heater)
        if self.press_on:
            self._press_off()
        self._brake_all(1)
        self._event(CHAIR_EVT_ESTOP, self.fault, 0, 0, -1)

    cdef void _reseat(self) noexcept nogil:
        """Commanded pose := measured pose (position axes, at rest): the encoders are the truth.

        A reading past an end of its axis's range is held at that end (the guard's tracking and
        limit checks judge how far past); a missing reading (NaN) keeps the commanded value, and
        the guard's tracking check faults on it in the same tick."""
        cdef int i
        cdef double p
        self.press_on = 0  # the encoders are absolute (and a latched chair never presses on)
        for i in range(CHAIR_N_POSITION_AXES):
            p = self.st.pos_mm[i]
            if isfinite(p):
                p = fmin(fmax(p, self.lim.axis[i].min_mm), self.lim.axis[i].max_mm)
            else:
                p = self.ax[i].p
            self._set_rest(i, p)
        self.reseat_pending = 0

    cdef int _all_at_rest(self) noexcept nogil:
        cdef int i
        for i in range(CHAIR_N_AXES):
            if self.ax[i].busy or self.ax[i].v != 0 or self.ax[i].a != 0:
                return 0
        return 1

    # ------------------------------------------------------------------------------------------
    # commands
    # ------------------------------------------------------------------------------------------

    cdef void _command(self, chair_command* c) noexcept nogil:
        cdef int k = c.kind
        guard_fed(&self.guard, self.now_ns)
        if c.sent_ns > 0:
            self.last_sent_ns = c.sent_ns
            self.last_applied_ns = _mono_ns()
        if c.at_ns > 0 and c.at_ns < self.now_ns:
            # a timed command that reached the tick after its start: the session fed the core
            # late (its event loop was held up for longer than the look-ahead)
            self.late_commands += 1
            if self.now_ns - c.at_ns > self.late_max_ns:
                self.late_max_ns = self.now_ns - c.at_ns
        if k == CHAIR_CMD_HEARTBEAT:
            return
        if k == CHAIR_CMD_ESTOP:
            self._estop()
        elif k == CHAIR_CMD_FAULT:
            if 0 < c.axis < CHAIR_N_FAULTS:
                self._fault(c.axis, c.value[0], c.value[1], -1)
        elif k == CHAIR_CMD_RESET:
            if self.mode == CHAIR_MODE_RUN or self.mode == CHAIR_MODE_BRAKE:
                return
            if self._all_at_rest() and not self.at_rest_pending:
                self.mode = CHAIR_MODE_RUN
                self.fault = CHAIR_FAULT_NONE
                self.retract_pending = 0
                self._event(CHAIR_EVT_RESET, 1, 0, 0, -1)
            else:
                self._event(CHAIR_EVT_RESET, 0, 0, 0, -1)  # refused: still moving
        elif self.mode == CHAIR_MODE_FAULT or self.mode == CHAIR_MODE_ESTOP:
            # latched: nothing moves again until reset; bookkeeping commands still apply
            if k == CHAIR_CMD_PROGRAM:
                self.program_on = c.axis
            elif k == CHAIR_CMD_SCAN:
                self.scan_on = c.axis
            elif k == CHAIR_CMD_CLEAR_STATS:
                self._clear_stats()
            elif k == CHAIR_CMD_SURFACE:
                self._surface_command(c)
            return
        elif k == CHAIR_CMD_BRAKE:
            self._brake_all(0)
        elif k == CHAIR_CMD_PRESS:
            # in order with the depth's moves
            if c.axis != CHAIR_AXIS_DEPTH:
                self._fault(CHAIR_FAULT_COMMAND, k, 0, c.axis if 0 <= c.axis < CHAIR_N_AXES else -1)
            elif _q_push(&self.q[CHAIR_AXIS_DEPTH], c) != 0:
                self._fault(CHAIR_FAULT_COMMAND, QCAP, QCAP, CHAIR_AXIS_DEPTH)
        elif k == CHAIR_CMD_SURFACE:
            self._surface_command(c)
        elif k == CHAIR_CMD_MOVE or k == CHAIR_CMD_RATE:
            if 0 <= c.axis < CHAIR_N_AXES and (
                (k == CHAIR_CMD_MOVE) == (c.axis < CHAIR_N_POSITION_AXES)):
                if _q_push(&self.q[c.axis], c) != 0:
                    self._fault(CHAIR_FAULT_COMMAND, QCAP, QCAP, c.axis)  # queue full
            else:  # a move for a rate axis or a rate for a position axis
                self._fault(CHAIR_FAULT_COMMAND, k, 0,
                            c.axis if 0 <= c.axis < CHAIR_N_AXES else -1)
        elif k == CHAIR_CMD_HEAT:
            if c.value[0] <= 0 and c.at_ns <= self.now_ns:
                heater_off(&self.heater)  # off at once: never queued behind timed heat changes
            elif _q_push(&self.q[HEAT_Q], c) != 0:
                self._fault(CHAIR_FAULT_COMMAND, QCAP, QCAP, -1)
        elif k == CHAIR_CMD_BODY:
            if c.axis:
                guard_set_body(&self.guard, c.value)
            else:
                guard_set_body(&self.guard, NULL)
                self.zone = CHAIR_ZONE_NONE
        elif k == CHAIR_CMD_PROGRAM:
            self.program_on = c.axis
            if not c.axis:
                self.zone = CHAIR_ZONE_NONE
        elif k == CHAIR_CMD_SCAN:
            self.scan_on = c.axis
            self.last_contact = -1
        elif k == CHAIR_CMD_CONTOUR:
            if c.axis and self.press_on:
                self._fault(CHAIR_FAULT_COMMAND, k, 1, CHAIR_AXIS_DEPTH)  # one owner of the depth
            elif c.axis and not self.follow_on:
                self._follow_start()
            elif not c.axis and self.follow_on:
                self._follow_stop()
        elif k == CHAIR_CMD_CLEAR_STATS:
            self._clear_stats()
        else:
            self._fault(CHAIR_FAULT_COMMAND, k, 0, -1)  # unknown command kind

    # ------------------------------------------------------------------------------------------
    # pressing relative to the surface (docs/core.md)
    # ------------------------------------------------------------------------------------------

    cdef void _surface_command(self, const chair_command* c) noexcept nogil:
        """A piece of the next surface, its zones' load bounds, or the commit that makes it
        the surface (count 0: none). A commit is refused (a `command` fault) while the heads
        press relative to the surface, or when what it commits is not a surface."""
        cdef int i, n, base
        cdef double y0, step, v
        cdef Surface* s = &self.surf_next
        if c.axis >= 0:
            base = 2 + 8 * c.axis  # two padding points come first
            for i in range(8):
                if base + i < SURFACE_MAX - 2:
                    s.c[base + i] = c.value[i]
            return
        if c.axis == -1:
            for i in range(CHAIR_N_ZONES):
                s.load_max_a[i] = c.value[i]
            return
        if c.axis != -2:
            self._fault(CHAIR_FAULT_COMMAND, CHAIR_CMD_SURFACE, c.axis, -1)
            return
        if self.press_on:
            self._fault(CHAIR_FAULT_COMMAND, CHAIR_CMD_SURFACE, 1, CHAIR_AXIS_DEPTH)
            return
        n = <int>c.value[2]
        if n == 0:
            surface_clear(&self.surf)
            guard_set_load(&self.guard, NULL)
            return
        y0 = c.value[0]
        step = c.value[1]
        if not (2 <= n <= SURFACE_MAX - 4 and isfinite(y0) and isfinite(step) and step > 0):
            self._fault(CHAIR_FAULT_COMMAND, CHAIR_CMD_SURFACE, n, -1)
            return
        for i in range(2, n + 2):
            v = s.c[i]
            if not (isfinite(v) and self.lim.axis[CHAIR_AXIS_DEPTH].min_mm <= v
                    <= self.lim.axis[CHAIR_AXIS_DEPTH].max_mm):
                self._fault(CHAIR_FAULT_COMMAND, CHAIR_CMD_SURFACE, v, CHAIR_AXIS_DEPTH)
                return
        for i in range(CHAIR_N_ZONES):
            v = s.load_max_a[i]
            if not (isfinite(v) and v > 0):
                self._fault(CHAIR_FAULT_COMMAND, CHAIR_CMD_SURFACE, v, CHAIR_AXIS_DEPTH)
                return
        # flat beyond both ends with every derivative continuous (surface.pxd)
        s.c[0] = s.c[2]
        s.c[1] = s.c[2]
        s.c[n + 2] = s.c[n + 1]
        s.c[n + 3] = s.c[n + 1]
        s.n = n + 4
        s.y0_mm = y0 - 2 * step
        s.step_mm = step
        self.surf = s[0]
        guard_set_load(&self.guard, self.surf.load_max_a)

    cdef void _compose_depth(self) noexcept nogil:
        """The depth axis's setpoint: the press plus the surface under the carriage, with its
        velocity, acceleration and jerk by the chain rule (both profiles at this tick)."""
        cdef Axis* d = &self.ax[CHAIR_AXIS_DEPTH]
        cdef Axis* y = &self.ax[CHAIR_AXIS_CARRIAGE]
        cdef Axis* pr = &self.press
        cdef double s0, s1, s2, s3
        surface_eval(&self.surf, y.p, &s0, &s1, &s2, &s3)
        d.p = pr.p + s0
        d.v = pr.v + s1 * y.v
        d.a = pr.a + s2 * y.v * y.v + s1 * y.a
        d.j = pr.j + s3 * y.v * y.v * y.v + 3 * s2 * y.v * y.a + s1 * y.j
        d.busy = pr.busy
        d.goal = pr.goal
        d.start_ns = pr.start_ns
        d.end_ns = pr.end_ns

    cdef inline int _moving(self, const Axis* x) noexcept nogil:
        """The axis's profile is still moving it (a hold after it is not)."""
        return self.now_ns < x.start_ns + _dur_ns(x.prof.duration)

    cdef int _press_switch(self, int on) noexcept nogil:
        """Depth goals as press depths from here (on) or as depths again (off); taken with the
        carriage and the depth at rest. Returns 0 when it cannot be taken (a `command` fault)."""
        cdef Axis* d = &self.ax[CHAIR_AXIS_DEPTH]
        cdef Axis* pr = &self.press
        cdef double s0, s1, s2, s3
        self._eval_now(&self.ax[CHAIR_AXIS_CARRIAGE])
        if self.ax[CHAIR_AXIS_CARRIAGE].v != 0 or self.ax[CHAIR_AXIS_CARRIAGE].a != 0:
            return 0
        if not on:
            if self.press_on:
                self._press_off()
            return 1
        if self.press_on:
            return 1
        if self.surf.n == 0 or self.follow_on:
            return 0
        self._eval_now(d)
        if d.v != 0 or d.a != 0:
            return 0
        surface_eval(&self.surf, self.ax[CHAIR_AXIS_CARRIAGE].p, &s0, &s1, &s2, &s3)
        profile_hold(&pr.prof, d.p - s0, 0.0)
        pr.start_ns = self.now_ns
        pr.end_ns = self.now_ns
        pr.busy = 0
        pr.p = d.p - s0
        pr.v = 0
        pr.a = 0
        pr.j = 0
        pr.goal = pr.p
        pr.a_lim = self.lim.axis[CHAIR_AXIS_DEPTH].a_max
        pr.j_lim = self.lim.axis[CHAIR_AXIS_DEPTH].j_max
        self.press_on = 1
        return 1

    cdef void _press_off(self) noexcept nogil:
        """Depths are absolute again: the depth axis carries on from the press + surface state
        at this tick (braking to rest if it moved: a fault or an e-stop brakes it anyway)."""
        cdef Axis* d = &self.ax[CHAIR_AXIS_DEPTH]
        cdef chair_axis_limits* L = &self.lim.axis[CHAIR_AXIS_DEPTH]
        self._eval_now(&self.press)
        self._eval_now(&self.ax[CHAIR_AXIS_CARRIAGE])
        self._compose_depth()
        if d.v == 0 and d.a == 0:
            profile_hold(&d.prof, d.p, 0.0)
            d.busy = 0
        elif profile_velocity(&d.prof, d.p, d.v, d.a, 0.0, L.a_max, L.j_max) != 0:
            profile_hold(&d.prof, d.p, 0.0)
            d.busy = 0
        else:
            d.busy = 1
        d.start_ns = self.now_ns
        d.end_ns = self.now_ns + _dur_ns(d.prof.duration)
        d.goal = d.prof.pb[7]
        d.a_lim = L.a_max
        d.j_lim = L.j_max
        self.press_on = 0

    # ------------------------------------------------------------------------------------------
    # the contour scan: the depth axis follows the skin by its load
    # ------------------------------------------------------------------------------------------

    cdef void _follow_start(self) noexcept nogil:
        self.follow_on = 1
        self.follow_phase = 0
        self.follow_samples = 0
        self.follow_touched = 0
        self.follow_slope = 0
        self.follow_have_prev[0] = 0
        self.follow_have_prev[1] = 0
        self.q[CHAIR_AXIS_DEPTH].length = 0  # the following owns the depth axis
        self.q[CHAIR_AXIS_DEPTH].head = 0

    cdef void _follow_stop(self) noexcept nogil:
        """The depth axis brakes to rest from where the following left it."""
        cdef Axis* x = &self.ax[CHAIR_AXIS_DEPTH]
        cdef chair_axis_limits* L = &self.lim.axis[CHAIR_AXIS_DEPTH]
        self.follow_on = 0
        self._eval_now(x)
        if profile_velocity(&x.prof, x.p, x.v, x.a, 0.0, L.a_max, L.j_max) != 0:
            profile_hold(&x.prof, x.p, 0.0)
        x.start_ns = self.now_ns
        x.end_ns = self.now_ns + _dur_ns(x.prof.duration)
        x.goal = x.prof.pb[7]
        x.busy = 1

    cdef void _follow(self) noexcept nogil:
        """Re-plan the depth axis from its state now toward the velocity that keeps the load at
        the touch: the skin's slope times the carriage's speed, plus the gain times the missing
        touch; never past the range's margin nor the reach past the last skin touched. A
        velocity profile from (p, v, a) each tick keeps every move within a_max and j_max."""
        cdef Axis* x = &self.ax[CHAIR_AXIS_DEPTH]
        cdef chair_axis_limits* L = &self.lim.axis[CHAIR_AXIS_DEPTH]
        cdef double load = self.st.depth_load_a
        cdef double target = self.lim.contour_touch_a[self.follow_phase]
        cdef double v_t, hi, lo, room
        if not isfinite(load):
            load = 0.0  # no reading: as off the skin (the session checks before it scans)
        self._eval_now(x)
        v_t = self.follow_slope * self.ax[CHAIR_AXIS_CARRIAGE].v
        if load < self.lim.contour_contact_min_a:
            # off the skin: it lies deeper (a hollow the carriage walks into), reach for it
            v_t = fmax(v_t, 0.0) + self.lim.contour_search_mm_s
        else:
            v_t += self.lim.contour_gain_per_s * (target - load) / self.lim.contour_load_a_per_mm
        hi = L.max_mm - self.lim.contour_margin_mm
        if self.follow_touched:
            hi = fmin(hi, self.follow_skin_mm + self.lim.contour_reach_mm)
        lo = L.min_mm + self.lim.contour_floor_mm
        v_t = fmin(fmax(v_t, -L.v_max), L.v_max)
        # slow down toward either end in time (a quarter of a_max: room for the jerk's ramp)
        room = hi - x.p
        v_t = fmin(v_t, sqrt(0.5 * L.a_max * room)) if room > 0 else fmin(v_t, 0.0)
        room = x.p - lo
        v_t = fmax(v_t, -sqrt(0.5 * L.a_max * room)) if room > 0 else fmax(v_t, 0.0)
        if profile_velocity(&x.prof, x.p, x.v, x.a, v_t, L.a_max, L.j_max) != 0:
            profile_hold(&x.prof, x.p, 0.0)
        x.start_ns = self.now_ns
        x.end_ns = self.now_ns + 1_000_000_000  # never "done" while following
        x.goal = x.prof.pb[7]
        x.busy = 1

    cdef void _sample_skin(self, const chair_status* st) noexcept nogil:
        """One sample per contour_sample_mm of carriage travel: the encoders and the load."""
        cdef chair_surface_sample s
        cdef double y = st.pos_mm[CHAIR_AXIS_CARRIAGE]
        cdef double load = st.depth_load_a
        cdef double skin
        cdef int ph = self.follow_phase
        if self.follow_samples > 0 and fabs(y - self.follow_last_y) < self.lim.contour_sample_mm:
            return
        s.t_ns = self.now_ns
        s.y_mm = y
        s.depth_mm = st.pos_mm[CHAIR_AXIS_DEPTH]
        s.load_a = load
        s.target_a = self.lim.contour_touch_a[ph]
        spsc_push(&self.srf_ring, &s)
        self.wake = 1
        if isfinite(load) and load >= self.lim.contour_contact_min_a:
            skin = s.depth_mm - load / self.lim.contour_load_a_per_mm
            self.follow_touched = 1
            self.follow_skin_mm = skin
            # the slope between samples of the same touch (their stiffness bias is the same)
            if self.follow_have_prev[ph] and fabs(y - self.follow_prev_y[ph]) > 1e-6:
                self.follow_slope = fmin(fmax(
                    (skin - self.follow_prev_skin[ph]) / (y - self.follow_prev_y[ph]), -1.0), 1.0)
            self.follow_prev_y[ph] = y
            self.follow_prev_skin[ph] = skin
            self.follow_have_prev[ph] = 1
        else:
            # off the skin: it lies deeper; keep reaching along its last slope (never back)
            self.follow_slope = fmax(self.follow_slope, 0.0)
            self.follow_have_prev[0] = 0
            self.follow_have_prev[1] = 0
        self.follow_last_y = y
        self.follow_samples += 1
        if self.follow_samples % self.lim.contour_touch_samples == 0:
            self.follow_phase = 1 - ph

    cdef void _start_due(self) noexcept nogil:
        """Start queued moves/rates whose time has come (a move waits for its axis to be free)."""
        cdef int i
        cdef chair_command* c
        cdef Axis* x
        cdef chair_axis_limits* L
        cdef double vm, am, jm
        for i in range(CHAIR_N_AXES):
            L = &self.lim.axis[i]
            while True:
                x = self._drive(i)
                c = _q_peek(&self.q[i])
                if c == NULL or c.at_ns > self.now_ns:
                    break
                if (self.press_on or c.kind == CHAIR_CMD_PRESS) and self._moving(
                        &self.press if i == CHAIR_AXIS_CARRIAGE else &self.ax[CHAIR_AXIS_CARRIAGE]
                        ) and i != CHAIR_AXIS_WIDTH and i < CHAIR_N_POSITION_AXES:
                    # pressing relative to the surface, the carriage and the press take turns
                    # (the depth follows the carriage over the surface: both at once could
                    # take it past its limits); the planner's moves always do
                    break
                if c.kind == CHAIR_CMD_PRESS:
                    if self.now_ns < x.end_ns:
                        break  # after the depth's previous move (and its hold)
                    _q_pop(&self.q[i])
                    if not self._press_switch(c.value[0] != 0):
                        self._fault(CHAIR_FAULT_COMMAND, CHAIR_CMD_PRESS, c.value[0], i)
                        return
                    continue
                if i < CHAIR_N_POSITION_AXES:
                    if self.now_ns < x.end_ns:
                        break  # rest to rest: the previous move (and its hold) is not done
                    vm = c.value[1] if c.value[1] > 0 else L.v_max
                    am = c.value[2] if c.value[2] > 0 else L.a_max
                    jm = c.value[3] if c.value[3] > 0 else L.j_max
                    if profile_move(&x.prof, x.p, c.value[0], vm, am, jm) != 0:
                        _q_pop(&self.q[i])
                        self._fault(CHAIR_FAULT_COMMAND, c.value[0], 0, i)  # planner refused
                        return
                    x.end_ns = self.now_ns + _dur_ns(x.prof.duration) + c.hold_ns
                    x.a_lim = am
                    x.j_lim = jm
                else:
                    self._eval_now(x)
                    if profile_velocity(&x.prof, x.p, x.v, x.a, c.value[0], L.a_max,
                                        L.j_max) != 0:
                        _q_pop(&self.q[i])
                        self._fault(CHAIR_FAULT_COMMAND, c.value[0], 0, i)  # planner refused
                        return
                    x.end_ns = self.now_ns + _dur_ns(x.prof.duration)
                x.start_ns = self.now_ns
                x.goal = x.prof.pb[7]
                x.busy = 1
                _q_pop(&self.q[i])
        while True:
            c = _q_peek(&self.q[HEAT_Q])
            if c == NULL or c.at_ns > self.now_ns:
                break
            heater_set(&self.heater, c.value[0], self.now_ns)
            _q_pop(&self.q[HEAT_Q])

    # ------------------------------------------------------------------------------------------
    # the tick
    # ------------------------------------------------------------------------------------------

    cdef int _rt_tick(self, int64_t tick_ns) noexcept nogil:
        if not self.rt_epoch_set:
            # the first scheduled deadline continues the core's own time line
            self.rt_epoch_ns = tick_ns - self.now_ns
            self.rt_epoch_set = 1
        return self._tick(tick_ns - self.rt_epoch_ns)

    cdef int _tick(self, int64_t now) noexcept nogil:
        cdef chair_command c
        cdef int i, z
        cdef Axis* x
        cdef double t, lx, rx, clear, knead, tap, s0, s1, s2, s3
        cdef chair_status* st = &self.st
        self.now_ns = now
        self.wake = 0
        while spsc_pop(&self.cmd_ring, &c) == 0:
            self._command(&c)
            if _axis_command(&c):
                self.moves_taken[c.axis] += 1
        if ((self.mode == CHAIR_MODE_RUN or self.mode == CHAIR_MODE_BRAKE)
                and not self.reseat_pending):  # pose unknown: what is due waits (see below)
            self._start_due()
        if self.follow_on and self.mode == CHAIR_MODE_RUN and not self.reseat_pending:
            self._follow()

        # 2. profiles, in closed form from each profile's start
        for i in range(CHAIR_N_AXES):
            x = self._drive(i)
            t = (now - x.start_ns) * 1e-9
            profile_eval(&x.prof, t, &x.p, &x.v, &x.a, &x.j)
            if x.busy and now >= x.end_ns and self.q[i].length == 0:
                x.busy = 0
                if i < CHAIR_N_POSITION_AXES:
                    x.p = x.prof.pb[7]  # exactly the goal
                    x.v = 0
                    x.a = 0
                    x.j = 0
                self._event(CHAIR_EVT_AXIS_IDLE, i, x.p, 0, i)
        if self.press_on:
            self._compose_depth()
        if self.surf.n:
            surface_eval(&self.surf, self.ax[CHAIR_AXIS_CARRIAGE].p, &s0, &s1, &s2, &s3)
            self.surface_now = s0
            self.press_now = (self.press.p if self.press_on
                              else self.ax[CHAIR_AXIS_DEPTH].p - s0)
        else:
            self.surface_now = NAN
            self.press_now = NAN

        # 3. the hardware
        knead = self.ax[CHAIR_AXIS_KNEADING].v
        tap = self.ax[CHAIR_AXIS_TAPPING].v
        for i in range(CHAIR_N_POSITION_AXES):
            self.sp.pos_mm[i] = self.ax[i].p
            self.sp.vel_mm_s[i] = self.ax[i].v
        self.sp.t_ns = now
        self.sp.knead_rpm = knead
        self.sp.tap_hz = tap
        self.sp.heater_duty = self.heater.duty
        self.sp.enable = 0 if (self.deenergised or self.reseat_pending) else 1
        self.sp.seq = <int32_t>(self.ticks & 0x7fffffff)
        if self.hw.exchange(&self.sp, st) != 0:
            if st.link_ok:  # failed yet claims fresh: its stale time is not trusted either
                st.link_stale_ns = -1
            st.link_ok = 0
        # the commanded pose is not the chair's (the core has just started; or the link came back
        # while latched, and the board may have stopped on its own watchdog away from where the
        # blind brake ended): with a fresh status and every axis at rest, the encoders are the
        # truth. Before any check, so that tracking and stall never judge an assumed pose; what
        # is due starts from there in this very tick (whose setpoint said "drives off").
        if self.reseat_pending and st.link_ok and self._all_at_rest():
            self._reseat()
            if self.mode == CHAIR_MODE_RUN or self.mode == CHAIR_MODE_BRAKE:
                self._start_due()

        # 4. the guard — on what we command ...
        guard_commanded(&self.guard, &self.lim, self.ax, self.mode == CHAIR_MODE_ESTOP,
                        self.press_now)
        z = self.guard.zone
        lx = self.guard.left_x_mm
        rx = self.guard.right_x_mm
        # ... and on what the sensors say; with a fresh status, the body scan reports contact
        # changes with the carriage position
        if guard_measured(&self.guard, &self.lim, st, self.ax, now):
            if self.scan_on and st.arm_contact != self.last_contact:
                self.last_contact = st.arm_contact
                self._event(CHAIR_EVT_CONTACT, st.arm_contact, st.pos_mm[0], 0, -1)
            if self.follow_on:
                self._sample_skin(st)

        # 5. heater
        heater_step(&self.heater, &self.lim, st.thermistor_c, self.guard.thermistor_bad_ns < 0,
                    self.mode == CHAIR_MODE_FAULT or self.mode == CHAIR_MODE_ESTOP, now)

        # 6. bookkeeping, statistics, telemetry
        if self.program_on and z != self.zone:
            self.zone = z
            if z >= 0:
                self._event(CHAIR_EVT_ZONE, z, self.ax[CHAIR_AXIS_CARRIAGE].p, 0, -1)
        if self.program_on:
            if z >= 0:
                self.zone_ticks[z] += 1
            if fabs(self.ax[CHAIR_AXIS_CARRIAGE].v) > self.max_speed:
                self.max_speed = fabs(self.ax[CHAIR_AXIS_CARRIAGE].v)
            if fabs(self.ax[CHAIR_AXIS_CARRIAGE].a) > self.max_accel:
                self.max_accel = fabs(self.ax[CHAIR_AXIS_CARRIAGE].a)
            if self.guard.pressing:
                clear = (min(fabs(lx), fabs(rx)) - self.lim.contact_radius_mm
                         - self.lim.spine_half_width_mm - self.lim.spine_margin_mm)
                if clear < self.min_clearance:
                    self.min_clearance = clear
            if fabs(knead) > self.max_knead_rpm:
                self.max_knead_rpm = fabs(knead)
            if fabs(tap) > self.max_tap_hz:
                self.max_tap_hz = fabs(tap)
        if st.thermistor_c > self.max_heat_c:
            self.max_heat_c = st.thermistor_c
        if self.at_rest_pending and self._all_at_rest():
            if self.retract_pending and self.mode == CHAIR_MODE_FAULT:
                self.retract_pending = 0
                x = &self.ax[CHAIR_AXIS_DEPTH]
                profile_move(&x.prof, x.p, self.lim.axis[CHAIR_AXIS_DEPTH].min_mm,
                             self.lim.axis[CHAIR_AXIS_DEPTH].v_max,
                             self.lim.axis[CHAIR_AXIS_DEPTH].a_max,
                             self.lim.axis[CHAIR_AXIS_DEPTH].j_max)
                x.start_ns = now + self.lim.period_ns  # from the next tick, at rest till then
                x.end_ns = x.start_ns + _dur_ns(x.prof.duration)
                x.goal = x.prof.pb[7]
                x.busy = 1
            else:
                self.at_rest_pending = 0
                self._event(CHAIR_EVT_AT_REST, self.mode, self.ax[CHAIR_AXIS_CARRIAGE].p, 0, -1)
        # a latched chair at rest is de-energised (motor drives and the heater's power): a
        # heater stuck on behind its duty is cut there too. Over-temperature cuts at once, and
        # so does a lost link: braking through a link that no longer answers is blind, so the
        # very next setpoint says "drives off" (docs/board-protocol.md, Link loss)
        if self.mode == CHAIR_MODE_FAULT or self.mode == CHAIR_MODE_ESTOP:
            if (self.fault == CHAIR_FAULT_OVER_TEMPERATURE
                    or self.fault == CHAIR_FAULT_LINK_LOST
                    or (not self.at_rest_pending and self._all_at_rest())):
                self.deenergised = 1
        else:
            self.deenergised = 0
        if self.tlm_countdown <= 0:
            self.tlm_countdown = self.tlm_every
            self._telemetry(z, lx, rx)
        self.tlm_countdown -= 1
        self.ticks += 1
        return self.wake

    cdef void _telemetry(self, int z, double lx, double rx) noexcept nogil:
        cdef chair_telemetry r
        r.t_ns = self.now_ns
        r.mode = self.mode
        r.fault = self.fault
        r.zone = z
        r.flags = ((self.st.arm_contact != 0) | ((self.st.seat_occupied != 0) << 1)
                   | ((self.heater.duty > 0) << 2))
        r.y_mm = self.ax[CHAIR_AXIS_CARRIAGE].p
        r.v_mm_s = self.ax[CHAIR_AXIS_CARRIAGE].v
        r.a_mm_s2 = self.ax[CHAIR_AXIS_CARRIAGE].a
        r.width_mm = self.ax[CHAIR_AXIS_WIDTH].p
        r.left_x_mm = lx
        r.right_x_mm = rx
        r.depth_mm = self.ax[CHAIR_AXIS_DEPTH].p
        r.knead_rpm = self.ax[CHAIR_AXIS_KNEADING].v
        r.tap_hz = self.ax[CHAIR_AXIS_TAPPING].v
        r.heat_target_c = self.heater.target_c
        r.heat_c = self.st.thermistor_c
        r.heater_duty = self.heater.duty
        r.y_meas_mm = self.st.pos_mm[0]
        r.surface_mm = self.surface_now
        r.press_mm = self.press_now
        r.depth_load_a = self.st.depth_load_a
        r.depth_meas_mm = self.st.pos_mm[CHAIR_AXIS_DEPTH]
        spsc_push(&self.tlm_ring, &r)

    # ------------------------------------------------------------------------------------------
    # Python API: commands (call from one thread only: the ring has a single producer)
    # ------------------------------------------------------------------------------------------

    cdef void _send(self, chair_command* c) except *:
        if spsc_push(&self.cmd_ring, c) != 0:
            raise RuntimeError("core command ring full: the tick is not consuming commands")
        if _axis_command(c):
            self.moves_sent[c.axis] += 1

    def move(self, axis, goal, *, v_max=None, a_max=None, j_max=None,
             at_ns=0, hold_s=0.0, sent_ns=0):
        """Queue a rest-to-rest move of a position axis, starting at `at_ns` (core time) or as
        soon as the axis's previous move is done. Limits default to, and may not exceed, the
        axis's configured limits (a ValueError, not a clamp)."""
        cdef int i = _axis_index(axis)
        if i >= CHAIR_N_POSITION_AXES:
            raise ValueError(f"{AXES[i]} is a rate axis: use rate()")
        L = &self.lim.axis[i]
        goal = _number("goal", goal)
        _check_range("goal", goal, L.min_mm, L.max_mm)
        hold_s = _number("hold_s", hold_s)
        vm = _check_limit("v_max", v_max, L.v_max)
        am = _check_limit("a_max", a_max, L.a_max)
        jm = _check_limit("j_max", j_max, L.j_max)
        if not (isfinite(hold_s) and 0 <= hold_s <= 3600):
            raise ValueError(f"hold_s must be in [0, 3600], got {hold_s!r}")
        cdef chair_command c
        memset(&c, 0, sizeof(c))
        c.kind = CHAIR_CMD_MOVE
        c.axis = i
        c.at_ns = _time_ns("at_ns", at_ns)
        c.hold_ns = <int64_t>(hold_s * 1e9 + 0.5)
        c.sent_ns = _time_ns("sent_ns", sent_ns)
        c.value[0] = goal
        c.value[1] = vm
        c.value[2] = am
        c.value[3] = jm
        self._send(&c)

    def rate(self, axis, value, *, at_ns=0, sent_ns=0):
        """Ramp a rate axis (kneading rpm, signed; tapping Hz) to `value` within its limits."""
        cdef int i = _axis_index(axis)
        if i < CHAIR_N_POSITION_AXES:
            raise ValueError(f"{AXES[i]} is a position axis: use move()")
        L = &self.lim.axis[i]
        lo = -L.max_mm if i == CHAIR_AXIS_KNEADING else 0.0
        value = _number("rate", value)
        _check_range("rate", value, lo, L.max_mm)
        cdef chair_command c
        memset(&c, 0, sizeof(c))
        c.kind = CHAIR_CMD_RATE
        c.axis = i
        c.at_ns = _time_ns("at_ns", at_ns)
        c.sent_ns = _time_ns("sent_ns", sent_ns)
        c.value[0] = value
        self._send(&c)

    def heat(self, target_c, *, at_ns=0, sent_ns=0):
        """Set (and refresh) the pad target temperature; 0 turns the heater off. The core turns
        the heater off on its own if this is not refreshed within the heater timeout."""
        target_c = _number("target_c", target_c)
        _check_range("target_c", target_c, 0.0, self.lim.heat_max_target_c)
        self._simple(CHAIR_CMD_HEAT, 0, target_c, _time_ns("at_ns", at_ns),
                     _time_ns("sent_ns", sent_ns))

    def heartbeat(self):
        """Feed the controller watchdog."""
        self._simple(CHAIR_CMD_HEARTBEAT, 0, 0.0, 0, 0)

    def brake(self, *, sent_ns=0):
        """Brake every axis to rest (normal limits), drop queued moves: pause and stop use it."""
        self._simple(CHAIR_CMD_BRAKE, 0, 0.0, 0, _time_ns("sent_ns", sent_ns))

    def estop(self, *, sent_ns=0):
        """Latched emergency stop: emergency braking, heater off, until reset()."""
        self._simple(CHAIR_CMD_ESTOP, 0, 0.0, 0, _time_ns("sent_ns", sent_ns))

    def reset(self):
        """Clear a fault/e-stop latch; refused (event reset code 0) while anything moves."""
        self._simple(CHAIR_CMD_RESET, 0, 0.0, 0, 0)

    def raise_fault(self, code):
        """Latch a fault from above (e.g. a session-level check) with a controlled stop."""
        cdef int k
        if isinstance(code, str) and code in FAULT_CODES:
            k = FAULT_CODES.index(code)
        elif type(code) is int and 0 < code < CHAIR_N_FAULTS:
            k = code
        else:
            raise ValueError(f"unknown fault code {code!r}; codes: {', '.join(FAULT_CODES[1:])}")
        self._simple(CHAIR_CMD_FAULT, k, 0.0, 0, 0)

    def set_body(self, zones):
        """Give the guard the body's zone bands: a mapping zone → (lo_mm, hi_mm) in ZONE order,
        contiguous. None clears them."""
        cdef chair_command c
        memset(&c, 0, sizeof(c))
        c.kind = CHAIR_CMD_BODY
        if zones is None:
            self._send(&c)
            return
        from core_rt.config import ZONES
        if hasattr(zones, "keys"):
            if list(zones.keys()) != list(ZONES):
                raise ValueError(f"zones must be exactly {', '.join(ZONES)}, bottom to top")
            bands = list(zones.values())
        else:
            bands = list(zones)
        if len(bands) != CHAIR_N_ZONES:
            raise ValueError(f"need {CHAIR_N_ZONES} zone bands, got {len(bands)}")
        for b in bands:
            if len(b) != 2:
                raise ValueError(f"a zone band is (lo_mm, hi_mm), got {b!r}")
        edges = [_number("zone edge", bands[0][0])] + [_number("zone edge", b[1]) for b in bands]
        for k in range(CHAIR_N_ZONES):
            if abs(float(bands[k][0]) - edges[k]) > 1e-9 or not edges[k] <= edges[k + 1]:
                raise ValueError("zone bands must be contiguous and increasing")
        for k, v in enumerate(edges):
            _check_range("zone edge", v, self.lim.axis[0].min_mm, self.lim.axis[0].max_mm)
            c.value[k] = v
        c.axis = 1
        self._send(&c)

    def program(self, bint on):
        """Program running: zone events and zone/safety statistics are collected."""
        self._simple(CHAIR_CMD_PROGRAM, 1 if on else 0, 0.0, 0, 0)

    def scan(self, bint on):
        """Body scan: report arm-contact changes with the carriage position."""
        self._simple(CHAIR_CMD_SCAN, 1 if on else 0, 0.0, 0, 0)

    def follow_contour(self, bint on):
        """Contour scan: the depth axis follows the skin at a light touch by the depth drive's
        load (queued depth moves are dropped), and a `SurfaceSample` is taken every
        `contour.sample_mm` of carriage travel (`drain_surface`). Off: the depth axis brakes to
        rest where it is. A brake, a fault or an e-stop ends it too. See docs/core.md."""
        self._simple(CHAIR_CMD_CONTOUR, 1 if on else 0, 0.0, 0, 0)

    def clear_stats(self):
        self._simple(CHAIR_CMD_CLEAR_STATS, 0, 0.0, 0, 0)

    def set_surface(self, y0_mm, step_mm, control_mm, load_max_a):
        """The scanned back's surface (docs/core.md, Pressing relative to the surface): a cubic
        B-spline whose control points `control_mm` (mm on the depth axis, within its range) lie
        `step_mm` apart from `y0_mm` along the track, continued flat beyond both ends; and the
        zones' bounds on the depth drive's load, `load_max_a` (A, in ZONE order, or a mapping
        zone → A), which the guard checks while a surface is set. Refused (a `command` fault) while
        the heads press relative to a surface."""
        from core_rt.config import ZONES
        y0 = _number("y0_mm", y0_mm)
        step = _number("step_mm", step_mm)
        if not (isfinite(y0) and isfinite(step) and step > 0):
            raise ValueError(f"y0_mm and step_mm must be finite, step_mm > 0: {y0_mm!r}, {step_mm!r}")
        points = [_number("control point", v) for v in control_mm]
        if not 2 <= len(points) <= SURFACE_MAX - 4:
            raise ValueError(f"a surface has 2..{SURFACE_MAX - 4} control points, got {len(points)}")
        L = &self.lim.axis[CHAIR_AXIS_DEPTH]
        for v in points:
            _check_range("control point", v, L.min_mm, L.max_mm)
        if hasattr(load_max_a, "keys"):
            if set(load_max_a.keys()) != set(ZONES):
                raise ValueError(f"load_max_a must give every zone: {', '.join(ZONES)}")
            loads = [_number("load bound", load_max_a[z]) for z in ZONES]
        else:
            loads = [_number("load bound", v) for v in load_max_a]
        if len(loads) != CHAIR_N_ZONES or not all(isfinite(v) and v > 0 for v in loads):
            raise ValueError(f"load_max_a: {CHAIR_N_ZONES} finite loads > 0 (A), got {load_max_a!r}")
        cdef chair_command c
        cdef int k, i
        for k in range((len(points) + 7) // 8):
            memset(&c, 0, sizeof(c))
            c.kind = CHAIR_CMD_SURFACE
            c.axis = k
            for i in range(8):
                if 8 * k + i < len(points):
                    c.value[i] = points[8 * k + i]
            self._send(&c)
        memset(&c, 0, sizeof(c))
        c.kind = CHAIR_CMD_SURFACE
        c.axis = -1
        for i in range(CHAIR_N_ZONES):
            c.value[i] = loads[i]
        self._send(&c)
        memset(&c, 0, sizeof(c))
        c.kind = CHAIR_CMD_SURFACE
        c.axis = -2
        c.value[0] = y0
        c.value[1] = step
        c.value[2] = len(points)
        self._send(&c)

    def clear_surface(self):
        """No surface: caps judge the depth again, and the load is not bounded. Refused (a
        `command` fault) while the heads press relative to the surface."""
        cdef chair_command c
        memset(&c, 0, sizeof(c))
        c.kind = CHAIR_CMD_SURFACE
        c.axis = -2
        self._send(&c)

    def press_relative(self, bint on, *, at_ns=0):
        """From here (in order with the depth's queued moves) depth goals are press depths into
        the tissue, relative to the surface (`set_surface`), and the depth axis follows the
        surface as the carriage moves; off: depths from the heads' home again. Taken with the
        carriage and the depth at rest, else a `command` fault (so is on without a surface)."""
        cdef chair_command c
        memset(&c, 0, sizeof(c))
        c.kind = CHAIR_CMD_PRESS
        c.axis = CHAIR_AXIS_DEPTH
        c.at_ns = _time_ns("at_ns", at_ns)
        c.value[0] = 1.0 if on else 0.0
        self._send(&c)

    cdef _simple(self, int kind, int axis, double v0, int64_t at_ns, int64_t sent_ns):
        cdef chair_command c
        memset(&c, 0, sizeof(c))
        c.kind = kind
        c.axis = axis
        c.at_ns = at_ns
        c.sent_ns = sent_ns
        c.value[0] = v0
        self._send(&c)

    # ------------------------------------------------------------------------------------------
    # Python API: running
    # ------------------------------------------------------------------------------------------

    @property
    def period_ns(self):
        return self.lim.period_ns

    @property
    def realtime(self):
        return bool(self.running_rt)

    def run_until(self, int64_t t_ns, bint stop_on_event=True):
        """Virtual time: run ticks while the next tick's time is before `t_ns`, as fast as
        possible. Returns early (after the tick) when that tick emitted an event and
        `stop_on_event`. Returns the core time of the next tick."""
        if self.running_rt:
            raise RuntimeError("the real-time loop owns the core")
        cdef int64_t period = self.lim.period_ns
        cdef int64_t t = self.now_ns
        cdef int woke
        with nogil:
            while t < t_ns:
                woke = self._tick(t)
                t += period
                if woke and stop_on_event:
                    break
            self.now_ns = t
        return t

    def core_time_ns(self):
        """Current core time: the wall clock in real time, the next tick's time otherwise."""
        if self.running_rt and self.rt_epoch_set:
            return _mono_ns() - self.rt_epoch_ns
        return self.now_ns

    def start_realtime(self, int priority=80, int cpu=-1):
        """Run the tick in a native thread on absolute CLOCK_MONOTONIC deadlines, continuing
        from the current core time, pinned to `cpu` if ≥ 0. Returns the loop's outcome
        (sched_fifo, mlocked, pinned cpu, warning)."""
        if self.running_rt:
            raise RuntimeError("already running")
        if not 1 <= priority <= 99:
            raise ValueError(f"priority must be in 1..99, got {priority}")
        if self.efd < 0:
            self.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
            if self.efd < 0:
                raise OSError(errno, "eventfd")
        rt_loop_init(&self.loop, self.lim.period_ns, priority, _rt_tick, <void*>self)
        self.loop.event_fd = self.efd
        self.loop.cpu = cpu
        self.rt_epoch_set = 0
        cdef int rc
        with nogil:
            rc = rt_loop_start(&self.loop)
        if rc != 0:
            raise OSError(rc, "cannot start the real-time loop")
        self.running_rt = 1
        return self.loop_outcome()

    def stop_realtime(self):
        """Stop the native loop (the core keeps its state; virtual time may continue)."""
        if not self.running_rt:
            return
        with nogil:
            rt_loop_stop(&self.loop)
        self.running_rt = 0
        self.now_ns += self.lim.period_ns  # the next tick's time, as in virtual time

    def fileno(self):
        """The eventfd the real-time loop signals when it has events for asyncio."""
        if self.efd < 0:
            self.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        return self.efd

    def clear_wakeup(self):
        """Consume the eventfd counter (call from the add_reader callback)."""
        cdef uint64_t v
        if self.efd >= 0:
            read(self.efd, &v, 8)

    def loop_outcome(self):
        return {
            "sched_fifo": bool(self.loop.sched_fifo),
            "mlocked": bool(self.loop.mlocked),
            "timer_slack": bool(self.loop.timer_slack),
            "cpu": self.loop.cpu if self.loop.pinned else None,
            "warning": self.loop.warning.decode("utf-8", "replace") if self.loop.warning[0] else "",
        }

    def loop_stats(self):
        """Wake-up latency and tick execution statistics of the real-time loop."""
        L = &self.loop
        return {
            "hz": round(1e9 / self.lim.period_ns),
            "cycles": rt_stat(&L.cycles),
            "missed": rt_stat(&L.missed),
            "latency_p50_us": rt_hist_percentile(L.lat_hist, RT_LAT_NBINS, RT_LAT_BIN_NS / 1e3, 0.50),
            "latency_p99_us": rt_hist_percentile(L.lat_hist, RT_LAT_NBINS, RT_LAT_BIN_NS / 1e3, 0.99),
            "latency_max_us": rt_stat(&L.lat_max_ns) / 1000.0,
            "exec_p50_us": rt_hist_percentile(L.exec_hist, RT_EXEC_NBINS, RT_EXEC_BIN_NS / 1e3, 0.50),
            "exec_p99_us": rt_hist_percentile(L.exec_hist, RT_EXEC_NBINS, RT_EXEC_BIN_NS / 1e3, 0.99),
            "exec_max_us": rt_stat(&L.exec_max_ns) / 1000.0,
            **self.loop_outcome(),
        }

    # ------------------------------------------------------------------------------------------
    # Python API: outputs
    # ------------------------------------------------------------------------------------------

    def drain_events(self):
        """Pop every pending event, oldest first, as `CoreEvent` records (core_rt.records)."""
        cdef chair_event e
        cdef list out = []
        while spsc_pop(&self.evt_ring, &e) == 0:
            out.append(event_record(&e))
        return out

    def drain_surface(self):
        """Pop every pending contour sample, oldest first, as `SurfaceSample` records."""
        cdef chair_surface_sample s
        cdef list out = []
        while spsc_pop(&self.srf_ring, &s) == 0:
            out.append(surface_record(&s))
        return out

    def drain_telemetry(self):
        """Pop every pending telemetry record, oldest first, as `Telemetry` records."""
        cdef chair_telemetry r
        cdef list out = []
        while spsc_pop(&self.tlm_ring, &r) == 0:
            out.append(telemetry_record(&r))
        return out

    def stats(self):
        """Statistics over program time (since the last clear_stats)."""
        dt = self.lim.period_ns * 1e-9
        from core_rt.config import ZONES
        return {
            "ticks": self.ticks,
            "zone_seconds": {ZONES[i]: self.zone_ticks[i] * dt for i in range(CHAIR_N_ZONES)},
            "max_speed_mm_s": self.max_speed,
            "max_accel_mm_s2": self.max_accel,
            "spine_clearance_min_mm": None if self.min_clearance > 1e299 else self.min_clearance,
            "max_heat_c": None if self.max_heat_c < -1e299 else self.max_heat_c,
            "max_knead_rpm": self.max_knead_rpm,
            "max_tap_hz": self.max_tap_hz,
            "events_dropped": spsc_dropped(&self.evt_ring),
            "telemetry_dropped": spsc_dropped(&self.tlm_ring),
        }

    def snapshot(self):
        """The commanded state right now (virtual time; approximate while the loop runs). An
        axis is `busy` while it moves, has moves queued, or while a move or rate sent for it has
        not yet been taken by the tick (so a wait for rest never ends before a move has begun).
        `axes` are in the coordinates of each axis's moves: while `press_relative`, the depth's
        are the press into the tissue; `depth_mm` is always the depth from the heads' home."""
        return {
            "t_ns": self.now_ns,
            "mode": MODES[self.mode],
            "fault": FAULT_CODES[self.fault],
            "axes": {AXES[i]: self._drive_state(i) for i in range(CHAIR_N_AXES)},
            "busy": {AXES[i]: bool(self.moves_sent[i] != self.moves_taken[i]
                                   or self.ax[i].busy or self.q[i].length)
                     for i in range(CHAIR_N_AXES)},
            "heat_target_c": self.heater.target_c,
            "heater_duty": self.heater.duty,
            "heat_c": self.st.thermistor_c,
            "zone": self.zone,
            "seat_occupied": bool(self.st.seat_occupied),
            "arm_contact": bool(self.st.arm_contact),
            "y_meas_mm": self.st.pos_mm[0],
            "depth_meas_mm": self.st.pos_mm[CHAIR_AXIS_DEPTH],
            "depth_load_a": self.st.depth_load_a,
            "following": bool(self.follow_on),
            "pose_known": not self.reseat_pending,
            "surface": self.surf.n > 0,
            "press_relative": bool(self.press_on),
            "depth_mm": self.ax[CHAIR_AXIS_DEPTH].p,
            "surface_mm": self.surface_now,
            "press_mm": self.press_now,
        }

    cdef tuple _drive_state(self, int i):
        cdef Axis* x = self._drive(i)
        return (x.p, x.v, x.a)

    def command_stats(self):
        """Timed commands (moves, rates, heat) that reached the tick after their start time:
        how many and the latest by how much (ms). Non-zero means the session's look-ahead did
        not cover a hold-up of its event loop (docs/core.md)."""
        return {"late": self.late_commands, "late_max_ms": self.late_max_ns / 1e6}

    def last_command_latency(self):
        """(sent_ns, applied_ns) CLOCK_MONOTONIC of the last command sent with `sent_ns`."""
        return (self.last_sent_ns, self.last_applied_ns)



def mono_ns():
    """CLOCK_MONOTONIC in ns (the clock of `sent_ns` and the real-time loop)."""
    return _mono_ns()


cdef double _number(str name, v) except? -1.0:
    """A real number (not a bool, not a string) as a double, else ValueError."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{name} must be a number, got {v!r}")
    try:
        return float(v)
    except OverflowError:
        raise ValueError(f"{name} is out of range: {v!r}") from None


cdef int64_t _time_ns(str name, v) except? -1:
    """A time in integer nanoseconds, 0 ≤ t < 2**62."""
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < (1 << 62):
        raise ValueError(f"{name} must be an integer number of ns in [0, 2**62), got {v!r}")
    return v


cdef int _axis_index(axis) except -1:
    if isinstance(axis, str):
        try:
            return AXES.index(axis)
        except ValueError:
            raise ValueError(f"unknown axis {axis!r}; axes: {', '.join(AXES)}") from None
    if type(axis) is int and 0 <= axis < CHAIR_N_AXES:
        return axis
    raise ValueError(f"unknown axis {axis!r}")


cdef _check_range(str name, double v, double lo, double hi):
    if not isfinite(v) or v < lo or v > hi:
        raise ValueError(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {v!r}")


cdef double _check_limit(str name, value, double cfg_max) except -1:
    if value is None:
        return cfg_max
    cdef double v = _number(name, value)
    if not isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if v > cfg_max * (1 + 1e-12):
        raise ValueError(f"{name} {v:g} exceeds the configured limit {cfg_max:g}")
    return v


cdef void _put_axis(chair_axis_limits* a, double lo, double hi, m) except *:
    a.min_mm = lo
    a.max_mm = hi
    a.v_max = m.v_max
    a.a_max = m.a_max
    a.j_max = m.j_max
    a.estop_a_max = m.estop_a_max
    a.estop_j_max = m.estop_j_max


cdef void _fill_limits(chair_limits* L, c) except *:
    memset(L, 0, sizeof(chair_limits))
    L.period_ns = c.loop.period_ns
    L.limit_tolerance_rel = c.loop.limit_tolerance_rel

    _put_axis(&L.axis[CHAIR_AXIS_CARRIAGE], c.carriage.track_min_mm, c.carriage.track_max_mm,
              c.carriage.limits)
    _put_axis(&L.axis[CHAIR_AXIS_WIDTH], c.width.min_mm, c.width.max_mm, c.width.limits)
    _put_axis(&L.axis[CHAIR_AXIS_DEPTH], c.depth.min_mm, c.depth.max_mm, c.depth.limits)
    _put_axis(&L.axis[CHAIR_AXIS_KNEADING], 0.0, c.kneading.max_rpm, c.kneading.limits)
    _put_axis(&L.axis[CHAIR_AXIS_TAPPING], 0.0, c.tapping.max_hz, c.tapping.limits)
    b = c.body
    L.eccentricity_mm = c.kneading.eccentricity_mm
    L.contact_radius_mm = b.contact_radius_mm
    L.spine_half_width_mm = b.spine_half_width_mm
    L.spine_margin_mm = b.spine_margin_mm
    from core_rt.config import ZONES
    for i, z in enumerate(ZONES):
        caps = b.zone_caps[z]
        L.zone_depth_max_mm[i] = c.depth.level_mm(caps.depth_level)
        L.zone_tap_max_hz[i] = caps.tap_hz
        L.zone_knead_max_rpm[i] = caps.knead_rpm
    L.retracted_depth_mm = c.depth.retracted_mm
    h = c.heater
    L.heat_trip_c = h.trip_c
    L.heat_max_target_c = h.max_target_c
    L.thermistor_min_c = h.thermistor_min_c
    L.thermistor_max_c = h.thermistor_max_c
    L.heater_refresh_ns = <int64_t>(h.refresh_timeout_s * 1e9)
    L.heater_kp = h.kp_duty_per_c
    L.heater_ki = h.ki_duty_per_c_s
    L.not_heating_duty = h.not_heating_duty
    L.not_heating_rise_c = h.not_heating_rise_c
    L.not_heating_window_ns = <int64_t>(h.not_heating_window_s * 1e9)
    f = c.faults
    ms = 1_000_000
    L.stall_ns = <int64_t>(f.stall_ms * ms)
    L.stall_min_mm = f.stall_min_mm
    for i in range(CHAIR_N_MOTORS):
        L.overcurrent_a[i] = f.overcurrent_a[i]
    L.overcurrent_ns = <int64_t>(f.overcurrent_ms * ms)
    L.supply_min_v = f.supply_min_v
    L.supply_max_v = f.supply_max_v
    L.supply_ns = <int64_t>(f.supply_ms * ms)
    L.thermistor_ns = <int64_t>(f.thermistor_ms * ms)
    L.occupant_ns = <int64_t>(f.occupant_ms * ms)
    L.link_lost_ns = <int64_t>(f.link_lost_ms * ms)
    L.controller_watchdog_ns = <int64_t>(f.controller_watchdog_ms * ms)
    for i in range(CHAIR_N_POSITION_AXES):
        L.tracking_error_max_mm[i] = f.tracking_error_max_mm[i]
    L.overtravel_mm = f.overtravel_mm
    k = c.contour
    L.contour_load_a_per_mm = k.load_a_per_mm
    L.contour_touch_a[0] = k.touch_press_mm[0] * k.load_a_per_mm
    L.contour_touch_a[1] = k.touch_press_mm[1] * k.load_a_per_mm
    L.contour_contact_min_a = k.contact_min_press_mm * k.load_a_per_mm
    L.contour_gain_per_s = k.gain_per_s
    L.contour_sample_mm = k.sample_mm
    L.contour_reach_mm = k.reach_mm
    L.contour_margin_mm = k.margin_mm
    L.contour_floor_mm = k.floor_mm
    L.contour_search_mm_s = k.search_mm_s
    L.contour_touch_samples = k.touch_samples
    L.zone_load_ns = <int64_t>(f.zone_load_ms * ms)
