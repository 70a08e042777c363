# Jerk-limited motion profiles (7-segment double-S), evaluated in closed form.
# Contract used by the tick (core_rt/core.pyx); implemented in core_rt/motion.pyx.
from libc.stdint cimport int64_t

cdef struct Profile:
    double p0, v0, a0      # state at t = 0
    double t[8]            # cumulative segment boundary times, t[0] = 0, t[7] = duration
    double jerk[7]         # constant jerk of each segment
    double pb[8]           # position at each boundary (pb[0] = p0)
    double vb[8]           # velocity at each boundary
    double ab[8]           # acceleration at each boundary
    double duration        # s

# Rest-to-rest, time-optimal move p0 -> p1 under |v|<=vmax, |a|<=amax, |j|<=jmax.
# Returns 0, or -1 on invalid input (non-finite values, limits <= 0); never touches the GIL.
cdef int profile_move(Profile* s, double p0, double p1, double vmax, double amax, double jmax) noexcept nogil

# Time-optimal velocity change from (p0, v0, a0) to velocity v1 with a = 0 at the end, under
# |a|<=amax, |j|<=jmax (if |a0| > amax the first segment brings a back within amax at full jerk).
# v1 = 0 is the brake from any state. Position is integrated in closed form too.
# Returns 0, or -1 on invalid input.
cdef int profile_velocity(Profile* s, double p0, double v0, double a0, double v1, double amax, double jmax) noexcept nogil

# A profile that holds (p0, v=0, a=0) for `duration` seconds (duration may be 0).
cdef void profile_hold(Profile* s, double p0, double duration) noexcept nogil

# State at time t (s from the profile's start). t < 0 gives the start state; t > duration gives the
# end state extrapolated at constant end velocity (a = j = 0).
cdef void profile_eval(const Profile* s, double t, double* p, double* v, double* a, double* j) noexcept nogil

# One axis of the tick: a profile placed on the core's time line and the state it commands at this
# tick. core.pyx keeps one per axis and moves them; the guard (guard.pxd) reads them.
cdef struct Axis:
    Profile prof
    int64_t start_ns        # core time of the profile's t = 0
    int64_t end_ns          # profile end + hold: the axis is busy until then
    int busy
    double p, v, a, j       # commanded state this tick
    double goal             # where the current profile ends
    double a_lim, j_lim     # the current move's own limits (a coordinated brake keeps to them)
