"""The board protocol: how the controller and a chair's motor/IO board talk over a byte link.

Pure Python, no dependencies beyond the standard library, so a board maker's test bench can use it
as it is. Specified, with byte-level examples, in docs/board-protocol.md.

Every frame is::

    A5 5A | LEN u8 | SEQ u16 | TYPE u8 | PAYLOAD (LEN bytes) | CRC u16

little-endian throughout. The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not
reflected, no final xor; check value ``crc16(b"123456789") == 0x29B1``) over LEN, SEQ, TYPE and
PAYLOAD. SEQ counts frames per direction (mod 2**16); a receiver drops duplicates and frames from
the past. Physical values travel as fixed-point integers (µm, mA, centi-°C, mV, milli-rpm,
milli-Hz), as a board without an FPU would keep them.

`FrameDecoder.feed(data)` is incremental and total: it never raises, validates everything (sync,
length, CRC, type, payload size, sequence), drops what is wrong into named `counters`, and
resynchronises on the next sync. `encode(msg, seq)` builds a frame from a message object.
"""

from __future__ import annotations

import binascii
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, TypeAlias

PROTOCOL_VERSION = 3
"""Version 3: STATUS carries the depth drive's load, HELLO_ACK flag bit 0 says the board measures
it. Version 2: no command value equals a sentinel, the link's own SETPOINT counter, PRIMING as a
flag, echo 0 = none (docs/board-protocol.md, Versions)."""
ACK_FLAG_DEPTH_LOAD = 1 << 0
"""HELLO_ACK.flags: the board measures the depth drive's load (STATUS carries it)."""
SYNC = b"\xa5\x5a"
HEADER = struct.Struct("<2sBHB")  # sync, length, seq, type
HEADER_SIZE = HEADER.size  # 6
CRC_SIZE = 2
MAX_PAYLOAD = 64
"""Longest payload any frame type may have; a longer LEN is rejected before waiting for it."""
MAX_FRAME = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE

SEQ_MOD = 1 << 16
ECHO_NONE = 0
"""STATUS.echo_seq when the board has applied no SETPOINT since the last HELLO."""
SETPOINT_SEQ_MAX = 0x7FFFFFFF
"""SETPOINT.seq runs 1 … SETPOINT_SEQ_MAX, then wraps to 1 (never 0, bit 31 never set)."""
SP_FLAG_PRIMING = 1 << 0
"""SETPOINT.flags: sent before the controller's core runs (always with enable 0)."""
SP_FLAGS_DEFINED = SP_FLAG_PRIMING
HEATER_DUTY_FULL = 0xFFFE
"""SETPOINT heater duty at full power: duty = raw / 65534, raw 0 … 65534 (0xFFFF is invalid)."""

# ---- timings every board and controller keeps (docs/board-protocol.md, Numbers to build to) ----
WATCHDOG_MAX_MS = 100
"""A board's outputs are off within this of its last valid SETPOINT (docs/chair.md §6);
HELLO_ACK's watchdog is 1 … this."""
STATUS_PERIOD_MAX_US = 5000
"""A board sends a STATUS at least this often; HELLO_ACK's STATUS period is 1 … this."""
SETPOINT_PERIOD_MIN_US = 1000
SETPOINT_PERIOD_MAX_US = 5000
"""A controller sends a SETPOINT at least every SETPOINT_PERIOD_MAX_US; a board accepts them as
fast as every SETPOINT_PERIOD_MIN_US (1 kHz)."""
HELLO_RETRY_MS = 100
"""A controller repeats an unanswered HELLO this often; a board answers within it."""


def next_setpoint_seq(seq: int) -> int:
    """The SETPOINT seq after `seq` (1 … SETPOINT_SEQ_MAX, wrapping to 1)."""
    return 1 if seq >= SETPOINT_SEQ_MAX else seq + 1


