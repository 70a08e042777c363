/*
 * board_io.h — one connection of the controller's board link, run without the GIL.
 *
 * `bio_run(io, fd)` is the whole conversation on one open port: HELLO until a HELLO_ACK with our
 * nonce (a board speaking another version, or with an out-of-spec watchdog or STATUS period, is
 * refused: HELLOs only, never a SETPOINT), then a SETPOINT every `period_ns` and every STATUS in,
 * until the port ends, an I/O error, or `stop` (then a goodbye: drives-off SETPOINTs until one is
 * echoed, at most `goodbye_ns`). core_rt/board/link.py calls it from its I/O thread inside
 * `with nogil`, at SCHED_FIFO when permitted, so nothing the Python side does (the GIL, the
 * garbage collector, a busy event loop) can make the link late.
 *
 * What it guarantees (docs/board-protocol.md, The controller's side):
 * - a STATUS counts only if it echoes a SETPOINT of this connection; the tick measures freshness
 *   from that SETPOINT's send time (link_mailbox.h);
 * - enable 1 reaches the board only when engaged: bumpless (commanded motion at rest and within
 *   the tolerance of the encoders), and not after the board reported its watchdog;
 * - drives off (enable 0, heater 0) whatever the core says once no round trip has been confirmed
 *   for `force_off_ns` (the link is lost); nothing at all while the core's tick has not published
 *   for `max_age_ns` (a stopped core: the board's watchdog stops the chair unless it comes back).
 */
#ifndef BOARD_IO_H
#define BOARD_IO_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* ppoll */
#endif
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "board_wire.h"
#include "link_mailbox.h"

#define BIO_SENT_MEMORY 512u   /* SETPOINTs remembered for matching echoes: ~1 s at 500 Hz */
#define BIO_RTT_KEEP 4096u     /* round trips kept for percentiles */
#define BIO_GAP_BIN_NS 10000   /* SETPOINT and STATUS gap histograms: 10 µs bins ... */
#define BIO_GAP_NBINS 10001    /* ... over [0, 100 ms) + overflow */
#define BIO_TX_BACKLOG 4096    /* bytes waiting for the port; beyond that the backlog is dropped */

enum bio_end {
    BIO_END_STOPPED = 0,   /* stop requested (after the goodbye, if acknowledged) */
    BIO_END_EOF = 1,       /* the other end has gone */
    BIO_END_IO_ERROR = 2,  /* read/write failed: errno in io->last_errno */
    BIO_END_REFUSED = 3,   /* the board answered but must not be driven: io->refused says why */
};

/* Counters: written by the I/O thread only, read by anyone (relaxed atomics). */
typedef struct {
    int64_t frames_out, setpoints_out, priming_out, hellos_out, bytes_out, tx_dropped_bytes;
    int64_t frames_in, statuses_in, hello_acks_in, bytes_in, unmatched_echo;
    int64_t stale_core_setpoints, late_sends, engages, disengages, board_watchdog_seen;
    int64_t forced_off, forced_off_setpoints, goodbyes, goodbyes_echoed, refusals;
    int64_t max_setpoint_gap_ns, max_status_gap_ns;
    /* the thread's own lateness: its latest wake-up past a deadline (when, and the context
       switches across that wait: involuntary = preempted, voluntary = blocked), and its longest
       turn between two waits */
    int64_t max_wake_late_ns, max_wake_late_at_ns, max_wake_late_vcsw, max_wake_late_ivcsw;
    int64_t max_turn_ns;
} bio_counters;

