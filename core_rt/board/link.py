"""The board link driver: the controller's side of the board protocol (HIL, or a real chair).

`open_board_link("serial:/dev/ttyUSB0", config)` (or ``tcp:HOST:PORT``) returns a `BoardLink`:
the core's hardware seam (`core_rt.board.mailbox.LinkHardware`, whose `exchange` the tick calls
without the GIL) plus one I/O thread. The thread opens the port (`core_rt.board.transport`) and
then spends each connection inside C without the GIL (`core_rt/include/board_io.h`, at
SCHED_FIFO when permitted), so neither the GIL, the garbage collector nor a busy asyncio loop can
make the link late:

- **Out**, every `period_s` (2 ms, 500 Hz): the latest setpoint the tick published, as a SETPOINT
  with the link's own sequence number (1, 2, ... from each HELLO_ACK). Before the core's first
  tick it sends *priming* SETPOINTs (flag PRIMING, enable 0) so the board answers and the first
  tick already sees a fresh status.
- **In**: STATUS frames. A status counts only if it echoes a SETPOINT this connection sent; the
  tick judges freshness from that SETPOINT's send time (a round trip), so silence in either
  direction makes the link stale.
- **Engage, bumpless.** The core's ``enable = 1`` reaches the board only once the commanded
  motion is (nearly) at rest and within `config.link.engage_tolerance_mm` of the encoders; after
  a board watchdog report it disengages again. Nothing resumes by itself.
- **Drives off without asking the core** when no round trip has been confirmed for the link's
  whole deadline (stale time + `config.faults.link_lost_ms`): enable 0, heater 0. When the tick
  has stopped publishing (a setpoint older than `setpoint_max_age_ns`) it sends nothing: the
  board's watchdog stops the chair unless the tick comes back.
- **Goodbye.** `close()` sends drives-off SETPOINTs until the board echoes one (at most
  `config.link.goodbye_ms`) before it closes the port: the board's watchdog is for failures only.
- **Reconnects** (tcp and serial): on EOF or an I/O error it reopens the port with back-off and
  says HELLO again; meanwhile the status goes stale and the core faults ``link_lost``.
- A board speaking another protocol version (or with a watchdog above 100 ms, or a STATUS period
  above 5 ms) is **refused**: `open_board_link` raises with the reason.

`BoardLink.counters()` has frames and bytes each way, drops by reason, resyncs, round trips,
SETPOINT and STATUS gaps, reconnects, engages, forced stops, goodbyes (for the session summary's
``link`` section, the MQTT state, `chair bench` and tests). The protocol and its timings:
docs/board-protocol.md.
"""

from __future__ import annotations

import errno
import os
import random
import threading
import time
from typing import Any

from core_rt.board.mailbox import DEFAULT_STALE_NS, LinkHardware
from core_rt.board.transport import Port, open_port, parse_spec
from core_rt.config import ChairConfig
from core_rt.rtloop import hist_percentile

MS = 1_000_000
END_STOPPED, END_EOF, END_IO_ERROR, END_REFUSED = 0, 1, 2, 3
"""How a connection of the C loop ended (BIO_END_* of core_rt/include/board_io.h)."""


