# cython: language_level=3
"""The simulated chair: a plant behind the core's hardware seam (see docs/simulator.md).

`SimPlant.exchange` applies one setpoint for one period and fills the status the core sees at the
next tick: three position axes with their drives, encoders and hard stops, the kneading and tapping
motors, the heating pad and its thermistor, the supply, the seated body with its shoulder line and
the roller arm's contact switch, and faults injected at given times. Plain C, fixed-step, seeded
noise from its own PRNG: the same seed and setpoints give bit-identical statuses.
"""

import math
import time
from collections.abc import Mapping, Sequence

from libc.math cimport fabs, fmax, fmin, lrint, exp, ceil, sqrt, NAN
from libc.stdint cimport int32_t, int64_t, uint64_t, INT64_MAX
from libc.string cimport memset

from core_rt.chair_core cimport chair_setpoint, chair_status
from core_rt.hardware cimport Hardware

from core_rt.config import ChairConfig
from sim.back import back_contour
from sim.faults import FaultSpec, MOTORS, SESSION_KINDS, parse_fault
from sim.model import PlantParams, check_start_mm

cdef enum:
    SIM_FK_STALL = 1
    SIM_FK_OVERCURRENT = 2
    SIM_FK_THERMISTOR_OPEN = 3
    SIM_FK_THERMISTOR_SHORT = 4
    SIM_FK_HEATER_DEAD = 5
    SIM_FK_HEATER_STUCK_ON = 6
    SIM_FK_LIMIT_SWITCH_BOTH = 7
    SIM_FK_SUPPLY_LOW = 8
    SIM_FK_SUPPLY_HIGH = 9
    SIM_FK_OCCUPANT_LEAVES = 10
    SIM_FK_LEAN_FORWARD = 11
    SIM_FK_SHIFT = 12
    SIM_FK_DEPTH_LOAD_LOST = 13

_KIND_CODE = {
    "stall": SIM_FK_STALL,
    "overcurrent": SIM_FK_OVERCURRENT,
    "thermistor_open": SIM_FK_THERMISTOR_OPEN,
    "thermistor_short": SIM_FK_THERMISTOR_SHORT,
    "heater_dead": SIM_FK_HEATER_DEAD,
    "heater_stuck_on": SIM_FK_HEATER_STUCK_ON,
    "limit_switch_both": SIM_FK_LIMIT_SWITCH_BOTH,
    "supply_low": SIM_FK_SUPPLY_LOW,
    "supply_high": SIM_FK_SUPPLY_HIGH,
    "occupant_leaves": SIM_FK_OCCUPANT_LEAVES,
    "lean_forward": SIM_FK_LEAN_FORWARD,
    "shift": SIM_FK_SHIFT,
    "depth_load_lost": SIM_FK_DEPTH_LOAD_LOST,
}

_SETPOINT_FIELDS = (
    "t_ns", "pos_mm", "vel_mm_s", "knead_rpm", "tap_hz", "heater_duty", "enable", "seq"
)
_MAX_FAULT_S = 9.0e9  # fault times beyond this (285 years) are clamped to fit int64 ns

# ---- noise: xorshift64* seeded through splitmix64 (no libc rand: deterministic everywhere) ----

cdef inline uint64_t _splitmix64(uint64_t x) noexcept nogil:
    x += 0x9E3779B97F4A7C15ULL
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL
    return x ^ (x >> 31)


cdef inline uint64_t _xorshift64s(uint64_t* s) noexcept nogil:
    cdef uint64_t x = s[0]
    x ^= x >> 12
    x ^= x << 25
    x ^= x >> 27
    s[0] = x
    return x * 0x2545F4914F6CDD1DULL


cdef double _GAUSS_SCALE = 1.0 / (65536.0 / sqrt(3.0))


cdef inline double _gauss(uint64_t* s) noexcept nogil:
    """Approximately standard normal: the sum of four 16-bit uniforms of one draw (Irwin-Hall)."""
    cdef uint64_t x = _xorshift64s(s)
    cdef uint64_t total = (x & 0xFFFF) + ((x >> 16) & 0xFFFF) + ((x >> 32) & 0xFFFF) + (x >> 48)
    return (<double>total - 131070.0) * _GAUSS_SCALE


