/*
 * rt_loop.h — the fixed-period real-time loop: one native thread that calls a tick function on an
 * absolute time grid, measures itself, and wakes asyncio through an eventfd.
 *
 *   deadline k = start + k * period        (int64 ns, CLOCK_MONOTONIC)
 *   clock_nanosleep(TIMER_ABSTIME, deadline k)      -- retried on EINTR
 *   latency  = wake - deadline k           -> lat_hist   (1 us bins, 0..20 ms, + overflow)
 *   woke a period or more late: a miss. The deadlines passed in between are gone: skip to the
 *   latest one at or before the wake-up (counting the skipped ones), so that a tick's time is
 *   never a period or more behind the clock it runs on
 *   wake_asyncio = tick(ctx, deadline)     -- the SCHEDULED time, so real-time ticks see the same
 *                                             grid as virtual-time ones
 *   exec     = tick end - wake             -> exec_hist  (0.1 us bins, 0..1 ms, + overflow)
 *   if wake_asyncio and event_fd >= 0: write(event_fd, 1)   (eventfd semantics)
 *   if the next deadline has already passed (the tick overran): a miss. Keep the phase: skip to
 *   the next deadline still in the future (start + m * period), counting the skipped ones.
 *
 * rt_loop_start tries, in order, and records each outcome (never pretends): mlockall(CURRENT|
 * FUTURE); a PM QoS request on /dev/cpu_dma_latency (as cyclictest does; optional); a thread with
 * explicit SCHED_FIFO at `priority` (falls back to SCHED_OTHER with a warning when refused);
 * inside the thread PR_SET_TIMERSLACK 1 ns, a check of the policy it really got, and a prefault of
 * its stack. The loop body takes no lock, no GIL, and allocates nothing.
 *
 * Statistics are plain int64 written by the loop thread with relaxed atomic stores (a plain mov on
 * x86-64 and arm64), so another thread may read them while the loop runs: use rt_stat().
 *
 * The struct is large (~240 KiB of histograms): embed it in a heap object, not on a small stack.
 * Header-only, pthreads, Linux.
 */
#ifndef CHAIR_RT_LOOP_H
#define CHAIR_RT_LOOP_H

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define RT_LAT_NBINS 20001 /* 1 us bins over [0, 20 ms), last bin = overflow */
#define RT_LAT_BIN_NS 1000
#define RT_EXEC_NBINS 10001 /* 0.1 us bins over [0, 1 ms), last bin = overflow */
#define RT_EXEC_BIN_NS 100
#define RT_WARNING_LEN 512
#define RT_DEFAULT_STACK_BYTES (512 * 1024)
#define RT_PREFAULT_STACK_BYTES (128 * 1024)

/* Called once per period from the loop thread with the scheduled deadline (ns). Must not block,
 * allocate or take the GIL. Nonzero: wake asyncio (write 1 to event_fd). */
typedef int (*rt_tick_fn)(void *ctx, int64_t tick_ns);

typedef struct rt_loop {
    /* ---- config: rt_loop_init sets defaults; adjust before rt_loop_start ---- */
    int64_t period_ns;
    int priority;           /* SCHED_FIFO priority, 1..99 */
    rt_tick_fn tick;
    void *ctx;
    int event_fd;           /* eventfd (opened EFD_NONBLOCK) to wake asyncio; -1: none */
    int cpu_dma_latency_us; /* >= 0: hold /dev/cpu_dma_latency at this while running; -1: don't */
    size_t stack_bytes;     /* loop thread stack */
    int cpu;                /* >= 0: pin the loop thread to this CPU; -1: let the scheduler pick */

    /* ---- state (owned by rt_loop_start/stop) ---- */
    atomic_int stop;
    atomic_int ready;
    int started;
    int pm_qos_fd;
    pthread_t thread;

    /* ---- outcome of the last rt_loop_start: what was asked, what was granted ---- */
    int sched_fifo;  /* 1: the loop thread runs SCHED_FIFO at `priority` (checked from inside) */
    int mlocked;     /* 1: mlockall(MCL_CURRENT|MCL_FUTURE) succeeded (process-wide, stays on) */
    int timer_slack; /* 1: PR_SET_TIMERSLACK 1 ns accepted for the loop thread */
    int pm_qos;      /* 1: /dev/cpu_dma_latency request held while running */
    int pinned;      /* 1: the loop thread is pinned to `cpu` */
    int sched_errno, mlock_errno, slack_errno, pm_qos_errno; /* 0 or the errno of the refusal */
    char warning[RT_WARNING_LEN]; /* "" or human text about what was refused and what to do */

    /* ---- statistics (read with rt_stat / rt_hist_percentile while running) ---- */
    int64_t start_ns;    /* deadline of the first tick */
    int64_t cycles;      /* ticks run */
    int64_t missed;      /* ticks that woke a period or more late, or after which the next
                            deadline had already passed */
    int64_t overruns;    /* of those: the tick itself ran past the next deadline */
    int64_t skipped;     /* deadlines skipped to keep the phase */
    int64_t wakeups;     /* eventfd writes */
    int64_t lat_max_ns, lat_sum_ns;
    int64_t exec_max_ns, exec_sum_ns;
    int64_t lat_hist[RT_LAT_NBINS];
    int64_t exec_hist[RT_EXEC_NBINS];
} rt_loop;