# ---- board fault bits (STATUS.board_faults; the same bits as chair_core.h) --------------------
FAULT_WATCHDOG = 1 << 0
"""The board stopped on its own watchdog (no valid SETPOINT for 100 ms); cleared by a SETPOINT
with enable = 0 (the controller acknowledges the stop)."""
FAULT_OVERCURRENT = 1 << 1
"""The board tripped on over-current by itself."""
FAULT_OVERTEMP = 1 << 2
"""The board's own thermal cut-off (e.g. the pad's fuse) has opened."""
FAULT_LINK_LOST = 1 << 3
"""Never sent by a board: set by the controller's link driver when the status is stale."""

# ---- STATUS.switches and STATUS.outputs bits ---------------------------------------------------
SW_LIMIT_LOW = 1 << 0
SW_LIMIT_HIGH = 1 << 1
SW_ARM_CONTACT = 1 << 2
SW_SEAT_OCCUPIED = 1 << 3
OUT_DRIVES_ON = 1 << 0
OUT_HEATER_ON = 1 << 1

# ---- frame types -------------------------------------------------------------------------------
TYPE_HELLO = 0x01
TYPE_HELLO_ACK = 0x02
TYPE_SETPOINT = 0x10
TYPE_STATUS = 0x20

CONTROLLER_TO_BOARD = frozenset({TYPE_HELLO, TYPE_SETPOINT})
BOARD_TO_CONTROLLER = frozenset({TYPE_HELLO_ACK, TYPE_STATUS})

_I32 = (-(1 << 31) + 1, (1 << 31) - 1)  # -2**31 itself is the "no value" sentinel
_I32_NONE = -(1 << 31)
_U16_NONE = 0xFFFF
_I16_NONE = -(1 << 15)


