"""The board emulator: the simulated chair as its own process, speaking the board protocol (HIL).

A real chair's motor/IO board sits at the other end of a serial line; this is that board with the
simulator's plant (`sim.plant.SimPlant`) inside. It runs at its own real-time pace: the plant is
stepped in 1 ms ticks against the wall clock (catching up after a late wake-up), a STATUS goes out
after every tick, and each valid SETPOINT is applied as it arrives (extrapolated by its velocity
for at most `EXTRAPOLATE_NS`, then held). The controller sees it as it would see a real board, over
a pseudo-terminal (`PtyLink`) or a loopback TCP socket (`TcpLink`), both raw ports of
`core_rt.board.transport`, the controller's own. See docs/board-protocol.md.

**Its own watchdog.** After the first valid SETPOINT, no valid SETPOINT for `watchdog_ms`
(default 90 ms, so that the stop lands within 100 ms despite the 1 ms tick) de-energises
every drive and the heater and sets the WATCHDOG fault bit. The board then stays off until the
controller acknowledges with a SETPOINT whose enable is 0 (the bit clears), and re-energises only
on a later enable = 1: nothing resumes by itself.

**Faults** use `sim.faults` specs. ``--fault`` specs count from the first valid SETPOINT; the
control channel injects them while it runs. ``link_loss`` cuts the link for good (as
``link cut``); ``estop`` is the controller's own and is refused here.

**Control channel** (`sim.board_control`): a Unix stream socket taking one command per line and
answering one line, ``ok {json}`` or ``error message``. Every ``ok`` carries ``t_ns``, the
CLOCK_MONOTONIC time the command took effect (tests measure detection times from it):

    help                      the commands
    state                     the board: plant's true state, watchdog, link, counters, events
    fault SPEC                inject now (KIND[:TARGET]) or at SPEC's time from the first setpoint
    occupant leave|sit        the user stands up / sits down
    link cut [DURATION]       stop sending, ignore input (for DURATION: 500ms, 2s; or for good)
    link restore              end a cut
    corrupt P                 flip one random bit in a fraction P (0..1) of the bytes sent
    repair                    test hook: replace the faulty parts (a fresh plant, same positions)
    break RULE...|none        test hook: break these protocol rules (`BREAKS`), or none
    quit                      exit (status 0)

``state`` lists recent events with their ``t_ns``: the link's (``hello``, ``first_setpoint``,
``link_cut``...), the watchdog's, and what the chair really does: ``drives_on/off``,
``heater_on/off`` (power into the pad), ``motion_on/off`` (carriage, width, depth) and
``motors_on/off`` (kneading, tapping).

Test hook: ``--thermal-scale K`` makes the pad K times faster (heat capacity and thermistor lag
divided by K), so heater faults that take a minute on the real pad show in seconds; a controller
checking "heater not heating" against such a board must use a window scaled by 1/K as well.

A board is a real-time device: the loop asks for SCHED_FIFO (`BOARD_RT_PRIORITY`, below the
core's loop) and runs as a normal process when that is not permitted (``state`` says which).

**Broken on purpose** (``--break RULE``, or ``break RULE...`` / ``break none`` on the control
channel): each of `BREAKS` breaks one rule of the protocol, so the conformance kit
(`chair board-check`) can show that it catches a board that gets that rule wrong. Each hook is
one ``if "rule" in self.breaks`` at the rule's spot.
"""

from __future__ import annotations

import errno
import gc
import math
import os
import random
import re
import select
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core_rt.board.protocol import (
    ACK_FLAG_DEPTH_LOAD,
    CONTROLLER_TO_BOARD,
    CRC_SIZE,
    ECHO_NONE,
    FAULT_LINK_LOST,
    FAULT_OVERTEMP,
    FAULT_WATCHDOG,
    HEADER_SIZE,
    MAX_PAYLOAD,
    OUT_DRIVES_ON,
    OUT_HEATER_ON,
    PROTOCOL_VERSION,
    SW_ARM_CONTACT,
    SW_LIMIT_HIGH,
    SW_LIMIT_LOW,
    SW_SEAT_OCCUPIED,
    SYNC,
    FrameDecoder,
    Hello,
    HelloAck,
    Setpoint,
    Status,
    crc16,
    encode,
)
from core_rt.board.transport import Port, Pty, TcpListener
from core_rt.config import ChairConfig
from sim.faults import FaultSpec, parse_fault
from sim.model import PlantParams

if TYPE_CHECKING:
    from sim.board_control import ControlServer

