#!/usr/bin/env python3
"""A massage-chair motor/IO board, written from docs/board-protocol.md alone.

    python tests/doc_board/board.py --tcp PORT [--start-pose C,W,D] [--shoulder-mm Y] [--empty]
                                   [--depth-load]

Listens on 127.0.0.1:PORT (0 = a free port) and prints the port as the first line of stdout.
One single-threaded loop on a 1 ms tick (SCHED_FIFO where permitted): read frames (select),
apply every valid SETPOINT at once, step a simple chair, send one STATUS per tick. Events
(state changes, the arm contact, with --depth-load the heads' touch of the skin, motion, a
summary every 0.5 s and the counters at exit) go to stderr as JSON lines, one object per line,
so a test bench can follow the board from the outside. Standard library only.

--depth-load: the board measures the depth drive's load (HELLO_ACK flag DEPTH_LOAD, STATUS
offset 46) and the body seated in the chair is the one the contour scan assumes, with a neck
above the shoulder line (Body).
"""

from __future__ import annotations

import argparse
import binascii
import json
import math
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

# --- The wire ---------------------------------------------------------------------------------

SYNC = b"\xa5\x5a"
HELLO, HELLO_ACK, SETPOINT, STATUS = 0x01, 0x02, 0x10, 0x20
PAYLOAD_SIZE = {HELLO: 8, HELLO_ACK: 28, SETPOINT: 40, STATUS: 48}
BOARD_RECEIVES = (HELLO, SETPOINT)
MAX_LEN = 64
PROTOCOL_VERSION = 3
BOARD_ID = b"doc-board"
WATCHDOG_MS = 90  # trips a little early: a 1 ms loop and its jitter stay inside 100 ms
STATUS_PERIOD_US = 2000  # declared longest interval; the loop sends one every 1 ms
TICK_NS = 1_000_000
EXTRAPOLATE_S = 0.010  # follow the velocity feed-forward for at most 10 ms, then hold

I32_SENTINEL = -0x80000000
I16_SENTINEL = -0x8000
U16_SENTINEL = 0xFFFF
I32_MAX, I16_MAX, U16_MAX = 0x7FFFFFFF, 0x7FFF, 0xFFFE
SEQ_MAX = 0x7FFFFFFF
FLAG_PRIMING = 0x01
FLAG_DEPTH_LOAD = 0x0001  # HELLO_ACK flags bit 0: the STATUS carries the depth drive's load
LOAD_A_PER_MM = 0.03  # the reference tissue's load on the depth drive, per mm pressed

SETPOINT_FMT = struct.Struct("<I3i3iiiHBB")
STATUS_FMT = struct.Struct("<II3iii5HhHBBHH")
HELLO_FMT = struct.Struct("<HHI")
HELLO_ACK_FMT = struct.Struct("<HHIHH16s")

COUNTERS = (
    "bytes",
    "frames",
    "garbage_bytes",
    "resyncs",
    "bad_length",
    "bad_crc",
    "unknown_type",
    "unexpected_type",
    "duplicate",
    "out_of_order",
    "seq_gaps",
)


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode_frame(seq: int, msg_type: int, payload: bytes) -> bytes:
    body = struct.pack("<BHB", len(payload), seq & 0xFFFF, msg_type) + payload
    return SYNC + body + struct.pack("<H", crc16(body))


def sat(value: float, lo: int, hi: int) -> int:
    """Saturate a reading to its field's range (never wrapped, never the sentinel)."""
    if math.isnan(value):
        raise ValueError("a reading the board has must be a number")
    return max(lo, min(hi, round(value)))


@dataclass
class Frame:
    seq: int
    msg_type: int
    payload: bytes


