"""Jerk-limited motion profiles (7-segment double-S), planned and evaluated in closed form.

The C contract (``motion.pxd``) is what the 1 kHz tick uses: ``profile_move`` (rest to rest),
``profile_velocity`` (reach a velocity with a = 0: brakes, rate ramps), ``profile_hold`` and
``profile_eval``. All of them are ``noexcept nogil`` and allocation-free.

A profile stores, for each of its 7 constant-jerk segments, the boundary state (p, v, a) at the
segment's start, computed analytically when planning. Evaluation picks the segment and evaluates
one cubic from that boundary, so the cost is constant and nothing drifts with time: there is no
step-by-step integration anywhere.

Reference: L. Biagiotti, C. Melchiorri, *Trajectory Planning for Automatic Machines and Robots*,
Springer 2008, §3.4 (double-S velocity profile).

The Python API (``plan_move``, ``plan_velocity``, ``plan_brake``, ``Move``) is for tooling and
tests; it validates its arguments and raises ``ValueError`` naming the bad one.
"""
import numbers

cimport cython
from libc.math cimport cbrt, fabs, isfinite, sqrt

# Magnitudes the Python API accepts. Anything beyond is a unit mistake, not a chair move, and
# far inside the range where every intermediate of the planner stays finite.
cdef double _POSITION_MAX = 1e6   # |position|, e.g. mm
cdef double _LIMIT_MAX = 1e9      # v_max, a_max, j_max and |v0|, |a0|, |v1|
cdef double _LIMIT_MIN = 1e-6     # smaller positive limits are treated as absurd as well

cdef double _SIXTH = 1.0 / 6.0


# ---------------------------------------------------------------------------------------------
# C level (the tick's contract)
# ---------------------------------------------------------------------------------------------

cdef inline double _advance(double p, double v, double a, double j, double dt) noexcept nogil:
    """Position after dt seconds of constant jerk j from (p, v, a) (Horner form)."""
    return p + dt * (v + dt * (0.5 * a + dt * j * _SIXTH))


cdef inline bint _profile_finite(const Profile* s) noexcept nogil:
    cdef int i
    if not isfinite(s.duration):
        return False
    for i in range(8):
        if not (isfinite(s.pb[i]) and isfinite(s.vb[i]) and isfinite(s.ab[i])):
            return False
    return True


cdef inline int _invalid(Profile* s, double p0) noexcept nogil:
    # The contract leaves a valid zero-length hold behind on every error, at p0 if p0 itself is
    # usable (a NaN position cannot be held; 0 is the only defined fallback). Caller sees -1.
    profile_hold(s, p0 if isfinite(p0) else 0.0, 0.0)
    return -1


cdef void profile_hold(Profile* s, double p0, double duration) noexcept nogil:
    cdef int i
    # A negative or NaN duration means "no hold"; +inf is a legitimate "hold until replaced".
    if not (duration >= 0.0):
        duration = 0.0
    s.p0 = p0
    s.v0 = 0.0
    s.a0 = 0.0
    s.duration = duration
    s.t[0] = 0.0
    for i in range(7):
        s.t[i + 1] = duration
        s.jerk[i] = 0.0
    for i in range(8):
        s.pb[i] = p0
        s.vb[i] = 0.0
        s.ab[i] = 0.0