def crc16(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of `data` (continue a running CRC by passing it as `crc`)."""
    return binascii.crc_hqx(data, crc)


def _fix(x: float, scale: float, lo: int, hi: int, none: int) -> int:
    """Physical value → fixed-point integer, saturated; NaN → the field's "no value" sentinel."""
    if math.isnan(x):
        return none
    v = x * scale
    if v >= hi:
        return hi
    if v <= lo:
        return lo
    return round(v)


def _i32(x: float, scale: float) -> int:
    return _fix(x, scale, _I32[0], _I32[1], _I32_NONE)


def _un(v: int, scale: float, none: int) -> float:
    return math.nan if v == none else v / scale


# ---- messages ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """Controller → board, first frame of a link session (repeated until acknowledged). The
    receiver accepts any SEQ on a HELLO and restarts its duplicate/order check from it."""

    TYPE: ClassVar[int] = TYPE_HELLO
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<HHI")
    version: int = PROTOCOL_VERSION
    setpoint_period_us: int = 2000
    nonce: int = 0

    def pack(self) -> bytes:
        return self.FORMAT.pack(self.version, self.setpoint_period_us, self.nonce)

    @classmethod
    def unpack(cls, payload: bytes) -> Hello:
        return cls(*cls.FORMAT.unpack(payload))


@dataclass(frozen=True, slots=True)
class HelloAck:
    """Board → controller, the answer to a HELLO (same nonce); says what the board does."""

    TYPE: ClassVar[int] = TYPE_HELLO_ACK
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<HHIHH16s")
    version: int = PROTOCOL_VERSION
    watchdog_ms: int = 100
    nonce: int = 0
    status_period_us: int = 1000
    flags: int = 0
    board_id: str = ""

    @property
    def measures_depth_load(self) -> bool:
        """The board's STATUS carries the depth drive's load (`ACK_FLAG_DEPTH_LOAD`)."""
        return bool(self.flags & ACK_FLAG_DEPTH_LOAD)

    def pack(self) -> bytes:
        name = self.board_id.encode("ascii", "replace")[:16]
        return self.FORMAT.pack(
            self.version, self.watchdog_ms, self.nonce, self.status_period_us, self.flags, name
        )

    @classmethod
    def unpack(cls, payload: bytes) -> HelloAck:
        v, wd, nonce, period, flags, name = cls.FORMAT.unpack(payload)
        return cls(v, wd, nonce, period, flags, name.rstrip(b"\0").decode("ascii", "replace"))


@dataclass(frozen=True, slots=True)
class Setpoint:
    """Controller → board, at least every 5 ms: the `chair_setpoint` of one tick.

    Wire units: µm, µm/s, milli-rpm, milli-Hz, duty/65534. `seq` is the link's SETPOINT counter
    (1 … 2**31 - 1, restarted by a HELLO; see `next_setpoint_seq`) and comes back in
    STATUS.echo_seq once the board has applied it. `flags` bit 0 (`SP_FLAG_PRIMING`) marks the
    frames a link driver sends before the controller's core runs."""

    TYPE: ClassVar[int] = TYPE_SETPOINT
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<I3i3iiiHBB")
    seq: int = 0
    pos_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    vel_mm_s: tuple[float, float, float] = (0.0, 0.0, 0.0)
    knead_rpm: float = 0.0
    tap_hz: float = 0.0
    heater_duty: float = 0.0
    enable: bool = False
    flags: int = 0

    def pack(self) -> bytes:
        p, v = self.pos_mm, self.vel_mm_s
        # no command value equals a sentinel: 0xFFFF is never sent (NaN: heater off)
        duty_u16 = _fix(self.heater_duty, HEATER_DUTY_FULL, 0, HEATER_DUTY_FULL, 0)
        return self.FORMAT.pack(
            self.seq & 0xFFFFFFFF,
            _i32(p[0], 1e3),
            _i32(p[1], 1e3),
            _i32(p[2], 1e3),
            _i32(v[0], 1e3),
            _i32(v[1], 1e3),
            _i32(v[2], 1e3),
            _i32(self.knead_rpm, 1e3),
            _i32(self.tap_hz, 1e3),
            duty_u16,
            1 if self.enable else 0,
            self.flags & 0xFF,
        )

    @classmethod
    def unpack(cls, payload: bytes) -> Setpoint:
        seq, p0, p1, p2, v0, v1, v2, knead, tap, duty, en, flags = cls.FORMAT.unpack(payload)
        return cls(
            seq,
            (_un(p0, 1e3, _I32_NONE), _un(p1, 1e3, _I32_NONE), _un(p2, 1e3, _I32_NONE)),
            (_un(v0, 1e3, _I32_NONE), _un(v1, 1e3, _I32_NONE), _un(v2, 1e3, _I32_NONE)),
            _un(knead, 1e3, _I32_NONE),
            _un(tap, 1e3, _I32_NONE),
            math.nan if duty == _U16_NONE else duty / HEATER_DUTY_FULL,
            en,  # kept raw: `is_valid` refuses anything but 0 and 1
            flags,
        )

    @property
    def priming(self) -> bool:
        return bool(self.flags & SP_FLAG_PRIMING)

    def invalid_reason(self) -> str | None:
        """Why a board must refuse this SETPOINT (not apply, not echo, not feed its watchdog),
        or None when it is valid: a sentinel in any field, an enable other than 0/1, a reserved
        flag bit, PRIMING with enable 1, a seq of 0 or with bit 31 set."""
        if not all(
            math.isfinite(x)
            for x in (*self.pos_mm, *self.vel_mm_s, self.knead_rpm, self.tap_hz, self.heater_duty)
        ):
            return "a field carries its sentinel"
        if int(self.enable) not in (0, 1):
            return f"enable {int(self.enable)} (0 or 1)"
        if self.flags & ~SP_FLAGS_DEFINED & 0xFF:
            return f"reserved flag bits set ({self.flags:#04x})"
        if self.priming and self.enable:
            return "PRIMING with enable 1"
        if not 1 <= self.seq <= SETPOINT_SEQ_MAX:
            return f"seq {self.seq:#x} (1 … 0x7fffffff)"
        return None

    def is_valid(self) -> bool:
        return self.invalid_reason() is None


@dataclass(frozen=True, slots=True)
class Status:
    """Board → controller, at least every 5 ms: what the sensors read (a `chair_status`).

    Wire units: µm, milli-rpm, milli-Hz, mA, centi-°C, mV. A sensor without a reading travels
    as the field's sentinel and decodes to NaN (the controller's guard treats it as a fault).
    `depth_load_a`: the depth drive's pressing load (NaN, the sentinel, from a board that does
    not measure it: HELLO_ACK says which)."""

    TYPE: ClassVar[int] = TYPE_STATUS
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<II3iii5HhHBBHH")
    echo_seq: int = ECHO_NONE
    board_time_us: int = 0
    pos_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    knead_rpm: float = 0.0
    tap_hz: float = 0.0
    current_a: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)
    thermistor_c: float = 0.0
    supply_v: float = 0.0
    switches: int = 0
    outputs: int = 0
    board_faults: int = 0
    depth_load_a: float = math.nan

    @property
    def limit_low(self) -> bool:
        return bool(self.switches & SW_LIMIT_LOW)

    @property
    def limit_high(self) -> bool:
        return bool(self.switches & SW_LIMIT_HIGH)

    @property
    def arm_contact(self) -> bool:
        return bool(self.switches & SW_ARM_CONTACT)

    @property
    def seat_occupied(self) -> bool:
        return bool(self.switches & SW_SEAT_OCCUPIED)

    def pack(self) -> bytes:
        p, c = self.pos_mm, self.current_a
        return self.FORMAT.pack(
            self.echo_seq & 0xFFFFFFFF,
            self.board_time_us & 0xFFFFFFFF,
            _i32(p[0], 1e3),
            _i32(p[1], 1e3),
            _i32(p[2], 1e3),
            _i32(self.knead_rpm, 1e3),
            _i32(self.tap_hz, 1e3),
            *(_fix(x, 1e3, 0, 0xFFFE, _U16_NONE) for x in c),
            _fix(self.thermistor_c, 100.0, -0x7FFF, 0x7FFF, _I16_NONE),
            _fix(self.supply_v, 1e3, 0, 0xFFFE, _U16_NONE),
            self.switches & 0xFF,
            self.outputs & 0xFF,
            self.board_faults & 0xFFFF,
            _fix(self.depth_load_a, 1e3, 0, 0xFFFE, _U16_NONE),
        )

    @classmethod
    def unpack(cls, payload: bytes) -> Status:
        (echo, t_us, p0, p1, p2, knead, tap, c0, c1, c2, c3, c4, therm, supply, sw, out, faults,
         load) = cls.FORMAT.unpack(payload)  # fmt: skip
        return cls(
            echo,
            t_us,
            (_un(p0, 1e3, _I32_NONE), _un(p1, 1e3, _I32_NONE), _un(p2, 1e3, _I32_NONE)),
            _un(knead, 1e3, _I32_NONE),
            _un(tap, 1e3, _I32_NONE),
            tuple(_un(c, 1e3, _U16_NONE) for c in (c0, c1, c2, c3, c4)),  # type: ignore[arg-type]
            _un(therm, 100.0, _I16_NONE),
            _un(supply, 1e3, _U16_NONE),
            sw,
            out,
            faults,
            _un(load, 1e3, _U16_NONE),
        )


