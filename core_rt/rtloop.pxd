# Cython view of include/spsc.h and include/rt_loop.h: the lock-free rings and the fixed-period
# real-time loop. Keep in step with the headers. Extern declarations only, so `cimport`ing this
# file (core.pyx does) compiles the headers in without importing the rtloop module at run time.
from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef extern from "spsc.h" nogil:
    ctypedef struct spsc_ring:
        uint32_t capacity       # read-only after spsc_init
        uint32_t elem_size      # read-only after spsc_init
    # 0 ok, -1 bad args (capacity not a power of two in 2..2^30, elem_size not in 1..65536) or OOM
    int spsc_init(spsc_ring* r, uint32_t capacity_pow2, uint32_t elem_size)
    void spsc_free(spsc_ring* r)
    int spsc_push(spsc_ring* r, const void* elem)   # producer only: 0 ok, -1 full (counted)
    int spsc_pop(spsc_ring* r, void* out)           # consumer only: 0 ok, -1 empty
    uint32_t spsc_count(const spsc_ring* r)
    uint64_t spsc_dropped(const spsc_ring* r)


cdef extern from "rt_loop.h" nogil:
    enum:
        RT_LAT_NBINS     # 1 us bins over [0, 20 ms) + overflow
        RT_LAT_BIN_NS
        RT_EXEC_NBINS    # 0.1 us bins over [0, 1 ms) + overflow
        RT_EXEC_BIN_NS
        RT_WARNING_LEN

    # Called from the loop thread with the scheduled deadline; nonzero = wake asyncio.
    ctypedef int (*rt_tick_fn)(void* ctx, int64_t tick_ns) noexcept nogil

    ctypedef struct rt_loop:
        # config (rt_loop_init sets the defaults; adjust before rt_loop_start)
        int64_t period_ns
        int priority
        rt_tick_fn tick
        void* ctx
        int event_fd               # -1: none
        int cpu_dma_latency_us     # >= 0: PM QoS request while running (default 0); -1: none
        size_t stack_bytes
        int cpu                    # >= 0: pin the loop thread to this CPU
        int started
        # outcome of the last rt_loop_start
        int sched_fifo
        int mlocked
        int timer_slack
        int pm_qos
        int pinned
        int sched_errno
        int mlock_errno
        int slack_errno
        int pm_qos_errno
        char warning[RT_WARNING_LEN]
        # statistics: read them with rt_stat(&loop.x) while the loop runs
        int64_t start_ns
        int64_t cycles
        int64_t missed
        int64_t overruns
        int64_t skipped
        int64_t wakeups
        int64_t lat_max_ns
        int64_t lat_sum_ns
        int64_t exec_max_ns
        int64_t exec_sum_ns
        int64_t lat_hist[RT_LAT_NBINS]
        int64_t exec_hist[RT_EXEC_NBINS]

    void rt_loop_init(rt_loop* L, int64_t period_ns, int priority, rt_tick_fn tick, void* ctx)
    int rt_loop_start(rt_loop* L)   # 0, -EINVAL, -EBUSY or -errno of pthread_create
    void rt_loop_stop(rt_loop* L)
    double rt_hist_percentile(const int64_t* hist, int nbins, double bin_us, double q)
    int64_t rt_now_ns()
    int64_t rt_stat(const int64_t* p)
    void rt_stat_set "rt_stat_set_"(int64_t* p, int64_t v)  # relaxed store, the loop's own rule