cdef int profile_move(Profile* s, double p0, double p1, double vmax, double amax,
                      double jmax) noexcept nogil:
    cdef double d, sgn, tj, tc, tv, vp, apk, b, x1, x2, x3, v1, v2
    if not (isfinite(p0) and isfinite(p1) and isfinite(vmax) and isfinite(amax)
            and isfinite(jmax) and vmax > 0.0 and amax > 0.0 and jmax > 0.0):
        return _invalid(s, p0)
    d = p1 - p0
    if not isfinite(d):
        return _invalid(s, p0)
    if d == 0.0:
        profile_hold(s, p0, 0.0)
        s.pb[7] = p1   # bitwise the goal, even for -0.0 vs 0.0
        return 0
    # Plan the positive displacement; the negative one is its mirror image.
    sgn = 1.0 if d > 0.0 else -1.0
    d = fabs(d)

    # Acceleration phase up to vmax: trapezoidal acceleration when amax is reachable before vmax,
    # triangular otherwise (B&M eq. 3.19).
    if vmax * jmax >= amax * amax:
        tj = amax / jmax
        tc = vmax / amax - tj
        apk = amax
    else:
        tj = sqrt(vmax / jmax)
        tc = 0.0
        apk = jmax * tj
    if tc < 0.0:
        tc = 0.0
    if d >= vmax * (2.0 * tj + tc):
        # vmax is reached: accelerate, cruise, decelerate (the acc+dec distance is vmax*Ta).
        vp = vmax
        tv = d / vmax - (2.0 * tj + tc)
        if tv < 0.0:
            tv = 0.0
    else:
        tv = 0.0
        if d * jmax * jmax >= 2.0 * amax * amax * amax:
            # amax reached, vmax not: the peak velocity solves vp^2 + vp*amax^2/jmax - d*amax = 0,
            # taken in the cancellation-free form of the positive root.
            b = amax * amax / jmax
            vp = 2.0 * d * amax / (b + sqrt(b * b + 4.0 * d * amax))
            tj = amax / jmax
            tc = vp / amax - tj
            if tc < 0.0:
                tc = 0.0
            apk = amax
        else:
            # Neither reached: four jerk pulses, d = 2*j*tj^3.
            tj = cbrt(d / (2.0 * jmax))
            tc = 0.0
            apk = jmax * tj
            vp = apk * tj

    # Boundary states of the acceleration phase, measured from the start in the move's direction.
    x1 = apk * tj * tj * _SIXTH
    v1 = 0.5 * apk * tj
    x2 = x1 + tc * (v1 + 0.5 * apk * tc)
    v2 = vp - 0.5 * apk * tj
    x3 = 0.5 * vp * (2.0 * tj + tc)

    s.p0 = p0
    s.v0 = 0.0
    s.a0 = 0.0
    s.t[0] = 0.0
    s.t[1] = tj
    s.t[2] = tj + tc
    s.t[3] = 2.0 * tj + tc
    s.t[4] = s.t[3] + tv
    s.t[5] = s.t[4] + tj
    s.t[6] = s.t[5] + tc
    s.t[7] = s.t[6] + tj
    s.duration = s.t[7]

    s.jerk[0] = sgn * jmax
    s.jerk[1] = 0.0
    s.jerk[2] = -sgn * jmax
    s.jerk[3] = 0.0
    s.jerk[4] = -sgn * jmax
    s.jerk[5] = 0.0
    s.jerk[6] = sgn * jmax

    # The deceleration phase is the acceleration phase mirrored about the goal, so its boundaries
    # are measured back from p1: the last one is p1 itself, bit for bit.
    s.pb[0] = p0
    s.pb[1] = p0 + sgn * x1
    s.pb[2] = p0 + sgn * x2
    s.pb[3] = p0 + sgn * x3
    s.pb[4] = p1 - sgn * x3
    s.pb[5] = p1 - sgn * x2
    s.pb[6] = p1 - sgn * x1
    s.pb[7] = p1

    s.vb[0] = 0.0
    s.vb[1] = sgn * v1
    s.vb[2] = sgn * v2
    s.vb[3] = sgn * vp
    s.vb[4] = sgn * vp
    s.vb[5] = sgn * v2
    s.vb[6] = sgn * v1
    s.vb[7] = 0.0

    s.ab[0] = 0.0
    s.ab[1] = sgn * apk
    s.ab[2] = sgn * apk
    s.ab[3] = 0.0
    s.ab[4] = 0.0
    s.ab[5] = -sgn * apk
    s.ab[6] = -sgn * apk
    s.ab[7] = 0.0

    if not _profile_finite(s):
        return _invalid(s, p0)
    return 0


