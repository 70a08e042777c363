# cython: language_level=3
"""The tick side of a board link: `LinkHardware`, the core's hardware seam for a real board.

The core calls `exchange` once per tick from its real-time thread, without the GIL. A link can't
do I/O there, so `exchange` only touches two lock-free triple buffers (mailbox.pxd):

- it publishes the tick's setpoint (with the CLOCK_MONOTONIC time it did so), and
- it returns the latest status the link's I/O thread has published, with ``link_ok = 1`` only
  when that status is *fresh*: it echoes a SETPOINT the link sent less than `stale_ns` ago.
  Measuring from the echoed setpoint's send time (not from the status's arrival) makes both
  directions count: a board that keeps talking but no longer hears us goes stale too.

When the status is stale, ``link_ok = 0`` (and the ``LINK_LOST`` bit is added to
``board_faults``); the core raises ``link_lost`` after ``config.faults.link_lost_ms`` more. So the
time from the last good round trip to the fault is ``stale_ns + link_lost_ms`` plus a tick.

The I/O side (`core_rt.board.link`) uses the Python methods: `take_setpoint()` for the latest
setpoint and `put_status(...)` to hand over a decoded STATUS. There is exactly one I/O thread:
each buffer has one writer and one reader.
"""

from libc.math cimport NAN, isfinite
from libc.stdint cimport int32_t, int64_t, uint32_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

from core_rt.chair_core cimport CHAIR_BOARD_LINK_LOST, chair_setpoint, chair_status
from core_rt.hardware cimport Hardware

SETPOINT_FIELDS = (
    "seq", "published_ns", "t_ns", "pos_mm", "vel_mm_s", "knead_rpm", "tap_hz", "heater_duty",
    "enable",
)
"""Order of the tuple `take_setpoint` returns."""

STATUS_FIELDS = (
    "pos_mm", "knead_rpm", "tap_hz", "current_a", "thermistor_c", "supply_v", "limit_low",
    "limit_high", "arm_contact", "seat_occupied", "board_faults",
)
"""Fields `put_status` takes (a mapping with these keys, or a tuple in this order)."""

DEFAULT_STALE_NS = 30_000_000
"""30 ms: with the core's link_lost_ms = 50 the fault comes about 80 ms after the last good
round trip, inside link_lost's 100 ms deadline (docs/core.md, The guard), while a single late
frame (2 ms period) is harmless."""


