"""The board link driver: the controller's side of the board protocol (HIL, or a real chair).

`open_board_link("serial:/dev/ttyUSB0", config)` (or ``tcp:HOST:PORT``) returns a `BoardLink`:
the core's hardware seam (`core_rt.board.mailbox.LinkHardware`, whose `exchange` the tick calls
without the GIL) plus one plain `threading` thread doing the I/O on a raw port
(`core_rt.board.transport`), so the asyncio loop can never starve it:

- **Out**, every `period_s` (2 ms, 500 Hz): the latest setpoint the tick published, as a SETPOINT
  frame. Before the core's first tick it sends *priming* SETPOINTs (enable 0) so the board answers
  and the first tick already sees a fresh status. A setpoint older than `setpoint_max_age_ns`
  (the tick has stopped) is not sent: the board's own watchdog then stops the chair.
- **In**: STATUS frames, decoded and validated (`core_rt.board.protocol.FrameDecoder`). A status
  counts only if it echoes a SETPOINT this link sent; the tick judges freshness from that
  SETPOINT's send time (a round trip), so silence in either direction makes the link stale.
- **Engage, bumpless.** The driver passes the core's ``enable = 1`` to the board only once the
  commanded motion is (nearly) at rest and within `ENGAGE_TOLERANCE_MM` of the measured encoders;
  until then it sends enable 0. After the board reports a watchdog stop it disengages again (that
  enable 0 is also the acknowledgement the board waits for). So a board that stopped on its own
  never jumps back to a stale setpoint when the link returns: nothing resumes by itself.
- **Reconnects** (tcp and serial): on EOF or an I/O error it reopens the port with back-off and
  says HELLO again; meanwhile the status goes stale and the core faults ``link_lost``.

`BoardLink.counters()` has frames in/out, drops by reason, resyncs, round-trip times, reconnects
(for `chair bench` and tests). `close()` stops the thread. The protocol and its timings:
docs/board-protocol.md.
"""

from __future__ import annotations

import errno
import os
import random
import threading
import time
from collections import deque
from typing import Any

from core_rt.board.mailbox import DEFAULT_STALE_NS, LinkHardware
from core_rt.board.protocol import (
    BOARD_TO_CONTROLLER,
    FAULT_WATCHDOG,
    PRIMING_BIT,
    FrameDecoder,
    Hello,
    HelloAck,
    Setpoint,
    Status,
    encode,
)
from core_rt.board.transport import Port, open_port, parse_spec
from core_rt.config import ChairConfig

MS = 1_000_000
LINK_DEADLINE_MS = 100.0
"""A lost link is detected within this (stale time + config.faults.link_lost_ms): link_lost's
deadline in docs/core.md (The guard)."""
ENGAGE_TOLERANCE_MM = 2.0
"""Commanded vs measured position (each axis) within which the driver lets the board energise."""
ENGAGE_MAX_SPEED_MM_S = 5.0
ENGAGE_MAX_RPM = 5.0
ENGAGE_MAX_HZ = 1.0
"""...and the commanded motion must be this slow (a move just starting is; a stale one is not)."""
HELLO_RETRY_NS = 100 * MS
LINK_RT_PRIORITY = 60
"""SCHED_FIFO priority of the I/O thread when permitted (the core's loop runs at 80)."""
SENT_MEMORY = 512
"""SETPOINTs remembered for matching echoes (about 1 s at 500 Hz)."""


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