MS = 1_000_000
EXTRAPOLATE_NS = 10 * MS
"""A SETPOINT's position is extrapolated by its velocity for at most this long, then held."""
MAX_CATCHUP_TICKS = 200
"""After a longer stall the plant skips time instead of racing through it (counted)."""
BOARD_ID = "chair-sim"
BREAKS: dict[str, str] = {
    "wrong-nonce": "HELLO_ACK carries another nonce than the HELLO's",
    "ack-their-version": "HELLO_ACK says the HELLO's version instead of the board's own",
    "no-version-check": "drives SETPOINTs after a HELLO of another protocol version",
    "stale-echo": "keeps the previous echo across a HELLO (instead of 0)",
    "slow-status": "a STATUS every 10 ms while declaring 1 ms",
    "set-link-lost-bit": "sets the controller's LINK_LOST bit (3) in its fault bits",
    "energise-from-safe": "energises on enable 1 in SAFE (without an enable 0 first)",
    "hello-keeps-on": "a HELLO leaves energised outputs on",
    "accept-sentinels": "applies SETPOINTs that carry a sentinel",
    "echo-invalid": "echoes invalid SETPOINTs (without applying them)",
    "invalid-feeds-watchdog": "an invalid SETPOINT feeds the watchdog",
    "no-watchdog": "never trips",
    "slow-watchdog": "trips after 150 ms of silence (declaring its usual watchdog)",
    "auto-resume": "re-energises after a trip on enable 1, without the enable 0",
    "sticky-trip": "an enable-0 SETPOINT does not clear a trip",
    "trip-on-goodbye": "the watchdog is armed in READY too: a normal stop then trips",
    "no-disconnect-trip": "a TCP disconnect while energised does not trip",
    "ignore-crc": "accepts frames whatever their CRC",
    "accept-duplicates": "accepts duplicate and out-of-order SEQs",
    "load-flag-unkept": "HELLO_ACK says it measures the depth load, every STATUS the sentinel",
}
"""``--break RULE``: the rules the emulator can break on purpose (for `chair board-check`)."""
SLOW_WATCHDOG_NS = 150 * 1_000_000
SLOW_STATUS_NS = 10 * 1_000_000
SAFE, READY, ON, TRIPPED = "safe", "ready", "on", "tripped"
"""The board's output states (docs/board-protocol.md, The watchdog): outputs are energised in ON
only; the watchdog is armed in ON only."""
MOVING_THRESHOLD = 0.5
"""mm/s, rpm or Hz above which an axis or motor counts as moving (``motion_*``: the carriage,
width and depth axes; ``motors_*``: kneading and tapping)."""


BOARD_RT_PRIORITY = 70
"""SCHED_FIFO priority the emulator asks for (below the core's loop, 80): a board is a real-time
device; without the privilege it runs as a normal process (``state`` says which)."""


def _realtime_priority(priority: int, tid: int = 0) -> bool:
    """Ask for SCHED_FIFO `priority` for thread `tid` (0 = this process); False if refused."""
    try:
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError):
        return False
    return True