class Decoder:
    """The receive rules 1-10 of the document, in order, with their counters."""

    def __init__(self) -> None:
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.buf = bytearray()
        self.last_seq: int | None = None
        self.in_run = False  # inside a run of skipped bytes (one resync per run)

    def restart(self) -> None:
        """A new byte stream (a new connection): the old partial frame is garbage."""
        self._skip(len(self.buf))
        self.in_run = False
        self.last_seq = None

    def _skip(self, n: int) -> None:
        if n <= 0:
            return
        self.counters["garbage_bytes"] += n
        if not self.in_run:
            self.counters["resyncs"] += 1
            self.in_run = True
        del self.buf[:n]

    def feed(self, data: bytes) -> list[Frame]:
        c = self.counters
        c["bytes"] += len(data)
        self.buf += data
        out: list[Frame] = []
        while True:
            i = self.buf.find(SYNC)  # rule 1
            if i < 0:
                keep = 1 if self.buf[-1:] == b"\xa5" else 0
                self._skip(len(self.buf) - keep)
                return out
            self._skip(i)
            self.in_run = False
            if len(self.buf) < 6:
                return out
            length = self.buf[2]
            if length > MAX_LEN:  # rule 2
                c["bad_length"] += 1
                c["garbage_bytes"] += 1
                del self.buf[:1]
                continue
            total = 6 + length + 2
            if len(self.buf) < total:  # rule 3
                return out
            body = bytes(self.buf[2 : 6 + length])
            (crc,) = struct.unpack_from("<H", self.buf, 6 + length)
            if crc16(body) != crc:  # rule 4
                c["bad_crc"] += 1
                c["garbage_bytes"] += 1
                del self.buf[:1]
                continue
            del self.buf[:total]
            _, seq, msg_type = struct.unpack_from("<BHB", body)
            if msg_type not in PAYLOAD_SIZE:  # rule 5
                c["unknown_type"] += 1
            elif length != PAYLOAD_SIZE[msg_type]:  # rule 6
                c["bad_length"] += 1
            elif msg_type not in BOARD_RECEIVES:  # rule 7
                c["unexpected_type"] += 1
            elif msg_type == HELLO or self.last_seq is None:  # HELLO restarts the SEQ check
                self.last_seq = seq
                c["frames"] += 1
                out.append(Frame(seq, msg_type, body[4:]))
            else:
                d = (seq - self.last_seq) & 0xFFFF
                if d == 0:  # rule 8
                    c["duplicate"] += 1
                elif d >= 0x8000:  # rule 9
                    c["out_of_order"] += 1
                else:  # rule 10
                    c["seq_gaps"] += d - 1
                    c["frames"] += 1
                    self.last_seq = seq
                    out.append(Frame(seq, msg_type, body[4:]))


# --- The chair behind the board (the document's "Numbers to build to") ------------------------


@dataclass
class Axis:
    name: str
    lo: float  # mm
    hi: float
    v_max: float  # mm/s
    a_stop: float  # mm/s², the emergency braking the drive can do
    amps_rest: float
    amps_full: float  # extra at v_max
    pos: float = 0.0
    vel: float = 0.0
    kp: float = 40.0  # 1/s, the position loop

    def step(self, target: float | None, ff: float, dt: float) -> None:
        if target is None:  # de-energised: the screw holds where it is
            self.vel = 0.0
            return
        target = min(max(target, self.lo), self.hi)
        ff = min(max(ff, -self.v_max), self.v_max)
        v_lim = 1.2 * self.v_max
        v_des = min(max(ff + self.kp * (target - self.pos), -v_lim), v_lim)
        dv = self.a_stop * dt
        self.vel += min(max(v_des - self.vel, -dv), dv)
        self.pos += self.vel * dt
        if self.pos <= self.lo or self.pos >= self.hi:  # pushing into the end stop
            self.pos = min(max(self.pos, self.lo), self.hi)
            self.vel = 0.0

    def amps(self, energised: bool) -> float:
        if not energised:
            return 0.0
        return self.amps_rest + self.amps_full * abs(self.vel) / self.v_max


@dataclass
class Motor:
    """Kneading (rpm) or tapping (Hz): follows the commanded rate, runs down when off."""

    lo: float
    hi: float
    slew: float  # per second, the emergency rate: the controller ramps slower
    run_down: float  # per second, coasting with the drive de-energised (about 1 s)
    amps_full: float
    rate: float = 0.0

    def step(self, command: float | None, dt: float) -> None:
        if command is None:
            step = self.run_down * dt
            self.rate = (
                0.0 if abs(self.rate) <= step else self.rate - math.copysign(step, self.rate)
            )
            return
        command = min(max(command, self.lo), self.hi)
        step = self.slew * dt
        self.rate += min(max(command - self.rate, -step), step)

    def amps(self, energised: bool) -> float:
        if not energised:
            return 0.0
        return 0.1 + self.amps_full * abs(self.rate) / max(abs(self.lo), abs(self.hi))