cdef inline double _clamp(double x, double lo, double hi) noexcept nogil:
    # fmax/fmin return the number when x is NaN: a NaN setpoint becomes a bound, never a NaN state
    return fmin(fmax(x, lo), hi)


cdef class SimPlant(Hardware):
    """The simulated chair behind the core's hardware seam.

    ``SimPlant(config, body_height_cm=175, seed=0, faults=(), params=None, period_ns=None)``:
    `config` is the chair (`ChairConfig`), `params` the plant-only numbers (`PlantParams`),
    `faults` `FaultSpec`s (or spec strings) due at seconds after the epoch, `period_ns` the step
    (default ``config.loop.period_ns``). The epoch is the ``t_ns`` of the first exchange unless
    `set_epoch` is called first.
    """

    def __init__(
        self,
        config,
        body_height_cm=175.0,
        seed=0,
        faults=(),
        params=None,
        period_ns=None,
    ):
        if not isinstance(config, ChairConfig):
            raise TypeError("config must be a core_rt.config.ChairConfig")
        if params is None:
            params = PlantParams()
        elif not isinstance(params, PlantParams):
            raise TypeError("params must be a sim.model.PlantParams")
        period = config.loop.period_ns if period_ns is None else int(period_ns)
        if period <= 0:
            raise ValueError(f"period_ns must be > 0, got {period}")
        height = float(body_height_cm)
        if not math.isfinite(height) or height <= 0:
            raise ValueError(f"body_height_cm must be a positive number, got {body_height_cm!r}")
        self.config = config
        self.params = params
        self.seed = int(seed)
        self.body_height_cm = height
        self.period_ns = period
        self._specs = []
        self._session_specs = []

        cdef uint64_t seed64 = <uint64_t>(self.seed & 0xFFFFFFFFFFFFFFFF)
        self.rng = _splitmix64(seed64) | 1  # xorshift needs a non-zero state
        # the body's deviation from the mean comes from its own stream: it never shifts the noise
        cdef double u = <double>(_splitmix64(seed64 ^ 0xB0D1B0D1B0D1B0D1ULL) >> 11) * (1.0 / 9007199254740992.0)
        car = config.carriage
        body = params.body
        self.seat_mm = car.seat_mm
        self.shoulder_mm = (
            config.shoulder_for_height_mm(height) + (2.0 * u - 1.0) * body.shoulder_variation_mm
        )
        if not car.seat_mm < self.shoulder_mm < car.track_max_mm:
            raise ValueError(
                f"body_height_cm={height:g} puts the shoulder line at {self.shoulder_mm:.0f} mm, "
                f"outside the back of the track ({car.seat_mm:g}..{car.track_max_mm:g} mm)"
            )
        self.neck_mm = body.neck_mm
        self.neck_load = body.neck_load
        self.contact_depth = body.contact_depth_mm
        self.occupied = 1 if body.seated_at_start else 0
        # the back's contour (sim/back.py); its load reading's noise has its own stream too
        self.back = None
        self.contoured = 0
        self.back_n = 0
        self.press_mm = 0.0
        self.load_a = 0.0
        self.back_offset_mm = 0.0
        self.lean_forward_mm = body.lean_forward_mm
        self.shift_mm = body.shift_mm
        self.load_noise = body.load_noise_a
        self.load_rng = _splitmix64(seed64 ^ 0x10AD10AD10AD10ADULL) | 1
        if body.back is not None:
            contour = back_contour(
                config, body.back, self.shoulder_mm, body.neck_mm, self.seed, body.contour
            )
            if len(contour.surface_mm) > SIM_BACK_N:
                raise ValueError(
                    f"the back's tables need {len(contour.surface_mm)} samples, at most "
                    f"{SIM_BACK_N}: a coarser contour.step_mm"
                )
            for sample, (s_mm, k) in enumerate(zip(contour.surface_mm, contour.stiffness)):
                self.back_surface[<Py_ssize_t>sample] = s_mm
                self.back_stiffness[<Py_ssize_t>sample] = k
            self.back_n = len(contour.surface_mm)
            self.back_y0 = contour.y0_mm
            self.back_inv_step = 1.0 / contour.step_mm
            self.back = contour
            self.contoured = 1

        # time
        self.now_ns = 0
        self.epoch = 0
        self.epoch_set = 0
        self.dt = period * 1e-9
        self.inv_dt = 1.0 / self.dt
        self.nsub = max(1, <int32_t>ceil(period / 1_000_000.0))  # sub-steps of <= 1 ms
        self.h = self.dt / self.nsub

        # position axes
        ranges = (
            (car.track_min_mm, car.track_max_mm, car.limits),
            (config.width.min_mm, config.width.max_mm, config.width.limits),
            (config.depth.min_mm, config.depth.max_mm, config.depth.limits),
        )
        if params.start_mm is None:
            start = (car.park_mm, config.width.park_mm, config.depth.min_mm)
        else:
            start = check_start_mm(config, params.start_mm)  # inside the ranges, or ValueError
        cdef int j
        for j in range(3):
            lo, hi, limits = ranges[j]
            drive = params.axes[j]
            wn = 2.0 * math.pi * drive.bandwidth_hz
            self.lo[j] = lo
            self.hi[j] = hi
            # a drive accepts setpoints a little past its stops (so it can push into them)
            self.sp_lo[j] = lo - 20.0
            self.sp_hi[j] = hi + 20.0
            self.v_top[j] = drive.top_speed_factor * limits.v_max
            # kv·kp = wn², kv = 2·ζ·wn: the linear loop is the 2nd-order one of PlantParams
            self.kv[j] = 2.0 * drive.damping * wn
            self.kp[j] = wn / (2.0 * drive.damping)
            self.i_hold[j] = drive.hold_a
            self.i_fric[j] = drive.friction_a
            self.i_acc[j] = drive.accel_a_per_mm_s2
            self.i_press[j] = drive.press_a_per_mm
            self.i_max[j] = params.drive_limit_frac * config.faults.overcurrent_a[j]
            # the drive's current limit bounds the acceleration it can produce
            self.asat[j] = max(self.i_max[j] - drive.hold_a - drive.friction_a, 0.0) / drive.accel_a_per_mm_s2
            self.coast_dv[j] = drive.coast_decel_mm_s2 * self.h
            self.p[j] = min(max(float(start[j]), lo), hi)
            self.v[j] = 0.0
            self.a[j] = 0.0
            self.stalled[j] = 0
        self.enc_q = params.encoder_mm
        self.inv_enc_q = 1.0 / params.encoder_mm

        # rate motors
        rate_max = (config.kneading.max_rpm, config.tapping.max_hz)
        for j, motor in enumerate((params.kneading, params.tapping)):
            self.rate[j] = 0.0
            self.r_cmd_hi[j] = 2.0 * rate_max[j]
            self.r_cmd_lo[j] = -2.0 * rate_max[j] if j == 0 else 0.0
            self.r_alpha[j] = 1.0 - math.exp(-self.dt / motor.tau_s)
            self.r_coast[j] = 1.0 - math.exp(-self.dt / motor.coast_tau_s)
            self.r_hold[j] = motor.hold_a
            self.r_per[j] = motor.per_rate_a
            self.r_acc[j] = motor.per_accel_a
            self.r_press[j] = motor.press_a_per_mm
            self.r_max[j] = params.drive_limit_frac * config.faults.overcurrent_a[3 + j]
        for j in range(5):
            self.current[j] = 0.0
            self.oc[j] = 0
            self.oc_a[j] = params.overcurrent_factor * config.faults.overcurrent_a[j]

        # heater
        th = params.heater
        # the unheated pad at rest against the room (and the back, when seated)
        g_skin = th.loss_skin_w_per_k if self.occupied else 0.0
        self.pad_c = (th.loss_ambient_w_per_k * th.ambient_c + g_skin * th.skin_c) / (
            th.loss_ambient_w_per_k + g_skin
        )
        self.therm_c = self.pad_c
        self.heater_w_now = 0.0
        self.heater_w = th.heater_w
        self.dt_over_c = self.dt / th.capacity_j_per_k
        self.g_amb = th.loss_ambient_w_per_k
        self.g_skin = th.loss_skin_w_per_k
        self.t_amb = th.ambient_c
        self.t_skin = th.skin_c
        self.th_alpha = 1.0 - math.exp(-self.dt / th.thermistor_tau_s)
        self.th_noise = th.thermistor_noise_c
        self.th_open = th.thermistor_open_c
        self.th_short = th.thermistor_short_c
        self.fuse_c = th.thermal_fuse_c
        self.fuse_blown = 0
        self.heater_dead = 0
        self.heater_stuck = 0
        self.therm_mode = 0

        # supply
        sup = params.supply
        self.supply_nominal = sup.nominal_v
        self.supply_base = sup.nominal_v
        self.supply_low = sup.low_v
        self.supply_high = sup.high_v
        self.supply_r = sup.resistance_ohm
        self.supply_noise = sup.noise_v

        # switches
        self.limit_lo_mm = car.track_min_mm + params.limit_switch_mm
        self.limit_hi_mm = car.track_max_mm - params.limit_switch_mm
        self.limit_both = 0
        self.load_lost = 0
        self.contact = 0

        # faults
        self.n_faults = 0
        self.next_fault = 0
        self.next_fault_ns = INT64_MAX
        for spec in faults:
            self.inject(spec)

        memset(&self.last_sp, 0, sizeof(chair_setpoint))
        for j in range(3):
            self.last_sp.pos_mm[j] = self.p[j]
        self.last_sp.enable = 1

    # ---- the seam ------------------------------------------------------------------------------

    cdef int exchange(self, const chair_setpoint* sp, chair_status* st) noexcept nogil:
        cdef int64_t t = sp.t_ns
        cdef int32_t en = sp.enable != 0
        cdef double enf = 1.0 if en else 0.0
        cdef double h = self.h
        cdef double p, v, a, vc, ps, vs, dv, y, depth, body, occ, cmd, r, r_new, cur
        cdef double surf, stiff, x, f
        cdef int32_t i
        cdef double total_i = 0.0
        cdef double duty, heat_w, temp
        cdef int j, k

        if not self.epoch_set:
            self.epoch = t
            self.epoch_set = 1
        if t - self.epoch >= self.next_fault_ns:
            self._apply_due(t - self.epoch)

        # position axes: the drive's loop, sub-stepped by <= 1 ms (semi-implicit Euler)
        for j in range(3):
            p = self.p[j]
            v = self.v[j]
            a = 0.0
            ps = _clamp(sp.pos_mm[j], self.sp_lo[j], self.sp_hi[j])
            vs = _clamp(sp.vel_mm_s[j], -self.v_top[j], self.v_top[j])
            for k in range(self.nsub):
                if en:
                    # cascade: position loop -> velocity command (motor top speed) -> velocity
                    # loop -> acceleration (drive current limit); the reference is interpolated
                    # by the feed-forward within the period
                    vc = _clamp(vs + self.kp[j] * (ps + vs * (k * h) - p), -self.v_top[j], self.v_top[j])
                    a = _clamp(self.kv[j] * (vc - v), -self.asat[j], self.asat[j])
                    v += a * h
                else:
                    # de-energised: friction brings the axis to rest
                    dv = fmin(fabs(v), self.coast_dv[j])
                    v -= dv if v > 0.0 else -dv
                if self.stalled[j]:
                    v = 0.0
                p += v * h
                if p < self.lo[j]:  # hard mechanical stops: inelastic
                    p = self.lo[j]
                    v = 0.0
                elif p > self.hi[j]:
                    p = self.hi[j]
                    v = 0.0
            self.p[j] = p
            self.v[j] = v
            self.a[j] = a
            st.pos_mm[j] = self.enc_q * <double>lrint(p * self.inv_enc_q)

        # body: where the heads are against the seated user
        y = self.p[0]
        depth = fmax(self.p[2], 0.0)
        occ = <double>self.occupied
        if self.contoured:
            # the tissue between the skin (surface) and the heads: pressing loads it by its
            # stiffness (the tables, linear between samples)
            x = (y - self.back_y0) * self.back_inv_step
            i = <int32_t>x if x > 0.0 else 0
            if i >= self.back_n - 1:
                surf = self.back_surface[self.back_n - 1]
                stiff = self.back_stiffness[self.back_n - 1]
            else:
                f = fmax(x - i, 0.0)
                surf = self.back_surface[i] + (self.back_surface[i + 1] - self.back_surface[i]) * f
                stiff = (self.back_stiffness[i]
                         + (self.back_stiffness[i + 1] - self.back_stiffness[i]) * f)
            depth = fmax(self.p[2] - surf - self.back_offset_mm, 0.0)
            body = occ * stiff
        else:
            depth = fmax(self.p[2] - self.back_offset_mm, 0.0)
            if y <= self.shoulder_mm:
                body = occ
            elif y <= self.shoulder_mm + self.neck_mm:
                body = occ * self.neck_load
            else:
                body = 0.0
        self.press_mm = depth if body > 0.0 else 0.0
        self.contact = (
            (self.occupied != 0) & (depth >= self.contact_depth)
            & (y >= self.seat_mm) & (y <= self.shoulder_mm)
        )
        # the depth drive's load: what pressing draws beyond the drive's own current
        self.load_a = self.i_press[2] * depth * body

        # currents of the position drives
        for j in range(3):
            cur = (
                self.i_hold[j] + self.i_fric[j] * fmin(fabs(self.v[j]), 1.0)
                + self.i_acc[j] * fabs(self.a[j])
                # pressing loads the depth drive always, the others only as friction in motion
                + self.i_press[j] * depth * body * (1.0 if j == 2 else fmin(fabs(self.v[j]), 1.0))
            )
            cur = enf * fmin(cur, self.i_max[j])
            if self.oc[j]:
                cur = enf * self.oc_a[j]
            self.current[j] = cur
            st.current_a[j] = cur
            total_i += cur

        # kneading and tapping: first-order to the commanded rate, run down when de-energised
        for j in range(2):
            cmd = sp.knead_rpm if j == 0 else sp.tap_hz
            cmd = enf * _clamp(cmd, self.r_cmd_lo[j], self.r_cmd_hi[j])
            r = self.rate[j]
            r_new = r + (cmd - r) * (self.r_alpha[j] if en else self.r_coast[j])
            self.rate[j] = r_new
            cur = (
                self.r_hold[j] + self.r_per[j] * fabs(r_new)
                + self.r_acc[j] * fabs(r_new - r) * self.inv_dt
                + self.r_press[j] * depth * body * fmin(fabs(r_new), 1.0)
            )
            cur = enf * fmin(cur, self.r_max[j])
            if self.oc[3 + j]:
                cur = enf * self.oc_a[3 + j]
            self.current[3 + j] = cur
            st.current_a[3 + j] = cur
            total_i += cur
        st.knead_rpm = self.rate[0]
        st.tap_hz = self.rate[1]

        # heating pad: one thermal node against the room and the user's back
        duty = 1.0 if self.heater_stuck else _clamp(sp.heater_duty, 0.0, 1.0)
        heat_w = enf * duty * self.heater_w
        if self.heater_dead or self.fuse_blown:
            heat_w = 0.0
        self.heater_w_now = heat_w
        temp = self.pad_c
        temp += (
            heat_w - self.g_amb * (temp - self.t_amb) - occ * self.g_skin * (temp - self.t_skin)
        ) * self.dt_over_c
        self.pad_c = temp
        if temp >= self.fuse_c:
            self.fuse_blown = 1
        self.therm_c += (temp - self.therm_c) * self.th_alpha
        st.thermistor_c = self.therm_c + self.th_noise * _gauss(&self.rng)
        if self.therm_mode == 1:
            st.thermistor_c = self.th_open
        elif self.therm_mode == 2:
            st.thermistor_c = self.th_short

        st.supply_v = self.supply_base - self.supply_r * total_i + self.supply_noise * _gauss(&self.rng)

        st.limit_low = (self.limit_both != 0) | (y <= self.limit_lo_mm)
        st.limit_high = (self.limit_both != 0) | (y >= self.limit_hi_mm)
        st.arm_contact = self.contact
        st.seat_occupied = self.occupied
        st.board_faults = 0
        st.link_ok = 1
        st.link_stale_ns = 0
        st.depth_load_a = enf * (self.load_a + self.load_noise * _gauss(&self.load_rng))
        if self.load_lost:
            st.depth_load_a = NAN
        self.now_ns = t + self.period_ns
        st.t_ns = self.now_ns
        return 0

    cdef void _apply_due(self, int64_t rel_ns) noexcept nogil:
        cdef SimFault* f
        while self.next_fault < self.n_faults and self.faults[self.next_fault].at_ns <= rel_ns:
            f = &self.faults[self.next_fault]
            if f.kind == SIM_FK_STALL:
                self.stalled[f.target] = 1
            elif f.kind == SIM_FK_OVERCURRENT:
                self.oc[f.target] = 1
            elif f.kind == SIM_FK_THERMISTOR_OPEN:
                self.therm_mode = 1
            elif f.kind == SIM_FK_THERMISTOR_SHORT:
                self.therm_mode = 2
            elif f.kind == SIM_FK_HEATER_DEAD:
                self.heater_dead = 1
            elif f.kind == SIM_FK_HEATER_STUCK_ON:
                self.heater_stuck = 1
            elif f.kind == SIM_FK_LIMIT_SWITCH_BOTH:
                self.limit_both = 1
            elif f.kind == SIM_FK_SUPPLY_LOW:
                self.supply_base = self.supply_low
            elif f.kind == SIM_FK_SUPPLY_HIGH:
                self.supply_base = self.supply_high
            elif f.kind == SIM_FK_OCCUPANT_LEAVES:
                self.occupied = 0
            elif f.kind == SIM_FK_LEAN_FORWARD:
                self.back_offset_mm += self.lean_forward_mm
            elif f.kind == SIM_FK_SHIFT:
                self.back_offset_mm -= self.shift_mm
            elif f.kind == SIM_FK_DEPTH_LOAD_LOST:
                self.load_lost = 1
            self.next_fault += 1
        if self.next_fault < self.n_faults:
            self.next_fault_ns = self.faults[self.next_fault].at_ns
        else:
            self.next_fault_ns = INT64_MAX

    # ---- Python-level API (tests, the board emulator, tooling) ---------------------------------

    @property
    def time_ns(self):
        """Time (ns) of the current state: the last exchange's ``t_ns`` plus one period."""
        return self.now_ns

    @property
    def tick_ns(self):
        """The period each exchange integrates over (ns)."""
        return self.period_ns

    @property
    def epoch_ns(self):
        """The plant's epoch (fault times count from it), or None before the first exchange."""
        return self.epoch if self.epoch_set else None

    @property
    def true_shoulder_mm(self):
        """The seated body's real shoulder line (what a body scan should find), mm on the track."""
        return self.shoulder_mm

    def true_surface_mm(self, y_mm):
        """Where the skin truly is on the depth axis at `y_mm` (what a contour scan should find):
        0 on the flat back (up to its neck's top), `sim.back.NO_BODY_MM` above the head; a user
        who leaned forward or shifted (`lean_forward`, `shift`) moves it."""
        from sim.back import NO_BODY_MM

        y = float(y_mm)
        if self.back is not None:
            s = self.back.surface_at(y)
        else:
            s = 0.0 if y <= self.shoulder_mm + self.neck_mm else NO_BODY_MM
        return s if s >= NO_BODY_MM else s + self.back_offset_mm

    def true_stiffness(self, y_mm):
        """The tissue's relative stiffness at `y_mm` (1 on the flat back, its neck lighter)."""
        y = float(y_mm)
        if self.back is not None:
            return self.back.stiffness_at(y)
        if y <= self.shoulder_mm:
            return 1.0
        return self.neck_load if y <= self.shoulder_mm + self.neck_mm else 0.0

    def set_epoch(self, t_ns):
        """Count fault times from `t_ns` (instead of from the first exchange's time)."""
        self.epoch = int(t_ns)
        self.epoch_set = 1
        if self.now_ns == 0:
            self.now_ns = self.epoch

    def set_occupied(self, occupied):
        """Someone sits down (True) or stands up (False)."""
        self.occupied = 1 if occupied else 0

    def inject(self, spec):
        """Schedule a fault (`FaultSpec` or spec string) at ``spec.at_s`` after the epoch; a time
        already past applies at the next exchange. Session-level kinds go to `session_faults`."""
        if isinstance(spec, str):
            spec = parse_fault(spec)
        if not isinstance(spec, FaultSpec):
            raise TypeError(f"expected a FaultSpec or a fault spec string, got {spec!r}")
        if spec.kind in SESSION_KINDS:
            self._session_specs.append(spec)
            return
        if self.n_faults >= SIM_MAX_FAULTS:
            raise ValueError(f"too many plant faults (at most {SIM_MAX_FAULTS})")
        cdef int64_t at_ns = <int64_t>round(min(spec.at_s, _MAX_FAULT_S) * 1e9)
        cdef int32_t target = MOTORS.index(spec.target) if spec.target is not None else 0
        # keep the pending part sorted by time (stable: equal times keep injection order)
        cdef int i = self.n_faults
        while i > self.next_fault and self.faults[i - 1].at_ns > at_ns:
            self.faults[i] = self.faults[i - 1]
            i -= 1
        self.faults[i].at_ns = at_ns
        self.faults[i].kind = _KIND_CODE[spec.kind]
        self.faults[i].target = target
        self._specs.insert(i, spec)
        self.n_faults += 1
        self.next_fault_ns = self.faults[self.next_fault].at_ns

    def session_faults(self):
        """The faults the plant does not act out (``estop``, ``link_loss``), in injection order."""
        return list(self._session_specs)

    def active_faults(self):
        """Plant faults already applied, in time order."""
        return list(self._specs[: self.next_fault])

    def state(self):
        """The true plant state (what the sensors measure, without noise or quantisation)."""
        return {
            "time_ns": self.now_ns,
            "pos_mm": (self.p[0], self.p[1], self.p[2]),
            "vel_mm_s": (self.v[0], self.v[1], self.v[2]),
            "knead_rpm": self.rate[0],
            "tap_hz": self.rate[1],
            "current_a": tuple(self.current[j] for j in range(5)),
            "pad_c": self.pad_c,
            "heater_w": self.heater_w_now,
            "fuse_blown": bool(self.fuse_blown),
            "occupied": bool(self.occupied),
            "arm_contact": bool(self.contact),
            "shoulder_mm": self.shoulder_mm,
            "press_mm": self.press_mm,
            "depth_load_a": self.load_a,
            "stalled": tuple(MOTORS[j] for j in range(3) if self.stalled[j]),
            "active_faults": [str(s) for s in self._specs[: self.next_fault]],
            "pending_faults": [str(s) for s in self._specs[self.next_fault :]],
            "session_faults": [str(s) for s in self._session_specs],
        }

    def step(self, setpoint=None, n=1):
        """Apply a setpoint for `n` periods and return the last status as a dict.

        `setpoint` is a mapping with fields of ``chair_setpoint`` (``t_ns``, ``pos_mm``,
        ``vel_mm_s``, ``knead_rpm``, ``tap_hz``, ``heater_duty``, ``enable``, ``seq``) or a tuple
        of them in that order. Fields not given keep their previous value, except ``t_ns`` (the
        plant's time) and ``vel_mm_s`` (0). Over `n` periods ``t_ns`` and ``seq`` advance and each
        position advances by its velocity: a constant velocity is a ramp.
        """
        cdef chair_setpoint sp = self.last_sp
        cdef chair_status st
        cdef int64_t i, count = int(n)
        cdef int j
        if count < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if setpoint is None:
            fields = {}
        elif isinstance(setpoint, Mapping):
            fields = dict(setpoint)
        elif isinstance(setpoint, Sequence) and not isinstance(setpoint, str):
            if len(setpoint) > len(_SETPOINT_FIELDS):
                raise ValueError(f"a setpoint tuple has at most {len(_SETPOINT_FIELDS)} fields")
            fields = dict(zip(_SETPOINT_FIELDS, setpoint))
        else:
            raise TypeError("setpoint must be a mapping or a tuple of chair_setpoint fields")
        unknown = set(fields) - set(_SETPOINT_FIELDS)
        if unknown:
            raise ValueError(f"unknown setpoint fields {sorted(unknown)} (known: {_SETPOINT_FIELDS})")
        sp.t_ns = int(fields.get("t_ns", self.now_ns))
        if "pos_mm" in fields:
            pos = tuple(fields["pos_mm"])
            if len(pos) != 3:
                raise ValueError("pos_mm needs 3 values (carriage, width, depth)")
            for j in range(3):
                sp.pos_mm[j] = pos[j]
        vel = tuple(fields.get("vel_mm_s", (0.0, 0.0, 0.0)))
        if len(vel) != 3:
            raise ValueError("vel_mm_s needs 3 values (carriage, width, depth)")
        for j in range(3):
            sp.vel_mm_s[j] = vel[j]
        sp.knead_rpm = fields.get("knead_rpm", sp.knead_rpm)
        sp.tap_hz = fields.get("tap_hz", sp.tap_hz)
        sp.heater_duty = fields.get("heater_duty", sp.heater_duty)
        sp.enable = 1 if fields.get("enable", sp.enable) else 0
        sp.seq = int(fields.get("seq", sp.seq)) & 0x7FFFFFFF
        cdef double dt = self.dt
        with nogil:
            for i in range(count):
                if i > 0:
                    sp.t_ns += self.period_ns
                    sp.seq = (sp.seq + 1) & 0x7FFFFFFF
                    for j in range(3):
                        sp.pos_mm[j] += sp.vel_mm_s[j] * dt
                self.exchange(&sp, &st)
        self.last_sp = sp
        self.last_sp.seq = (sp.seq + 1) & 0x7FFFFFFF
        for j in range(3):
            self.last_sp.vel_mm_s[j] = 0.0
        return _status_dict(&st)


