/*
 * spsc.h — lock-free single-producer / single-consumer ring of fixed-size elements.
 *
 * The hand-off between the real-time tick and asyncio (commands in; events and telemetry out).
 * Exactly one thread pushes and exactly one thread pops; neither ever blocks or allocates:
 * a full ring refuses the element (and counts it in `dropped`), an empty ring says so.
 *
 * Indices are free-running uint32 counters (slot = index & mask), so `head - tail` is the fill
 * level even across wrap-around. The producer publishes an element with a release store of
 * `head` after copying it in; the consumer acquires `head` before copying out and releases `tail`
 * after, so the producer never overwrites a slot still being read. Each side keeps a private
 * cached copy of the other side's index and only reloads it (an acquire, a shared cache line)
 * when the cache says full/empty.
 *
 * Producer-side, consumer-side and read-only fields are 128 bytes apart, so they never share a
 * cache line (nor an adjacent-line prefetch pair) whatever the alignment of the struct: it may be
 * embedded anywhere (a Cython object, a malloc'd block) without _Alignas promises.
 *
 * Header-only (static inline), C11 <stdatomic.h>. The struct is fully defined here so Cython can
 * embed it by value.
 */
#ifndef CHAIR_SPSC_H
#define CHAIR_SPSC_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SPSC_SPACING 128 /* bytes between the producer, consumer and shared groups */

typedef struct spsc_ring {
    /* written by the producer only */
    _Atomic uint32_t head;     /* next index to write */
    uint32_t tail_cache;       /* producer's last view of tail */
    _Atomic uint64_t dropped;  /* pushes refused because the ring was full */
    char pad_producer_[SPSC_SPACING - 2 * sizeof(uint32_t) - sizeof(uint64_t)];
    /* written by the consumer only */
    _Atomic uint32_t tail;     /* next index to read */
    uint32_t head_cache;       /* consumer's last view of head */
    char pad_consumer_[SPSC_SPACING - 2 * sizeof(uint32_t)];
    /* read-only after spsc_init */
    uint32_t capacity;         /* power of two */
    uint32_t mask;             /* capacity - 1 */
    uint32_t elem_size;        /* bytes per element */
    uint32_t reserved_;
    unsigned char *buf;        /* capacity * elem_size bytes */
} spsc_ring;

/* Allocate the slots (the only allocation) and touch them so the real-time side never page-faults
 * on first use. capacity_pow2: 2..2^30, a power of two; elem_size: 1..65536. 0 ok, -1 bad args or
 * out of memory (the ring is then left empty and safe to spsc_free). */
static inline int spsc_init(spsc_ring *r, uint32_t capacity_pow2, uint32_t elem_size)
{
    memset(r, 0, sizeof(*r));
    if (capacity_pow2 < 2 || capacity_pow2 > (1u << 30) || (capacity_pow2 & (capacity_pow2 - 1u)) ||
        elem_size == 0 || elem_size > 65536u)
        return -1;
    size_t bytes = (size_t)capacity_pow2 * elem_size;
    unsigned char *buf = (unsigned char *)malloc(bytes);
    if (buf == NULL)
        return -1;
    memset(buf, 0, bytes); /* prefault */
    r->capacity = capacity_pow2;
    r->mask = capacity_pow2 - 1u;
    r->elem_size = elem_size;
    r->buf = buf;
    atomic_init(&r->head, 0u);
    atomic_init(&r->tail, 0u);
    atomic_init(&r->dropped, 0u);
    return 0;
}

/* Release the slots. Only when neither side uses the ring any more. */
static inline void spsc_free(spsc_ring *r)
{
    free(r->buf);
    r->buf = NULL;
    r->capacity = r->mask = r->elem_size = 0;
}

/* Producer: copy one element in. 0 ok; -1 full (the element is dropped and counted). Never blocks. */
static inline int spsc_push(spsc_ring *r, const void *elem)
{
    uint32_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (h - r->tail_cache >= r->capacity) {
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (h - r->tail_cache >= r->capacity) {
            atomic_fetch_add_explicit(&r->dropped, 1u, memory_order_relaxed);
            return -1;
        }
    }
    memcpy(r->buf + (size_t)(h & r->mask) * r->elem_size, elem, r->elem_size);
    atomic_store_explicit(&r->head, h + 1u, memory_order_release);
    return 0;
}

/* Consumer: copy the oldest element out. 0 ok; -1 empty (out untouched). Never blocks. */
static inline int spsc_pop(spsc_ring *r, void *out)
{
    uint32_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (t == r->head_cache) {
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        if (t == r->head_cache)
            return -1;
    }
    memcpy(out, r->buf + (size_t)(t & r->mask) * r->elem_size, r->elem_size);
    atomic_store_explicit(&r->tail, t + 1u, memory_order_release);
    return 0;
}

/* Elements queued. From the consumer: at least this many can be popped. From the producer: at
 * most this many are still waiting. From any other thread: a snapshot within [0, capacity]. */
static inline uint32_t spsc_count(const spsc_ring *r)
{
    uint32_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint32_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    uint32_t n = h - t;
    return n > r->capacity ? r->capacity : n;
}

/* Pushes refused since spsc_init (any thread may read it). */
static inline uint64_t spsc_dropped(const spsc_ring *r)
{
    return atomic_load_explicit(&r->dropped, memory_order_relaxed);
}

#endif