cdef int profile_velocity(Profile* s, double p0, double v0, double a0, double v1, double amax,
                          double jmax) noexcept nogil:
    cdef double t_pre = 0.0, j_pre = 0.0, v = v0, a = a0
    cdef double dirn, am, dv, sq, ap, t1, t2, t3, v_stop
    cdef int i
    if not (isfinite(p0) and isfinite(v0) and isfinite(a0) and isfinite(v1) and isfinite(amax)
            and isfinite(jmax) and amax > 0.0 and jmax > 0.0):
        return _invalid(s, p0)

    # Segment 0: an acceleration beyond the limit is brought back to the limit at full jerk
    # before anything else; nothing can be done faster than that.
    if a0 > amax:
        t_pre = (a0 - amax) / jmax
        j_pre = -jmax
        a = amax
        v = v0 + 0.5 * (a0 + amax) * t_pre
    elif a0 < -amax:
        t_pre = (-amax - a0) / jmax
        j_pre = jmax
        a = -amax
        v = v0 + 0.5 * (a0 - amax) * t_pre

    # Direction of the remaining bang-bang jerk profile: compare v1 with the velocity reached by
    # taking a straight to 0 at full jerk. Then work in mirrored coordinates (am, dv >= 0 side).
    v_stop = v + a * fabs(a) / (2.0 * jmax)
    dirn = 1.0 if v1 >= v_stop else -1.0
    am = dirn * a
    dv = dirn * (v1 - v)
    # Peak acceleration without a constant-acceleration phase: 2*ap^2 - am^2 = 2*j*dv.
    # ap >= max(am, 0) holds by the choice of dirn; the clamps only absorb rounding, so that a
    # zero-length first ramp leaves the start state untouched.
    sq = jmax * dv + 0.5 * am * am
    if sq < 0.0:
        sq = 0.0
    ap = sqrt(sq)
    if ap < am:
        ap = am
    if ap >= amax:
        ap = amax
        t1 = (amax - am) / jmax
        t2 = (dv - (2.0 * amax * amax - am * am) / (2.0 * jmax)) / amax
    else:
        if am > 0.0:
            # ap - am = (ap^2 - am^2) / (ap + am): no cancellation when ap is close to am.
            t1 = (jmax * dv - 0.5 * am * am) / (jmax * (ap + am))
        else:
            t1 = (ap - am) / jmax
        t2 = 0.0
    if t1 < 0.0:
        t1 = 0.0
    if t2 < 0.0:
        t2 = 0.0
    t3 = ap / jmax

    s.p0 = p0
    s.v0 = v0
    s.a0 = a0
    s.t[0] = 0.0
    s.t[1] = t_pre
    s.t[2] = t_pre + t1
    s.t[3] = s.t[2] + t2
    s.t[4] = s.t[3] + t3
    s.t[5] = s.t[4]
    s.t[6] = s.t[4]
    s.t[7] = s.t[4]
    s.duration = s.t[7]

    # Zero-length segments get zero jerk so that `segments` reads cleanly; they are never evaluated.
    s.jerk[0] = j_pre if t_pre > 0.0 else 0.0
    s.jerk[1] = dirn * jmax if t1 > 0.0 else 0.0
    s.jerk[2] = 0.0
    s.jerk[3] = -dirn * jmax if t3 > 0.0 else 0.0
    s.jerk[4] = 0.0
    s.jerk[5] = 0.0
    s.jerk[6] = 0.0

    # Velocities and accelerations at the boundaries follow exactly from the plan; positions are
    # the closed-form cubic of each segment from its own start.
    s.pb[0] = p0
    s.vb[0] = v0
    s.ab[0] = a0
    s.pb[1] = _advance(p0, v0, a0, j_pre, t_pre)
    s.vb[1] = v
    s.ab[1] = a
    s.pb[2] = _advance(s.pb[1], v, a, dirn * jmax, t1)
    s.vb[2] = v + dirn * (ap * ap - am * am) / (2.0 * jmax)
    s.ab[2] = dirn * ap
    s.pb[3] = _advance(s.pb[2], s.vb[2], s.ab[2], 0.0, t2)
    s.vb[3] = s.vb[2] + dirn * ap * t2
    s.ab[3] = dirn * ap
    s.pb[4] = _advance(s.pb[3], s.vb[3], s.ab[3], -dirn * jmax, t3)
    s.vb[4] = v1          # the target, exactly: a brake ends at v = 0, not at 1e-17
    s.ab[4] = 0.0
    for i in range(5, 8):
        s.pb[i] = s.pb[4]
        s.vb[i] = v1
        s.ab[i] = 0.0

    if not _profile_finite(s):
        return _invalid(s, p0)
    return 0