cdef class LinkHardware(Hardware):
    """The core's hardware seam for a board link (see the module docstring).

    ``LinkHardware(stale_ns=DEFAULT_STALE_NS)``. Subclass it in Python to add the I/O side
    (`core_rt.board.link.BoardLink` does)."""

    def __cinit__(self, *args, **kwargs):
        self.io = bio_new()
        if self.io == NULL:
            raise MemoryError("board link state")
        self.io.spbox = &self.spbox
        self.io.stbox = &self.stbox
        link_sp_box_init(&self.spbox)
        link_st_box_init(&self.stbox)
        memset(&self.cur, 0, sizeof(link_st_slot))
        memset(&self.n, 0, sizeof(link_counters))
        self.was_fresh = 0
        self.stale_ns = DEFAULT_STALE_NS

    def __dealloc__(self):
        if self.io != NULL:
            bio_free(self.io)
            self.io = NULL

    def __init__(self, *, stale_ns=DEFAULT_STALE_NS):
        cdef int64_t s = int(stale_ns)
        if not 1_000_000 <= s <= 1_000_000_000:
            raise ValueError(f"stale_ns must be 1 ms .. 1 s, got {stale_ns!r}")
        self.stale_ns = s

    # ---- the tick (real-time thread, no GIL, never blocks) -----------------------------------

    cdef int exchange(self, const chair_setpoint* sp, chair_status* st) noexcept nogil:
        cdef int64_t now = link_now_ns()
        cdef link_sp_slot out
        cdef int fresh
        out.sp = sp[0]
        out.published_ns = now
        link_sp_box_write(&self.spbox, &out)
        if link_st_box_read(&self.stbox):
            self.cur = link_st_box_front(&self.stbox)[0]
            link_count(&self.n.statuses_taken)
        st[0] = self.cur.st
        st.t_ns = sp.t_ns + self.period_ns
        link_count(&self.n.exchanges)
        fresh = self.cur.confirmed_ns > 0 and now - self.cur.confirmed_ns <= self.stale_ns
        if fresh:
            st.link_ok = 1
            st.link_stale_ns = 0
            if not self.was_fresh:
                self.was_fresh = 1
                link_count(&self.n.recoveries)
            return 0
        st.link_ok = 0
        # on this clock, not the tick's: a tick that runs late must not count its own lateness
        # as silence on the link (docs/core.md, link_lost)
        st.link_stale_ns = (now - self.cur.confirmed_ns - self.stale_ns
                            if self.cur.confirmed_ns > 0 else -1)
        st.board_faults |= CHAIR_BOARD_LINK_LOST
        link_count(&self.n.stale)
        if self.was_fresh:
            self.was_fresh = 0
            link_count(&self.n.stale_episodes)
        return 1

    # ---- the I/O thread (Python, one thread) ---------------------------------------------------

    def take_setpoint(self):
        """The latest setpoint the tick published, as a tuple in `SETPOINT_FIELDS` order, or None
        before the first tick. Call it from the I/O thread only."""
        link_sp_box_read(&self.spbox)
        cdef const link_sp_slot* s = link_sp_box_front(&self.spbox)
        if s.published_ns == 0:
            return None
        cdef const chair_setpoint* p = &s.sp
        return (
            <uint32_t>p.seq, s.published_ns, p.t_ns,
            (p.pos_mm[0], p.pos_mm[1], p.pos_mm[2]),
            (p.vel_mm_s[0], p.vel_mm_s[1], p.vel_mm_s[2]),
            p.knead_rpm, p.tap_hz, p.heater_duty, p.enable != 0,
        )

    def put_status(self, status, int64_t confirmed_ns, int64_t received_ns=0):
        """Hand a decoded status to the tick. `status` is a mapping with `STATUS_FIELDS` keys or
        a tuple in that order; `confirmed_ns` is the CLOCK_MONOTONIC send time of the setpoint
        this status echoes (the tick measures freshness from it), `received_ns` its arrival
        (0 = now). Call it from the I/O thread only."""
        if hasattr(status, "keys"):
            vals = tuple(status[k] for k in STATUS_FIELDS)
        else:
            vals = tuple(status)
            if len(vals) != len(STATUS_FIELDS):
                raise ValueError(f"a status tuple has {len(STATUS_FIELDS)} fields")
        pos, knead, tap, cur, therm, supply, lo, hi, arm, seat, faults = vals
        if len(pos) != 3 or len(cur) != 5:
            raise ValueError("pos_mm needs 3 values and current_a 5")
        if confirmed_ns <= 0:
            raise ValueError("confirmed_ns must be a CLOCK_MONOTONIC time (> 0)")
        cdef link_st_slot s
        cdef int i
        memset(&s, 0, sizeof(s))
        for i in range(3):
            s.st.pos_mm[i] = pos[i]
        for i in range(5):
            s.st.current_a[i] = cur[i]
        s.st.knead_rpm = knead
        s.st.tap_hz = tap
        s.st.thermistor_c = therm
        s.st.supply_v = supply
        s.st.limit_low = 1 if lo else 0
        s.st.limit_high = 1 if hi else 0
        s.st.arm_contact = 1 if arm else 0
        s.st.seat_occupied = 1 if seat else 0
        s.st.board_faults = <uint32_t>(int(faults) & 0xFFFFFFFF)
        s.st.link_ok = 1
        s.st.link_stale_ns = 0
        # the depth drive's load, when the mapping carries it (a board that measures it)
        s.st.depth_load_a = (float(status["depth_load_a"])
                             if hasattr(status, "keys") and "depth_load_a" in status else NAN)
        s.confirmed_ns = confirmed_ns
        s.received_ns = received_ns if received_ns > 0 else link_now_ns()
        link_st_box_write(&self.stbox, &s)

    def link_counters(self):
        """What the tick saw: exchanges, stale exchanges, stale episodes (fresh → stale),
        recoveries (stale → fresh, including the first fresh status), statuses taken."""
        return {
            "exchanges": link_stat(&self.n.exchanges),
            "stale_exchanges": link_stat(&self.n.stale),
            "stale_episodes": link_stat(&self.n.stale_episodes),
            "recoveries": link_stat(&self.n.recoveries),
            "statuses_taken": link_stat(&self.n.statuses_taken),
        }


    # ---- the I/O thread's connection, in C without the GIL (board_io.h) ------------------------

    def _io_configure(self, *, int64_t period_ns, int64_t hello_retry_ns, int64_t max_age_ns,
                      int64_t force_off_ns, int64_t goodbye_ns, double engage_tol_mm,
                      double engage_max_speed_mm_s, double engage_max_rpm,
                      double engage_max_hz):
        """Timings and the engage rule of the connection loop (set once, before `_io_run`)."""
        cdef bio_link* io = self.io
        io.period_ns = period_ns
        io.hello_retry_ns = hello_retry_ns
        io.max_age_ns = max_age_ns
        io.force_off_ns = force_off_ns
        io.goodbye_ns = goodbye_ns
        io.engage_tol_mm = engage_tol_mm
        io.engage_max_speed_mm_s = engage_max_speed_mm_s
        io.engage_max_rpm = engage_max_rpm
        io.engage_max_hz = engage_max_hz

    def _io_run(self, int fd, bint is_socket, uint32_t nonce, uint16_t tx_seq):
        """One connection on the open, non-blocking `fd`, without the GIL, until it ends
        (returns a `BIO_END_*` code; `io_outcome()` says more). Call it from one thread."""
        cdef bio_link* io = self.io
        cdef int rc
        io.is_socket = 1 if is_socket else 0
        io.nonce = nonce
        io.tx_seq = tx_seq
        with nogil:
            rc = bio_run(io, fd)
        return rc

    def _io_stop(self, bint stop=True):
        """Ask the connection loop to say goodbye and return (or clear that request)."""
        self.io.stop = 1 if stop else 0

    def io_outcome(self):
        """The connection's state: acked, ready, engaged, connected, the board's HELLO_ACK, why a
        board was refused, the last errno."""
        cdef bio_link* io = self.io
        return {
            "acked": io.acked != 0,
            "ready": io.ready != 0,
            "engaged": io.engaged != 0,
            "connected": io.connected != 0,
            "refused": io.refused.decode("utf-8", "replace") or None,
            "last_errno": io.last_errno,
            "last_confirmed_ns": bio_load(&io.last_confirmed_ns),
            "board": None if not (io.acked or io.refused[0]) else {
                "version": io.board.version,
                "watchdog_ms": io.board.watchdog_ms,
                "status_period_us": io.board.status_period_us,
                "flags": io.board.flags,
                "board_id": io.board.board_id.decode("ascii", "replace"),
            },
        }

    def io_counters(self):
        """The connection loop's counters (summed over connections), its receive drops by
        reason (`rx`, named as `core_rt.board.protocol.COUNTERS`) and the largest gaps."""
        cdef bio_counters* n = &self.io.n
        cdef bw_rx_counters* r = &self.io.rx
        out = {
            "frames_out": bio_load(&n.frames_out),
            "setpoints_out": bio_load(&n.setpoints_out),
            "priming_out": bio_load(&n.priming_out),
            "hellos_out": bio_load(&n.hellos_out),
            "bytes_out": bio_load(&n.bytes_out),
            "tx_dropped_bytes": bio_load(&n.tx_dropped_bytes),
            "frames_in": bio_load(&n.frames_in),
            "statuses_in": bio_load(&n.statuses_in),
            "hello_acks_in": bio_load(&n.hello_acks_in),
            "bytes_in": bio_load(&n.bytes_in),
            "unmatched_echo": bio_load(&n.unmatched_echo),
            "stale_core_setpoints": bio_load(&n.stale_core_setpoints),
            "late_sends": bio_load(&n.late_sends),
            "engages": bio_load(&n.engages),
            "disengages": bio_load(&n.disengages),
            "board_watchdog_seen": bio_load(&n.board_watchdog_seen),
            "forced_off": bio_load(&n.forced_off),
            "forced_off_setpoints": bio_load(&n.forced_off_setpoints),
            "goodbyes": bio_load(&n.goodbyes),
            "goodbyes_echoed": bio_load(&n.goodbyes_echoed),
            "refusals": bio_load(&n.refusals),
            "max_setpoint_gap_ms": bio_load(&n.max_setpoint_gap_ns) / 1e6,
            "max_status_gap_ms": bio_load(&n.max_status_gap_ns) / 1e6,
            "max_wake_late_ms": bio_load(&n.max_wake_late_ns) / 1e6,
            "max_wake_late_at_ns": bio_load(&n.max_wake_late_at_ns),
            "max_wake_late_vcsw": bio_load(&n.max_wake_late_vcsw),
            "max_wake_late_ivcsw": bio_load(&n.max_wake_late_ivcsw),
            "max_turn_ms": bio_load(&n.max_turn_ns) / 1e6,
        }
        # the decoder's totals of finished connections (the running one's are added at its end)
        out["rx"] = _rx_counters(r)
        return out

    def io_rx_live(self):
        """The running connection's decoder counters (read while it runs: statistics only)."""
        return _rx_counters(&self.io.dec.c)

    def io_rtt_ns(self):
        """Round trips kept (the last BIO_RTT_KEEP), oldest first, ns."""
        cdef bio_link* io = self.io
        cdef int64_t count = bio_load(&io.rtt_count)
        cdef int64_t* r = &io.rtt_ns[0]
        cdef int64_t keep = BIO_RTT_KEEP
        cdef int64_t first = count - keep if count > keep else 0
        return [r[i % keep] for i in range(first, count)]

    def io_gap_histograms(self):
        """(bin width µs, SETPOINT gap histogram, STATUS gap histogram): counts per bin, the last
        bin is the overflow (see core_rt.rtloop.hist_percentile)."""
        cdef int64_t* a = &self.io.sp_gap_hist[0]
        cdef int64_t* b = &self.io.st_gap_hist[0]
        return (BIO_GAP_BIN_NS / 1000.0, [bio_load(&a[i]) for i in range(BIO_GAP_NBINS)],
                [bio_load(&b[i]) for i in range(BIO_GAP_NBINS)])