typedef struct {
    /* ---- set before bio_run ---- */
    int64_t period_ns;          /* SETPOINT period */
    int64_t hello_retry_ns;
    int64_t max_age_ns;         /* a core setpoint older than this: the tick has stopped */
    int64_t force_off_ns;       /* no confirmed round trip for this long: drives off */
    int64_t goodbye_ns;         /* at most this long waiting for the goodbye's echo */
    double engage_tol_mm, engage_max_speed_mm_s, engage_max_rpm, engage_max_hz;
    int is_socket;
    uint32_t nonce;
    uint16_t tx_seq;
    _Atomic int stop;           /* set from any thread: say goodbye and return */
    link_sp_box *spbox;         /* the tick's setpoints (this thread is the reader) */
    link_st_box *stbox;         /* statuses for the tick (this thread is the writer) */
    /* ---- outcome, readable while running ---- */
    _Atomic int acked, ready, engaged, connected;
    int last_errno;
    bw_hello_ack board;         /* the accepted HELLO_ACK */
    char refused[160];          /* why the board was refused ("" = not refused) */
    double last_pos_mm[3];      /* encoders of the last STATUS (NaN before) */
    int64_t last_confirmed_ns;  /* atomic (builtins): send time of the last SETPOINT echoed */
    uint16_t last_board_faults;
    bio_counters n;
    bw_rx_counters rx;          /* the decoder's drops, summed over connections */
    int64_t rtt_ns[BIO_RTT_KEEP];
    int64_t rtt_count;          /* atomic (builtins): round trips so far */
    int64_t sp_gap_hist[BIO_GAP_NBINS];
    int64_t st_gap_hist[BIO_GAP_NBINS];
    /* ---- private to the connection ---- */
    bw_decoder dec;
    uint32_t sent_seq[BIO_SENT_MEMORY];
    int64_t sent_ns[BIO_SENT_MEMORY];
    uint8_t tx[BIO_TX_BACKLOG + BW_MAX_FRAME];
    int tx_n;
} bio_link;

#define BIO_INC(io, f) __atomic_store_n(&(io)->n.f, (io)->n.f + 1, __ATOMIC_RELAXED)
#define BIO_ADD(io, f, v) __atomic_store_n(&(io)->n.f, (io)->n.f + (v), __ATOMIC_RELAXED)
#define BIO_MAX(io, f, v) do { if ((v) > (io)->n.f) __atomic_store_n(&(io)->n.f, (v), __ATOMIC_RELAXED); } while (0)

