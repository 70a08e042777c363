"""The real-time loop and the lock-free rings, runnable on their own.

`TimerLoop` drives include/rt_loop.h with a tiny built-in tick: it counts ticks and, every
`record_every` ticks, pushes a sequence number into an SPSC ring and (with ``eventfd=True``) wakes
asyncio through the eventfd. It is the machinery's demo, the jitter benchmark's default subject
and the test bed of the headers the real core (core_rt/core.pyx) is built on.

    with TimerLoop(hz=1000, priority=80, eventfd=True) as t:
        loop.add_reader(t.fileno(), on_wake)   # on_wake: os.eventfd_read(fd); t.drain()
        ...
    t.stats()   # cycles, missed, latency/exec percentiles, what was granted (SCHED_FIFO, ...)

`Ring` wraps one SPSC ring for tests; `hist_percentile` is the percentile rule every latency
number of the benchmark goes through (core, cyclictest and asyncio alike).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.errno cimport EBUSY, EINVAL, errno
from libc.stdint cimport int64_t, uint32_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport strerror
from posix.unistd cimport close

from core_rt.rtloop cimport (
    RT_EXEC_BIN_NS,
    RT_EXEC_NBINS,
    RT_LAT_BIN_NS,
    RT_LAT_NBINS,
    rt_hist_percentile,
    rt_loop,
    rt_loop_init,
    rt_loop_start,
    rt_loop_stop,
    rt_now_ns,
    rt_stat,
    rt_stat_set,
    spsc_count,
    spsc_dropped,
    spsc_free,
    spsc_init,
    spsc_pop,
    spsc_push,
    spsc_ring,
)

cdef extern from "sys/eventfd.h" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_NONBLOCK
    int EFD_CLOEXEC

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    int pthread_create(pthread_t* thread, const void* attr, void* (*start)(void*) noexcept nogil,
                       void* arg)
    int pthread_join(pthread_t thread, void** retval)

cdef extern from "<sched.h>" nogil:
    int sched_yield()

# Limits of the loop (the chair's config model, core_rt.config, holds the same bounds).
HZ_MIN = 250
HZ_MAX = 2000
PRIORITY_MIN = 1
PRIORITY_MAX = 99

LATENCY_BIN_US = RT_LAT_BIN_NS / 1000.0
EXEC_BIN_US = RT_EXEC_BIN_NS / 1000.0


def check_rate(hz: int, priority: int) -> None:
    """Raise ValueError unless 250 <= hz <= 2000 and 1 <= priority <= 99."""
    if not HZ_MIN <= hz <= HZ_MAX:
        raise ValueError(f"tick rate {hz} Hz is outside {HZ_MIN}..{HZ_MAX} Hz")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(
            f"real-time priority {priority} is outside {PRIORITY_MIN}..{PRIORITY_MAX}"
        )


def hist_percentile(hist, double bin_us, double q):
    """q-quantile (0..1) of a latency histogram: `hist[i]` counts samples in [i, i+1) * bin_us,
    the last entry counts the overflow. Interpolates inside the bin; a quantile in the overflow
    returns the histogram's range (a lower bound); NaN for an empty histogram."""
    cdef Py_ssize_t n = len(hist)
    if n == 0:
        return float("nan")
    cdef int64_t* buf = <int64_t*>malloc(n * sizeof(int64_t))
    if buf == NULL:
        raise MemoryError()
    cdef Py_ssize_t i
    try:
        for i in range(n):
            buf[i] = hist[i]
        return rt_hist_percentile(buf, <int>n, bin_us, q)
    finally:
        free(buf)


# ---- one ring, for tests and tools ---------------------------------------------------------

cdef class Ring:
    """One SPSC ring of `capacity` (a power of two) elements of `elem_size` bytes.

    Python-side access holds the GIL, so this is for single-threaded tests of the ring's rules
    (order, full, empty, dropped); `ring_stress` exercises it across two native threads."""

    cdef spsc_ring _ring

    def __cinit__(self, int capacity, int elem_size=8):
        if capacity < 2 or elem_size < 1 or spsc_init(&self._ring, capacity, elem_size) != 0:
            raise ValueError(
                f"ring needs a power-of-two capacity in 2..2^30 and an element size in 1..65536 "
                f"bytes (got capacity={capacity}, elem_size={elem_size})"
            )

    def __dealloc__(self):
        spsc_free(&self._ring)

    @property
    def capacity(self) -> int:
        return self._ring.capacity

    @property
    def elem_size(self) -> int:
        return self._ring.elem_size

    @property
    def dropped(self) -> int:
        """Pushes refused because the ring was full."""
        return spsc_dropped(&self._ring)

    def __len__(self) -> int:
        return spsc_count(&self._ring)

    def push(self, bytes elem) -> bool:
        """Copy one element in; False (and counted as dropped) when the ring is full."""
        if len(elem) != self._ring.elem_size:
            raise ValueError(f"element must be {self._ring.elem_size} bytes, got {len(elem)}")
        return spsc_push(&self._ring, PyBytes_AS_STRING(elem)) == 0

    def pop(self):
        """The oldest element as bytes, or None when the ring is empty."""
        out = PyBytes_FromStringAndSize(NULL, self._ring.elem_size)
        if spsc_pop(&self._ring, PyBytes_AS_STRING(out)) != 0:
            return None
        return out


