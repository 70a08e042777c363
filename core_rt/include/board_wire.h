/*
 * board_wire.h — the board protocol's frames in C, for the controller's link I/O thread.
 *
 * The same wire as core_rt/board/protocol.py (the pure-Python reference; the tests check the two
 * byte for byte and counter for counter) and docs/board-protocol.md (the specification):
 *
 *     A5 5A | LEN u8 | SEQ u16 | TYPE u8 | PAYLOAD (LEN bytes) | CRC u16      little-endian
 *
 * CRC-16/CCITT-FALSE over LEN, SEQ, TYPE and PAYLOAD. No allocation, no locks, no system calls:
 * everything here is safe on a real-time thread without the GIL.
 */
#ifndef BOARD_WIRE_H
#define BOARD_WIRE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define BW_PROTOCOL_VERSION 3
#define BW_SYNC0 0xA5
#define BW_SYNC1 0x5A
#define BW_HEADER 6
#define BW_CRC 2
#define BW_MAX_PAYLOAD 64
#define BW_MAX_FRAME (BW_HEADER + BW_MAX_PAYLOAD + BW_CRC)

#define BW_TYPE_HELLO 0x01
#define BW_TYPE_HELLO_ACK 0x02
#define BW_TYPE_SETPOINT 0x10
#define BW_TYPE_STATUS 0x20

#define BW_HELLO_SIZE 8
#define BW_HELLO_ACK_SIZE 28
#define BW_SETPOINT_SIZE 40
#define BW_STATUS_SIZE 48
#define BW_ACK_FLAG_DEPTH_LOAD 0x0001u /* HELLO_ACK: STATUS carries the depth load */

#define BW_SP_FLAG_PRIMING 0x01u
#define BW_SETPOINT_SEQ_MAX 0x7FFFFFFFu
#define BW_HEATER_DUTY_FULL 0xFFFEu
#define BW_I32_NONE ((int32_t)INT32_MIN)
#define BW_I16_NONE ((int16_t)INT16_MIN)
#define BW_U16_NONE 0xFFFFu

#define BW_SW_LIMIT_LOW 0x01u
#define BW_SW_LIMIT_HIGH 0x02u
#define BW_SW_ARM_CONTACT 0x04u
#define BW_SW_SEAT_OCCUPIED 0x08u
#define BW_FAULT_WATCHDOG 0x0001u

/* ---- CRC-16/CCITT-FALSE --------------------------------------------------------------------- */

static inline uint16_t bw_crc16(const uint8_t *p, size_t n, uint16_t crc) {
    while (n--) {
        crc ^= (uint16_t)(*p++) << 8;
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    }
    return crc;
}

/* ---- little-endian fields ------------------------------------------------------------------- */

static inline void bw_put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void bw_put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline uint16_t bw_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t bw_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline int32_t bw_i32(const uint8_t *p) { return (int32_t)bw_u32(p); }
static inline int16_t bw_i16(const uint8_t *p) { return (int16_t)bw_u16(p); }

/* physical value -> fixed point, saturated (never wrapping); NaN -> `none`. Rounds half to even,
   as Python's round() does in the reference. */
static inline int64_t bw_fix(double x, double scale, int64_t lo, int64_t hi, int64_t none) {
    if (isnan(x)) return none;
    double v = x * scale;
    if (v >= (double)hi) return hi;
    if (v <= (double)lo) return lo;
    return (int64_t)nearbyint(v);
}
static inline int32_t bw_fix_i32(double x, double scale) {
    return (int32_t)bw_fix(x, scale, -(int64_t)INT32_MAX, INT32_MAX, INT32_MIN);
}
static inline double bw_un_i32(int32_t v, double scale) { return v == BW_I32_NONE ? NAN : v / scale; }
static inline double bw_un_u16(uint16_t v, double scale) { return v == BW_U16_NONE ? NAN : v / scale; }
static inline double bw_un_i16(int16_t v, double scale) { return v == BW_I16_NONE ? NAN : v / scale; }

static inline uint32_t bw_next_setpoint_seq(uint32_t seq) {
    return seq >= BW_SETPOINT_SEQ_MAX ? 1u : seq + 1u;
}

/* ---- encoding --------------------------------------------------------------------------------- */

/* One frame around `payload` into `out` (at least BW_MAX_FRAME bytes); returns its length. */
static inline int bw_frame(uint8_t *out, uint16_t seq, uint8_t type, const uint8_t *payload,
                           uint8_t len) {
    out[0] = BW_SYNC0;
    out[1] = BW_SYNC1;
    out[2] = len;
    bw_put_u16(out + 3, seq);
    out[5] = type;
    memcpy(out + BW_HEADER, payload, len);
    bw_put_u16(out + BW_HEADER + len, bw_crc16(out + 2, 4u + len, 0xFFFF));
    return BW_HEADER + len + BW_CRC;
}