/* ---- small helpers ------------------------------------------------------------------------ */

static inline int64_t rt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A statistic of a running loop (relaxed atomic load: no tearing, no ordering). */
static inline int64_t rt_stat(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

static inline void rt_stat_set_(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

static inline void rt_stat_add_(int64_t *p, int64_t v) { rt_stat_set_(p, rt_stat(p) + v); }

static inline const char *rt_errname_(int e)
{
    switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOMEM: return "ENOMEM";
    case EAGAIN: return "EAGAIN";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case ENOSYS: return "ENOSYS";
    default: return "error";
    }
}

static inline void rt_warn_(rt_loop *L, const char *fmt, ...)
{
    size_t n = strlen(L->warning);
    if (n > 0 && n + 2 < sizeof(L->warning)) {
        L->warning[n++] = ';';
        L->warning[n++] = ' ';
        L->warning[n] = '\0';
    }
    if (n + 1 >= sizeof(L->warning))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->warning + n, sizeof(L->warning) - n, fmt, ap);
    va_end(ap);
}

/* q-quantile (0..1) of a histogram of `nbins` bins of `bin_us` each, the last bin being the
 * overflow. Linear interpolation inside the bin holding the quantile; a quantile that falls in
 * the overflow bin returns the histogram's range, (nbins - 1) * bin_us (a lower bound: compare
 * with the recorded max). NAN when the histogram is empty. Safe on a running loop's histograms. */
static inline double rt_hist_percentile(const int64_t *hist, int nbins, double bin_us, double q)
{
    if (nbins <= 0)
        return NAN;
    if (q < 0.0)
        q = 0.0;
    if (q > 1.0)
        q = 1.0;
    int64_t total = 0;
    for (int i = 0; i < nbins; i++)
        total += rt_stat(&hist[i]);
    if (total == 0)
        return NAN;
    double rank = q * (double)total;
    int64_t cum = 0;
    int last = -1;
    for (int i = 0; i < nbins; i++) {
        int64_t c = rt_stat(&hist[i]);
        if (c == 0)
            continue;
        last = i;
        if ((double)(cum + c) >= rank) {
            if (i == nbins - 1)
                return (double)i * bin_us;
            double frac = (rank - (double)cum) / (double)c;
            if (frac < 0.0)
                frac = 0.0;
            return ((double)i + frac) * bin_us;
        }
        cum += c;
    }
    /* counts changed between the two passes: the top of what we saw */
    return last == nbins - 1 ? (double)last * bin_us : (double)(last + 1) * bin_us;
}

/* ---- the loop thread ---------------------------------------------------------------------- */

/* Touch the stack the loop will use so its first ticks do not page-fault (mlockall's MCL_FUTURE
 * already populates it when granted; this covers the case where it was refused). */
static __attribute__((noinline)) void rt_prefault_stack_(void)
{
    volatile unsigned char buf[RT_PREFAULT_STACK_BYTES];
    for (size_t i = 0; i < sizeof(buf); i += 1024)
        buf[i] = 0;
}

static inline void rt_record_(int64_t *hist, int nbins, int64_t bin_ns, int64_t value_ns)
{
    int64_t b = value_ns / bin_ns;
    if (b >= nbins - 1)
        b = nbins - 1;
    rt_stat_add_(&hist[b], 1);
}