@dataclass
class Pad:
    """The heating pad: first-order thermal model, and a thermistor that lags it."""

    ambient_c: float = 24.0
    full_rise_c: float = 56.0  # steady state above ambient at full power
    tau_s: float = 125.0  # 48 °C after ~70 s at full power
    sensor_tau_s: float = 3.0
    cutoff_c: float = 60.0  # the board's own thermal cut-off (above the controller's 48 °C)
    temp_c: float = 24.0
    sensor_c: float = 24.0

    def step(self, power: float, dt: float) -> None:
        rise = self.full_rise_c * power - (self.temp_c - self.ambient_c)
        self.temp_c += rise * dt / self.tau_s
        self.sensor_c += (self.temp_c - self.sensor_c) * dt / self.sensor_tau_s


@dataclass
class Body:
    """Someone seated: a back surface the heads touch, up to a shoulder line.

    The default body is the switch scan's ("The arm contact and the body scan"): a flat back
    whose skin lies back_depth_mm from the heads' home, ending at the shoulder line; the arm
    contact reads closed while the heads press it (pressed_mm > 0).

    With a neck (the board's --depth-load) it is the body "The depth load and the contour
    scan" says the contour scan assumes ("What the scan assumes of the body"):

    - "Above the shoulder line the heads still touch the user: the neck, softer than the back
      ..., for more than 15 mm of track": a neck of neck_mm (120 mm, the emulator's) above the
      shoulder line, at neck_stiffness (0.3, the emulator's) × the back's stiffness. Its skin
      lies where the back's does (a flat back: the document curves the neck away only on the
      emulator's contoured backs). Above the neck, nothing: "the head is never reached".
    - "The back touches the heads from where the touch found it up to the shoulder line
      without a break": the skin runs from the bottom of the track (the scan's start, y ≈ 148
      mm, is "the glutes of the tallest body") to the shoulder line, flat, so it never moves
      between samples (at most 4.5 mm allowed).
    - "The tissue is 0.6-1.6 × the reference on the back ... and its skin lies within the
      depth's reach: 0-78 mm from the heads' home": back_stiffness 1.0 (the reference tissue),
      the skin at back_depth_mm = 6 mm.
    - "An empty seat: the load stays 0 everywhere."

    The arm contact stays the switch's: closed on the back only, open above the shoulder line,
    "the neck included".
    """

    seated: bool = True
    shoulder_mm: float = 800.0
    back_depth_mm: float = 6.0  # heads protruding further than this press the back
    neck: bool = False  # a neck above the shoulder line (the contour scan's body)
    neck_mm: float = 120.0  # how far the neck reaches above the shoulder line
    back_stiffness: float = 1.0  # × the reference tissue (the document: 0.6-1.6 on a back)
    neck_stiffness: float = 0.3  # × the back's (the document's emulator: 0.3)

    def pressed_mm(self, carriage_mm: float, depth_mm: float) -> float:
        """How far the heads press the back (not the neck): the arm contact's."""
        if not self.seated or carriage_mm > self.shoulder_mm:
            return 0.0
        return max(0.0, depth_mm - self.back_depth_mm)

    def stiffness(self, carriage_mm: float) -> float:
        """The tissue's stiffness at the heads (× the reference); 0 where there is none."""
        if not self.seated:
            return 0.0
        if carriage_mm <= self.shoulder_mm:
            return self.back_stiffness
        if self.neck and carriage_mm <= self.shoulder_mm + self.neck_mm:
            return self.neck_stiffness * self.back_stiffness
        return 0.0

    def touch_mm(self, carriage_mm: float, depth_mm: float) -> float:
        """How far the heads press past the skin, back or neck (0 where they touch nothing)."""
        if self.stiffness(carriage_mm) == 0.0:
            return 0.0
        return max(0.0, depth_mm - self.back_depth_mm)


