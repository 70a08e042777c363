/*
 * link_mailbox.h — lock-free mailboxes between the real-time tick and a board link's I/O thread
 * (core_rt/board/mailbox.pyx, core_rt/include/board_io.h).
 */
#ifndef LINK_MAILBOX_H
#define LINK_MAILBOX_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include "chair_core.h"

/* What the tick publishes: its setpoint and when (CLOCK_MONOTONIC). */
typedef struct { chair_setpoint sp; int64_t published_ns; } link_sp_slot;
/* What the I/O thread publishes: a status, the send time of the SETPOINT it echoes
   (freshness is measured from there: a round trip), and when it arrived. */
typedef struct { chair_status st; int64_t confirmed_ns; int64_t received_ns; } link_st_slot;

/* Triple buffers: one writer and one reader, both wait-free. The writer fills its private
   back slot and swaps it with the shared middle one (marking it fresh); the reader swaps its
   private front slot with the middle one only when that is fresh. Neither ever waits for the
   other, and the reader always holds a complete, most recent value. */
#define LINK_FRESH 4u
#define LINK_TRIPLE(NAME, T)                                                             \
    typedef struct { T slot[3]; _Atomic unsigned middle; unsigned back, front; } NAME;   \
    static inline void NAME##_init(NAME *b) {                                          \
        memset(b->slot, 0, sizeof b->slot);                                              \
        b->back = 0; b->front = 2; atomic_init(&b->middle, 1u);                          \
    }                                                                                    \
    static inline void NAME##_write(NAME *b, const T *v) {                              \
        b->slot[b->back] = *v;                                                           \
        unsigned prev = atomic_exchange_explicit(&b->middle, b->back | LINK_FRESH,       \
                                                 memory_order_acq_rel);                  \
        b->back = prev & 3u;                                                             \
    }                                                                                    \
    static inline int NAME##_read(NAME *b) {                                            \
        if (!(atomic_load_explicit(&b->middle, memory_order_relaxed) & LINK_FRESH))      \
            return 0;                                                                    \
        unsigned prev = atomic_exchange_explicit(&b->middle, b->front,                   \
                                                 memory_order_acq_rel);                  \
        b->front = prev & 3u;                                                            \
        return 1;                                                                        \
    }                                                                                    \
    static inline const T *NAME##_front(const NAME *b) { return &b->slot[b->front]; }

LINK_TRIPLE(link_sp_box, link_sp_slot)
LINK_TRIPLE(link_st_box, link_st_slot)

/* Counters the tick writes and Python reads while it runs (relaxed: statistics only). */
typedef struct {
    _Atomic uint64_t exchanges, stale, stale_episodes, recoveries, statuses_taken;
} link_counters;

static inline void link_count(_Atomic uint64_t *c) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}
static inline uint64_t link_stat(_Atomic uint64_t *c) {
    return atomic_load_explicit(c, memory_order_relaxed);
}
static inline int64_t link_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#endif /* LINK_MAILBOX_H */