static inline int64_t bio_load(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

static inline bio_link *bio_new(void) { return (bio_link *)calloc(1, sizeof(bio_link)); }
static inline void bio_free(bio_link *io) { free(io); }

static inline int64_t bio_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void bio_hist(int64_t *hist, int64_t gap_ns) {
    int64_t b = gap_ns / BIO_GAP_BIN_NS;
    if (b < 0) b = 0;
    if (b >= BIO_GAP_NBINS) b = BIO_GAP_NBINS - 1;
    __atomic_store_n(&hist[b], hist[b] + 1, __ATOMIC_RELAXED);
}

static inline void bio_sum_rx(bio_link *io) {
    const bw_rx_counters *c = &io->dec.c;
#define S(f) io->rx.f += c->f
    S(bytes); S(frames); S(garbage_bytes); S(resyncs); S(bad_length); S(bad_crc); S(unknown_type);
    S(unexpected_type); S(duplicate); S(out_of_order); S(seq_gaps);
#undef S
    memset(&io->dec.c, 0, sizeof io->dec.c);
}

/* Flush the backlog without blocking: 0 ok, -1 I/O error (errno kept). */
static inline int bio_flush(bio_link *io, int fd) {
    while (io->tx_n > 0) {
        ssize_t w = io->is_socket ? send(fd, io->tx, (size_t)io->tx_n, MSG_NOSIGNAL | MSG_DONTWAIT)
                                  : write(fd, io->tx, (size_t)io->tx_n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            io->last_errno = errno;
            return -1;
        }
        memmove(io->tx, io->tx + w, (size_t)(io->tx_n - w));
        io->tx_n -= (int)w;
    }
    if (io->tx_n > BIO_TX_BACKLOG) { /* the other end is not reading: older frames are useless */
        BIO_ADD(io, tx_dropped_bytes, io->tx_n);
        io->tx_n = 0;
    }
    return 0;
}

static inline int bio_send(bio_link *io, int fd, uint8_t type, const uint8_t *payload, uint8_t len) {
    int k = bw_frame(io->tx + io->tx_n, io->tx_seq, type, payload, len);
    io->tx_seq++;
    io->tx_n += k;
    BIO_INC(io, frames_out);
    BIO_ADD(io, bytes_out, k);
    return bio_flush(io, fd);
}

/* Why the controller must not drive the board that sent `a` (into io->refused), or 0. */
static inline int bio_refuse(bio_link *io, const bw_hello_ack *a) {
    if (a->version != BW_PROTOCOL_VERSION)
        snprintf(io->refused, sizeof io->refused,
                 "the board speaks protocol version %u; this controller speaks %u",
                 (unsigned)a->version, (unsigned)BW_PROTOCOL_VERSION);
    else if (a->watchdog_ms < 1 || a->watchdog_ms > 100)
        snprintf(io->refused, sizeof io->refused,
                 "the board's watchdog is %u ms (it must trip within 1..100 ms)",
                 (unsigned)a->watchdog_ms);
    else if (a->status_period_us < 1 || a->status_period_us > 5000)
        snprintf(io->refused, sizeof io->refused,
                 "the board's STATUS period is %u us (at most 5000 us)",
                 (unsigned)a->status_period_us);
    else
        return 0;
    return 1;
}

static inline int bio_engage_ok(const bio_link *io, const chair_setpoint *sp) {
    if (io->last_board_faults & BW_FAULT_WATCHDOG) return 0;
    for (int i = 0; i < 3; i++) {
        if (isnan(io->last_pos_mm[i])) return 0;
        if (fabs(sp->vel_mm_s[i]) > io->engage_max_speed_mm_s) return 0;
        if (fabs(sp->pos_mm[i] - io->last_pos_mm[i]) > io->engage_tol_mm) return 0;
    }
    return fabs(sp->knead_rpm) <= io->engage_max_rpm && fabs(sp->tap_hz) <= io->engage_max_hz;
}

static inline void bio_disengage(bio_link *io) {
    if (atomic_load_explicit(&io->engaged, memory_order_relaxed)) {
        atomic_store_explicit(&io->engaged, 0, memory_order_relaxed);
        BIO_INC(io, disengages);
    }
}

/* A STATUS arrived at `now`. Returns 1 if it echoes a goodbye SETPOINT (>= goodbye_from). */
static inline int bio_on_status(bio_link *io, const uint8_t *payload, int64_t now,
                                uint32_t goodbye_from, int64_t *last_echo, int64_t *last_rx_ns,
                                int64_t *confirmed_ns) {
    bw_status s;
    bw_unpack_status(payload, &s);
    BIO_INC(io, statuses_in);
    uint32_t k = s.echo_seq % BIO_SENT_MEMORY;
    if (s.echo_seq == 0)
        return 0; /* the board has applied none of ours yet (just after the HELLO): no drop */
    if (io->sent_seq[k] != s.echo_seq) {
        BIO_INC(io, unmatched_echo); /* not ours, or older than the last 512 */
        return 0;
    }
    int64_t t_sent = io->sent_ns[k];
    if ((int64_t)s.echo_seq != *last_echo) {
        *last_echo = s.echo_seq;
        int64_t c = __atomic_load_n(&io->rtt_count, __ATOMIC_RELAXED);
        io->rtt_ns[c % BIO_RTT_KEEP] = now - t_sent;
        __atomic_store_n(&io->rtt_count, c + 1, __ATOMIC_RELEASE);
    }
    if (*last_rx_ns) {
        bio_hist(io->st_gap_hist, now - *last_rx_ns);
        BIO_MAX(io, max_status_gap_ns, now - *last_rx_ns);
    }
    *last_rx_ns = now;
    *confirmed_ns = t_sent;
    __atomic_store_n(&io->last_confirmed_ns, t_sent, __ATOMIC_RELAXED);
    for (int i = 0; i < 3; i++) io->last_pos_mm[i] = s.pos_mm[i];
    io->last_board_faults = s.board_faults;
    if (s.board_faults & BW_FAULT_WATCHDOG) {
        BIO_INC(io, board_watchdog_seen);
        bio_disengage(io); /* the board stopped on its own: re-engage bumplessly only */
    }
    link_st_slot out;
    memset(&out, 0, sizeof out);
    for (int i = 0; i < 3; i++) out.st.pos_mm[i] = s.pos_mm[i];
    for (int i = 0; i < 5; i++) out.st.current_a[i] = s.current_a[i];
    out.st.knead_rpm = s.knead_rpm;
    out.st.tap_hz = s.tap_hz;
    out.st.thermistor_c = s.thermistor_c;
    out.st.supply_v = s.supply_v;
    out.st.limit_low = (s.switches & BW_SW_LIMIT_LOW) != 0;
    out.st.limit_high = (s.switches & BW_SW_LIMIT_HIGH) != 0;
    out.st.arm_contact = (s.switches & BW_SW_ARM_CONTACT) != 0;
    out.st.seat_occupied = (s.switches & BW_SW_SEAT_OCCUPIED) != 0;
    out.st.board_faults = s.board_faults;
    out.st.link_ok = 1;
    /* the depth drive's load, from a board that says it measures it (else NaN: not measured) */
    out.st.depth_load_a = (io->board.flags & BW_ACK_FLAG_DEPTH_LOAD) ? s.depth_load_a : NAN;
    out.confirmed_ns = t_sent;
    out.received_ns = now;
    link_st_box_write(io->stbox, &out);
    atomic_store_explicit(&io->ready, 1, memory_order_release);
    return goodbye_from && (uint32_t)(s.echo_seq - goodbye_from) < 0x40000000u;
}

/* The conversation on `fd` (open, non-blocking). See the top of this file. */
static inline int bio_run(bio_link *io, int fd) {
    uint8_t payload[BW_MAX_PAYLOAD];
    uint8_t rbuf[4096];
    bw_frame_view f;
    bw_setpoint out;
    bio_sum_rx(io);
    bw_decoder_init(&io->dec, BW_EXPECT_BOARD_TO_CONTROLLER);
    memset(io->sent_seq, 0, sizeof io->sent_seq);
    io->tx_n = 0;
    io->refused[0] = 0;
    io->last_board_faults = 0;
    for (int i = 0; i < 3; i++) io->last_pos_mm[i] = NAN;
    atomic_store(&io->acked, 0);
    atomic_store(&io->engaged, 0);
    atomic_store(&io->connected, 1);
    int acked = 0, forced = 0, rc = BIO_END_STOPPED;
    uint32_t sp_seq = 0, goodbye_from = 0;
    int64_t now = bio_now_ns(), hello_due = now, next_send = now, goodbye_until = 0;
    int64_t last_send = 0, last_echo = -1, last_rx = 0, confirmed = 0, acked_ns = 0;
    for (;;) {
        if (atomic_load_explicit(&io->stop, memory_order_relaxed) && !goodbye_from) {
            if (!acked) break;
            goodbye_from = bw_next_setpoint_seq(sp_seq); /* say goodbye from the next SETPOINT */
            goodbye_until = now + io->goodbye_ns;
            BIO_INC(io, goodbyes);
        }
        if (goodbye_from && now >= goodbye_until) break;
        int64_t due = acked ? next_send : hello_due;
        int64_t wait = due - now;
        if (wait < 0) wait = 0;
        struct timespec ts = {(time_t)(wait / 1000000000LL), (long)(wait % 1000000000LL)};
        struct pollfd p = {fd, POLLIN, 0};
        struct rusage ru0, ru1;
        int64_t turn_start = now, before = bio_now_ns();
        BIO_MAX(io, max_turn_ns, before - turn_start);
        getrusage(RUSAGE_THREAD, &ru0);
        int pr = ppoll(&p, 1, &ts, NULL);
        now = bio_now_ns();
        if (now - (before + wait) > io->n.max_wake_late_ns) {
            getrusage(RUSAGE_THREAD, &ru1);
            __atomic_store_n(&io->n.max_wake_late_at_ns, now, __ATOMIC_RELAXED);
            __atomic_store_n(&io->n.max_wake_late_vcsw, (int64_t)(ru1.ru_nvcsw - ru0.ru_nvcsw),
                             __ATOMIC_RELAXED);
            __atomic_store_n(&io->n.max_wake_late_ivcsw, (int64_t)(ru1.ru_nivcsw - ru0.ru_nivcsw),
                             __ATOMIC_RELAXED);
            __atomic_store_n(&io->n.max_wake_late_ns, now - (before + wait), __ATOMIC_RELAXED);
        }
        if (pr < 0 && errno != EINTR) { io->last_errno = errno; rc = BIO_END_IO_ERROR; break; }
        if (pr > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = io->is_socket ? recv(fd, rbuf, sizeof rbuf, MSG_DONTWAIT)
                                      : read(fd, rbuf, sizeof rbuf);
            if (r == 0) { rc = BIO_END_EOF; break; } /* readable and empty: hung up */
            if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                io->last_errno = errno;
                rc = errno == EIO ? BIO_END_EOF : BIO_END_IO_ERROR;
                break;
            }
            if (r > 0) {
                BIO_ADD(io, bytes_in, r);
                int off = 0, done = 0;
                while (off < r && !done) {
                    off += bw_feed(&io->dec, rbuf + off, (int)r - off);
                    while (bw_next(&io->dec, &f)) {
                        BIO_INC(io, frames_in);
                        if (f.type == BW_TYPE_STATUS) {
                            if (bio_on_status(io, f.payload, now, goodbye_from, &last_echo, &last_rx,
                                              &confirmed)) {
                                BIO_INC(io, goodbyes_echoed);
                                done = 1;
                                break;
                            }
                        } else if (f.type == BW_TYPE_HELLO_ACK && !acked) {
                            bw_hello_ack a;
                            bw_unpack_hello_ack(f.payload, &a);
                            if (a.nonce != io->nonce) continue;
                            BIO_INC(io, hello_acks_in);
                            io->board = a;
                            if (bio_refuse(io, &a)) {
                                BIO_INC(io, refusals);
                                rc = BIO_END_REFUSED;
                                done = 1;
                                break;
                            }
                            acked = 1;
                            acked_ns = now;
                            atomic_store(&io->acked, 1);
                            next_send = now;
                        }
                    }
                }
                if (done) break; /* the goodbye was heard, or the board refused */
            }
        }
        if (!acked) {
            if (now >= hello_due) {
                bw_pack_hello(payload, BW_PROTOCOL_VERSION, (uint16_t)(io->period_ns / 1000), io->nonce);
                if (bio_send(io, fd, BW_TYPE_HELLO, payload, BW_HELLO_SIZE) < 0) { rc = BIO_END_IO_ERROR; break; }
                BIO_INC(io, hellos_out);
                hello_due = now + io->hello_retry_ns;
            }
            continue;
        }
        if (now < next_send) continue;
        next_send += io->period_ns;
        if (next_send <= now) {
            BIO_INC(io, late_sends);
            next_send = now + io->period_ns;
        }
        /* what to send */
        memset(&out, 0, sizeof out);
        for (int i = 0; i < 3; i++) out.pos_mm[i] = isnan(io->last_pos_mm[i]) ? 0.0 : io->last_pos_mm[i];
        link_sp_box_read(io->spbox);
        const link_sp_slot *s = link_sp_box_front(io->spbox);
        int lost = (confirmed ? now - confirmed : now - acked_ns) > io->force_off_ns;
        if (goodbye_from) {
            bio_disengage(io); /* goodbye: drives off, heater off, at the measured pose */
        } else if (s->published_ns == 0) {
            out.flags = BW_SP_FLAG_PRIMING; /* the core has not ticked yet */
            BIO_INC(io, priming_out);
        } else if (now - s->published_ns > io->max_age_ns) {
            /* the tick has stopped publishing: send nothing, so that the board's watchdog stops
               the chair if it does not come back. Not drives off, and no disengage: a tick that
               was only late (a stolen CPU) then carries on where the board still holds, instead
               of finding its drives withdrawn mid-move (docs/board-protocol.md, Link loss) */
            BIO_INC(io, stale_core_setpoints);
            continue;
        } else {
            const chair_setpoint *c = &s->sp;
            for (int i = 0; i < 3; i++) {
                out.pos_mm[i] = c->pos_mm[i];
                out.vel_mm_s[i] = c->vel_mm_s[i];
            }
            out.knead_rpm = c->knead_rpm;
            out.tap_hz = c->tap_hz;
            out.heater_duty = c->heater_duty;
            if (lost) {
                bio_disengage(io);
                if (!forced) { forced = 1; BIO_INC(io, forced_off); }
                BIO_INC(io, forced_off_setpoints);
            } else {
                forced = 0;
                if (c->enable && !atomic_load_explicit(&io->engaged, memory_order_relaxed)
                        && bio_engage_ok(io, c)) {
                    atomic_store_explicit(&io->engaged, 1, memory_order_relaxed);
                    BIO_INC(io, engages);
                }
                out.enable = c->enable && atomic_load_explicit(&io->engaged, memory_order_relaxed);
            }
            BIO_INC(io, setpoints_out);
        }
        if (!out.enable) {  /* drives off: the heater too, and nothing moving */
            out.heater_duty = 0;
            out.knead_rpm = out.tap_hz = 0;
            for (int i = 0; i < 3; i++) out.vel_mm_s[i] = 0;
        }
        sp_seq = bw_next_setpoint_seq(sp_seq);
        out.seq = sp_seq;
        io->sent_seq[sp_seq % BIO_SENT_MEMORY] = sp_seq;
        io->sent_ns[sp_seq % BIO_SENT_MEMORY] = now;
        bw_pack_setpoint(payload, &out);
        if (bio_send(io, fd, BW_TYPE_SETPOINT, payload, BW_SETPOINT_SIZE) < 0) { rc = BIO_END_IO_ERROR; break; }
        if (last_send) {
            bio_hist(io->sp_gap_hist, now - last_send);
            BIO_MAX(io, max_setpoint_gap_ns, now - last_send);
        }
        last_send = now;
    }
    atomic_store(&io->connected, 0);
    atomic_store(&io->engaged, 0);
    bio_sum_rx(io);
    return rc;
}

#endif /* BOARD_IO_H */
