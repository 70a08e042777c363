"""The link benchmark's baseline: the board link's I/O as it was before it moved into C.

One Python thread (SCHED_FIFO when permitted) doing the connection the way `core_rt.board.link`
did until protocol 2's C loop (`core_rt/include/board_io.h`): select() on the port, the reference
codec (`core_rt.board.protocol`), a SETPOINT every 2 ms. It needs the GIL for every frame, so any
Python thread holding the GIL delays it. Kept only so `chair bench` can measure the C loop beside
it in the same run, on the same board; never used to drive a chair (it has no engage rule and no
goodbye: it sends enable 0 throughout).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from core_rt.board.link import MS, link_thread_priority
from core_rt.board.mailbox import LinkHardware
from core_rt.board.protocol import (
    BOARD_TO_CONTROLLER,
    SP_FLAG_PRIMING,
    FrameDecoder,
    Hello,
    HelloAck,
    Setpoint,
    Status,
    encode,
    next_setpoint_seq,
)
from core_rt.board.transport import open_port
from core_rt.config import ChairConfig
from core_rt.rtloop import hist_percentile

GAP_BIN_US = 10.0
GAP_BINS = 10001  # 10 µs bins over [0, 100 ms) + overflow, as the C loop's


class PythonLink(LinkHardware):
    """The baseline link on `spec` (``serial:PATH`` or ``tcp:HOST:PORT``): `start()`, `close()`,
    `counters()` with the same gap figures as `BoardLink.counters()`."""

    def __init__(self, spec: str, *, period_s: float = 0.002) -> None:
        super().__init__()
        self.spec = spec
        self.period_ns = int(period_s * 1e9)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.sp_gaps = [0] * GAP_BINS
        self.st_gaps = [0] * GAP_BINS
        self.c = {"setpoints_out": 0, "statuses_in": 0, "max_setpoint_gap_ns": 0}
        self.max_status_gap_ns = 0
        self.rtt_ns: list[int] = []
        self.sched_fifo = False

    def start(self, timeout_s: float = 3.0) -> None:
        self._thread = threading.Thread(target=self._run, name="py-board-link", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self.close()
            raise OSError(f"no board answering on {self.spec}")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        self._thread = None

    def _run(self) -> None:
        self.sched_fifo = link_thread_priority(ChairConfig().link.rt_priority)
        port = open_port(self.spec)
        try:
            self._connection(port)
        finally:
            port.close()

    def _connection(self, port: Any) -> None:
        rng = random.Random()
        decoder = FrameDecoder(expect=BOARD_TO_CONTROLLER)
        nonce = rng.randrange(1, 1 << 32)
        tx_seq = rng.randrange(1 << 16)
        sent: dict[int, int] = {}
        acked = False
        sp_seq = 0
        now = time.monotonic_ns()
        hello_due = next_send = now
        last_send = last_rx = 0
        while not self._stop.is_set():
            due = next_send if acked else hello_due
            data = port.read(max(0.0, (due - time.monotonic_ns()) / 1e9))
            now = time.monotonic_ns()
            if data is None:
                return
            for f in decoder.feed(data or b""):
                if isinstance(f.msg, Status):
                    t_sent = sent.get(f.msg.echo_seq)
                    if t_sent is None:
                        continue
                    self.c["statuses_in"] += 1
                    if last_rx:
                        self._hist(self.st_gaps, now - last_rx)
                        self.max_status_gap_ns = max(self.max_status_gap_ns, now - last_rx)
                    last_rx = now
                    self.rtt_ns.append(now - t_sent)
                    st = f.msg
                    self.put_status(  # to the tick, as the old driver did
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
                    self._ready.set()
                elif isinstance(f.msg, HelloAck) and f.msg.nonce == nonce:
                    acked = True
            if not acked:
                if now >= hello_due:
                    port.write(
                        encode(
                            Hello(setpoint_period_us=self.period_ns // 1000, nonce=nonce), tx_seq
                        )
                    )
                    tx_seq = (tx_seq + 1) & 0xFFFF
                    hello_due = now + 100 * MS
                continue
            if now < next_send:
                continue
            next_send += self.period_ns
            if next_send <= now:
                next_send = now + self.period_ns
            sp = self.take_setpoint()
            sp_seq = next_setpoint_seq(sp_seq)
            msg = Setpoint(
                seq=sp_seq,
                pos_mm=(0.0, 0.0, 0.0) if sp is None else sp[3],
                enable=False,
                flags=SP_FLAG_PRIMING if sp is None else 0,
            )
            sent[sp_seq] = now
            if len(sent) > 512:
                del sent[next(iter(sent))]
            port.write(encode(msg, tx_seq))
            tx_seq = (tx_seq + 1) & 0xFFFF
            self.c["setpoints_out"] += 1
            if last_send:
                self._hist(self.sp_gaps, now - last_send)
                self.c["max_setpoint_gap_ns"] = max(self.c["max_setpoint_gap_ns"], now - last_send)
            last_send = now

    @staticmethod
    def _hist(hist: list[int], gap_ns: int) -> None:
        hist[min(GAP_BINS - 1, max(0, int(gap_ns / (GAP_BIN_US * 1e3))))] += 1

    def counters(self) -> dict[str, Any]:
        def ms(h: list[int], q: float) -> float | None:
            v = hist_percentile(h, GAP_BIN_US, q)
            return None if v != v else v / 1e3

        return {
            "setpoints_out": self.c["setpoints_out"],
            "statuses_in": self.c["statuses_in"],
            "setpoint_gap_p50_ms": ms(self.sp_gaps, 0.5),
            "setpoint_gap_p99_ms": ms(self.sp_gaps, 0.99),
            "max_setpoint_gap_ms": self.c["max_setpoint_gap_ns"] / 1e6,
            "status_gap_p99_ms": ms(self.st_gaps, 0.99),
            "max_status_gap_ms": self.max_status_gap_ns / 1e6,
            "sp_gap_hist": list(self.sp_gaps),
            "sched_fifo": self.sched_fifo,
            "tick": self.link_counters(),
        }