cdef void profile_eval(const Profile* s, double t, double* p, double* v, double* a,
                       double* j) noexcept nogil:
    cdef int i
    cdef double dt, jk, ab
    if t >= s.duration:
        # After the end: constant end velocity (0 for a move, whose goal is returned bit for bit).
        v[0] = s.vb[7]
        a[0] = 0.0
        j[0] = 0.0
        p[0] = s.pb[7] if s.vb[7] == 0.0 else s.pb[7] + s.vb[7] * (t - s.duration)
        return
    if not (t >= 0.0):   # before the start, or NaN: the start state
        p[0] = s.p0
        v[0] = s.v0
        a[0] = s.a0
        j[0] = 0.0
        return
    # Last segment starting at or before t; zero-length segments are skipped by construction.
    i = 6
    while i > 0 and t < s.t[i]:
        i -= 1
    dt = t - s.t[i]
    jk = s.jerk[i]
    ab = s.ab[i]
    j[0] = jk
    a[0] = ab + jk * dt
    v[0] = s.vb[i] + dt * (ab + 0.5 * jk * dt)
    p[0] = _advance(s.pb[i], s.vb[i], ab, jk, dt)


# ---------------------------------------------------------------------------------------------
# Python API (docs/interfaces.md §4)
# ---------------------------------------------------------------------------------------------

cdef double _number(str name, object x) except? -1.0:
    """x as a finite double, or ValueError naming the argument."""
    cdef double value
    if type(x) is float:
        value = <double>x
    else:
        if isinstance(x, bool) or not isinstance(x, numbers.Real):
            raise ValueError(f"{name} must be a real number, got {type(x).__name__}")
        try:
            value = float(x)
        except (ArithmeticError, ValueError, TypeError):
            raise ValueError(f"{name}={x!r} is not representable as a float") from None
    if not isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


cdef double _position(str name, object x) except? -1.0:
    cdef double value = _number(name, x)
    if fabs(value) > _POSITION_MAX:
        raise ValueError(f"{name}={value!r} is out of range: |{name}| must be <= {_POSITION_MAX:g}")
    return value


cdef double _limit(str name, object x) except? -1.0:
    cdef double value = _number(name, x)
    if not (value > 0.0):
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if value < _LIMIT_MIN or value > _LIMIT_MAX:
        raise ValueError(
            f"{name}={value!r} is out of range: it must lie in [{_LIMIT_MIN:g}, {_LIMIT_MAX:g}]"
        )
    return value


cdef double _rate(str name, object x) except? -1.0:
    cdef double value = _number(name, x)
    if fabs(value) > _LIMIT_MAX:
        raise ValueError(f"{name}={value!r} is out of range: |{name}| must be <= {_LIMIT_MAX:g}")
    return value