def link_thread_priority(priority: int) -> bool:
    """Ask for SCHED_FIFO `priority` (config.link.rt_priority) for the calling thread: a link is
    part of the control loop (below the core's tick), as the core's loop does; without the
    privilege it runs as a normal thread (False)."""
    try:
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError):
        return False
    return True


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
        self.link_config = lk = cfg.link
        lost_ms = cfg.faults.link_lost_ms
        if stale_ns is None:
            # stale + link_lost + a frame period and a tick of slack stay inside the deadline
            budget_ms = lk.deadline_ms - lost_ms - 10.0
            if budget_ms < 5.0:
                raise ValueError(
                    f"config faults.link_lost_ms = {lost_ms:g} leaves no room for "
                    f"the {lk.deadline_ms:g} ms link deadline"
                )
            stale_ns = min(DEFAULT_STALE_NS, int(budget_ms * MS))
        super().__init__(stale_ns=stale_ns)
        if not 0.0005 <= period_s <= 0.005:
            raise ValueError("period_s must be 0.5–5 ms (the board needs >= 200 frames/s)")
        self.spec = spec
        parse_spec(spec)  # a bad spec fails here, not later in the I/O thread
        self.send_period_ns = int(period_s * 1e9)
        self.setpoint_max_age_ns = setpoint_max_age_ns
        self.force_off_ns = stale_ns + int(lost_ms * MS)
        """No confirmed round trip for this long: the link itself sends drives off (the core
        latches link_lost at the same time, and de-energises too)."""
        self._io_configure(
            period_ns=self.send_period_ns,
            hello_retry_ns=int(lk.hello_retry_ms * MS),
            max_age_ns=setpoint_max_age_ns,
            force_off_ns=self.force_off_ns,
            goodbye_ns=int(lk.goodbye_ms * MS),
            engage_tol_mm=lk.engage_tolerance_mm,
            engage_max_speed_mm_s=lk.engage_max_speed_mm_s,
            engage_max_rpm=lk.engage_max_rpm,
            engage_max_hz=lk.engage_max_hz,
        )
        self._stop = threading.Event()
        self._ready = threading.Event()  # set on the first fresh status, or on a refusal
        self._thread: threading.Thread | None = None
        self._port: Port | None = None
        self.refused: str | None = None
        self.last_error: str | None = None
        self.c: dict[str, int] = {"connects": 0, "disconnects": 0, "connect_failures": 0}
        self.started_ns = 0
        self.sched_fifo = False

    # ---- life cycle ------------------------------------------------------------------------

    def start(self, first_port: Port | None = None) -> None:
        self.started_ns = time.monotonic_ns()
        self._thread = threading.Thread(
            target=self._run, args=(first_port,), name="board-link", daemon=True
        )
        self._thread.start()

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the board has answered HELLO and echoed a SETPOINT of ours (False on a
        timeout, or when the board was refused: `refused` says why)."""
        # the C loop has no way to set a Python event without the GIL: look every 5 ms (once,
        # at connect; a refusal sets the event and ends the wait at once)
        deadline = time.monotonic() + timeout_s
        while not self.io_outcome()["ready"]:
            left = deadline - time.monotonic()
            if left <= 0 or self._ready.wait(min(left, 0.005)):
                break
        return self.refused is None and bool(self.io_outcome()["ready"])

    def close(self) -> None:
        """Say goodbye (drives and heater off, echoed by the board, at most `goodbye_ms`), stop
        the I/O thread and close the port. Idempotent."""
        self._stop.set()
        self._io_stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def engaged(self) -> bool:
        return bool(self.io_outcome()["engaged"])

    # ---- the I/O thread --------------------------------------------------------------------

    def _run(self, port: Port | None) -> None:
        self.sched_fifo = link_thread_priority(self.link_config.rt_priority)
        rng = random.Random()
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
                end = self._io_run(
                    port.fileno(),
                    port.sock is not None,
                    rng.randrange(1, 1 << 32),
                    rng.randrange(1 << 16),
                )
            finally:
                port.close()
                self._port = None
                port = None
            if end == END_REFUSED:
                self.refused = self.io_outcome()["refused"]
                self.last_error = f"{self.spec}: {self.refused}"
                self._ready.set()  # wake open_board_link: it raises with the reason
                return  # never drive this board; a new `chair serve` may try again
            if end == END_IO_ERROR:
                errno_ = self.io_outcome()["last_errno"]
                self.last_error = f"{self.spec}: {os.strerror(errno_) if errno_ else 'I/O error'}"
            if not self._stop.is_set():
                self.c["disconnects"] += 1
                # a connection that ended is a lost link: the board has stopped (its watchdog, or
                # at once when it saw the hang-up), so the core must latch link_lost before a new
                # connection can bring fresh statuses — nothing resumes by itself
                last = int(self.io_outcome()["last_confirmed_ns"])
                margin_ns = int(self.link_config.reconnect_margin_ms * MS)
                hold_ns = last + self.force_off_ns + margin_ns - time.monotonic_ns()
                self._stop.wait(max(0.05, hold_ns / 1e9))

    # ---- numbers ---------------------------------------------------------------------------

    def rtt_ms(self) -> list[float]:
        """Round trips kept (the latest 4096): SETPOINT sent → first STATUS echoing it, ms."""
        return [x / 1e6 for x in self.io_rtt_ns()]

    def counters(self) -> dict[str, Any]:
        """Frames and bytes each way, drops by reason, resyncs, round trips, SETPOINT and STATUS
        gaps, reconnects, engages, forced stops, goodbyes (docs/board-protocol.md, The
        controller's side)."""
        io = self.io_counters()
        rx = dict(io.pop("rx"))
        if self._port is not None:  # the running connection's decoder, not yet summed
            for k, v in self.io_rx_live().items():
                rx[k] += v
        rtt = self.rtt_ms()
        bin_us, sp_gaps, st_gaps = self.io_gap_histograms()
        outcome = self.io_outcome()
        elapsed = max(1e-9, (time.monotonic_ns() - self.started_ns) / 1e9)
        return {
            **io,
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
            "seq_gaps": rx.get("seq_gaps", 0),
            "rtt_last_ms": rtt[-1] if rtt else None,
            "rtt_p50_ms": _percentile(rtt, 0.5),
            "rtt_p99_ms": _percentile(rtt, 0.99),
            "rtt_samples": len(rtt),
            "setpoint_gap_p50_ms": _hist_ms(sp_gaps, bin_us, 0.5),
            "setpoint_gap_p99_ms": _hist_ms(sp_gaps, bin_us, 0.99),
            "status_gap_p50_ms": _hist_ms(st_gaps, bin_us, 0.5),
            "status_gap_p99_ms": _hist_ms(st_gaps, bin_us, 0.99),
            "seconds": elapsed,
            "engaged": outcome["engaged"],
            "connected": outcome["connected"],
            "board": outcome["board"],
            "sched_fifo": self.sched_fifo,
            "last_error": self.last_error,
            "tick": self.link_counters(),
        }

    def report(self) -> dict[str, Any]:
        """The link's counters for people (the session summary's and the MQTT state's ``link``,
        `chair serve`'s log), each documented in docs/board-protocol.md (Counters)."""
        c = self.counters()
        rx = c["rx"]

        def ms(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return {
            "board": c["board"],
            "connected": c["connected"],
            "engaged": c["engaged"],
            "sched_fifo": c["sched_fifo"],
            "setpoints_out": c["setpoints_out"],
            "statuses_in": c["statuses_in"],
            "bytes_out": c["bytes_out"],
            "bytes_in": c["bytes_in"],
            "drops": {
                **c["drops"],
                "garbage_bytes": rx["garbage_bytes"],
                "unmatched_echo": c["unmatched_echo"],
                "tx_dropped_bytes": c["tx_dropped_bytes"],
            },
            "resyncs": c["resyncs"],
            "seq_gaps": c["seq_gaps"],
            "rtt_ms": {"p50": ms(c["rtt_p50_ms"]), "p99": ms(c["rtt_p99_ms"])},
            "setpoint_gap_ms": {
                "p50": ms(c["setpoint_gap_p50_ms"]),
                "p99": ms(c["setpoint_gap_p99_ms"]),
                "max": ms(c["max_setpoint_gap_ms"]),
            },
            "status_gap_ms": {
                "p50": ms(c["status_gap_p50_ms"]),
                "p99": ms(c["status_gap_p99_ms"]),
                "max": ms(c["max_status_gap_ms"]),
            },
            "stale_episodes": c["tick"]["stale_episodes"],
            "late_sends": c["late_sends"],
            # the I/O thread's own worst wake-up: how late, when (CLOCK_MONOTONIC ns), and the
            # context switches across that wait (involuntary: preempted; voluntary: blocked)
            "io_thread": {
                "wake_late_max_ms": ms(c["max_wake_late_ms"]),
                "wake_late_at_mono_ns": c["max_wake_late_at_ns"],
                "wake_late_vcsw": c["max_wake_late_vcsw"],
                "wake_late_ivcsw": c["max_wake_late_ivcsw"],
                "turn_max_ms": ms(c["max_turn_ms"]),
            },
            "stale_core_setpoints": c["stale_core_setpoints"],
            "connects": c["connects"],
            "disconnects": c["disconnects"],
            "engages": c["engages"],
            "disengages": c["disengages"],
            "forced_off": c["forced_off"],
            "board_watchdog_seen": c["board_watchdog_seen"],
            "goodbyes": c["goodbyes"],
            "last_error": c["last_error"],
        }


def _hist_ms(hist: list[int], bin_us: float, q: float) -> float | None:
    v = hist_percentile(hist, bin_us, q)
    return None if v != v else v / 1e3  # NaN: no samples


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
        if link.refused is not None:
            raise OSError(errno.EPROTO, f"{spec}: {link.refused}")
        why = (
            "no HELLO reply"
            if not link.io_outcome()["acked"]
            else "no STATUS echoing our SETPOINTs"
        )
        raise OSError(
            errno.ETIMEDOUT, f"no board answering on {spec} ({why} within {timeout_s:g} s)"
        )
    return link