cdef dict _rx_counters(bw_rx_counters* r):
    """A decoder's drop counters (relaxed loads: another thread may be counting), named as
    `core_rt.board.protocol.COUNTERS` (without the reference's own ``bad_input``)."""
    return {
        "bytes": bio_load(&r.bytes), "frames": bio_load(&r.frames),
        "garbage_bytes": bio_load(&r.garbage_bytes), "resyncs": bio_load(&r.resyncs),
        "bad_length": bio_load(&r.bad_length), "bad_crc": bio_load(&r.bad_crc),
        "unknown_type": bio_load(&r.unknown_type),
        "unexpected_type": bio_load(&r.unexpected_type),
        "duplicate": bio_load(&r.duplicate), "out_of_order": bio_load(&r.out_of_order),
        "seq_gaps": bio_load(&r.seq_gaps),
    }


# ---- the C wire (board_wire.h), for the tests that hold it to the Python reference ------------

def wire_crc16(bytes data):
    """CRC-16/CCITT-FALSE of `data`, computed by board_wire.h."""
    return bw_crc16(<const unsigned char*>data, len(data), 0xFFFF)


def wire_setpoint_frame(int tx_seq, setpoint):
    """The SETPOINT frame board_wire.h builds for `setpoint` (a mapping: seq, pos_mm, vel_mm_s,
    knead_rpm, tap_hz, heater_duty, enable, flags) with link SEQ `tx_seq`."""
    cdef bw_setpoint sp
    cdef unsigned char payload[64]
    cdef unsigned char out[80]
    memset(&sp, 0, sizeof(sp))
    sp.seq = <uint32_t>(int(setpoint.get("seq", 1)) & 0xFFFFFFFF)
    for i, v in enumerate(setpoint.get("pos_mm", (0.0, 0.0, 0.0))):
        sp.pos_mm[i] = v
    for i, v in enumerate(setpoint.get("vel_mm_s", (0.0, 0.0, 0.0))):
        sp.vel_mm_s[i] = v
    sp.knead_rpm = setpoint.get("knead_rpm", 0.0)
    sp.tap_hz = setpoint.get("tap_hz", 0.0)
    sp.heater_duty = setpoint.get("heater_duty", 0.0)
    sp.enable = 1 if setpoint.get("enable", False) else 0
    sp.flags = int(setpoint.get("flags", 0)) & 0xFF
    bw_pack_setpoint(payload, &sp)
    cdef int n = bw_frame(out, <uint16_t>(tx_seq & 0xFFFF), 0x10, payload, 40)
    return bytes(out[:n])