class BoardLink(LinkHardware):
    """A board link: the tick's seam (inherited) plus the I/O thread. Use `open_board_link`."""

    def __init__(
        self,
        spec: str,
        config: ChairConfig | None = None,
        *,
        period_s: float = 0.002,
        stale_ns: int | None = None,
        setpoint_max_age_ns: int = 20 * MS,
    ) -> None:
        cfg = config or ChairConfig()
        lost_ms = cfg.faults.link_lost_ms
        if stale_ns is None:
            # stale + link_lost + a frame period and a tick of slack stay inside the deadline
            budget_ms = LINK_DEADLINE_MS - lost_ms - 10.0
            if budget_ms < 5.0:
                raise ValueError(
                    f"config faults.link_lost_ms = {lost_ms:g} leaves no room for "
                    f"the {LINK_DEADLINE_MS:g} ms link deadline"
                )
            stale_ns = min(DEFAULT_STALE_NS, int(budget_ms * MS))
        super().__init__(stale_ns=stale_ns)
        if not 0.0005 <= period_s <= 0.005:
            raise ValueError("period_s must be 0.5–5 ms (the board needs >= 200 frames/s)")
        self.spec = spec
        parse_spec(spec)  # a bad spec fails here, not later in the I/O thread
        self.send_period_ns = int(period_s * 1e9)
        self.setpoint_max_age_ns = setpoint_max_age_ns
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._port: Port | None = None
        self._lock = threading.Lock()  # the decoder swap on reconnect vs. counters()
        self._rtt_ns: deque[int] = deque(maxlen=20000)
        self._rx_totals: dict[str, int] = {}
        self.decoder = FrameDecoder(expect=BOARD_TO_CONTROLLER)
        self.engaged = False
        self.board: HelloAck | None = None
        self.last_status: Status | None = None
        self.last_error: str | None = None
        self.c: dict[str, int] = {
            "frames_out": 0,
            "setpoints_out": 0,
            "priming_out": 0,
            "hellos_out": 0,
            "bytes_out": 0,
            "tx_dropped_bytes": 0,
            "frames_in": 0,
            "statuses_in": 0,
            "hello_acks_in": 0,
            "bytes_in": 0,
            "unmatched_echo": 0,
            "stale_core_setpoints": 0,
            "late_sends": 0,
            "connects": 0,
            "disconnects": 0,
            "connect_failures": 0,
            "engages": 0,
            "disengages": 0,
            "board_watchdog_seen": 0,
        }
        self.started_ns = 0
        self.max_status_gap_ns = 0
        self._last_rx_ns = 0
        self.sched_fifo = False

    # ---- life cycle ------------------------------------------------------------------------

    def start(self, first_port: Port | None = None) -> None:
        self.started_ns = time.monotonic_ns()
        self._thread = threading.Thread(
            target=self._run, args=(first_port,), name="board-link", daemon=True
        )
        self._thread.start()

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the board has answered HELLO and echoed a SETPOINT of ours."""
        return self._ready.wait(timeout_s)

    def close(self) -> None:
        """Stop the I/O thread and close the port (the board's watchdog then stops the chair)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- the I/O thread --------------------------------------------------------------------

    def _run(self, port: Port | None) -> None:
        # a link is part of the control loop: ask for real-time priority (below the core's
        # tick), as the core's loop does; without the privilege it runs as a normal thread
        try:
            os.sched_setscheduler(
                threading.get_native_id(), os.SCHED_FIFO, os.sched_param(LINK_RT_PRIORITY)
            )
            self.sched_fifo = True
        except (OSError, AttributeError):
            self.sched_fifo = False
        backoff = 0.05
        while not self._stop.is_set():
            if port is None:
                try:
                    port = open_port(self.spec)
                except OSError as e:
                    self.c["connect_failures"] += 1
                    self.last_error = f"{self.spec}: {e.strerror or e}"
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 1.0)
                    continue
            backoff = 0.05
            self.c["connects"] += 1
            self._port = port
            try:
                self._session(port)
            except OSError as e:
                self.last_error = f"{self.spec}: {e.strerror or e}"
            finally:
                port.close()
                self._port = None
                port = None
            if not self._stop.is_set():
                self.c["disconnects"] += 1
                self._stop.wait(0.05)

    def _session(self, port: Port) -> None:
        """One connection: HELLO until acknowledged, then SETPOINTs out and STATUSes in."""
        with self._lock:
            for k, v in self.decoder.counters.items():
                self._rx_totals[k] = self._rx_totals.get(k, 0) + v
            self.decoder = FrameDecoder(expect=BOARD_TO_CONTROLLER)
        rng = random.Random()
        tx_seq = rng.randrange(1 << 16)
        nonce = rng.randrange(1, 1 << 32)
        sent: dict[int, int] = {}  # setpoint seq -> first send time (mono ns), oldest first
        self._last_rx_ns = 0
        acked = False
        priming = 0
        last_echo = -1
        self.engaged = False
        now = time.monotonic_ns()
        hello_due = now
        next_send = now

        def send(msg: Any) -> None:
            nonlocal tx_seq
            frame = encode(msg, tx_seq)
            tx_seq = (tx_seq + 1) & 0xFFFF
            self.c["tx_dropped_bytes"] += port.write(frame)
            self.c["frames_out"] += 1
            self.c["bytes_out"] += len(frame)

        while not self._stop.is_set():
            now = time.monotonic_ns()
            due = next_send if acked else hello_due
            timeout = max(0.0, (due - now) / 1e9)
            data = port.read(timeout)
            now = time.monotonic_ns()
            if data is None:
                return
            if data:
                self.c["bytes_in"] += len(data)
                for f in self.decoder.feed(data):
                    msg = f.msg
                    self.c["frames_in"] += 1
                    if isinstance(msg, Status):
                        self.c["statuses_in"] += 1
                        t_sent = sent.get(msg.echo_seq)
                        if t_sent is None:
                            self.c["unmatched_echo"] += 1  # not ours (a previous controller's)
                            continue
                        if msg.echo_seq != last_echo:
                            last_echo = msg.echo_seq
                            self._rtt_ns.append(now - t_sent)
                        if self._last_rx_ns:
                            self.max_status_gap_ns = max(
                                self.max_status_gap_ns, now - self._last_rx_ns
                            )
                        self._last_rx_ns = now
                        self._on_status(msg, t_sent, now)
                    elif isinstance(msg, HelloAck) and msg.nonce == nonce and not acked:
                        self.c["hello_acks_in"] += 1
                        self.board = msg
                        acked = True
                        next_send = now
            if not acked:
                if now >= hello_due:
                    send(Hello(setpoint_period_us=self.send_period_ns // 1000, nonce=nonce))
                    self.c["hellos_out"] += 1
                    hello_due = now + HELLO_RETRY_NS
                continue
            if now < next_send:
                continue
            next_send += self.send_period_ns
            if next_send <= now:
                self.c["late_sends"] += 1
                next_send = now + self.send_period_ns
            sp = self.take_setpoint()
            if sp is None:  # the core has not ticked yet: prime with a harmless "drives off"
                msg = Setpoint(seq=PRIMING_BIT | (priming & 0x7FFFFFFF), enable=False)
                priming += 1
                self.c["priming_out"] += 1
            else:
                seq, published_ns, _t, pos, vel, knead, tap, duty, enable = sp
                if now - published_ns > self.setpoint_max_age_ns:
                    self.c["stale_core_setpoints"] += 1  # the tick stopped: let the board stop
                    continue
                if not self.engaged:
                    self._try_engage(pos, vel, knead, tap)
                msg = Setpoint(
                    seq=seq,
                    pos_mm=pos,
                    vel_mm_s=vel,
                    knead_rpm=knead,
                    tap_hz=tap,
                    heater_duty=duty,
                    enable=bool(enable) and self.engaged,
                )
                self.c["setpoints_out"] += 1
            if msg.seq not in sent:
                sent[msg.seq] = now
                if len(sent) > SENT_MEMORY:
                    del sent[next(iter(sent))]
            send(msg)

    def _on_status(self, st: Status, t_sent: int, now: int) -> None:
        self.last_status = st
        if st.board_faults & FAULT_WATCHDOG:
            self.c["board_watchdog_seen"] += 1
            if self.engaged:
                self.engaged = False  # the board stopped on its own: re-engage bumplessly only
                self.c["disengages"] += 1
        self.put_status(
            (
                st.pos_mm,
                st.knead_rpm,
                st.tap_hz,
                st.current_a,
                st.thermistor_c,
                st.supply_v,
                st.limit_low,
                st.limit_high,
                st.arm_contact,
                st.seat_occupied,
                st.board_faults,
            ),
            t_sent,
            now,
        )
        if not self._ready.is_set():
            self._ready.set()

    def _try_engage(
        self,
        pos: tuple[float, float, float],
        vel: tuple[float, float, float],
        knead: float,
        tap: float,
    ) -> None:
        st = self.last_status
        if st is None or st.board_faults & FAULT_WATCHDOG:
            return
        if (
            any(abs(v) > ENGAGE_MAX_SPEED_MM_S for v in vel)
            or abs(knead) > ENGAGE_MAX_RPM
            or abs(tap) > ENGAGE_MAX_HZ
        ):
            return
        if all(abs(p - m) <= ENGAGE_TOLERANCE_MM for p, m in zip(pos, st.pos_mm, strict=True)):
            self.engaged = True
            self.c["engages"] += 1

    # ---- numbers ---------------------------------------------------------------------------

    def rtt_ms(self) -> list[float]:
        """Round trips so far: SETPOINT sent → first STATUS echoing it received, ms."""
        return [x / 1e6 for x in list(self._rtt_ns)]

    def counters(self) -> dict[str, Any]:
        """Frames and bytes each way, drops by reason, resyncs, round trips, reconnects."""
        with self._lock:
            rx = dict(self._rx_totals)
            for k, v in self.decoder.counters.items():
                rx[k] = rx.get(k, 0) + v
        rtt = self.rtt_ms()
        last_rtt = rtt[-1] if rtt else None
        elapsed = max(1e-9, (time.monotonic_ns() - self.started_ns) / 1e9)
        return {
            **self.c,
            "rx": rx,
            "drops": {
                k: rx.get(k, 0)
                for k in (
                    "bad_crc",
                    "bad_length",
                    "unknown_type",
                    "unexpected_type",
                    "duplicate",
                    "out_of_order",
                )
            },
            "resyncs": rx.get("resyncs", 0),
            "rtt_last_ms": last_rtt,
            "rtt_p50_ms": _percentile(rtt, 0.5),
            "rtt_p99_ms": _percentile(rtt, 0.99),
            "rtt_samples": len(rtt),
            "max_status_gap_ms": self.max_status_gap_ns / 1e6,
            "seconds": elapsed,
            "engaged": self.engaged,
            "connected": self._port is not None,
            "sched_fifo": self.sched_fifo,
            "last_error": self.last_error,
            "tick": self.link_counters(),
        }


def open_board_link(
    spec: str, config: ChairConfig, *, timeout_s: float = 3.0, **kw: Any
) -> BoardLink:
    """Open a board link (``serial:PATH`` or ``tcp:HOST:PORT``) and wait until the board answers.

    Raises ValueError for a bad spec and OSError when the port can't be opened or no board
    answers within `timeout_s`."""
    link = BoardLink(spec, config, **kw)
    try:
        port = open_port(spec)  # fail now, with the OS's reason
    except OSError as e:
        raise OSError(e.errno, f"{spec}: {e.strerror or e}") from None
    link.start(port)
    if not link.wait_ready(timeout_s):
        link.close()
        why = "no HELLO reply" if link.board is None else "no STATUS echoing our SETPOINTs"
        raise OSError(
            errno.ETIMEDOUT, f"no board answering on {spec} ({why} within {timeout_s:g} s)"
        )
    return link