# ---- two native threads through one ring ---------------------------------------------------

cdef struct StressItem:
    int64_t seq
    int64_t a
    int64_t b
    int64_t check

cdef struct StressShared:
    spsc_ring* ring
    int64_t n
    int64_t full_retries

cdef void* _stress_producer(void* arg) noexcept nogil:
    cdef StressShared* s = <StressShared*>arg
    cdef StressItem it
    cdef int64_t i
    for i in range(s.n):
        it.seq = i
        it.a = i * 1000003
        it.b = ~i
        it.check = it.seq ^ it.a ^ it.b
        while spsc_push(s.ring, &it) != 0:
            s.full_retries += 1
            sched_yield()
    return NULL


def ring_stress(int64_t n, int capacity=64):
    """Push `n` items from a native producer thread while this thread pops them without the GIL,
    retrying on full/empty. Returns counts the caller checks: every item must arrive, in order,
    intact (`received == n`, `out_of_order == corrupt == 0`)."""
    cdef spsc_ring ring
    if spsc_init(&ring, capacity, sizeof(StressItem)) != 0:
        raise ValueError(f"bad ring capacity {capacity}")
    cdef StressShared shared
    shared.ring = &ring
    shared.n = n
    shared.full_retries = 0
    cdef pthread_t th
    cdef StressItem it
    cdef int64_t received = 0, out_of_order = 0, corrupt = 0, empty_retries = 0
    cdef int rc
    with nogil:
        rc = pthread_create(&th, NULL, _stress_producer, &shared)
        if rc == 0:
            while received < n:
                if spsc_pop(&ring, &it) != 0:
                    empty_retries += 1
                    sched_yield()
                    continue
                if it.seq != received:
                    out_of_order += 1
                if it.a != it.seq * 1000003 or it.b != ~it.seq or \
                        it.check != (it.seq ^ it.a ^ it.b):
                    corrupt += 1
                received += 1
            pthread_join(th, NULL)
    cdef uint32_t left = spsc_count(&ring)
    cdef uint64_t dropped = spsc_dropped(&ring)
    spsc_free(&ring)
    if rc != 0:
        raise OSError(rc, strerror(rc).decode())
    return {
        "received": received,
        "out_of_order": out_of_order,
        "corrupt": corrupt,
        "left": left,
        "dropped": dropped,
        "full_retries": shared.full_retries,
        "empty_retries": empty_retries,
    }


# ---- the demo loop -------------------------------------------------------------------------

cdef struct TimerCtx:
    spsc_ring* ring
    int64_t ticks
    int64_t seq
    int64_t record_every
    int64_t lag_max_ns   # how far a tick's time was behind the clock it ran on, at most
    int wake

cdef int _timer_tick(void* arg, int64_t tick_ns) noexcept nogil:
    cdef TimerCtx* c = <TimerCtx*>arg
    cdef int64_t lag = rt_now_ns() - tick_ns
    if lag > rt_stat(&c.lag_max_ns):
        rt_stat_set(&c.lag_max_ns, lag)
    c.ticks += 1
    if c.ticks % c.record_every != 0:
        return 0
    cdef int64_t rec = c.seq
    c.seq += 1  # a record lost to a full ring leaves a gap the consumer can see
    spsc_push(c.ring, &rec)
    return c.wake


cdef object _pct(const int64_t* hist, int nbins, double bin_us, double q, double max_us):
    cdef double p = rt_hist_percentile(hist, nbins, bin_us, q)
    if p != p:  # NaN: no samples yet
        return None
    return min(p, max_us)  # interpolation never reports above the recorded maximum


cdef int64_t _hist_total(const int64_t* hist, int nbins) noexcept nogil:
    cdef int64_t total = 0
    cdef int i
    for i in range(nbins):
        total += rt_stat(&hist[i])
    return total