def wire_hello_frame(int tx_seq, int version, int period_us, uint32_t nonce):
    """The HELLO frame board_wire.h builds."""
    cdef unsigned char payload[64]
    cdef unsigned char out[80]
    bw_pack_hello(payload, <uint16_t>version, <uint16_t>period_us, nonce)
    cdef int n = bw_frame(out, <uint16_t>(tx_seq & 0xFFFF), 0x01, payload, 8)
    return bytes(out[:n])


def wire_status(bytes payload):
    """A STATUS payload (48 bytes) as board_wire.h unpacks it, fields named as the reference's
    `core_rt.board.protocol.Status` (NaN where a field carries its sentinel)."""
    if len(payload) != 48:
        raise ValueError(f"a STATUS payload is 48 bytes, not {len(payload)}")
    cdef bw_status s
    bw_unpack_status(<const unsigned char*>payload, &s)
    return {
        "echo_seq": s.echo_seq, "board_time_us": s.board_time_us,
        "pos_mm": tuple(s.pos_mm[i] for i in range(3)),
        "knead_rpm": s.knead_rpm, "tap_hz": s.tap_hz,
        "current_a": tuple(s.current_a[i] for i in range(5)),
        "thermistor_c": s.thermistor_c, "supply_v": s.supply_v,
        "switches": s.switches, "outputs": s.outputs, "board_faults": s.board_faults,
        "depth_load_a": s.depth_load_a,
    }