Message: TypeAlias = Hello | HelloAck | Setpoint | Status
MESSAGE_TYPES: dict[int, type[Hello] | type[HelloAck] | type[Setpoint] | type[Status]] = {
    m.TYPE: m for m in (Hello, HelloAck, Setpoint, Status)
}
"""Frame type → message class. Each has a fixed payload size (``cls.FORMAT.size``)."""
PAYLOAD_SIZES: dict[int, int] = {t: m.FORMAT.size for t, m in MESSAGE_TYPES.items()}
_SESSION_TYPES = frozenset({TYPE_HELLO, TYPE_HELLO_ACK})  # restart the sequence check


class Frame(NamedTuple):
    """One valid frame: its type, its link sequence number and the decoded message."""

    type: int
    seq: int
    msg: Message


# ---- encoding ----------------------------------------------------------------------------------


def encode_frame(ftype: int, seq: int, payload: bytes) -> bytes:
    """One frame around a raw payload (no check that the type knows this payload)."""
    if not 0 <= len(payload) <= MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes (at most {MAX_PAYLOAD})")
    body = struct.pack("<BHB", len(payload), seq % SEQ_MOD, ftype & 0xFF) + payload
    return SYNC + body + struct.pack("<H", crc16(body))


def encode(msg: Message, seq: int) -> bytes:
    """The frame carrying `msg` with link sequence number `seq` (taken mod 2**16)."""
    return encode_frame(msg.TYPE, seq, msg.pack())


