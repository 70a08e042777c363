"""The board conformance kit (`chair board-check`): does a board keep docs/board-protocol.md?

It plays the controller against any board, ours (`chair board`) or a chair maker's, over TCP or a
serial line: says HELLO, then runs named checks, each PASS, FAIL or SKIP with a one-line reason
and what it measured. It is written only against the document, with the reference codec
(`core_rt.board.protocol`) and the raw ports (`core_rt.board.transport`): it never imports the
emulator, so it judges ours exactly as it judges anyone's.

The kit energises the drives only to hold them where the encoders are (no velocity, kneading,
tapping or heat) and sends every extreme or refused value with enable 0. Run it on an empty chair.

    from chair.board_check import run
    report = run("tcp:127.0.0.1:5555", ChairConfig(), only=["watchdog-trip"])
    report.passed, report.results[0].verdict, report.results[0].reason

Each check starts from a fresh HELLO and brings the board to READY itself (`Kit.ready`), so any
subset runs alone (``--only``) and a failing check does not spoil the next.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core_rt.board.protocol import (
    ACK_FLAG_DEPTH_LOAD,
    BOARD_TO_CONTROLLER,
    ECHO_NONE,
    FAULT_LINK_LOST,
    FAULT_OVERCURRENT,
    FAULT_OVERTEMP,
    FAULT_WATCHDOG,
    HELLO_RETRY_MS,
    OUT_DRIVES_ON,
    OUT_HEATER_ON,
    PROTOCOL_VERSION,
    SEQ_MOD,
    SETPOINT_SEQ_MAX,
    SP_FLAG_PRIMING,
    STATUS_PERIOD_MAX_US,
    TYPE_HELLO,
    TYPE_SETPOINT,
    TYPE_STATUS,
    WATCHDOG_MAX_MS,
    FrameDecoder,
    Hello,
    HelloAck,
    Setpoint,
    Status,
    encode_frame,
    next_setpoint_seq,
)
from core_rt.board.transport import Port, open_port, parse_spec
from core_rt.config import ChairConfig

MS = 1_000_000
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"

SETPOINT_PERIOD_NS = 2 * MS
"""The kit sends SETPOINTs as the controller does: every 2 ms (500 Hz)."""
ECHO_TIMEOUT_NS = 30 * MS
"""A valid SETPOINT must come back in a STATUS's echo within this."""
QUIET_NS = 10 * MS
"""A refused SETPOINT (or a damaged frame) must stay unechoed for this long."""
ALLOWANCE_MS = 5.0
"""Added to a deadline seen through STATUSes: the wire and the kit's own scheduling."""
ECHO_P99_MAX_MS = 10.0
"""SETPOINT → echoing STATUS, 99th percentile, at most (docs/board-protocol.md, Conformance kit)."""
STATUS_RATE_MIN_HZ = 1e6 / STATUS_PERIOD_MAX_US
OUTPUTS_ON = OUT_DRIVES_ON | OUT_HEATER_ON
I32_MAX = 0x7FFFFFFF
I32_MIN = -0x7FFFFFFF
I32_SENTINEL = -0x80000000
DUTY_FULL = 0xFFFE
DUTY_SENTINEL = 0xFFFF
SETPOINT_FIELDS = (
    "carriage position",
    "width position",
    "depth position",
    "carriage velocity",
    "width velocity",
    "depth velocity",
    "kneading rate",
    "tapping rate",
)
"""The SETPOINT's i32 fields, in wire order (then the heater duty, u16)."""


class Failed(Exception):
    """A rule the board broke: the check's one-line reason."""


class Skipped(Exception):
    """The check cannot run on this link (the reason)."""


@dataclass(frozen=True, slots=True)
class Seen:
    """One STATUS as the kit received it: when (CLOCK_MONOTONIC ns) and its place in the stream."""

    t_ns: int
    index: int
    st: Status


@dataclass
class Result:
    name: str
    verdict: str
    reason: str
    measured: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "reason": self.reason,
            "measured": self.measured,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Report:
    board: str
    board_id: str | None
    results: list[Result]

    @property
    def passed(self) -> bool:
        """No check failed (a SKIP is no failure: e.g. the disconnect check on a serial line)."""
        return all(r.verdict != FAIL for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "board": self.board,
            "board_id": self.board_id,
            "protocol_version": PROTOCOL_VERSION,
            "passed": self.passed,
            "checks": [r.as_dict() for r in self.results],
        }


def _mono() -> int:
    return time.monotonic_ns()