cdef dict _status_dict(const chair_status* st):
    return {
        "t_ns": st.t_ns,
        "pos_mm": (st.pos_mm[0], st.pos_mm[1], st.pos_mm[2]),
        "knead_rpm": st.knead_rpm,
        "tap_hz": st.tap_hz,
        "current_a": (
            st.current_a[0], st.current_a[1], st.current_a[2], st.current_a[3], st.current_a[4]
        ),
        "thermistor_c": st.thermistor_c,
        "supply_v": st.supply_v,
        "limit_low": st.limit_low,
        "limit_high": st.limit_high,
        "arm_contact": st.arm_contact,
        "seat_occupied": st.seat_occupied,
        "board_faults": st.board_faults,
        "link_ok": st.link_ok,
        "link_stale_ns": st.link_stale_ns,
        "depth_load_a": st.depth_load_a,
    }


def bench_exchange(n=1_000_000, plant=None):
    """Mean cost of one ``exchange`` in ns, called through the seam as the core calls it.

    The setpoint sweeps the carriage at 100 mm/s over the back with the heads pressing, kneading,
    tapping and heating, so every part of the model is exercised.
    """
    cdef SimPlant sim = plant if plant is not None else SimPlant(ChairConfig())
    cdef Hardware hw = sim
    cdef chair_setpoint sp
    cdef chair_status st
    cdef int64_t i, count = int(n), period = sim.period_ns
    cdef double dt = period * 1e-9
    if count < 1:
        raise ValueError("n must be >= 1")
    memset(&sp, 0, sizeof(chair_setpoint))
    sp.pos_mm[1] = 130.0
    sp.pos_mm[2] = 16.0
    sp.vel_mm_s[0] = 100.0
    sp.knead_rpm = 30.0
    sp.tap_hz = 6.0
    sp.heater_duty = 0.5
    sp.enable = 1
    t0 = time.perf_counter_ns()
    with nogil:
        for i in range(count):
            sp.t_ns = i * period
            sp.seq = <int32_t>(i & 0x7FFFFFFF)
            sp.pos_mm[0] = 320.0 + 100.0 * dt * <double>(i % 6000)  # 320..920 mm, then back
            hw.exchange(&sp, &st)
    return (time.perf_counter_ns() - t0) / count