@dataclass
class Chair:
    carriage: Axis = field(default_factory=lambda: Axis("carriage", 0, 1200, 100, 3000, 0.4, 1.2))
    width: Axis = field(default_factory=lambda: Axis("width", 90, 170, 40, 1000, 0.2, 0.8))
    depth: Axis = field(default_factory=lambda: Axis("depth", 0, 80, 20, 500, 0.2, 0.6))
    kneading: Motor = field(default_factory=lambda: Motor(-60, 60, 600, 60, 1.2))
    tapping: Motor = field(default_factory=lambda: Motor(0, 12, 240, 12, 1.2))
    pad: Pad = field(default_factory=Pad)
    body: Body = field(default_factory=Body)
    switch_band_mm: float = 0.05  # a limit switch closes this close to its end stop

    def axes(self) -> tuple[Axis, Axis, Axis]:
        return self.carriage, self.width, self.depth

    def contact(self) -> bool:
        return self.body.pressed_mm(self.carriage.pos, self.depth.pos) > 0.0

    def depth_load(self, energised: bool) -> float:
        """What pressing the body adds to the depth drive's current (A), net of its own.

        STATUS offset 46 and "The contour" (step 4): the load is "proportional to how far the
        heads press past the skin — c · k · press, 0 when they do not touch", c the config's
        `contour.load_a_per_mm` (LOAD_A_PER_MM, 0.03 A per mm: the reference chair's drive),
        k the tissue's stiffness where the heads are (Body.stiffness: the back, or the softer
        neck when the body has one). "0 when nothing presses and with the drives off."
        Unfiltered (the document allows up to 5 ms), sent in mA (a resolution of 1 mA).
        """
        if not energised:
            return 0.0
        y = self.carriage.pos
        return LOAD_A_PER_MM * self.body.stiffness(y) * self.body.touch_mm(y, self.depth.pos)

    def currents(self, energised: bool) -> list[float]:
        amps = [axis.amps(energised) for axis in self.axes()]
        amps[2] += self.depth_load(energised)
        return [*amps, self.kneading.amps(energised), self.tapping.amps(energised)]


# --- The board: output states, watchdog, STATUS -----------------------------------------------

SAFE, READY, ON, TRIPPED = "SAFE", "READY", "ON", "TRIPPED"


@dataclass
class Command:
    positions_mm: tuple[float, float, float]
    velocities_mm_s: tuple[float, float, float]
    kneading_rpm: float
    tapping_hz: float
    duty: float  # 0 … 1
    received_ns: int


def log(event: str, **data: object) -> None:
    data = {"ev": event, "t": round(time.monotonic(), 4), **data}
    print(json.dumps(data), file=sys.stderr, flush=True)