def parse_duration_s(text: str) -> float:
    """``500ms``, ``2s``, ``1.5`` (seconds) → seconds; ValueError otherwise."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*", text)
    if m is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 500ms, 2s)")
    v = float(m.group(1))
    return v / 1000.0 if m.group(2) == "ms" else v


def thermal_params(scale: float) -> PlantParams:
    """Plant parameters with the pad `scale` times faster (see the module docstring)."""
    if not (math.isfinite(scale) and 1.0 <= scale <= 1000.0):
        raise ValueError(f"thermal scale must be 1..1000, got {scale!r}")
    base = PlantParams()
    th = base.heater
    heater = th.model_copy(
        update={
            "capacity_j_per_k": th.capacity_j_per_k / scale,
            "thermistor_tau_s": th.thermistor_tau_s / scale,
        }
    )
    return base.model_copy(update={"heater": heater})


# ---- the two links ------------------------------------------------------------------------------


class PtyLink:
    """A pseudo-terminal pair: the board holds the master, the controller opens `path` (the
    slave) as it would a USB serial adapter. Both ends are raw (no echo, no line discipline).
    A frame the line cannot take at once is dropped, never queued (counted in `tx_dropped`)."""

    def __init__(self) -> None:
        self.pty = Pty(max_backlog=0)
        self.path = self.pty.path
        self.tx_dropped = 0

    @property
    def spec(self) -> str:
        return f"serial:{self.path}"

    def fds(self) -> list[int]:
        return [self.pty.port.fileno()]

    def readable(self, fd: int) -> tuple[bytes, str | None]:
        """Bytes read from `fd` and what happened to the peer: ``"connected"``, ``"gone"`` or
        None. A pty never says: like a real serial line, it cannot see the other end go."""
        # None (nobody has the slave open) is no hang-up here: the line stays for the next one
        return self.pty.port.read() or b"", None

    def write(self, data: bytes) -> None:
        try:
            self.tx_dropped += self.pty.port.write(data)
        except OSError as e:  # EIO: nobody has the slave open; the frame is lost on the line
            if e.errno != errno.EIO:
                raise
            self.tx_dropped += len(data)

    def drop(self) -> bool:
        """Hang up on the controller: a serial line cannot (False)."""
        return False

    def close(self) -> None:
        self.pty.close()


class TcpLink:
    """A TCP listener on 127.0.0.1 (never another interface); one controller at a time, the
    newest connection wins. As on the pty, a frame the socket cannot take is dropped."""

    def __init__(self, port: int = 0) -> None:
        self.listener = TcpListener(port)
        self.port = self.listener.port
        self.client: Port | None = None
        self.tx_dropped = 0

    @property
    def spec(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def fds(self) -> list[int]:
        out = [self.listener.fileno()]
        if self.client is not None:
            out.append(self.client.fileno())
        return out

    def readable(self, fd: int) -> tuple[bytes, str | None]:
        if fd == self.listener.fileno():
            conn = self.listener.accept(max_backlog=0)
            if conn is None:
                return b"", None
            if self.client is not None:
                self.client.close()
            self.client = conn
            return b"", "connected"
        if self.client is None:
            return b"", None
        data = self.client.read()
        if data is None:  # the controller has gone
            self.client.close()
            self.client = None
            return b"", "gone"
        return data, None

    def write(self, data: bytes) -> None:
        if self.client is None:
            return
        try:
            self.tx_dropped += self.client.write(data)
        except OSError:
            self.client.close()
            self.client = None

    def drop(self) -> bool:
        """Hang up on the controller (True if one was connected)."""
        if self.client is None:
            return False
        self.client.close()
        self.client = None
        return True

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.listener.close()


Link = PtyLink | TcpLink


# ---- the board ----------------------------------------------------------------------------------


@dataclass
class _Event:
    t_ns: int
    event: str
    detail: dict[str, Any]


class BoardEmulator:
    """The simulated chair's board: plant, watchdog, link handling, fault injection.

    Drive it with `serve(link, control)` (blocks until `quit` or `stop()`), or step it from a
    test with `on_bytes` / `advance`."""

    def __init__(
        self,
        config: ChairConfig | None = None,
        *,
        body_height_cm: float = 175.0,
        seed: int = 0,
        faults: Sequence[str | FaultSpec] = (),
        thermal_scale: float = 1.0,
        watchdog_ms: float = 90.0,
        clock: Any = time.monotonic_ns,
        start_mm: tuple[float, float, float] | None = None,
        breaks: Iterable[str] = (),
        back: str | None = None,
        depth_load: bool = True,
    ) -> None:
        from sim.plant import SimPlant

        self.config = config or ChairConfig()
        if not 1.0 <= watchdog_ms <= 100.0:
            raise ValueError(f"watchdog_ms must be 1..100 (docs/chair.md §6), got {watchdog_ms}")
        specs = [parse_fault(f) if isinstance(f, str) else f for f in faults]
        for s in specs:
            if s.kind == "estop":
                raise ValueError("estop is the controller's; press it there, not on the board")
        self.plant = SimPlant(
            self.config,
            body_height_cm=body_height_cm,
            seed=seed,
            # where the chair is at power-on (None: park); the controller reads it from the
            # encoders (docs/core.md, Starting from where the chair is)
            params=self._params(thermal_scale, start_mm, back),
        )
        self.back = back
        self.depth_load = depth_load
        """The board measures the depth drive's load: HELLO_ACK says so and STATUS carries it
        (docs/board-protocol.md); else the flag is 0 and the field its sentinel."""
        self.thermal_scale = thermal_scale
        self.body_height_cm = body_height_cm
        self.seed = seed
        self.tick_ns = int(self.plant.tick_ns)
        self.watchdog_ns = int(watchdog_ms * MS)
        self.clock = clock
        self.breaks = check_breaks(breaks)
        self._status_due_ns = 0  # break "slow-status" only
        self._start_faults = [s for s in specs if s.kind != "link_loss"]
        self._link_loss_at_s = sorted(s.at_s for s in specs if s.kind == "link_loss")
        self.rng = random.Random(seed ^ 0x5EED)
        self.decoder = FrameDecoder(expect=CONTROLLER_TO_BOARD)
        self._rx_totals: dict[str, int] = {}
        self.counters: dict[str, int] = {
            "setpoints_applied": 0,
            "invalid_setpoints": 0,
            "refused_setpoints": 0,
            "hellos": 0,
            "statuses_sent": 0,
            "frames_sent": 0,
            "bytes_sent": 0,
            "bytes_corrupted": 0,
            "rx_bytes_ignored": 0,
            "rx_setpoints_ignored": 0,
            "watchdog_trips": 0,
            "overruns": 0,
            "ticks": 0,
            "peers": 0,
        }
        self.events: deque[_Event] = deque(maxlen=200)
        # link state
        self.tx_seq = self.rng.randrange(1 << 16)
        self.cut_until_ns: float | None = None  # silent and deaf
        self.mute_until_ns: float | None = None  # silent: no STATUS, SETPOINTs still applied
        self.deaf_until_ns: float | None = None  # deaf: STATUS goes on, SETPOINTs not applied
        self.received: deque[tuple[int, int, int, float, float, bool]] = deque(maxlen=4000)
        """Every SETPOINT that reached the board while not cut: (t_ns, seq, enable, largest
        |velocity| of the position axes, heater duty, applied) — what the controller
        commanded, as the board saw it (control channel ``setpoints``)."""
        self.corrupt_p = 0.0
        # command state
        self.sp: Setpoint | None = None
        self.sp_rx_ns = 0
        self.last_valid_ns = 0
        self.echo = ECHO_NONE
        self.armed = False  # a valid SETPOINT has arrived (the plant's epoch, timed faults)
        self.outputs = SAFE  # the output state machine (docs/board-protocol.md, The watchdog)
        self.version_ok = True  # the last HELLO spoke our protocol version
        self.trip_ns: int | None = None
        self.epoch_ns: int | None = None
        self._fuse = False
        self._outputs: dict[str, bool] = {}
        self.status: dict[str, Any] = {}
        self.t0_ns = self.clock()
        self.ticks = 0
        self.quit = False
        self.link: Link | None = None
        self.max_loop_gap_ns = 0
        self.max_gc_pause_ns = 0
        """The longest garbage collection while serving (a late loop's suspect, beside the
        host's stalls: tests/stall_witness.py)."""
        self._gc_began_ns = 0
        self.sched_fifo = False

    # ---- state -----------------------------------------------------------------------------

    @property
    def drives_on(self) -> bool:
        return self.outputs == ON

    @property
    def tripped(self) -> bool:
        return self.outputs == TRIPPED

    def _set_outputs(self, state: str, now: int, **detail: Any) -> None:
        if state == self.outputs:
            return
        was = self.outputs
        self.outputs = state
        if state == TRIPPED:
            self.trip_ns = now
            self.counters["watchdog_trips"] += 1
            self._event("watchdog_trip", now, was=was, **detail)
        elif was == TRIPPED:
            self._event("watchdog_cleared", now, **detail)

    @property
    def link_cut(self) -> bool:
        return self.cut_until_ns is not None

    @property
    def silent(self) -> bool:
        return self.cut_until_ns is not None or self.mute_until_ns is not None

    @property
    def deaf(self) -> bool:
        return self.cut_until_ns is not None or self.deaf_until_ns is not None

    def board_faults(self) -> int:
        return (
            (FAULT_WATCHDOG if self.tripped else 0)
            | (FAULT_OVERTEMP if self._fuse else 0)
            | (FAULT_LINK_LOST if "set-link-lost-bit" in self.breaks else 0)
        )

    def _event(self, name: str, t_ns: int | None = None, **detail: Any) -> int:
        t = self.clock() if t_ns is None else t_ns
        self.events.append(_Event(t, name, detail))
        return t

    def rx_counters(self) -> dict[str, int]:
        out = dict(self._rx_totals)
        for k, v in self.decoder.counters.items():
            out[k] = out.get(k, 0) + v
        return out

    def state(self) -> dict[str, Any]:
        """Everything a test wants to know, as plain data (the control channel's ``state``)."""
        now = self.clock()
        sp = self.sp
        return {
            "t_ns": now,
            "board_id": BOARD_ID,
            "armed": self.armed,
            "outputs": self.outputs,
            "version_ok": self.version_ok,
            "breaks": sorted(self.breaks),
            "drives_on": self.drives_on,
            "board_faults": self.board_faults(),
            "watchdog": {
                "timeout_ms": self.watchdog_ns / MS,
                "tripped": self.tripped,
                "trips": self.counters["watchdog_trips"],
                "last_trip_ns": self.trip_ns,
            },
            "last_setpoint_ns": self.last_valid_ns or None,
            "echo_seq": self.echo,
            "setpoint": None
            if sp is None
            else {
                "seq": sp.seq,
                "pos_mm": list(sp.pos_mm),
                "vel_mm_s": list(sp.vel_mm_s),
                "knead_rpm": sp.knead_rpm,
                "tap_hz": sp.tap_hz,
                "heater_duty": sp.heater_duty,
                "enable": sp.enable,
            },
            "link": {
                "spec": None if self.link is None else self.link.spec,
                "cut": self.link_cut,
                "mute": self.mute_until_ns is not None,
                "deaf": self.deaf_until_ns is not None,
                "cut_until_ns": None
                if self.cut_until_ns in (None, math.inf)
                else self.cut_until_ns,
                "corrupt": self.corrupt_p,
            },
            "thermal_scale": self.thermal_scale,
            "sched_fifo": self.sched_fifo,
            "epoch_ns": self.epoch_ns,
            "counters": {
                **self.counters,
                "rx": self.rx_counters(),
                "max_loop_gap_ms": self.max_loop_gap_ns / MS,
                "max_gc_pause_ms": self.max_gc_pause_ns / MS,
                "tx_dropped_bytes": 0 if self.link is None else self.link.tx_dropped,
            },
            "plant": self.plant.state(),
            "sensors": self.status,
            "events": [{"t_ns": e.t_ns, "event": e.event, **e.detail} for e in self.events],
        }

    # ---- input -----------------------------------------------------------------------------

    def on_peer(self) -> None:
        """A new connection (TCP): a fresh decoder; the board's own state carries on."""
        for k, v in self.decoder.counters.items():
            self._rx_totals[k] = self._rx_totals.get(k, 0) + v
        self.decoder = FrameDecoder(expect=CONTROLLER_TO_BOARD)
        self.counters["peers"] += 1
        self._event("peer_connected")

    def on_peer_gone(self, now: int) -> None:
        """The byte stream ended (TCP closed): energised outputs trip at once; otherwise
        nothing (a controller that said goodbye left the board READY)."""
        self._event("peer_gone", now)
        if self.outputs == ON and "no-disconnect-trip" not in self.breaks:
            self._set_outputs(TRIPPED, now, reason="disconnected")

    def on_bytes(self, data: bytes, now: int) -> None:
        if not data:
            return
        if self.link_cut:
            self.counters["rx_bytes_ignored"] += len(data)
            return
        if "ignore-crc" in self.breaks:
            data = _fix_crcs(data)
        if "accept-duplicates" in self.breaks:
            self.decoder.reset_sequence()
        for f in self.decoder.feed(data):
            msg = f.msg
            if isinstance(msg, Setpoint):
                vmax = max((abs(v) for v in msg.vel_mm_s if v == v), default=0.0)
                if self.deaf:
                    self.counters["rx_setpoints_ignored"] += 1
                    self.received.append(
                        (now, msg.seq, int(msg.enable), vmax, msg.heater_duty, False)
                    )
                    continue
                self._apply(msg, now)
                self.received.append(
                    (now, msg.seq, int(msg.enable), vmax, msg.heater_duty, self.echo == msg.seq)
                )
            elif isinstance(msg, Hello):
                self.counters["hellos"] += 1
                self.version_ok = msg.version == PROTOCOL_VERSION
                self._event("hello", now, nonce=msg.nonce, version=msg.version)
                # a new controller never inherits energised outputs, nor a previous one's echo
                if "stale-echo" not in self.breaks:
                    self.echo = ECHO_NONE
                if self.outputs != TRIPPED and not (
                    self.outputs == ON and "hello-keeps-on" in self.breaks
                ):
                    self._set_outputs(SAFE, now)
                self._send(
                    HelloAck(
                        version=msg.version
                        if "ack-their-version" in self.breaks
                        else PROTOCOL_VERSION,
                        watchdog_ms=round(self.watchdog_ns / MS),
                        nonce=(msg.nonce + ("wrong-nonce" in self.breaks)) & 0xFFFFFFFF,
                        status_period_us=self.tick_ns // 1000,
                        flags=ACK_FLAG_DEPTH_LOAD if self.depth_load else 0,
                        board_id=BOARD_ID,
                    )
                )

    def _apply(self, sp: Setpoint, now: int) -> None:
        if not self.version_ok and "no-version-check" not in self.breaks:
            self.counters["refused_setpoints"] += 1
            return
        reason = sp.invalid_reason()
        if reason == "a field carries its sentinel" and "accept-sentinels" in self.breaks:
            reason = None
        if reason is not None:
            self.counters["invalid_setpoints"] += 1
            if "echo-invalid" in self.breaks:
                self.echo = sp.seq
            if "invalid-feeds-watchdog" in self.breaks:
                self.last_valid_ns = now
            return
        self.counters["setpoints_applied"] += 1
        self.sp = sp
        self.sp_rx_ns = now
        self.last_valid_ns = now
        self.echo = sp.seq
        if not self.armed:
            self.armed = True
            self.plant.set_epoch(self.plant.time_ns)
            self.epoch_ns = now
            for spec in self._start_faults:
                self.plant.inject(spec)
            self._event("first_setpoint", now, seq=sp.seq)
        if not sp.enable:
            if not (self.tripped and "sticky-trip" in self.breaks):
                self._set_outputs(READY, now, seq=sp.seq)  # also the acknowledgement of a trip
        elif (
            self.outputs == READY
            or (self.outputs == TRIPPED and "auto-resume" in self.breaks)
            or (self.outputs == SAFE and "energise-from-safe" in self.breaks)
        ):
            self._set_outputs(ON, now, seq=sp.seq)

    # ---- time ------------------------------------------------------------------------------

    def advance(self, now: int) -> None:
        """Watchdog, timed link events, and the plant's ticks due by `now`; one STATUS per
        tick stepped."""
        armed = self.outputs == ON or (self.outputs == READY and "trip-on-goodbye" in self.breaks)
        timeout_ns = SLOW_WATCHDOG_NS if "slow-watchdog" in self.breaks else self.watchdog_ns
        if armed and "no-watchdog" not in self.breaks and now - self.last_valid_ns >= timeout_ns:
            self._set_outputs(TRIPPED, now, since_setpoint_ms=(now - self.last_valid_ns) / MS)
        if self.cut_until_ns is not None and now >= self.cut_until_ns:
            self.cut_until_ns = None
            self._event("link_restored", now)
        if self.mute_until_ns is not None and now >= self.mute_until_ns:
            self.mute_until_ns = None
            self._event("link_restored", now)
        if self.deaf_until_ns is not None and now >= self.deaf_until_ns:
            self.deaf_until_ns = None
            self._event("link_restored", now)
        if (
            self._link_loss_at_s
            and self.epoch_ns is not None
            and (now - self.epoch_ns >= self._link_loss_at_s[0] * 1e9)
        ):
            self._link_loss_at_s.pop(0)
            self.cut_until_ns = math.inf
            self._event("link_cut", now, duration_ms=None, reason="link_loss fault")
        due = (now - self.t0_ns) // self.tick_ns - self.ticks
        if due <= 0:
            return
        if due > MAX_CATCHUP_TICKS:
            self.counters["overruns"] += 1
            self.ticks += due - MAX_CATCHUP_TICKS
            due = MAX_CATCHUP_TICKS
        self.status = self.plant.step(self._plant_setpoint(now), n=due)
        self.ticks += due
        self.counters["ticks"] += due
        self._watch_outputs(now)
        if "slow-status" in self.breaks:
            if now < self._status_due_ns:
                return
            self._status_due_ns = now + SLOW_STATUS_NS
        if not self.silent:
            self._send_status(now)

    def _watch_outputs(self, now: int) -> None:
        """Log what the chair really does (for tests measuring a safe stop from this side):
        drives energised, heater power, motion of the axes (carriage, width, depth) and of the
        motors (kneading, tapping), each against `MOVING_THRESHOLD`."""
        ps = self.plant.state()
        self._fuse = bool(ps["fuse_blown"])  # the pad's fuse: the board's own thermal cut-off
        heating = ps["heater_w"] > 0.0
        moving = any(abs(v) > MOVING_THRESHOLD for v in ps["vel_mm_s"])
        spinning = abs(ps["knead_rpm"]) > MOVING_THRESHOLD or abs(ps["tap_hz"]) > MOVING_THRESHOLD
        drives = self.drives_on
        for name, value in (
            ("drives", drives),
            ("heater", heating),
            ("motion", moving),
            ("motors", spinning),
        ):
            if self._outputs.get(name) != value:
                self._outputs[name] = value
                self._event(f"{name}_{'on' if value else 'off'}", now)

    def _plant_setpoint(self, now: int) -> dict[str, Any]:
        sp = self.sp
        if sp is None or not self.drives_on:
            return {"enable": 0, "heater_duty": 0.0, "knead_rpm": 0.0, "tap_hz": 0.0}
        age_ns = now - self.sp_rx_ns
        k = min(age_ns, EXTRAPOLATE_NS) * 1e-9
        moving = age_ns < EXTRAPOLATE_NS
        return {
            "pos_mm": tuple(p + v * k for p, v in zip(sp.pos_mm, sp.vel_mm_s, strict=True)),
            "vel_mm_s": sp.vel_mm_s if moving else (0.0, 0.0, 0.0),
            "knead_rpm": sp.knead_rpm,
            "tap_hz": sp.tap_hz,
            "heater_duty": sp.heater_duty,
            "enable": 1,
            "seq": sp.seq,
        }

    def _send_status(self, now: int) -> None:
        s = self.status
        on = self.drives_on
        switches = (
            (SW_LIMIT_LOW if s["limit_low"] else 0)
            | (SW_LIMIT_HIGH if s["limit_high"] else 0)
            | (SW_ARM_CONTACT if s["arm_contact"] else 0)
            | (SW_SEAT_OCCUPIED if s["seat_occupied"] else 0)
        )
        heater = on and self.sp is not None and self.sp.heater_duty > 0
        self._send(
            Status(
                echo_seq=self.echo,
                board_time_us=((now - self.t0_ns) // 1000) & 0xFFFFFFFF,
                pos_mm=s["pos_mm"],
                knead_rpm=s["knead_rpm"],
                tap_hz=s["tap_hz"],
                current_a=s["current_a"],
                thermistor_c=s["thermistor_c"],
                supply_v=s["supply_v"],
                switches=switches,
                outputs=(OUT_DRIVES_ON if on else 0) | (OUT_HEATER_ON if heater else 0),
                board_faults=self.board_faults(),
                depth_load_a=(
                    s["depth_load_a"]
                    if self.depth_load and "load-flag-unkept" not in self.breaks
                    else math.nan
                ),
            )
        )
        self.counters["statuses_sent"] += 1

    def _send(self, msg: Any) -> None:
        if self.link is None or self.silent:
            return
        frame = encode(msg, self.tx_seq)
        self.tx_seq = (self.tx_seq + 1) & 0xFFFF
        if self.corrupt_p > 0:
            frame = self._corrupt(frame)
        self.link.write(frame)
        self.counters["frames_sent"] += 1
        self.counters["bytes_sent"] += len(frame)

    def _corrupt(self, frame: bytes) -> bytes:
        out = bytearray(frame)
        rnd = self.rng.random
        p = self.corrupt_p
        for i in range(len(out)):
            if rnd() < p:
                out[i] ^= 1 << self.rng.randrange(8)
                self.counters["bytes_corrupted"] += 1
        return bytes(out)

    # ---- control ---------------------------------------------------------------------------

    def command(self, line: str) -> dict[str, Any]:
        """One control-channel command → the reply's data (raises ValueError for bad ones)."""
        words = line.split()
        if not words:
            raise ValueError("empty command (try: help)")
        cmd, args = words[0].lower(), words[1:]
        now = self.clock()
        if cmd == "help":
            return {
                "t_ns": now,
                "commands": [
                    "state",
                    "fault SPEC",
                    "occupant leave|sit",
                    "link cut|mute|deaf [DURATION]",
                    "link drop",
                    "setpoints [SINCE_NS]",
                    "link restore",
                    "corrupt P",
                    "repair",
                    "break RULE...|none",
                    "quit",
                ],
            }
        if cmd == "state":
            return self.state()
        if cmd == "fault":
            if len(args) != 1:
                raise ValueError("usage: fault KIND[:TARGET][@SECONDSs]")
            return {"t_ns": now, **self.inject(args[0], now)}
        if cmd == "occupant":
            if args not in (["leave"], ["leaves"], ["sit"], ["back"]):
                raise ValueError("usage: occupant leave|sit")
            seated = args[0] in ("sit", "back")
            self.plant.set_occupied(seated)
            self._event("occupant", now, seated=seated)
            return {"t_ns": now, "seated": seated}
        if cmd == "link":
            if args[:1] == ["cut"] and len(args) <= 2:
                dur = parse_duration_s(args[1]) if len(args) == 2 else None
                self.cut_until_ns = math.inf if dur is None else now + int(dur * 1e9)
                self._event("link_cut", now, duration_ms=None if dur is None else dur * 1e3)
                return {"t_ns": now, "cut_ms": None if dur is None else dur * 1e3}
            if args[:1] in (["mute"], ["deaf"]) and len(args) <= 2:
                dur = parse_duration_s(args[1]) if len(args) == 2 else None
                until = math.inf if dur is None else now + int(dur * 1e9)
                if args[0] == "mute":
                    self.mute_until_ns = until
                else:
                    self.deaf_until_ns = until
                self._event(f"link_{args[0]}", now, duration_ms=None if dur is None else dur * 1e3)
                return {"t_ns": now, f"{args[0]}_ms": None if dur is None else dur * 1e3}
            if args == ["drop"]:
                if self.link is None or not self.link.drop():
                    raise ValueError("link drop: no controller connected over TCP")
                self.on_peer_gone(now)
                return {"t_ns": now}
            if args == ["restore"]:
                self.cut_until_ns = self.mute_until_ns = self.deaf_until_ns = None
                self._event("link_restored", now)
                return {"t_ns": now}
            raise ValueError("usage: link cut|mute|deaf [DURATION] | link drop | link restore")
        if cmd == "setpoints":
            since = int(args[0]) if args else 0
            return {
                "t_ns": now,
                "setpoints": [
                    {
                        "t_ns": t,
                        "seq": seq,
                        "enable": en,
                        "max_speed_mm_s": v,
                        "heater_duty": duty,
                        "applied": applied,
                    }
                    for t, seq, en, v, duty, applied in list(self.received)
                    if t >= since
                ],
            }
        if cmd == "corrupt":
            if len(args) != 1:
                raise ValueError("usage: corrupt P (a fraction 0..1 of the bytes sent)")
            p = float(args[0])
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"corrupt: P must be 0..1, got {args[0]}")
            self.corrupt_p = p
            self._event("corrupt", now, p=p)
            return {"t_ns": now, "corrupt": p}
        if cmd == "repair":
            return {"t_ns": now, **self.repair()}
        if cmd == "break":
            if not args:
                raise ValueError(f"usage: break RULE... | break none (rules: {', '.join(BREAKS)})")
            self.breaks = check_breaks([] if args == ["none"] else args)
            self._event("breaks", now, rules=sorted(self.breaks))
            return {"t_ns": now, "breaks": sorted(self.breaks)}
        if cmd == "quit":
            self.quit = True
            return {"t_ns": now}
        raise ValueError(f"unknown command {cmd!r} (try: help)")

    def inject(self, text: str, now: int) -> dict[str, Any]:
        """``KIND[:TARGET]`` now, or ``KIND[:TARGET]@Ts`` at T after the first setpoint."""
        timed = "@" in text
        spec = parse_fault(text if timed else text + "@0s")
        if spec.kind == "estop":
            raise ValueError("estop is the controller's; press it there, not on the board")
        if spec.kind == "link_loss":
            if timed:
                self._link_loss_at_s.append(spec.at_s)
                self._link_loss_at_s.sort()
            else:
                self.cut_until_ns = math.inf
                self._event("link_cut", now, duration_ms=None, reason="link_loss fault")
            return {"fault": str(spec)}
        if not self.armed:
            self._start_faults.append(spec)  # counts from the first setpoint, like --fault
        elif timed:
            self.plant.inject(spec)
        else:  # now: the plant applies it at its next tick
            epoch = self.plant.epoch_ns or 0
            at = max(0.0, (self.plant.time_ns - epoch) / 1e9)
            spec = FaultSpec(kind=spec.kind, at_s=at, target=spec.target)
            self.plant.inject(spec)
        self._event("fault_injected", now, fault=str(spec))
        return {"fault": str(spec)}

    @staticmethod
    def _params(
        thermal_scale: float, start_mm: Sequence[float] | None, back: str | None
    ) -> PlantParams:
        """The plant's parameters: the pad's time scale, where the chair is at power-on (None:
        park), the back's curve family (None: the flat back)."""
        base = thermal_params(thermal_scale)
        body = base.body.model_copy(update={"back": back})
        start = None if start_mm is None else tuple(start_mm)
        return base.model_copy(update={"start_mm": start, "body": body})

    def repair(self) -> dict[str, Any]:
        """Test hook: the faulty parts are replaced. A fresh plant takes over at the old one's
        positions, at rest, with the same occupant; every fault (pending ones too) is gone and
        the pad is back at its rest temperature. The board's own state (watchdog, link) stays."""
        from sim.plant import SimPlant

        old = self.plant.state()
        params = self._params(self.thermal_scale, tuple(old["pos_mm"]), self.back)
        self.plant = SimPlant(
            self.config, body_height_cm=self.body_height_cm, seed=self.seed, params=params
        )
        self.plant.set_occupied(old["occupied"])
        self._start_faults.clear()
        self._link_loss_at_s.clear()
        self._fuse = False
        self._event("repaired", cleared=old["active_faults"] + old["pending_faults"])
        return {"cleared": old["active_faults"] + old["pending_faults"]}

    # ---- the loop --------------------------------------------------------------------------

    def serve(self, link: Link, control: ControlServer | None = None) -> None:
        """Run until `quit` (control channel) or `stop()`. Single-threaded: select() on the link
        and the control channel, woken at least every tick."""
        self.link = link
        self.sched_fifo = _realtime_priority(BOARD_RT_PRIORITY)
        # what start-up made is never scanned again: a full collection of it took 8-12 ms on an
        # idle 2-vCPU VM, and a real-time loop cannot hide that beside a CPU hog; the loop's own
        # garbage stays young and cheap (the collections are timed: `max_gc_pause_ms`)
        gc.collect()
        gc.freeze()
        gc.callbacks.append(self._time_gc)
        self.t0_ns = self.clock()
        self.ticks = 0
        self._event("started", link=link.spec)
        try:
            last = self.clock()
            while not self.quit:
                now = self.clock()
                self.max_loop_gap_ns = max(self.max_loop_gap_ns, now - last)
                last = now
                next_tick = self.t0_ns + (self.ticks + 1) * self.tick_ns
                timeout = max(0.0, (next_tick - now) / 1e9)
                fds = link.fds() + ([] if control is None else control.fds())
                try:
                    ready, _, _ = select.select(fds, [], [], timeout)
                except InterruptedError:  # pragma: no cover - PEP 475 retries; belt and braces
                    ready = []
                for fd in ready:
                    if fd in link.fds():
                        data, peer = link.readable(fd)
                        if peer == "connected":
                            self.on_peer()
                        elif peer == "gone":
                            self.on_peer_gone(self.clock())
                        self.on_bytes(data, self.clock())
                    elif control is not None:
                        control.readable(fd, self)
                self.advance(self.clock())
        finally:
            self.link = None
            gc.callbacks.remove(self._time_gc)
            gc.unfreeze()

    def _time_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.monotonic_ns()
        if phase == "start":
            self._gc_began_ns = now
        elif self._gc_began_ns:
            self.max_gc_pause_ns = max(self.max_gc_pause_ns, now - self._gc_began_ns)

    def stop(self) -> None:
        self.quit = True


def check_breaks(rules: Iterable[str]) -> frozenset[str]:
    """``--break`` rules → the set of them (ValueError naming an unknown one)."""
    out = frozenset(rules)
    unknown = sorted(out - set(BREAKS))
    if unknown:
        raise ValueError(f"unknown break {unknown[0]!r} (one of: {', '.join(BREAKS)})")
    return out


def _fix_crcs(data: bytes) -> bytes:
    """Break hook ``ignore-crc``: every whole frame in `data` gets the CRC it should have, so the
    decoder accepts a frame whatever CRC it came with."""
    out = bytearray(data)
    i = out.find(SYNC)
    while i >= 0 and i + HEADER_SIZE <= len(out):
        length = out[i + 2]
        end = i + HEADER_SIZE + length + CRC_SIZE
        if length <= MAX_PAYLOAD and end <= len(out):
            out[end - CRC_SIZE : end] = crc16(out[i + 2 : end - CRC_SIZE]).to_bytes(2, "little")
            i = out.find(SYNC, end)
        else:
            i = out.find(SYNC, i + 1)
    return bytes(out)


def parse_faults(specs: Iterable[str]) -> list[FaultSpec]:
    """``--fault`` values → specs, refusing what the board cannot act out (ValueError)."""
    out = []
    for s in specs:
        spec = parse_fault(s)
        if spec.kind == "estop":
            raise ValueError(f"--fault {s}: estop is the controller's; press it there")
        out.append(spec)
    return out