def wire_decode(chunks, bint board_to_controller=True):
    """Feed `chunks` (bytes) to board_wire.h's decoder; returns ``(frames, counters)``, frames
    as ``(type, seq, payload)``, counters named as the reference decoder's."""
    cdef bw_decoder* d = <bw_decoder*>calloc(1, sizeof(bw_decoder))
    if d == NULL:
        raise MemoryError()
    cdef bw_frame_view f
    cdef int off, took
    cdef bytes chunk
    frames = []
    try:
        bw_decoder_init(d, (1 << 1) | (1 << 3) if board_to_controller else (1 << 0) | (1 << 2))
        for chunk in chunks:
            off = 0
            while True:
                took = bw_feed(d, <const unsigned char*>chunk + off, len(chunk) - off)
                off += took
                while bw_next(d, &f):
                    frames.append((f.type, f.seq, bytes(f.payload[:f.len])))
                if off >= len(chunk):
                    break
        return frames, _rx_counters(&d.c)
    finally:
        free(d)


def now_ns():
    """CLOCK_MONOTONIC in ns, the clock of every link timestamp (same as time.monotonic_ns)."""
    return link_now_ns()


def exchange_once(LinkHardware hw, setpoint=None):
    """Run one `exchange` from Python, as the tick would (tests and tools without a core).
    Returns ``(rc, status dict)``; `setpoint` is a mapping of `chair_setpoint` fields."""
    cdef chair_setpoint sp
    cdef chair_status st
    cdef int rc
    memset(&sp, 0, sizeof(sp))
    sp.enable = 1
    f = dict(setpoint or {})
    sp.t_ns = int(f.get("t_ns", 0))
    sp.seq = <int32_t>(int(f.get("seq", 0)) & 0x7FFFFFFF)
    for i, v in enumerate(f.get("pos_mm", (0.0, 0.0, 0.0))):
        sp.pos_mm[i] = v
    for i, v in enumerate(f.get("vel_mm_s", (0.0, 0.0, 0.0))):
        sp.vel_mm_s[i] = v
    sp.knead_rpm = f.get("knead_rpm", 0.0)
    sp.tap_hz = f.get("tap_hz", 0.0)
    sp.heater_duty = f.get("heater_duty", 0.0)
    sp.enable = 1 if f.get("enable", True) else 0
    with nogil:
        rc = hw.exchange(&sp, &st)
    return rc, {
        "pos_mm": (st.pos_mm[0], st.pos_mm[1], st.pos_mm[2]),
        "knead_rpm": st.knead_rpm, "tap_hz": st.tap_hz,
        "current_a": tuple(st.current_a[i] for i in range(5)),
        "thermistor_c": st.thermistor_c, "supply_v": st.supply_v,
        "limit_low": st.limit_low, "limit_high": st.limit_high,
        "arm_contact": st.arm_contact, "seat_occupied": st.seat_occupied,
        "board_faults": st.board_faults, "link_ok": st.link_ok,
        "link_stale_ns": st.link_stale_ns, "t_ns": st.t_ns,
    }