cdef class TimerLoop:
    """The real-time loop with a built-in tick (see the module docstring).

    hz: 250..2000; priority: SCHED_FIFO priority 1..99 (falls back to SCHED_OTHER with a warning
    when refused); eventfd: create an eventfd woken every `record_every` ticks; ring_capacity:
    records kept until drained (a power of two); cpu: pin the loop thread to this CPU (-1: let the
    scheduler pick)."""

    cdef rt_loop* _loop
    cdef spsc_ring _ring
    cdef TimerCtx _ctx
    cdef int _efd
    cdef readonly int hz
    cdef readonly int priority
    cdef readonly int record_every

    def __cinit__(self, int hz=1000, int priority=80, bint eventfd=False, int record_every=10,
                  int ring_capacity=1024, int cpu=-1):
        self._efd = -1
        check_rate(hz, priority)
        if record_every < 1:
            raise ValueError(f"record_every must be >= 1, got {record_every}")
        if spsc_init(&self._ring, ring_capacity, sizeof(int64_t)) != 0:
            raise ValueError(f"ring_capacity must be a power of two >= 2, got {ring_capacity}")
        self._loop = <rt_loop*>calloc(1, sizeof(rt_loop))
        if self._loop == NULL:
            raise MemoryError()
        self.hz = hz
        self.priority = priority
        self.record_every = record_every
        self._ctx.ring = &self._ring
        self._ctx.record_every = record_every
        if eventfd:
            self._efd = eventfd_open()
        self._ctx.wake = 1 if self._efd >= 0 else 0
        rt_loop_init(self._loop, round(1e9 / hz), priority, _timer_tick, &self._ctx)
        self._loop.event_fd = self._efd
        self._loop.cpu = cpu

    def __dealloc__(self):
        if self._loop != NULL:
            with nogil:
                rt_loop_stop(self._loop)
            free(self._loop)
            self._loop = NULL
        spsc_free(&self._ring)
        if self._efd >= 0:
            close(self._efd)
            self._efd = -1

    @property
    def period_ns(self) -> int:
        return self._loop.period_ns

    @property
    def running(self) -> bool:
        return self._loop.started != 0

    def start(self) -> None:
        """Start the loop thread. Returns once it runs; see stats() for what was granted."""
        if self._loop.started:
            raise RuntimeError("the loop is already running")
        cdef int64_t rec
        while spsc_pop(&self._ring, &rec) == 0:  # the producer is stopped: safe to empty
            pass
        self._ctx.ticks = 0
        self._ctx.seq = 0
        self._ctx.lag_max_ns = 0
        cdef int rc
        with nogil:
            rc = rt_loop_start(self._loop)
        if rc == -EINVAL:
            raise ValueError("invalid loop configuration")
        if rc == -EBUSY:
            raise RuntimeError("the loop is already running")
        if rc != 0:
            raise OSError(-rc, f"cannot start the real-time loop thread: {strerror(-rc).decode()}")

    def stop(self) -> None:
        """Stop and join the loop thread (within about one period). Idempotent."""
        with nogil:
            rt_loop_stop(self._loop)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def fileno(self) -> int:
        """The eventfd the loop writes to when records are waiting (for loop.add_reader)."""
        if self._efd < 0:
            raise ValueError("this TimerLoop has no eventfd (create it with eventfd=True)")
        return self._efd

    def drain(self) -> list:
        """Pop every waiting record (consecutive sequence numbers unless the ring overflowed)."""
        cdef list out = []
        cdef int64_t rec
        while spsc_pop(&self._ring, &rec) == 0:
            out.append(rec)
        return out

    def stats(self) -> dict:
        """Counts, latency and exec-time percentiles (us), and what start() was granted.

        Readable while running (a consistent-enough snapshot: counters are read one by one)."""
        cdef rt_loop* L = self._loop
        cdef int64_t cycles = rt_stat(&L.cycles)
        cdef double lat_max_us = rt_stat(&L.lat_max_ns) / 1000.0
        cdef double exec_max_us = rt_stat(&L.exec_max_ns) / 1000.0
        has = cycles > 0
        return {
            "hz": self.hz,
            "period_ns": L.period_ns,
            "priority": self.priority,
            "running": L.started != 0,
            "cycles": cycles,
            "missed": rt_stat(&L.missed),
            "overruns": rt_stat(&L.overruns),
            "skipped": rt_stat(&L.skipped),
            "wakeups": rt_stat(&L.wakeups),
            "tick_lag_max_us": rt_stat(&self._ctx.lag_max_ns) / 1000.0 if has else None,
            "latency_p50_us": _pct(L.lat_hist, RT_LAT_NBINS, LATENCY_BIN_US, 0.50, lat_max_us),
            "latency_p99_us": _pct(L.lat_hist, RT_LAT_NBINS, LATENCY_BIN_US, 0.99, lat_max_us),
            "latency_max_us": lat_max_us if has else None,
            "latency_mean_us": rt_stat(&L.lat_sum_ns) / 1000.0 / cycles if has else None,
            "exec_p50_us": _pct(L.exec_hist, RT_EXEC_NBINS, EXEC_BIN_US, 0.50, exec_max_us),
            "exec_p99_us": _pct(L.exec_hist, RT_EXEC_NBINS, EXEC_BIN_US, 0.99, exec_max_us),
            "exec_max_us": exec_max_us if has else None,
            "latency_histogram_samples": _hist_total(L.lat_hist, RT_LAT_NBINS),
            "exec_histogram_samples": _hist_total(L.exec_hist, RT_EXEC_NBINS),
            "sched_fifo": L.sched_fifo != 0,
            "mlocked": L.mlocked != 0,
            "timer_slack": L.timer_slack != 0,
            "pm_qos": L.pm_qos != 0,
            "pinned": L.pinned != 0,
            "sched_errno": L.sched_errno,
            "mlock_errno": L.mlock_errno,
            "warning": L.warning.decode("utf-8", "replace"),
            "ring_dropped": spsc_dropped(&self._ring),
            "ring_queued": spsc_count(&self._ring),
        }


cdef int eventfd_open() except -1:
    cdef int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
    if fd < 0:
        raise OSError(errno, f"eventfd() failed: {strerror(errno).decode()}")
    return fd