static void *rt_loop_main_(void *arg)
{
    rt_loop *L = (rt_loop *)arg;

    if (prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL) == 0) {
        L->timer_slack = 1;
    } else {
        L->slack_errno = errno;
        rt_warn_(L, "PR_SET_TIMERSLACK failed (%s): timer wake-ups may be coalesced",
                 rt_errname_(errno));
    }

    int policy = -1;
    struct sched_param sp;
    memset(&sp, 0, sizeof(sp));
    if (pthread_getschedparam(pthread_self(), &policy, &sp) == 0 && policy == SCHED_FIFO &&
        sp.sched_priority == L->priority) {
        L->sched_fifo = 1;
    } else if (L->sched_errno == 0) {
        /* created with FIFO attributes but not running FIFO: say so rather than trust the request */
        L->sched_errno = EINVAL;
        rt_warn_(L, "SCHED_FIFO requested but the loop thread runs policy %d priority %d; expect "
                    "higher jitter", policy, sp.sched_priority);
    }

    rt_prefault_stack_();

    const int64_t period = L->period_ns;
    int64_t next = rt_now_ns() + period;
    L->start_ns = next;
    atomic_store_explicit(&L->ready, 1, memory_order_release);

    for (;;) {
        struct timespec ts;
        ts.tv_sec = (time_t)(next / 1000000000LL);
        ts.tv_nsec = (long)(next % 1000000000LL);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
        const int64_t woke = rt_now_ns();
        if (atomic_load_explicit(&L->stop, memory_order_acquire))
            break;
        int64_t lat = woke - next;
        if (lat < 0)
            lat = 0;
        if (lat >= period) {
            /* woke a period or more late (the CPU was taken away): tick at the latest deadline at
               or before the wake-up, not at the one missed. The tick measures time from its
               deadline (the guard's debounces, docs/core.md), and a tick that ran with a time
               far in the past would count the loop's own lateness as time that had passed in
               the chair. */
            const int64_t behind = lat / period;
            rt_stat_add_(&L->missed, 1);
            rt_stat_add_(&L->skipped, behind);
            next += behind * period;
        }

        const int wake = L->tick(L->ctx, next);
        int64_t end = rt_now_ns();
        const int64_t exec = end - woke;

        if (wake && L->event_fd >= 0) {
            const uint64_t one = 1;
            if (write(L->event_fd, &one, sizeof(one)) == (ssize_t)sizeof(one))
                rt_stat_add_(&L->wakeups, 1);
            end = rt_now_ns();
        }

        rt_stat_add_(&L->cycles, 1);
        rt_record_(L->lat_hist, RT_LAT_NBINS, RT_LAT_BIN_NS, lat);
        rt_record_(L->exec_hist, RT_EXEC_NBINS, RT_EXEC_BIN_NS, exec);
        rt_stat_add_(&L->lat_sum_ns, lat);
        rt_stat_add_(&L->exec_sum_ns, exec);
        if (lat > rt_stat(&L->lat_max_ns))
            rt_stat_set_(&L->lat_max_ns, lat);
        if (exec > rt_stat(&L->exec_max_ns))
            rt_stat_set_(&L->exec_max_ns, exec);

        next += period;
        if (end >= next) {
            /* overran: the next deadline is already behind us. Keep the phase. */
            const int64_t behind = (end - next) / period + 1;
            rt_stat_add_(&L->missed, 1);
            rt_stat_add_(&L->overruns, 1);
            rt_stat_add_(&L->skipped, behind);
            next += behind * period;
        }
    }
    return NULL;
}

/* ---- public API --------------------------------------------------------------------------- */

/* Zero everything and set the defaults: no eventfd, PM QoS 0 us (like cyclictest), 512 KiB stack. */
static inline void rt_loop_init(rt_loop *L, int64_t period_ns, int priority, rt_tick_fn tick,
                                void *ctx)
{
    memset(L, 0, sizeof(*L));
    L->period_ns = period_ns;
    L->priority = priority;
    L->tick = tick;
    L->ctx = ctx;
    L->event_fd = -1;
    L->cpu_dma_latency_us = 0;
    L->stack_bytes = RT_DEFAULT_STACK_BYTES;
    L->cpu = -1;
    L->pm_qos_fd = -1;
    atomic_init(&L->stop, 0);
    atomic_init(&L->ready, 0);
}

/* Start the loop thread; returns once the thread has recorded its outcome and armed its first
 * deadline. 0 ok (see sched_fifo/mlocked/timer_slack/warning for what was granted); -EINVAL bad
 * config; -EBUSY already running; -errno when no thread could be created at all. */