# ---- decoding ----------------------------------------------------------------------------------

COUNTERS = (
    "bytes",  # bytes fed
    "frames",  # valid frames delivered
    "garbage_bytes",  # bytes skipped while looking for a sync (between or inside bad frames)
    "resyncs",  # times the decoder had to skip bytes to find the next sync
    "bad_length",  # LEN above MAX_PAYLOAD, or not the payload size of its (known) type
    "bad_crc",
    "unknown_type",  # CRC good, type not defined by this protocol version
    "unexpected_type",  # a defined type, but not one this side receives
    "duplicate",  # same SEQ as the last delivered frame
    "out_of_order",  # SEQ from the past (more than half the sequence space behind)
    "seq_gaps",  # frames missing between two delivered ones (lost or dropped upstream)
    "bad_input",  # feed() called with something that is not bytes
)


class FrameDecoder:
    """Incremental, total frame decoder: `feed(bytes) -> list[Frame]`; never raises.

    `expect` limits the frame types delivered (e.g. `BOARD_TO_CONTROLLER` on the controller);
    other valid frames are counted as ``unexpected_type``. `counters` holds a count per drop
    reason (see `COUNTERS`); every byte fed ends up in a delivered frame, in ``garbage_bytes``, or
    still buffered (`buffered`, at most one frame's worth).
    """

    def __init__(self, expect: Iterable[int] | None = None) -> None:
        self.expect = frozenset(MESSAGE_TYPES if expect is None else expect)
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._buf = bytearray()
        self._last_seq: int | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def reset_sequence(self) -> None:
        """Accept any SEQ next (a new peer session)."""
        self._last_seq = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Consume `data`; return the valid frames completed by it, in order."""
        if isinstance(data, bytes | bytearray):
            chunk = data
        elif isinstance(data, memoryview):
            chunk = data.tobytes()
        else:  # total by contract: count it, never raise (bytes(3) would "work": refuse too)
            self.counters["bad_input"] += 1
            return []
        c = self.counters
        c["bytes"] += len(chunk)
        buf = self._buf
        buf += chunk
        out: list[Frame] = []
        pos = 0
        n = len(buf)
        while True:
            i = buf.find(SYNC, pos)
            if i < 0:
                keep = 1 if n > pos and buf[n - 1] == SYNC[0] else 0  # maybe half a sync
                if n - keep > pos:
                    c["garbage_bytes"] += n - keep - pos
                    c["resyncs"] += 1
                pos = n - keep
                break
            if i > pos:
                c["garbage_bytes"] += i - pos
                c["resyncs"] += 1
                pos = i
            if n - pos < HEADER_SIZE:
                break
            length = buf[pos + 2]
            if length > MAX_PAYLOAD:
                c["bad_length"] += 1
                c["garbage_bytes"] += 1
                pos += 1
                continue
            end = pos + HEADER_SIZE + length + CRC_SIZE
            if end > n:
                break
            crc_rx = buf[end - 2] | (buf[end - 1] << 8)
            if crc16(memoryview(buf)[pos + 2 : end - 2]) != crc_rx:
                c["bad_crc"] += 1
                c["garbage_bytes"] += 1
                pos += 1  # a false sync, or a damaged frame: look again from the next byte
                continue
            seq = buf[pos + 3] | (buf[pos + 4] << 8)
            ftype = buf[pos + 5]
            payload = bytes(buf[pos + HEADER_SIZE : end - 2])
            pos = end
            cls = MESSAGE_TYPES.get(ftype)
            if cls is None:
                c["unknown_type"] += 1
                continue
            if length != PAYLOAD_SIZES[ftype]:
                c["bad_length"] += 1
                continue
            if ftype not in self.expect:
                c["unexpected_type"] += 1
                continue
            if ftype not in _SESSION_TYPES and self._last_seq is not None:
                d = (seq - self._last_seq) % SEQ_MOD
                if d == 0:
                    c["duplicate"] += 1
                    continue
                if d >= SEQ_MOD // 2:
                    c["out_of_order"] += 1
                    continue
                c["seq_gaps"] += d - 1
            self._last_seq = seq
            try:
                msg = cls.unpack(payload)
            except Exception:  # cannot happen for a checked size; never raise anyway
                c["bad_length"] += 1
                continue
            c["frames"] += 1
            out.append(Frame(ftype, seq, msg))
        if pos:
            del buf[:pos]
        return out


# ---- examples (docs/board-protocol.md is generated from these; a test decodes the doc) ---------

EXAMPLES: tuple[tuple[str, int, Message], ...] = (
    (
        "HELLO from the controller",
        0x0000,
        Hello(version=PROTOCOL_VERSION, setpoint_period_us=2000, nonce=0x12345678),
    ),
    (
        "HELLO_ACK from the board (the emulator's, `chair board`): watchdog 90 ms, a STATUS at "
        "least every 1000 µs, the depth load measured (flag bit 0), board id chair-sim",
        0x0000,
        HelloAck(
            version=PROTOCOL_VERSION,
            watchdog_ms=90,
            nonce=0x12345678,
            status_period_us=1000,
            flags=ACK_FLAG_DEPTH_LOAD,
            board_id="chair-sim",
        ),
    ),
    (
        "SETPOINT: carriage at 600 mm moving up at 80 mm/s, width 130 mm, depth 16 mm, kneading "
        "30 rpm clockwise, no tapping, heater at 40 %, enabled, SETPOINT 1234",
        0x0007,
        Setpoint(
            seq=1234,
            pos_mm=(600.0, 130.0, 16.0),
            vel_mm_s=(80.0, 0.0, 0.0),
            knead_rpm=30.0,
            tap_hz=0.0,
            heater_duty=0.4,
            enable=True,
        ),
    ),
    (
        "STATUS: the board applied SETPOINT 1234; carriage at 599.98 mm, pad at 41.25 °C, 23.9 V, "
        "arm touching, seat occupied, drives and heater on, no fault, the depth drive pressing "
        "with a load of 0.48 A",
        0x0009,
        Status(
            echo_seq=1234,
            board_time_us=5_000_000,
            pos_mm=(599.98, 130.0, 16.0),
            knead_rpm=29.5,
            tap_hz=0.0,
            current_a=(0.85, 0.05, 0.53, 0.42, 0.1),
            thermistor_c=41.25,
            supply_v=23.9,
            switches=SW_ARM_CONTACT | SW_SEAT_OCCUPIED,
            outputs=OUT_DRIVES_ON | OUT_HEATER_ON,
            board_faults=0,
            depth_load_a=0.48,
        ),
    ),
    (
        "STATUS after the board's watchdog stopped it: no SETPOINT after 1234 (applied at board "
        "time 5.0 s), the trip 90 ms later, this STATUS 10 ms after it: drives and heater off, "
        "fault bit 0 (WATCHDOG), echo still 1234, every current and the depth load 0; the "
        "carriage where the "
        "extrapolation ended (600 mm + 80 mm/s × 10 ms = 600.8 mm), the kneading motor "
        "coasting down (28.5 rpm), the heads still against the back",
        0x0A0B,
        Status(
            echo_seq=1234,
            board_time_us=5_100_000,
            pos_mm=(600.8, 130.0, 16.0),
            knead_rpm=28.5,
            tap_hz=0.0,
            current_a=(0.0, 0.0, 0.0, 0.0, 0.0),
            thermistor_c=41.2,
            supply_v=24.0,
            switches=SW_ARM_CONTACT | SW_SEAT_OCCUPIED,
            outputs=0,
            board_faults=FAULT_WATCHDOG,
            depth_load_a=0.0,  # the drives off: no load
        ),
    ),
    (
        "PRIMING SETPOINT: the first after a HELLO_ACK, sent before the controller's core runs "
        "(flag PRIMING, enable 0; the other fields are ignored with enable 0), SETPOINT 1",
        0x0001,
        Setpoint(seq=1, enable=False, flags=SP_FLAG_PRIMING),
    ),
    (
        "SETPOINT with the heater at full power (raw 0xFFFE = 65534/65534), carriage holding "
        "at 412.5 mm, width 100 mm, depth 8 mm, nothing else moving, enabled, SETPOINT 77",
        0x0042,
        Setpoint(seq=77, pos_mm=(412.5, 100.0, 8.0), heater_duty=1.0, enable=True),
    ),
    (
        "Goodbye SETPOINT: drives off, heater 0, at the chair's last setpoint, SETPOINT 90001",
        0x5F37,
        Setpoint(seq=90001, pos_mm=(1200.0, 160.0, 0.0), enable=False),
    ),
    (
        "HELLO_ACK from a version-2 board answering our version-3 HELLO (the controller "
        "refuses it; the board stays de-energised and ignores SETPOINTs)",
        0x0000,
        HelloAck(
            version=2,
            watchdog_ms=100,
            nonce=0x12345678,
            status_period_us=2000,
            flags=0,
            board_id="acme-v2",
        ),
    ),
    (
        "STATUS right after a HELLO: echo 0 (nothing applied since the HELLO), SAFE (outputs "
        "off), carriage parked at 1200 mm with the upper limit switch closed, seat empty",
        0x0100,
        Status(
            echo_seq=ECHO_NONE,
            board_time_us=0xFFFFF000,
            pos_mm=(1200.0, 160.0, 0.0),
            knead_rpm=0.0,
            tap_hz=0.0,
            current_a=(0.0, 0.0, 0.0, 0.0, 0.0),
            thermistor_c=22.5,
            supply_v=24.1,
            switches=SW_LIMIT_HIGH,
            outputs=0,
            board_faults=0,
            depth_load_a=0.0,
        ),
    ),
    (
        "STATUS with missing readings, in READY (outputs off, every current it has 0): the "
        "width encoder, the tapping current and the pad thermistor read nothing (their "
        "sentinels 0x80000000, 0xFFFF, 0x8000), nor the depth load (0xFFFF: a board whose "
        "HELLO_ACK says it does not measure it sends that always); no fault bit (a sentinel "
        "says it all; the "
        "controller faults `tracking` on the missing encoder at once and never energises "
        "while it lasts)",
        0x0101,
        Status(
            echo_seq=5,
            board_time_us=1_000_000,
            pos_mm=(700.0, math.nan, 16.0),
            knead_rpm=0.0,
            tap_hz=0.0,
            current_a=(0.0, 0.0, 0.0, 0.0, math.nan),
            thermistor_c=math.nan,
            supply_v=24.0,
            switches=SW_ARM_CONTACT | SW_SEAT_OCCUPIED,
            outputs=0,
            board_faults=0,
        ),
    ),
)


def hexdump(frame: bytes) -> str:
    """Space-separated hex bytes, 16 per line (the form used in the docs)."""
    h = frame.hex(" ")
    parts = h.split(" ")
    return "\n".join(" ".join(parts[i : i + 16]) for i in range(0, len(parts), 16))


def examples_markdown() -> str:
    """The examples section of docs/board-protocol.md."""
    out = []
    for title, seq, msg in EXAMPLES:
        out.append(f"**{title}** (SEQ {seq:#06x}):\n\n```\n{hexdump(encode(msg, seq))}\n```\n")
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover - `python -m core_rt.board.protocol` regenerates
    print(examples_markdown())
