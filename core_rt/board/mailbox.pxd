# The tick side of a board link (see mailbox.pyx): lock-free mailboxes between the real-time tick and
# the link's I/O thread.
from libc.stdint cimport int64_t, uint64_t

from core_rt.chair_core cimport chair_setpoint, chair_status
from core_rt.hardware cimport Hardware

cdef extern from *:
    """
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
    #define LINK_TRIPLE(NAME, T)                                                             \\
        typedef struct { T slot[3]; _Atomic unsigned middle; unsigned back, front; } NAME;   \\
        static inline void NAME##_init(NAME *b) {                                          \\
            memset(b->slot, 0, sizeof b->slot);                                              \\
            b->back = 0; b->front = 2; atomic_init(&b->middle, 1u);                          \\
        }                                                                                    \\
        static inline void NAME##_write(NAME *b, const T *v) {                              \\
            b->slot[b->back] = *v;                                                           \\
            unsigned prev = atomic_exchange_explicit(&b->middle, b->back | LINK_FRESH,       \\
                                                     memory_order_acq_rel);                  \\
            b->back = prev & 3u;                                                             \\
        }                                                                                    \\
        static inline int NAME##_read(NAME *b) {                                            \\
            if (!(atomic_load_explicit(&b->middle, memory_order_relaxed) & LINK_FRESH))      \\
                return 0;                                                                    \\
            unsigned prev = atomic_exchange_explicit(&b->middle, b->front,                   \\
                                                     memory_order_acq_rel);                  \\
            b->front = prev & 3u;                                                            \\
            return 1;                                                                        \\
        }                                                                                    \\
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
    """
    ctypedef struct link_sp_slot:
        chair_setpoint sp
        int64_t published_ns
    ctypedef struct link_st_slot:
        chair_status st
        int64_t confirmed_ns
        int64_t received_ns
    ctypedef struct link_sp_box:
        pass
    ctypedef struct link_st_box:
        pass
    ctypedef struct link_counters:
        uint64_t exchanges
        uint64_t stale
        uint64_t stale_episodes
        uint64_t recoveries
        uint64_t statuses_taken
    void link_sp_box_init(link_sp_box* b) nogil
    void link_sp_box_write(link_sp_box* b, const link_sp_slot* v) nogil
    int link_sp_box_read(link_sp_box* b) nogil
    const link_sp_slot* link_sp_box_front(const link_sp_box* b) nogil
    void link_st_box_init(link_st_box* b) nogil
    void link_st_box_write(link_st_box* b, const link_st_slot* v) nogil
    int link_st_box_read(link_st_box* b) nogil
    const link_st_slot* link_st_box_front(const link_st_box* b) nogil
    void link_count(uint64_t* c) nogil
    uint64_t link_stat(uint64_t* c) nogil
    int64_t link_now_ns() nogil


cdef class LinkHardware(Hardware):
    cdef link_sp_box spbox          # tick -> I/O thread
    cdef link_st_box stbox          # I/O thread -> tick
    cdef link_st_slot cur           # the tick's copy of the latest status
    cdef link_counters n
    cdef int was_fresh
    cdef readonly int64_t stale_ns