class Board:
    def __init__(self, chair: Chair, depth_load: bool = False) -> None:
        self.chair = chair
        # DEPTH_LOAD: a promise for the whole run (every connection), never changed on the way.
        # Off by default: the document allows a board that does not measure the load (flag
        # clear, the sentinel in every STATUS; the controller then scans with the arm's switch).
        # With --depth-load the chair's body has the neck the contour scan assumes (Body).
        self.measures_load = depth_load
        self.decoder = Decoder()
        self.state = SAFE
        self.echo = 0
        self.version_ok = True  # before the first HELLO after power-on, SETPOINTs apply
        self.command: Command | None = None  # the last one applied while ON
        self.last_valid_ns = 0
        self.tx_seq = random.randrange(0x10000)
        self.counts = {"invalid_setpoints": 0, "refused_setpoints": 0, "setpoints": 0}
        self.watchdog_trips = 0
        self.overtemp = False
        self.overcurrent = False
        self.outbox: list[bytes] = []
        self.contact = False
        self.touching = False  # the load above 0: the heads on the skin, back or neck
        self.moving = False
        self.motors = False
        self.path_mm = 0.0
        self.heater_powered = False

    # state machine
    def _go(self, new: str, why: str) -> None:
        if new != self.state:
            log("state", old=self.state, new=new, why=why, carriage_mm=self._mm(0))
            if new == TRIPPED:
                self.watchdog_trips += 1
            self.state = new
        if new != ON:
            self.command = None

    def _mm(self, i: int) -> float:
        return round(self.chair.axes()[i].pos, 2)

    def pose(self) -> list[float]:
        return [self._mm(0), self._mm(1), self._mm(2)]

    def _send(self, msg_type: int, payload: bytes) -> None:
        self.outbox.append(encode_frame(self.tx_seq, msg_type, payload))
        self.tx_seq = (self.tx_seq + 1) & 0xFFFF

    def receive(self, data: bytes, now_ns: int) -> None:
        for frame in self.decoder.feed(data):
            if frame.msg_type == HELLO:
                self.on_hello(frame.payload)
            else:
                self.on_setpoint(frame.payload, now_ns)

    def on_hello(self, payload: bytes) -> None:
        version, period_us, nonce = HELLO_FMT.unpack(payload)
        log("hello", version=version, period_us=period_us, state=self.state)
        if self.state != TRIPPED:
            self._go(SAFE, "hello")
        self.echo = 0
        self.version_ok = version == PROTOCOL_VERSION
        # DEPTH_LOAD clear (default): this board does not report the depth drive's load, every
        # STATUS carries that field's sentinel. Set with --depth-load: the load of the skin the
        # heads press (Body), LOAD_A_PER_MM per mm. Bits 1-15 reserved: 0.
        flags = FLAG_DEPTH_LOAD if self.measures_load else 0
        ack = HELLO_ACK_FMT.pack(
            PROTOCOL_VERSION, WATCHDOG_MS, nonce, STATUS_PERIOD_US, flags, BOARD_ID
        )
        self._send(HELLO_ACK, ack)

    def on_setpoint(self, payload: bytes, now_ns: int) -> None:
        seq, cx, wx, dx, cv, wv, dv, knead, tap, duty, enable, flags = SETPOINT_FMT.unpack(payload)
        if not self.version_ok:
            self.counts["refused_setpoints"] += 1
            return
        valid = (
            1 <= seq <= SEQ_MAX
            and I32_SENTINEL not in (cx, wx, dx, cv, wv, dv, knead, tap)
            and duty != U16_SENTINEL
            and enable in (0, 1)
            and flags & ~FLAG_PRIMING == 0
            and not (flags & FLAG_PRIMING and enable == 1)
        )
        if not valid:
            self.counts["invalid_setpoints"] += 1
            return
        self.counts["setpoints"] += 1
        self.echo = seq
        self.last_valid_ns = now_ns
        if enable == 0:
            self._go(READY, "enable 0")
            self.overcurrent = False
            return
        if self.state == READY and not self.overcurrent:
            self._go(ON, "enable 1")
        if self.state != ON:  # SAFE or TRIPPED: applied as "off" and echoed
            return
        self.command = Command(
            (cx / 1000, wx / 1000, dx / 1000),
            (cv / 1000, wv / 1000, dv / 1000),
            knead / 1000,
            tap / 1000,
            duty / 0xFFFE,
            now_ns,
        )

    def disconnected(self) -> None:
        if self.state == ON:
            self._go(TRIPPED, "disconnect")

    def tick(self, now_ns: int, dt: float) -> None:
        if self.state == ON and now_ns - self.last_valid_ns >= WATCHDOG_MS * 1_000_000:
            self._go(TRIPPED, "watchdog")
        chair, cmd = self.chair, self.command
        if cmd is None:
            for axis in chair.axes():
                axis.step(None, 0.0, dt)
            chair.kneading.step(None, dt)
            chair.tapping.step(None, dt)
        else:
            age = (now_ns - cmd.received_ns) / 1e9
            ahead = min(age, EXTRAPOLATE_S)
            for axis, x, v in zip(chair.axes(), cmd.positions_mm, cmd.velocities_mm_s, strict=True):
                ff = v if age <= EXTRAPOLATE_S else 0.0
                axis.step(x + v * ahead, ff, dt)
            chair.kneading.step(cmd.kneading_rpm, dt)
            chair.tapping.step(cmd.tapping_hz, dt)
        energised = self.state == ON
        if chair.pad.sensor_c >= chair.pad.cutoff_c and not self.overtemp:
            self.overtemp = True  # the pad's fuse: the heater stays cut until power-off
            log("overtemp", pad_c=round(chair.pad.sensor_c, 2))
        self.heater_powered = energised and cmd is not None and cmd.duty > 0 and not self.overtemp
        chair.pad.step(cmd.duty if cmd is not None and self.heater_powered else 0.0, dt)
        limits = (4.0, 2.0, 3.0, 3.0, 3.0)
        if energised and any(
            a > 1.5 * lim for a, lim in zip(chair.currents(True), limits, strict=True)
        ):
            self.overcurrent = True  # the hardware trip: drives off until an enable 0
            log("overcurrent")
            self._go(READY, "overcurrent")
        self._observe(dt)

    def _observe(self, dt: float) -> None:
        chair = self.chair
        speed = abs(chair.carriage.vel)
        self.path_mm += speed * dt
        contact = chair.contact()
        if contact != self.contact:
            self.contact = contact
            log(
                "contact",
                closed=contact,
                carriage_mm=self._mm(0),
                depth_mm=self._mm(2),
                carriage_mm_s=round(chair.carriage.vel, 1),
            )
        if self.measures_load:
            load_a = chair.depth_load(self.state == ON)
            if (load_a > 0.0) != self.touching:
                self.touching = load_a > 0.0
                log(
                    "touch",
                    touching=self.touching,
                    carriage_mm=self._mm(0),
                    depth_mm=self._mm(2),
                    stiffness=chair.body.stiffness(chair.carriage.pos),
                )
        moving = max(abs(axis.vel) for axis in chair.axes()) > 0.5
        if moving != self.moving:
            self.moving = moving
            log("motion_on" if moving else "motion_off", pose_mm=self.pose())
        motors = abs(chair.kneading.rate) > 0.5 or chair.tapping.rate > 0.5
        if motors != self.motors:
            self.motors = motors
            log("motors_on" if motors else "motors_off")

    def status(self, now_ns: int) -> None:
        chair = self.chair
        energised = self.state == ON
        switches = (
            (chair.carriage.pos <= chair.carriage.lo + chair.switch_band_mm) << 0
            | (chair.carriage.pos >= chair.carriage.hi - chair.switch_band_mm) << 1
            | chair.contact() << 2
            | chair.body.seated << 3
        )
        outputs = energised << 0 | self.heater_powered << 1
        faults = (self.state == TRIPPED) << 0 | self.overcurrent << 1 | self.overtemp << 2
        amps = chair.currents(energised)
        supply_v = 24.0 - 0.15 * sum(amps)
        if self.measures_load:
            load = sat(chair.depth_load(energised) * 1000, 0, U16_MAX)
        else:
            load = U16_SENTINEL  # not measured (HELLO_ACK flag DEPTH_LOAD clear): always
        payload = STATUS_FMT.pack(
            self.echo,
            (now_ns // 1000) & 0xFFFFFFFF,
            *(sat(axis.pos * 1000, -I32_MAX, I32_MAX) for axis in chair.axes()),
            sat(chair.kneading.rate * 1000, -I32_MAX, I32_MAX),
            sat(chair.tapping.rate * 1000, -I32_MAX, I32_MAX),
            *(sat(a * 1000, 0, U16_MAX) for a in amps),
            sat(chair.pad.sensor_c * 100, -I16_MAX, I16_MAX),
            sat(supply_v * 1000, 0, U16_MAX),
            switches,
            outputs,
            faults,
            load,
        )
        self._send(STATUS, payload)

    def summary(self) -> dict[str, object]:
        c = self.chair
        return {
            "state": self.state,
            "pose_mm": self.pose(),
            "kneading_rpm": round(c.kneading.rate, 2),
            "tapping_hz": round(c.tapping.rate, 2),
            "pad_c": round(c.pad.sensor_c, 2),
            "heater": self.heater_powered,
            "contact": self.contact,
            "depth_load_a": round(c.depth_load(self.state == ON), 3),
            "path_mm": round(self.path_mm, 1),
            "watchdog_trips": self.watchdog_trips,
            "echo": self.echo,
        }


# --- TCP and the 1 ms loop --------------------------------------------------------------------


class Server:
    def __init__(self, board: Board, port: int) -> None:
        self.board = board
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(4)
        self.listener.setblocking(False)
        self.conn: socket.socket | None = None
        self.pending = b""
        self.running = True

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def _drop(self, why: str) -> None:
        if self.conn is None:
            return
        log("disconnect", why=why, state=self.board.state, pose_mm=self.board.pose())
        self.conn.close()
        self.conn = None
        self.pending = b""
        self.board.decoder.restart()
        self.board.outbox.clear()
        self.board.disconnected()

    def _accept(self) -> None:
        conn, addr = self.listener.accept()
        self._drop("a newer connection")  # one controller at a time: the newest wins
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = conn
        log("connect", peer=f"{addr[0]}:{addr[1]}", state=self.board.state)

    def _read(self, now_ns: int) -> None:
        assert self.conn is not None
        try:
            data = self.conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(f"recv: {exc}")
            return
        if not data:
            self._drop("closed by the peer")
            return
        self.board.receive(data, now_ns)

    def _flush(self) -> None:
        board = self.board
        if self.conn is None:
            board.outbox.clear()
            return
        if board.outbox:
            if len(self.pending) < 65536:  # a peer that does not read loses STATUSes
                self.pending += b"".join(board.outbox)
            board.outbox.clear()
        if not self.pending:
            return
        try:
            sent = self.conn.send(self.pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(f"send: {exc}")
            return
        self.pending = self.pending[sent:]

    def run(self) -> None:
        board = self.board
        last_ns = next_tick = time.monotonic_ns()
        next_summary = last_ns
        while self.running:
            now = time.monotonic_ns()
            timeout = max(0, next_tick - now) / 1e9
            readers: list[socket.socket] = [self.listener]
            if self.conn is not None:
                readers.append(self.conn)
            writers = [self.conn] if self.conn is not None and self.pending else []
            readable, _, _ = select.select(readers, writers, [], timeout)
            now = time.monotonic_ns()
            if self.listener in readable:
                self._accept()
            if self.conn is not None and self.conn in readable:
                self._read(now)
            if now >= next_tick:
                if now - last_ns > 5 * TICK_NS:
                    log("late_tick", gap_ms=round((now - last_ns) / 1e6, 1))
                board.tick(now, min(now - last_ns, 20_000_000) / 1e9)
                board.status(now)
                last_ns = now
                next_tick += TICK_NS
                if next_tick < now - 5 * TICK_NS:  # a long stall: do not burst to catch up
                    next_tick = now + TICK_NS
            if now >= next_summary:
                log("summary", **board.summary())
                next_summary = now + 500_000_000
            self._flush()
        self._drop("board stopping")
        self.listener.close()


RT_PRIORITY = 70  # the emulator's; the controller's link thread asks for 60, its core for 80


def go_realtime() -> bool:
    """SCHED_FIFO for the loop, where permitted ("The simulated board": the emulator asks for
    SCHED_FIFO priority 70, "as a real board's firmware is real-time"; where that is not
    permitted it runs as a normal process). Beside the controller's real-time threads and other
    real-time processes a normal one can miss its STATUS for 100 ms: the controller's link_lost.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
    except (AttributeError, OSError):
        return False
    return True


def parse_pose(text: str) -> tuple[float, float, float]:
    c, w, d = (float(part) for part in text.split(","))
    return c, w, d


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tcp", type=int, required=True, metavar="PORT", help="0 = a free port")
    parser.add_argument(
        "--start-pose", type=parse_pose, default=(1200.0, 160.0, 0.0), metavar="C,W,D"
    )
    parser.add_argument("--shoulder-mm", type=float, default=800.0)
    parser.add_argument("--empty", action="store_true", help="nobody seated")
    parser.add_argument(
        "--depth-load",
        action="store_true",
        help="report the depth drive's load (HELLO_ACK flag DEPTH_LOAD; default: the sentinel)"
        " and seat a body with a neck above the shoulder line, as the contour scan assumes",
    )
    args = parser.parse_args(argv)

    chair = Chair()
    for axis, mm in zip(chair.axes(), args.start_pose, strict=True):
        if not axis.lo <= mm <= axis.hi:
            parser.error(f"--start-pose: {axis.name} {mm} mm is outside {axis.lo}…{axis.hi}")
        axis.pos = mm
    chair.body = Body(seated=not args.empty, shoulder_mm=args.shoulder_mm, neck=args.depth_load)
    board = Board(chair, depth_load=args.depth_load)
    server = Server(board, args.tcp)

    def stop(signum: int, _frame: object) -> None:
        server.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(server.port, flush=True)
    log("listening", port=server.port, pose_mm=list(args.start_pose), sched_fifo=go_realtime())
    server.run()
    log("exit", **board.summary(), counters={**board.decoder.counters, **board.counts})
    return 0


if __name__ == "__main__":
    sys.exit(main())