static inline void bw_pack_hello(uint8_t *p, uint16_t version, uint16_t period_us, uint32_t nonce) {
    bw_put_u16(p, version);
    bw_put_u16(p + 2, period_us);
    bw_put_u32(p + 4, nonce);
}

/* A SETPOINT payload (40 bytes). Units on the wire: µm, µm/s, milli-rpm, milli-Hz, duty/65534. */
typedef struct {
    uint32_t seq;
    double pos_mm[3];
    double vel_mm_s[3];
    double knead_rpm, tap_hz, heater_duty;
    uint8_t enable, flags;
} bw_setpoint;

static inline void bw_pack_setpoint(uint8_t *p, const bw_setpoint *s) {
    bw_put_u32(p, s->seq);
    for (int i = 0; i < 3; i++) bw_put_u32(p + 4 + 4 * i, (uint32_t)bw_fix_i32(s->pos_mm[i], 1e3));
    for (int i = 0; i < 3; i++) bw_put_u32(p + 16 + 4 * i, (uint32_t)bw_fix_i32(s->vel_mm_s[i], 1e3));
    bw_put_u32(p + 28, (uint32_t)bw_fix_i32(s->knead_rpm, 1e3));
    bw_put_u32(p + 32, (uint32_t)bw_fix_i32(s->tap_hz, 1e3));
    /* no command value equals a sentinel: duty 0 … 65534 (NaN: heater off) */
    bw_put_u16(p + 36, (uint16_t)bw_fix(s->heater_duty, BW_HEATER_DUTY_FULL, 0, BW_HEATER_DUTY_FULL, 0));
    p[38] = s->enable ? 1 : 0;
    p[39] = s->flags;
}

/* ---- decoding --------------------------------------------------------------------------------- */

typedef struct {
    uint32_t echo_seq, board_time_us;
    double pos_mm[3];
    double knead_rpm, tap_hz;
    double current_a[5];
    double thermistor_c, supply_v;
    uint8_t switches, outputs;
    uint16_t board_faults;
    double depth_load_a; /* NaN: not measured (the sentinel) */
} bw_status;

static inline void bw_unpack_status(const uint8_t *p, bw_status *s) {
    s->echo_seq = bw_u32(p);
    s->board_time_us = bw_u32(p + 4);
    for (int i = 0; i < 3; i++) s->pos_mm[i] = bw_un_i32(bw_i32(p + 8 + 4 * i), 1e3);
    s->knead_rpm = bw_un_i32(bw_i32(p + 20), 1e3);
    s->tap_hz = bw_un_i32(bw_i32(p + 24), 1e3);
    for (int i = 0; i < 5; i++) s->current_a[i] = bw_un_u16(bw_u16(p + 28 + 2 * i), 1e3);
    s->thermistor_c = bw_un_i16(bw_i16(p + 38), 100.0);
    s->supply_v = bw_un_u16(bw_u16(p + 40), 1e3);
    s->switches = p[42];
    s->outputs = p[43];
    s->board_faults = bw_u16(p + 44);
    s->depth_load_a = bw_un_u16(bw_u16(p + 46), 1e3);
}

typedef struct {
    uint16_t version, watchdog_ms;
    uint32_t nonce;
    uint16_t status_period_us, flags;
    char board_id[17];
} bw_hello_ack;

static inline void bw_unpack_hello_ack(const uint8_t *p, bw_hello_ack *a) {
    a->version = bw_u16(p);
    a->watchdog_ms = bw_u16(p + 2);
    a->nonce = bw_u32(p + 4);
    a->status_period_us = bw_u16(p + 8);
    a->flags = bw_u16(p + 10);
    for (int i = 0; i < 16; i++) {
        uint8_t c = p[12 + i];
        a->board_id[i] = (c >= 0x20 && c < 0x7F) || c == 0 ? (char)c : '?';
    }
    a->board_id[16] = 0;
}

/* Drop counters, named as the reference decoder's (FrameDecoder.counters). */
typedef struct {
    int64_t bytes, frames, garbage_bytes, resyncs, bad_length, bad_crc, unknown_type,
        unexpected_type, duplicate, out_of_order, seq_gaps;
} bw_rx_counters;

/* The incremental, total decoder: bytes in, valid frames out (receive rules of
   docs/board-protocol.md, in order). One frame at most is buffered. */