cdef class Move:
    """A planned jerk-limited profile: 7 constant-jerk segments, evaluated in closed form.

    Made by :func:`plan_move`, :func:`plan_velocity` or :func:`plan_brake`. ``Move()`` itself is
    a zero-length hold at 0.
    """

    cdef Profile prof

    def __cinit__(self) -> None:
        profile_hold(&self.prof, 0.0, 0.0)

    @property
    def duration(self) -> float:
        """Time (s) from the start until the final state is reached."""
        return self.prof.duration

    @property
    def start(self) -> float:
        """Position at t = 0."""
        return self.prof.p0

    @property
    def goal(self) -> float:
        """Position at t = duration (the exact goal of a move)."""
        return self.prof.pb[7]

    @property
    def end_velocity(self) -> float:
        """Velocity at and after t = duration (0 for a move or a brake)."""
        return self.prof.vb[7]

    @property
    def segments(self) -> list[tuple[float, float, float]]:
        """The 7 segments as ``(t_start, t_end, jerk)``; unused ones have zero length."""
        return [(self.prof.t[i], self.prof.t[i + 1], self.prof.jerk[i]) for i in range(7)]

    @cython.annotation_typing(False)   # t is validated by hand: ValueError, not TypeError
    def state(self, t: float) -> tuple[float, float, float, float]:
        """``(p, v, a, j)`` at time ``t`` (s from the start).

        Before the start: the start state. After the end: the end state, the position moving on
        at the end velocity (a move stays exactly at its goal).
        """
        cdef double tt = _number("t", t)
        cdef double p, v, a, j
        profile_eval(&self.prof, tt, &p, &v, &a, &j)
        return (p, v, a, j)

    def __repr__(self) -> str:
        return (
            f"Move(start={self.prof.p0!r}, goal={self.prof.pb[7]!r}, "
            f"end_velocity={self.prof.vb[7]!r}, duration={self.prof.duration!r})"
        )


@cython.annotation_typing(False)
def plan_move(start: float, goal: float, v_max: float, a_max: float, j_max: float) -> Move:
    """Time-optimal rest-to-rest move from ``start`` to ``goal``.

    Jerk-limited (double-S) under ``|v| <= v_max``, ``|a| <= a_max``, ``|j| <= j_max``. The goal
    is reached exactly at ``duration``. Raises ``ValueError`` naming any invalid argument.
    """
    cdef double p0 = _position("start", start)
    cdef double p1 = _position("goal", goal)
    cdef double vmax = _limit("v_max", v_max)
    cdef double amax = _limit("a_max", a_max)
    cdef double jmax = _limit("j_max", j_max)
    cdef Move move = Move.__new__(Move)
    if profile_move(&move.prof, p0, p1, vmax, amax, jmax) != 0:
        raise ValueError(f"no finite move for start={p0!r}, goal={p1!r} under these limits")
    return move


@cython.annotation_typing(False)
def plan_velocity(p0: float, v0: float, a0: float, v1: float, a_max: float,
                  j_max: float) -> Move:
    """Time-optimal change from ``(p0, v0, a0)`` to velocity ``v1`` with a = 0 at the end.

    Under ``|a| <= a_max`` and ``|j| <= j_max``; an initial ``|a0| > a_max`` is first brought
    back to the limit at full jerk. After ``duration`` the position moves on at ``v1``. Used for
    brakes and for the rate axes (kneading rpm, tapping Hz). Raises ``ValueError`` naming any
    invalid argument.
    """
    cdef double p = _position("p0", p0)
    cdef double v = _rate("v0", v0)
    cdef double a = _rate("a0", a0)
    cdef double vt = _rate("v1", v1)
    cdef double amax = _limit("a_max", a_max)
    cdef double jmax = _limit("j_max", j_max)
    cdef Move move = Move.__new__(Move)
    if profile_velocity(&move.prof, p, v, a, vt, amax, jmax) != 0:
        raise ValueError(f"no finite velocity change from v0={v!r}, a0={a!r} to v1={vt!r}")
    return move


@cython.annotation_typing(False)
def plan_brake(p0: float, v0: float, a0: float, a_max: float, j_max: float) -> Move:
    """Time-optimal jerk-limited stop from ``(p0, v0, a0)``: ``plan_velocity`` to v = 0."""
    return plan_velocity(p0, v0, a0, 0.0, a_max, j_max)