def _pct(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def _um(x: float) -> int:
    return max(I32_MIN, min(I32_MAX, round(x * 1000.0)))


class Kit:
    """The kit's end of the link: the controller's half of the protocol, with every field raw so
    that a check can send what a controller never would."""

    def __init__(self, spec: str, config: ChairConfig) -> None:
        self.spec = spec
        self.kind = parse_spec(spec)[0]  # ValueError for a bad spec
        self.config = config
        self.port: Port | None = None
        self.decoder = FrameDecoder(expect=BOARD_TO_CONTROLLER)
        self.rng = random.Random(os.getpid() ^ _mono())
        self.tx_seq = self.rng.randrange(SEQ_MOD)
        self.last_tx_seq = self.tx_seq
        self.sp_seq = 0
        self.sent_ns: dict[int, int] = {}
        self.seen: list[Seen] = []
        self.acks: list[tuple[int, int, HelloAck]] = []  # (t_ns, index into seen, ack)
        self.ack: HelloAck | None = None
        self.last: Status | None = None
        self.good = ECHO_NONE  # the last SETPOINT the board echoed
        self.hold: tuple[int, int, int] | None = None  # encoders in µm, to hold still at
        self.m: dict[str, Any] = {}

    # ---- the wire ----------------------------------------------------------------------------

    def connect(self) -> None:
        self.close()
        self.port = open_port(self.spec)
        self.decoder = FrameDecoder(expect=BOARD_TO_CONTROLLER)

    def close(self) -> None:
        if self.port is not None:
            self.port.close()
            self.port = None

    def write(self, frame: bytes) -> int:
        """Send raw bytes; the CLOCK_MONOTONIC time they left."""
        if self.port is None:
            self.connect()
        assert self.port is not None
        if self.port.write(frame):
            raise Failed("the board does not read: the kit's bytes could not be sent")
        return _mono()

    def send(self, ftype: int, payload: bytes, *, seq: int | None = None) -> int:
        """One frame; SEQ +1 per frame unless `seq` is given (a check's deliberate SEQ)."""
        if seq is None:
            seq = self.tx_seq
            self.last_tx_seq = seq
            self.tx_seq = (seq + 1) % SEQ_MOD
        return self.write(encode_frame(ftype, seq, payload))

    def read(self, timeout_s: float) -> None:
        assert self.port is not None
        data = self.port.read(max(0.0, timeout_s))
        if data is None:
            self.close()
            raise Failed("the board closed the link")
        if not data:
            return
        now = _mono()
        for f in self.decoder.feed(data):
            if isinstance(f.msg, Status):
                self.seen.append(Seen(now, len(self.seen), f.msg))
                self.last = f.msg
            elif isinstance(f.msg, HelloAck):
                self.acks.append((now, len(self.seen), f.msg))

    def watch(
        self,
        duration_ns: int,
        until: Callable[[Seen], Any] | None = None,
        feed: Callable[[], object] | None = None,
        period_ns: int = SETPOINT_PERIOD_NS,
    ) -> Seen | None:
        """Read for up to `duration_ns`, calling `feed` every `period_ns` (when given); the first
        STATUS arriving meanwhile for which `until` is true, or None."""
        if self.port is None:
            self.connect()
        start = _mono()
        end = start + duration_ns
        i = len(self.seen)
        next_send = start
        while True:
            now = _mono()
            if feed is not None and now >= next_send:
                feed()
                next_send += period_ns
                if next_send < now:  # the kit fell behind: no burst to catch up
                    next_send = now + period_ns
            if until is not None:
                while i < len(self.seen):
                    s = self.seen[i]
                    i += 1
                    if until(s):
                        return s
            now = _mono()
            if now >= end:
                return None
            wake = end if feed is None else min(end, next_send)
            self.read((wake - now) / 1e9)

    # ---- the controller's half ---------------------------------------------------------------

    def hello(
        self, version: int = PROTOCOL_VERSION, *, tries: int = 3
    ) -> tuple[HelloAck, float, int]:
        """Say HELLO until a HELLO_ACK with our nonce comes (each try waits 100 ms): the ack,
        its delay in ms, and the index in `seen` of the first STATUS after it."""
        for _ in range(tries):
            nonce = self.rng.getrandbits(32)
            j = len(self.acks)
            t0 = self.send(TYPE_HELLO, Hello(version, SETPOINT_PERIOD_NS // 1000, nonce).pack())
            end = t0 + HELLO_RETRY_MS * MS
            while True:
                for t, idx, ack in self.acks[j:]:
                    if ack.nonce == nonce:
                        self.ack = ack
                        self.sp_seq = 0  # the link's SETPOINT counter restarts
                        self.sent_ns.clear()
                        self.good = ECHO_NONE
                        return ack, (t - t0) / MS, idx
                j = len(self.acks)
                now = _mono()
                if now >= end:
                    break
                self.read((end - now) / 1e9)
        raise Failed(f"no HELLO_ACK with our nonce ({tries} HELLOs, {HELLO_RETRY_MS} ms apart)")

    def hold_ints(self) -> list[int]:
        h = self.hold or (0, 0, 0)
        return [*h, 0, 0, 0, 0, 0]

    def sp(
        self,
        enable: int = 0,
        *,
        ints: Sequence[int] | None = None,
        duty: int = 0,
        flags: int = 0,
        seq: int | None = None,
        frame_seq: int | None = None,
    ) -> int:
        """Send one SETPOINT with raw wire values (holding still unless `ints` says otherwise);
        its seq (the next of the link's counter unless given)."""
        if seq is None:
            self.sp_seq = next_setpoint_seq(self.sp_seq)
            seq = self.sp_seq
        t = self.send(TYPE_SETPOINT, self.sp_payload(enable, ints, duty, flags, seq), seq=frame_seq)
        self.sent_ns.setdefault(seq, t)
        return seq

    def sp_payload(
        self, enable: int, ints: Sequence[int] | None, duty: int, flags: int, seq: int
    ) -> bytes:
        values = self.hold_ints() if ints is None else list(ints)
        return Setpoint.FORMAT.pack(seq & 0xFFFFFFFF, *values, duty, enable, flags)

    def echo_of(self, seq: int, timeout_ns: int = ECHO_TIMEOUT_NS) -> Seen | None:
        """The first STATUS (from now, within `timeout_ns`) echoing `seq`."""
        return self.watch(timeout_ns, until=lambda s: s.st.echo_seq == seq)

    def echo_other_than(self, seq: int, timeout_ns: int = QUIET_NS) -> Seen | None:
        """The first STATUS (from now, within `timeout_ns`) echoing something else than `seq`."""
        return self.watch(timeout_ns, until=lambda s: s.st.echo_seq != seq)

    def next_seq(self) -> int:
        self.sp_seq = next_setpoint_seq(self.sp_seq)
        return self.sp_seq

    def ready(self) -> None:
        """HELLO, then enable-0 SETPOINTs until the board is READY: the last one echoed, outputs
        off, no WATCHDOG bit (a trip left by an earlier check is acknowledged). Takes the
        encoders as the place to hold still."""
        self.hello()
        s = self.watch(
            100 * MS,
            until=lambda s: (
                1 <= s.st.echo_seq <= self.sp_seq
                and not s.st.outputs & OUTPUTS_ON
                and not s.st.board_faults & FAULT_WATCHDOG
            ),
            feed=lambda: self.sp(0),
        )
        if s is None:
            raise Failed(f"the board does not reach READY on enable-0 SETPOINTs ({self.now()})")
        seq = self.sp(0)
        if self.echo_of(seq) is None:
            raise Failed(f"an enable-0 SETPOINT in READY was not echoed ({self.now()})")
        self.good = seq
        p = s.st.pos_mm
        self.hold = (
            None if not all(math.isfinite(x) for x in p) else (_um(p[0]), _um(p[1]), _um(p[2]))
        )

    def energise(self) -> float:
        """From READY: enable-1 SETPOINTs holding still until the drives are on; the ms it took."""
        if self.hold is None:
            raise Failed("cannot hold still: an encoder reads the missing-value sentinel")
        t0 = _mono()
        s = self.watch(
            100 * MS, until=lambda s: s.st.outputs & OUT_DRIVES_ON, feed=lambda: self.sp(1)
        )
        if s is None:
            raise Failed(f"enable 1 in READY did not energise within 100 ms ({self.now()})")
        return (s.t_ns - t0) / MS

    def stop(self) -> None:
        """Enable-0 SETPOINTs until one is echoed with the outputs off (the goodbye)."""
        seqs: list[int] = []
        self.watch(
            50 * MS,
            until=lambda s: s.st.echo_seq in seqs and not s.st.outputs & OUTPUTS_ON,
            feed=lambda: seqs.append(self.sp(0)),
        )

    def tripped(self, s: Seen) -> bool:
        return not s.st.outputs & OUTPUTS_ON and bool(s.st.board_faults & FAULT_WATCHDOG)

    def now(self) -> str:
        """The last STATUS in a few words (for a reason)."""
        st = self.last
        if st is None:
            return "no STATUS received"
        return (
            f"last STATUS: echo {st.echo_seq}, outputs {st.outputs:#04x}, "
            f"faults {st.board_faults:#06x}"
        )

    def status_ms(self) -> float:
        return (self.ack.status_period_us if self.ack else STATUS_PERIOD_MAX_US) / 1000.0

    def refused(self, what: str, *, enable: int = 0, **kw: Any) -> None:
        """Send one SETPOINT the board must refuse: not applied, not echoed, outputs unchanged;
        then the next valid one must be applied."""
        good = self.good
        seq = self.sp(enable, **kw)
        bad = self.watch(
            QUIET_NS, until=lambda s: s.st.echo_seq != good or s.st.outputs & OUTPUTS_ON
        )
        if bad is not None:
            how = "energised" if bad.st.outputs & OUTPUTS_ON else f"echoed ({bad.st.echo_seq})"
            raise Failed(f"{what}: {how}; it must be refused")
        nxt = self.sp(0)
        s = self.watch(ECHO_TIMEOUT_NS, until=lambda s: s.st.echo_seq in (nxt, seq))
        if s is None or s.st.echo_seq != nxt:
            raise Failed(f"after a refused SETPOINT ({what}) the next valid one was not applied")
        self.good = nxt


# ---- the checks -------------------------------------------------------------------------------


def check_handshake(k: Kit) -> str:
    if k.port is None:
        k.connect()
    nonce = k.rng.getrandbits(32)
    j = len(k.acks)
    t0 = k.send(TYPE_HELLO, Hello(PROTOCOL_VERSION, SETPOINT_PERIOD_NS // 1000, nonce).pack())
    end = t0 + HELLO_RETRY_MS * MS
    while len(k.acks) == j and _mono() < end:
        k.read((end - _mono()) / 1e9)
    if len(k.acks) == j:
        raise Failed(f"no HELLO_ACK within {HELLO_RETRY_MS} ms")
    t, _, ack = k.acks[j]
    ms = (t - t0) / MS
    k.m.update(
        ack_ms=ms,
        version=ack.version,
        watchdog_ms=ack.watchdog_ms,
        status_period_us=ack.status_period_us,
        board_id=ack.board_id,
    )
    problems = []
    if ack.nonce != nonce:
        problems.append(f"nonce {ack.nonce:#010x}, not the HELLO's {nonce:#010x}")
    if ack.version != PROTOCOL_VERSION:
        problems.append(f"version {ack.version} (this kit speaks {PROTOCOL_VERSION})")
    if not 1 <= ack.watchdog_ms <= WATCHDOG_MAX_MS:
        problems.append(f"watchdog {ack.watchdog_ms} ms (1 … {WATCHDOG_MAX_MS})")
    if not 1 <= ack.status_period_us <= STATUS_PERIOD_MAX_US:
        problems.append(f"STATUS period {ack.status_period_us} µs (1 … {STATUS_PERIOD_MAX_US})")
    if ack.flags & ~ACK_FLAG_DEPTH_LOAD:
        problems.append(f"reserved flags {ack.flags & ~ACK_FLAG_DEPTH_LOAD:#06x} set")
    k.m["measures_depth_load"] = ack.measures_depth_load
    bid = ack.board_id
    if not bid or not bid.isascii() or not bid.isprintable():
        problems.append(f"board id {bid!r} is not printable ASCII")
    if problems:
        raise Failed("HELLO_ACK: " + "; ".join(problems))
    _, ms2, _ = k.hello(tries=1)  # a board answers every HELLO, not only the first
    k.m["second_ack_ms"] = ms2
    return (
        f"HELLO_ACK in {ms:.1f} ms: version {ack.version}, watchdog {ack.watchdog_ms} ms, "
        f"STATUS every {ack.status_period_us} µs, board {bid!r}, depth load "
        f"{'measured' if ack.measures_depth_load else 'not measured'}"
    )


def check_echo_after_hello(k: Kit) -> str:
    k.ready()
    before = k.good
    _, _, idx = k.hello()
    k.watch(20 * MS)
    after = [s for s in k.seen[idx:]]
    k.m.update(previous_echo=before, statuses=len(after))
    if not after:
        raise Failed("no STATUS within 20 ms of the HELLO_ACK")
    wrong = [s.st.echo_seq for s in after if s.st.echo_seq != ECHO_NONE]
    if wrong:
        raise Failed(
            f"STATUS after a HELLO echoes {wrong[0]} (the previous SETPOINT was {before}): "
            "it must echo 0 until a SETPOINT is applied"
        )
    return f"echo 0 in all {len(after)} STATUSes after the HELLO_ACK (it was {before})"


def check_status_rate(k: Kit) -> str:
    k.ready()
    drops0 = dict(k.decoder.counters)
    i0 = len(k.seen)
    k.watch(1000 * MS, feed=lambda: k.sp(0))
    win = k.seen[i0:]
    drops = {n: v - drops0[n] for n, v in k.decoder.counters.items()}
    if len(win) < 3:
        raise Failed(f"{len(win)} STATUSes in 1 s")
    span_ns = win[-1].t_ns - win[0].t_ns
    rate = (len(win) - 1) / (span_ns / 1e9)
    board_gaps = [
        ((b.st.board_time_us - a.st.board_time_us) % (1 << 32)) / 1000.0
        for a, b in itertools.pairwise(win)
    ]
    rx_gaps = [(b.t_ns - a.t_ns) / MS for a, b in itertools.pairwise(win)]
    clock = sum(board_gaps) / (span_ns / MS) if span_ns else 0.0
    declared_us = k.ack.status_period_us if k.ack else 0
    k.m.update(
        statuses=len(win),
        rate_hz=rate,
        gap_p50_ms=_pct(board_gaps, 0.5),
        gap_p99_ms=_pct(board_gaps, 0.99),
        gap_max_ms=max(board_gaps),
        rx_gap_p99_ms=_pct(rx_gaps, 0.99),
        declared_period_us=declared_us,
        board_clock_ratio=clock,
        seq_gaps=drops["seq_gaps"],
        bad_frames=drops["bad_crc"] + drops["bad_length"] + drops["unknown_type"],
    )
    problems = []
    if rate < STATUS_RATE_MIN_HZ:
        problems.append(f"{rate:.0f} STATUS/s (at least {STATUS_RATE_MIN_HZ:.0f})")
    if _pct(board_gaps, 0.99) > STATUS_PERIOD_MAX_US / 1000.0:
        problems.append(
            f"gaps p99 {_pct(board_gaps, 0.99):.1f} ms by the board's clock "
            f"(at most {STATUS_PERIOD_MAX_US / 1000:g})"
        )
    mean_us = 1e6 / rate
    if declared_us and mean_us > 1.25 * declared_us + 200:
        problems.append(f"a STATUS every {mean_us:.0f} µs, declared {declared_us} µs")
    if not 0.95 <= clock <= 1.05:
        problems.append(f"the board's clock runs at {clock:.3f}× real time")
    if drops["duplicate"] or drops["out_of_order"]:
        problems.append(
            f"SEQ not +1 per frame: {drops['duplicate']} duplicates, "
            f"{drops['out_of_order']} out of order"
        )
    if problems:
        raise Failed("; ".join(problems))
    return (
        f"{rate:.0f} STATUS/s, gaps p99 {_pct(board_gaps, 0.99):.2f} ms, "
        f"max {max(board_gaps):.2f} ms"
    )


def _setpoint_rate(k: Kit, hz: int) -> str:
    k.ready()
    before = k.good
    first = k.sp_seq + 1
    i0 = len(k.seen)
    t0 = _mono()
    k.watch(500 * MS, feed=lambda: k.sp(0), period_ns=int(1e9 / hz))
    sent_s = (_mono() - t0) / 1e9
    last = k.sp_seq
    if k.watch(50 * MS, until=lambda s: s.st.echo_seq == last) is None:
        raise Failed(f"the last SETPOINT ({last}) was never echoed ({k.now()})")
    seqs = list(range(first, last + 1))
    send_rate = len(seqs) / sent_s
    lags: list[float] = []  # per SETPOINT: until a STATUS echoes it or a later one
    wrong: list[int] = []  # echoes of a seq never sent, or going backwards
    echoed: set[int] = set()
    hi = 0
    j = 0
    for s in k.seen[i0:]:
        e = s.st.echo_seq
        if e == before and hi == 0:
            continue  # the run's first SETPOINT not applied yet
        if not first <= e <= last or e < hi:
            wrong.append(e)
            continue
        hi = e
        echoed.add(e)
        while j < len(seqs) and seqs[j] <= e:
            lags.append((s.t_ns - k.sent_ns[seqs[j]]) / MS)
            j += 1
    k.m.update(
        sent=len(seqs),
        kit_rate_hz=send_rate,
        applied_exactly=len(echoed & set(seqs)),
        echo_p50_ms=_pct(lags, 0.5),
        echo_p99_ms=_pct(lags, 0.99),
        echo_max_ms=max(lags),
    )
    if send_rate < 0.8 * hz:
        raise Skipped(f"the kit itself sent only {send_rate:.0f} SETPOINT/s (machine too busy)")
    if wrong:
        raise Failed(f"STATUS echoed {wrong[0]}: never sent, or going backwards")
    if not lags:
        raise Failed("no SETPOINT of the run was echoed")
    p99 = _pct(lags, 0.99)
    if p99 > ECHO_P99_MAX_MS:
        raise Failed(f"echo p99 {p99:.1f} ms after the SETPOINT (at most {ECHO_P99_MAX_MS:g})")
    p50 = _pct(lags, 0.5)
    return f"{len(seqs)} SETPOINTs at {send_rate:.0f}/s: echo p50 {p50:.2f} ms, p99 {p99:.2f} ms"


def check_setpoint_500hz(k: Kit) -> str:
    return _setpoint_rate(k, 500)


def check_setpoint_1khz(k: Kit) -> str:
    return _setpoint_rate(k, 1000)


def check_safe_state(k: Kit) -> str:
    k.ready()
    _, _, idx = k.hello()  # any state → SAFE
    first = k.sp_seq + 1
    on = k.watch(60 * MS, until=lambda s: s.st.outputs & OUTPUTS_ON, feed=lambda: k.sp(1))
    if on is not None:
        raise Failed("enable 1 right after a HELLO energised (SAFE needs an enable 0 first)")
    echoed = [s for s in k.seen[idx:] if first <= s.st.echo_seq <= k.sp_seq]
    k.m["echoed"] = len(echoed)
    if not echoed:
        raise Failed("valid enable-1 SETPOINTs in SAFE were not echoed (they apply as 'off')")
    k.stop()
    return "enable 1 in SAFE echoed, outputs stayed off for 60 ms"


def check_engage(k: Kit) -> str:
    k.ready()
    on_ms = k.energise()
    k.m["energise_ms"] = on_ms
    bad = k.watch(
        150 * MS,
        until=lambda s: not s.st.outputs & OUT_DRIVES_ON or s.st.board_faults & FAULT_WATCHDOG,
        feed=lambda: k.sp(1),
    )
    if bad is not None:
        raise Failed(f"dropped out while fed every 2 ms ({k.now()})")
    t0 = _mono()
    off = k.watch(50 * MS, until=lambda s: not s.st.outputs & OUTPUTS_ON, feed=lambda: k.sp(0))
    if off is None:
        raise Failed("enable 0 did not de-energise within 50 ms")
    k.m["stop_ms"] = (off.t_ns - t0) / MS
    if off.st.board_faults & FAULT_WATCHDOG:
        raise Failed("a normal stop (enable 0) set the WATCHDOG bit")
    return f"energised {on_ms:.1f} ms after enable 1, off {k.m['stop_ms']:.1f} ms after enable 0"


def check_ranges(k: Kit) -> str:
    k.ready()
    cases: list[tuple[str, dict[str, Any]]] = []
    for f, name in enumerate(SETPOINT_FIELDS):
        for v in (I32_MAX, I32_MIN):
            ints = k.hold_ints()
            ints[f] = v
            cases.append((f"{name} {v:+d}", {"ints": ints}))
    cases.append(("heater duty 0xFFFE (full power)", {"duty": DUTY_FULL}))
    cases.append(("heater duty 0", {"duty": 0}))
    cases.append(("flag PRIMING with enable 0", {"flags": SP_FLAG_PRIMING}))
    refused = []
    for name, kw in cases:
        if k.echo_of(k.sp(0, **kw)) is None:
            refused.append(name)
    # the seq's own range: up to 0x7FFFFFFF, then 1
    k.sp_seq = SETPOINT_SEQ_MAX - 1
    for _ in range(2):
        seq = k.sp(0)
        if k.echo_of(seq) is None:
            refused.append(f"seq {seq:#x}")
    k.m["values"] = len(cases) + 2
    if refused:
        raise Failed(f"valid values not applied: {', '.join(refused)}")
    return f"{len(cases) + 2} extreme valid values applied and echoed (enable 0)"


def check_sentinels(k: Kit) -> str:
    k.ready()
    for f, name in enumerate(SETPOINT_FIELDS):
        ints = k.hold_ints()
        ints[f] = I32_SENTINEL
        k.refused(f"the sentinel 0x80000000 as {name}", ints=ints)
    k.refused("the sentinel 0xFFFF as heater duty", duty=DUTY_SENTINEL)
    # refused SETPOINTs do not feed the watchdog: only sentinels while energised → a trip
    k.energise()
    t_last = k.sent_ns[k.sp_seq]
    n = [0]

    def bad() -> None:
        ints = k.hold_ints()
        f = n[0] % (len(SETPOINT_FIELDS) + 1)
        n[0] += 1
        if f < len(SETPOINT_FIELDS):
            ints[f] = I32_SENTINEL
            k.sp(1, ints=ints)
        else:
            k.sp(1, duty=DUTY_SENTINEL)

    s = k.watch(300 * MS, until=k.tripped, feed=bad)
    if s is None:
        raise Failed(
            "SETPOINTs with sentinels kept the drives on for 300 ms: they fed the watchdog"
        )
    trip = (s.t_ns - t_last) / MS
    k.m["trip_ms"] = trip
    limit = WATCHDOG_MAX_MS + k.status_ms() + ALLOWANCE_MS
    if trip > limit:
        raise Failed(f"sentinel SETPOINTs delayed the watchdog: tripped after {trip:.0f} ms")
    return f"9 fields × sentinel refused; sentinels alone tripped the watchdog in {trip:.0f} ms"


def check_invalid_setpoints(k: Kit) -> str:
    k.ready()
    cases: list[tuple[str, dict[str, Any]]] = [
        ("enable 2", {"enable": 2}),
        ("enable 255", {"enable": 255}),
        ("reserved flag bit 1", {"flags": 0x02}),
        ("reserved flag bit 7", {"flags": 0x80}),
        ("PRIMING with enable 1", {"enable": 1, "flags": SP_FLAG_PRIMING}),
        ("seq 0", {"seq": 0}),
        ("seq with bit 31 set", {"seq": 0x80000000 | (k.sp_seq + 1)}),
    ]
    for what, kw in cases:
        k.refused(what, **kw)
    return f"{len(cases)} invalid SETPOINTs refused (not applied, not echoed)"


def check_status_fields(k: Kit) -> str:
    k.ready()
    i0 = len(k.seen)
    k.watch(300 * MS, feed=lambda: k.sp(0))
    win = [s.st for s in k.seen[i0:]]
    if not win:
        raise Failed("no STATUS in 300 ms")
    cfg = k.config
    f = cfg.faults
    ot = f.overtravel_mm
    problems: list[str] = []

    def once(msg: str) -> None:
        if msg not in problems:
            problems.append(msg)

    names = (
        "carriage encoder",
        "width encoder",
        "depth encoder",
        "kneading rate",
        "tapping rate",
        "carriage current",
        "width current",
        "depth current",
        "kneading current",
        "tapping current",
        "pad thermistor",
        "supply voltage",
    )
    ranges = (
        (cfg.carriage.track_min_mm - ot, cfg.carriage.track_max_mm + ot),
        (cfg.width.min_mm - ot, cfg.width.max_mm + ot),
        (cfg.depth.min_mm - ot, cfg.depth.max_mm + ot),
        (-cfg.kneading.max_rpm, cfg.kneading.max_rpm),
        (0.0, cfg.tapping.max_hz),
        *((0.0, a) for a in f.overcurrent_a),
        (cfg.heater.thermistor_min_c, cfg.heater.thermistor_max_c),
        (f.supply_min_v, f.supply_max_v),
    )
    for st in win:
        values = (*st.pos_mm, st.knead_rpm, st.tap_hz, *st.current_a, st.thermistor_c, st.supply_v)
        for name, v, (lo, hi) in zip(names, values, ranges, strict=True):
            if math.isnan(v):
                once(f"{name} reads the missing-value sentinel")
            elif not lo - 1e-9 <= v <= hi + 1e-9:
                once(f"{name} {v:g} outside {lo:g} … {hi:g} at rest")
        if st.switches & 0xF0:
            once(f"reserved switch bits {st.switches:#04x}")
        if st.outputs & ~OUTPUTS_ON & 0xFF:
            once(f"reserved output bits {st.outputs:#04x}")
        if st.outputs & OUTPUTS_ON:
            once(f"outputs {st.outputs:#04x} in READY (must be off)")
        if st.board_faults & FAULT_LINK_LOST:
            once("fault bit 3 (LINK_LOST, the controller's own) set")
        if st.board_faults & 0xFFF0:
            once(f"reserved fault bits {st.board_faults:#06x}")
        if st.board_faults & (FAULT_OVERCURRENT | FAULT_OVERTEMP | FAULT_WATCHDOG):
            once(f"the board reports faults {st.board_faults:#06x} at rest")
        if st.limit_low and st.limit_high:
            once("both limit switches closed")
        # the depth drive's load: a reading from a board that says it measures it (pressing
        # nothing at rest: at most the lightest touch), the sentinel from one that does not
        load = st.depth_load_a
        if k.ack is not None and k.ack.measures_depth_load:
            if math.isnan(load):
                once("depth load reads the missing-value sentinel (HELLO_ACK says measured)")
            elif not 0.0 <= load <= f.overcurrent_a[2]:
                once(f"depth load {load:g} A outside 0 … {f.overcurrent_a[2]:g}")
        elif not math.isnan(load):
            once(f"depth load {load:g} A from a board whose HELLO_ACK says it is not measured")
    last = win[-1]
    k.m.update(
        statuses=len(win),
        pos_mm=[round(x, 2) for x in last.pos_mm],
        thermistor_c=last.thermistor_c,
        supply_v=last.supply_v,
        switches=f"{last.switches:#04x}",
    )
    if problems:
        raise Failed("; ".join(problems))
    return f"{len(win)} STATUSes: reserved bits 0, no sentinel, every reading in range"


def _trip(k: Kit) -> tuple[Seen, float]:
    """ON, fed for 50 ms, then silence until the board trips: the tripping STATUS and the ms
    from the last SETPOINT's send."""
    k.ready()
    k.energise()
    k.watch(50 * MS, feed=lambda: k.sp(1))
    t_last = k.sent_ns[k.sp_seq]
    off = k.watch(400 * MS, until=lambda s: not s.st.outputs & OUTPUTS_ON)
    if off is None:
        raise Failed(f"still energised 400 ms after the last SETPOINT: no watchdog ({k.now()})")
    if not off.st.board_faults & FAULT_WATCHDOG:
        bit = k.watch(20 * MS, until=lambda s: s.st.board_faults & FAULT_WATCHDOG)
        if bit is None:
            raise Failed("de-energised on silence without setting the WATCHDOG bit")
    return off, (off.t_ns - t_last) / MS


def check_watchdog_trip(k: Kit) -> str:
    _, trip = _trip(k)
    declared = k.ack.watchdog_ms if k.ack else WATCHDOG_MAX_MS
    # outputs off within 100 ms, and within what the board declares (a little more: a board
    # may measure its silence from a SETPOINT's arrival, the kit from its send)
    limit = min(WATCHDOG_MAX_MS + ALLOWANCE_MS, declared + 2 * ALLOWANCE_MS) + k.status_ms()
    k.m.update(trip_ms=trip, declared_ms=declared, limit_ms=limit)
    if trip > limit:
        raise Failed(
            f"outputs off {trip:.1f} ms after the last SETPOINT (declared {declared} ms; "
            f"at most {WATCHDOG_MAX_MS} ms, seen within {limit:.0f} ms)"
        )
    return f"outputs off and WATCHDOG bit {trip:.1f} ms after the last SETPOINT"


def check_watchdog_clear(k: Kit) -> str:
    _trip(k)
    i0 = len(k.seen)
    first = k.sp_seq + 1
    bad = k.watch(
        60 * MS,
        until=lambda s: s.st.outputs & OUTPUTS_ON or not s.st.board_faults & FAULT_WATCHDOG,
        feed=lambda: k.sp(1),
    )
    if bad is not None:
        if bad.st.outputs & OUTPUTS_ON:
            raise Failed("re-energised on enable 1 after a trip, without an enable 0 first")
        raise Failed("the WATCHDOG bit cleared on enable 1 (only an enable 0 clears it)")
    if not any(first <= s.st.echo_seq <= k.sp_seq for s in k.seen[i0:]):
        raise Failed("valid enable-1 SETPOINTs while tripped were not echoed")
    t0 = _mono()
    clear = k.watch(
        50 * MS, until=lambda s: not s.st.board_faults & FAULT_WATCHDOG, feed=lambda: k.sp(0)
    )
    if clear is None:
        raise Failed("an enable-0 SETPOINT did not clear the WATCHDOG bit within 50 ms")
    k.m["clear_ms"] = (clear.t_ns - t0) / MS
    k.watch(10 * MS, feed=lambda: k.sp(0))
    k.m["reenergise_ms"] = k.energise()
    k.stop()
    return (
        f"stayed off on enable 1; cleared {k.m['clear_ms']:.1f} ms after enable 0; "
        f"re-energised {k.m['reenergise_ms']:.1f} ms after enable 1"
    )


def check_goodbye(k: Kit) -> str:
    k.ready()
    k.energise()
    k.watch(30 * MS, feed=lambda: k.sp(1))
    seqs: list[int] = []
    off = k.watch(
        50 * MS,
        until=lambda s: s.st.echo_seq in seqs and not s.st.outputs & OUTPUTS_ON,
        feed=lambda: seqs.append(k.sp(0)),
    )
    if off is None:
        raise Failed(f"enable-0 SETPOINTs were not echoed with the outputs off ({k.now()})")
    if off.st.board_faults & FAULT_WATCHDOG:
        raise Failed("a normal stop (enable 0) set the WATCHDOG bit")
    t0 = _mono()
    i0 = len(k.seen)
    bad = k.watch(
        300 * MS,
        until=lambda s: s.st.board_faults & FAULT_WATCHDOG or s.st.outputs & OUTPUTS_ON,
    )
    if bad is not None:
        raise Failed(
            f"tripped {(bad.t_ns - t0) / MS:.0f} ms into the silence after a normal stop "
            "(the watchdog is armed in ON only)"
        )
    k.m["statuses_while_silent"] = len(k.seen) - i0
    if len(k.seen) == i0:
        raise Failed("no STATUS while the controller was silent (STATUS goes out always)")
    return "READY after enable 0; no trip in 300 ms of silence"


def check_corruption(k: Kit) -> str:
    k.ready()

    def flipped(at: int, bit: int = 0) -> bytes:
        frame = bytearray(
            encode_frame(TYPE_SETPOINT, k.tx_seq, k.sp_payload(0, None, 0, 0, k.next_seq()))
        )
        k.tx_seq = (k.tx_seq + 1) % SEQ_MOD
        frame[at] ^= 1 << bit
        return bytes(frame)

    def framed(ftype: int, payload: bytes, seq: int | None = None) -> bytes:
        if seq is None:
            seq = k.tx_seq
            k.tx_seq = (k.tx_seq + 1) % SEQ_MOD
        return encode_frame(ftype, seq, payload)

    def payload() -> bytes:
        return k.sp_payload(0, None, 0, 0, k.next_seq())

    def garbage(n: int) -> bytes:
        return bytes(k.rng.choice([b for b in range(256) if b != 0xA5]) for _ in range(n))

    def wrong_crc() -> bytes:
        f = bytearray(framed(TYPE_SETPOINT, payload()))
        f[-1] ^= 0x5A
        return bytes(f)

    def wrong_size(n: int) -> bytes:
        p = payload()
        body = (p + b"\0")[:n]
        return framed(TYPE_SETPOINT, body)

    def resent(offset: int) -> bytes:
        return framed(TYPE_SETPOINT, payload(), seq=(k.last_tx_seq - offset) % SEQ_MOD)

    cases: list[tuple[str, Callable[[], bytes]]] = [
        ("a bit flipped in the payload", lambda: flipped(10, 0)),
        ("a bit flipped in the SEQ", lambda: flipped(3, 4)),
        ("a bit flipped in the TYPE", lambda: flipped(5, 0)),
        ("a bit flipped in LEN (41)", lambda: flipped(2, 0)),
        ("a bit flipped in the CRC", lambda: flipped(-1, 7)),
        ("a wrong CRC", wrong_crc),
        ("garbage between frames", lambda: garbage(23) + b"\xa5\x5a\xff" + garbage(9)),
        ("half a frame", lambda: framed(TYPE_SETPOINT, payload())[:25]),
        ("a payload one byte short", lambda: wrong_size(39)),
        ("a payload one byte long", lambda: wrong_size(41)),
        ("an unknown type (0x7e)", lambda: framed(0x7E, payload())),
        ("a STATUS sent to the board", lambda: framed(TYPE_STATUS, Status().pack())),
        ("a duplicate SEQ", lambda: resent(0)),
        ("an out-of-order SEQ", lambda: resent(100)),
    ]
    failures = []
    for name, make in cases:
        k.write(make())
        if k.echo_other_than(k.good) is not None:
            failures.append(f"{name} was applied")
        nxt = k.sp(0)
        if k.echo_of(nxt) is None:
            failures.append(f"after {name} the next good frame was lost")
            k.ready()
        else:
            k.good = nxt
    k.m.update(cases=len(cases), failed=len(failures))
    if failures:
        raise Failed("; ".join(failures))
    return f"{len(cases)} kinds of damage dropped; the next good frame applied after each"


def check_hello_in_on(k: Kit) -> str:
    k.ready()
    k.energise()
    k.watch(20 * MS, feed=lambda: k.sp(1))
    _, _, idx = k.hello()
    k.watch(20 * MS)
    after = k.seen[idx:]
    if not after:
        raise Failed("no STATUS within 20 ms of the HELLO_ACK")
    if any(s.st.outputs & OUTPUTS_ON for s in after):
        raise Failed("still energised after a HELLO (a new controller never inherits them)")
    if any(s.st.board_faults & FAULT_WATCHDOG for s in after):
        raise Failed("a HELLO set the WATCHDOG bit (HELLO → SAFE is no trip)")
    on = k.watch(40 * MS, until=lambda s: s.st.outputs & OUTPUTS_ON, feed=lambda: k.sp(1))
    if on is not None:
        raise Failed("enable 1 after the HELLO energised without an enable 0 first")
    k.stop()
    return "a HELLO while energised → outputs off at once, no WATCHDOG bit, SAFE"


def check_version_mismatch(k: Kit) -> str:
    k.ready()
    old = PROTOCOL_VERSION - 1
    ack, _, _ = k.hello(version=old)
    k.m["ack_version"] = ack.version
    if ack.version != PROTOCOL_VERSION:
        raise Failed(
            f"answered a version-{old} HELLO with version {ack.version}: "
            f"a board says its own ({PROTOCOL_VERSION})"
        )
    bad = k.watch(
        40 * MS,
        until=lambda s: s.st.echo_seq != ECHO_NONE or s.st.outputs & OUTPUTS_ON,
        feed=lambda: k.sp(1 if k.sp_seq % 2 else 0),
    )
    if bad is not None:
        raise Failed(
            f"applied SETPOINTs after a version-{old} HELLO (echo {bad.st.echo_seq}, "
            f"outputs {bad.st.outputs:#04x}): they must be ignored until a version-"
            f"{PROTOCOL_VERSION} HELLO"
        )
    k.ready()  # a HELLO of its own version: SETPOINTs are applied again
    return (
        f"HELLO_ACK version {PROTOCOL_VERSION}; SETPOINTs ignored until a HELLO of version "
        f"{PROTOCOL_VERSION}"
    )


def check_disconnect(k: Kit) -> str:
    if k.kind != "tcp":
        raise Skipped("a serial line cannot hang up: the board's watchdog covers a lost line")
    k.ready()
    k.energise()
    k.watch(20 * MS, feed=lambda: k.sp(1))
    t_close = _mono()
    k.close()
    time.sleep(0.01)  # let the board see the end of the stream before the new connection
    k.connect()
    # STATUS goes out always, on a new connection too, without waiting for a HELLO
    # (docs/board-protocol.md, Start-up and homing). A board silent until a HELLO breaks that
    # rule; the trip is still judged, on the first STATUS after a HELLO (a trip survives it), and
    # the verdict says the STATUS was missing
    s = k.watch(40 * MS, until=lambda s: True)
    status_first = s is not None
    if s is None:
        _, _, idx = k.hello()
        s = k.watch(20 * MS, until=lambda s: s.index >= idx)
    if s is None:
        raise Failed(
            "no STATUS after reconnecting, not even after a HELLO (STATUS goes out always)"
        )
    t = (s.t_ns - t_close) / MS
    declared = k.ack.watchdog_ms if k.ack else WATCHDOG_MAX_MS
    k.m.update(seen_after_ms=t, outputs=f"{s.st.outputs:#04x}", faults=f"{s.st.board_faults:#06x}")
    if s.st.outputs & OUTPUTS_ON:
        raise Failed(f"still energised {t:.0f} ms after the controller hung up")
    if not s.st.board_faults & FAULT_WATCHDOG:
        raise Failed("de-energised without the WATCHDOG bit: a disconnect while ON is a trip")
    if t >= declared:
        raise Skipped(f"seen only {t:.0f} ms after the hang-up: cannot tell it from the watchdog")
    missing = (
        ""
        if status_first
        else "; but no STATUS on the new connection until a HELLO (STATUS goes out always)"
    )
    return f"tripped (WATCHDOG bit, outputs off) within {t:.0f} ms of the hang-up{missing}"


Check = Callable[[Kit], str]
CHECKS: dict[str, tuple[Check, str]] = {
    "handshake": (
        check_handshake,
        f"HELLO → HELLO_ACK within 100 ms: nonce, version {PROTOCOL_VERSION}, numbers",
    ),
    "echo-after-hello": (check_echo_after_hello, "echo 0 after a HELLO until a SETPOINT"),
    "status-rate": (check_status_rate, "≥ 200 STATUS/s over 1 s, gaps p99 ≤ 5 ms"),
    "setpoint-500hz": (check_setpoint_500hz, "SETPOINTs at 500 Hz applied and echoed"),
    "setpoint-1khz": (check_setpoint_1khz, "SETPOINTs at 1 kHz applied and echoed"),
    "safe-state": (check_safe_state, "after a HELLO, enable 1 does not energise"),
    "engage": (check_engage, "READY → ON on enable 1; fed it stays on; enable 0 → off"),
    "ranges": (check_ranges, "every SETPOINT field's extreme valid values applied"),
    "sentinels": (check_sentinels, "a sentinel in any SETPOINT field: refused, no feed"),
    "invalid-setpoints": (check_invalid_setpoints, "enable ≠ 0/1, reserved flags, bad seq"),
    "status-fields": (check_status_fields, "reserved bits 0, no LINK_LOST, readings in range"),
    "watchdog-trip": (check_watchdog_trip, "silence while ON → off + WATCHDOG within 100 ms"),
    "watchdog-clear": (check_watchdog_clear, "tripped: off on enable 1, cleared by enable 0"),
    "goodbye": (check_goodbye, "enable 0 while ON → READY; no trip in 300 ms of silence"),
    "corruption": (check_corruption, "damaged, stray and resent frames dropped; resync"),
    "hello-in-on": (check_hello_in_on, "a HELLO while ON → SAFE (outputs off, no bit)"),
    "version-mismatch": (check_version_mismatch, "HELLO version 1 → ack 2; SETPOINTs ignored"),
    "disconnect": (check_disconnect, "TCP hang-up while ON → tripped (TCP only)"),
}
"""Every check, in the order they run: name → (function, what it checks)."""
CHECK_NAMES = tuple(CHECKS)


def run(
    spec: str,
    config: ChairConfig,
    only: Iterable[str] | None = None,
    *,
    progress: Callable[[Result], None] | None = None,
) -> Report:
    """Run the checks (all, or `only` these) against the board at `spec` (``tcp:HOST:PORT`` or
    ``serial:PATH``). Raises ValueError for a bad spec or check name, OSError when the port
    cannot be opened; a board that misbehaves is a FAIL, never an exception."""
    names = list(CHECKS) if only is None else [n for n in CHECKS if n in set(only)]
    unknown = sorted(set(only or ()) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown check {unknown[0]!r} (one of: {', '.join(CHECKS)})")
    k = Kit(spec, config)
    k.connect()
    results: list[Result] = []
    board_id: str | None = None
    try:
        for name in names:
            fn, _ = CHECKS[name]
            k.m = {}
            t0 = time.monotonic()
            try:
                reason = fn(k)
                verdict = PASS
            except Failed as e:
                verdict, reason = FAIL, str(e)
            except Skipped as e:
                verdict, reason = SKIP, str(e)
            except OSError as e:
                verdict, reason = FAIL, f"link error: {e}"
                k.close()
            r = Result(name, verdict, reason, _rounded(k.m), time.monotonic() - t0)
            results.append(r)
            if k.ack is not None:
                board_id = k.ack.board_id
            if progress is not None:
                progress(r)
            _settle(k)
    finally:
        _settle(k)
        k.close()
    return Report(spec, board_id, results)


def _settle(k: Kit) -> None:
    """Leave the board de-energised between checks (best effort: it may be gone)."""
    if k.port is None or k.ack is None:
        return
    try:
        k.stop()
    except (Failed, OSError):
        k.close()


def _rounded(m: dict[str, Any]) -> dict[str, Any]:
    return {n: round(v, 3) if isinstance(v, float) else v for n, v in m.items()}


def format_measured(m: dict[str, Any]) -> str:
    parts = []
    for n, v in m.items():
        if isinstance(v, float):
            parts.append(f"{n}={v:.1f}" if abs(v) >= 10 else f"{n}={v:.2f}")
        else:
            parts.append(f"{n}={v}")
    return ", ".join(parts)