typedef struct {
    uint8_t buf[2 * BW_MAX_FRAME + 4096];
    int n;            /* bytes buffered */
    int pos;          /* scan position in buf */
    int have_seq;
    uint16_t last_seq;
    unsigned expect;  /* bit 0: HELLO, 1: HELLO_ACK, 2: SETPOINT, 3: STATUS */
    bw_rx_counters c;
} bw_decoder;

#define BW_EXPECT_BOARD_TO_CONTROLLER ((1u << 1) | (1u << 3))

static inline int bw_type_bit(uint8_t t) {
    switch (t) {
    case BW_TYPE_HELLO: return 0;
    case BW_TYPE_HELLO_ACK: return 1;
    case BW_TYPE_SETPOINT: return 2;
    case BW_TYPE_STATUS: return 3;
    default: return -1;
    }
}
static inline int bw_payload_size(int bit) {
    static const int sizes[4] = {BW_HELLO_SIZE, BW_HELLO_ACK_SIZE, BW_SETPOINT_SIZE, BW_STATUS_SIZE};
    return sizes[bit];
}

static inline void bw_decoder_init(bw_decoder *d, unsigned expect) {
    memset(d, 0, sizeof *d);
    d->expect = expect;
}

/* A decoded frame: its type, link SEQ and payload (valid until the next bw_next call). */
typedef struct {
    uint8_t type;
    uint16_t seq;
    const uint8_t *payload;
    int len;
} bw_frame_view;

/* Append bytes to the decoder. Returns the number taken (less than `n` only when the buffer is
   full: call bw_next until it returns 0, then feed the rest). */
static inline int bw_feed(bw_decoder *d, const uint8_t *data, int n) {
    if (d->pos > 0) { /* compact what bw_next has consumed */
        memmove(d->buf, d->buf + d->pos, (size_t)(d->n - d->pos));
        d->n -= d->pos;
        d->pos = 0;
    }
    int room = (int)sizeof d->buf - d->n;
    int take = n < room ? n : room;
    memcpy(d->buf + d->n, data, (size_t)take);
    d->n += take;
    d->c.bytes += take;
    return take;
}

/* The next valid frame in the buffer into `f` (1), or 0 when more bytes are needed. */
static inline int bw_next(bw_decoder *d, bw_frame_view *f) {
    for (;;) {
        int pos = d->pos, n = d->n, i = pos;
        while (i + 1 < n && !(d->buf[i] == BW_SYNC0 && d->buf[i + 1] == BW_SYNC1)) i++;
        if (i + 1 >= n) { /* no sync: keep a trailing A5 (half a sync) */
            int keep = (n > pos && d->buf[n - 1] == BW_SYNC0) ? 1 : 0;
            if (n - keep > pos) {
                d->c.garbage_bytes += n - keep - pos;
                d->c.resyncs++;
            }
            d->pos = n - keep;
            return 0;
        }
        if (i > pos) {
            d->c.garbage_bytes += i - pos;
            d->c.resyncs++;
            d->pos = pos = i;
        }
        if (n - pos < BW_HEADER) return 0;
        int len = d->buf[pos + 2];
        if (len > BW_MAX_PAYLOAD) {
            d->c.bad_length++;
            d->c.garbage_bytes++;
            d->pos = pos + 1;
            continue;
        }
        int end = pos + BW_HEADER + len + BW_CRC;
        if (end > n) return 0;
        uint16_t crc_rx = bw_u16(d->buf + end - 2);
        if (bw_crc16(d->buf + pos + 2, 4u + (unsigned)len, 0xFFFF) != crc_rx) {
            d->c.bad_crc++;
            d->c.garbage_bytes++;
            d->pos = pos + 1; /* a false sync or a damaged frame: look again from the next byte */
            continue;
        }
        uint16_t seq = bw_u16(d->buf + pos + 3);
        uint8_t type = d->buf[pos + 5];
        d->pos = end;
        int bit = bw_type_bit(type);
        if (bit < 0) { d->c.unknown_type++; continue; }
        if (len != bw_payload_size(bit)) { d->c.bad_length++; continue; }
        if (!(d->expect & (1u << bit))) { d->c.unexpected_type++; continue; }
        int session = type == BW_TYPE_HELLO || type == BW_TYPE_HELLO_ACK;
        if (!session && d->have_seq) {
            uint16_t gap = (uint16_t)(seq - d->last_seq);
            if (gap == 0) { d->c.duplicate++; continue; }
            if (gap >= 0x8000u) { d->c.out_of_order++; continue; }
            d->c.seq_gaps += gap - 1;
        }
        d->have_seq = 1;
        d->last_seq = seq;
        d->c.frames++;
        f->type = type;
        f->seq = seq;
        f->payload = d->buf + pos + BW_HEADER;
        f->len = len;
        return 1;
    }
}

#endif /* BOARD_WIRE_H */