static inline int rt_loop_start(rt_loop *L)
{
    if (L->started)
        return -EBUSY;
    if (L->period_ns <= 0 || L->tick == NULL || L->priority < 1 || L->priority > 99)
        return -EINVAL;

    /* fresh outcome and statistics */
    memset(&L->sched_fifo, 0, sizeof(*L) - offsetof(rt_loop, sched_fifo));
    atomic_store(&L->stop, 0);
    atomic_store(&L->ready, 0);

    /* 1. memory: no page faults in the loop */
    if (mlockall(MCL_CURRENT | MCL_FUTURE) == 0) {
        L->mlocked = 1;
    } else {
        L->mlock_errno = errno;
        rt_warn_(L, "mlockall failed (%s): memory not locked, page faults may add latency; grant "
                    "CAP_IPC_LOCK or raise memlock in limits.conf", rt_errname_(errno));
    }

    /* 2. keep the CPUs out of deep idle states while we run (PM QoS), as cyclictest does */
    L->pm_qos_fd = -1;
    if (L->cpu_dma_latency_us >= 0) {
        int fd = open("/dev/cpu_dma_latency", O_WRONLY | O_CLOEXEC);
        int32_t us = L->cpu_dma_latency_us;
        if (fd >= 0 && write(fd, &us, sizeof(us)) == (ssize_t)sizeof(us)) {
            L->pm_qos = 1;
            L->pm_qos_fd = fd;
        } else {
            L->pm_qos_errno = errno;
            if (fd >= 0)
                close(fd);
        }
    }

    /* 3. the thread, SCHED_FIFO through explicit attributes */
    pthread_attr_t attr;
    struct sched_param sp;
    memset(&sp, 0, sizeof(sp));
    sp.sched_priority = L->priority;
    pthread_attr_init(&attr);
    if (L->stack_bytes >= 65536)
        pthread_attr_setstacksize(&attr, L->stack_bytes);
    pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
    pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
    pthread_attr_setschedparam(&attr, &sp);
    if (L->cpu >= 0 && L->cpu < CPU_SETSIZE) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(L->cpu, &set);
        if (pthread_attr_setaffinity_np(&attr, sizeof(set), &set) == 0)
            L->pinned = 1;
        else
            rt_warn_(L, "could not pin the loop to CPU %d: running unpinned", L->cpu);
    }
    int rc = pthread_create(&L->thread, &attr, rt_loop_main_, L);
    if (rc == EINVAL && L->pinned) { /* no such CPU here: run unpinned rather than not at all */
        L->pinned = 0;
        rt_warn_(L, "CPU %d is not available: running unpinned", L->cpu);
        pthread_attr_destroy(&attr);
        pthread_attr_init(&attr);
        if (L->stack_bytes >= 65536)
            pthread_attr_setstacksize(&attr, L->stack_bytes);
        pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
        pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
        pthread_attr_setschedparam(&attr, &sp);
        rc = pthread_create(&L->thread, &attr, rt_loop_main_, L);
    }
    if (rc == EPERM) {
        L->sched_errno = EPERM;
        rt_warn_(L, "SCHED_FIFO not permitted (EPERM): running without real-time priority; expect "
                    "higher jitter. Grant CAP_SYS_NICE or set rtprio in limits.conf");
        sp.sched_priority = 0;
        pthread_attr_setschedpolicy(&attr, SCHED_OTHER);
        pthread_attr_setschedparam(&attr, &sp);
        rc = pthread_create(&L->thread, &attr, rt_loop_main_, L);
    }
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        if (L->pm_qos_fd >= 0)
            close(L->pm_qos_fd);
        L->pm_qos_fd = -1;
        L->pm_qos = 0;
        return -rc;
    }
    L->started = 1;

    /* one-off hand-shake (not in the loop): wait until the thread has recorded its outcome */
    while (!atomic_load_explicit(&L->ready, memory_order_acquire)) {
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* Ask the loop to stop and join it (returns within about one period plus one tick). Releases the
 * PM QoS request; memory stays locked (mlockall is process-wide). Safe to call twice. */
static inline void rt_loop_stop(rt_loop *L)
{
    if (!L->started)
        return;
    atomic_store_explicit(&L->stop, 1, memory_order_release);
    pthread_join(L->thread, NULL);
    L->started = 0;
    if (L->pm_qos_fd >= 0)
        close(L->pm_qos_fd);
    L->pm_qos_fd = -1;
}

#endif
