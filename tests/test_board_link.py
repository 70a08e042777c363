"""The controller's side of the board wire: the tick's mailbox (core_rt.board.mailbox) and the
link driver (core_rt.board.link). The driver against a real `chair board` on TCP is
hardware-in-the-loop (wall clock, a board process); the whole controller on the link is in
tests/test_hil.py."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core_rt.board.link import open_board_link
from core_rt.board.mailbox import (
    DEFAULT_STALE_NS,
    SETPOINT_FIELDS,
    STATUS_FIELDS,
    LinkHardware,
    exchange_once,
    now_ns,
)
from core_rt.board.protocol import FAULT_LINK_LOST, FAULT_WATCHDOG
from core_rt.config import ChairConfig
from core_rt.core import FAULT_CODES, Core
from tests.board_helpers import board

S = 1_000_000_000
MS = 1_000_000

STATUS = {
    "pos_mm": (600.0, 130.0, 16.0),
    "knead_rpm": 29.5,
    "tap_hz": 0.0,
    "current_a": (0.85, 0.05, 0.53, 0.42, 0.1),
    "thermistor_c": 41.25,
    "supply_v": 23.9,
    "limit_low": False,
    "limit_high": False,
    "arm_contact": True,
    "seat_occupied": True,
    "board_faults": 0,
}


# ---- the mailbox: what the tick sees ----------------------------------------------------------


def test_before_any_status_the_tick_sees_a_stale_link_with_the_link_lost_bit() -> None:
    hw = LinkHardware()
    rc, st = exchange_once(hw)
    assert rc != 0 and st["link_ok"] == 0 and st["board_faults"] & FAULT_LINK_LOST
    assert hw.take_setpoint() is not None  # the tick's setpoint is published all the same
    assert hw.link_counters()["stale_exchanges"] == 1


def test_a_status_echoing_a_recent_setpoint_is_fresh_and_reaches_the_tick_unchanged() -> None:
    hw = LinkHardware(stale_ns=S)
    hw.put_status(STATUS, now_ns())
    rc, st = exchange_once(hw, {"t_ns": 5_000_000})
    assert rc == 0 and st["link_ok"] == 1 and st["board_faults"] == 0
    assert st["pos_mm"] == STATUS["pos_mm"] and st["current_a"] == pytest.approx(
        STATUS["current_a"]
    )
    assert st["thermistor_c"] == STATUS["thermistor_c"] and st["supply_v"] == STATUS["supply_v"]
    assert (st["arm_contact"], st["seat_occupied"], st["limit_low"]) == (1, 1, 0)
    assert st["t_ns"] == 5_000_000 + 1_000_000  # valid for the next tick
    c = hw.link_counters()
    assert c["recoveries"] == 1 and c["statuses_taken"] == 1 and c["stale_exchanges"] == 0


def test_freshness_is_measured_from_the_echoed_setpoint_not_the_status_arrival() -> None:
    """A status that arrives now but echoes a SETPOINT sent longer ago than `stale_ns` is stale:
    a board that still talks but no longer hears us is a lost link."""
    hw = LinkHardware(stale_ns=DEFAULT_STALE_NS)
    hw.put_status(STATUS, now_ns() - 2 * DEFAULT_STALE_NS)
    rc, st = exchange_once(hw)
    assert rc != 0 and st["link_ok"] == 0 and st["board_faults"] & FAULT_LINK_LOST
    hw.put_status({**STATUS, "board_faults": FAULT_WATCHDOG}, now_ns())
    rc, st = exchange_once(hw)
    assert rc == 0 and st["link_ok"] == 1 and st["board_faults"] == FAULT_WATCHDOG


def test_stale_episodes_and_recoveries_are_counted_once_per_transition() -> None:
    hw = LinkHardware(stale_ns=S)
    hw.put_status(STATUS, now_ns())
    exchange_once(hw)
    exchange_once(hw)
    hw.put_status(STATUS, now_ns() - 2 * S)
    exchange_once(hw)
    exchange_once(hw)
    hw.put_status(STATUS, now_ns())
    exchange_once(hw)
    c = hw.link_counters()
    assert c["exchanges"] == 5 and c["stale_exchanges"] == 2
    assert c["stale_episodes"] == 1 and c["recoveries"] == 2


def test_the_stale_time_the_tick_sees_is_measured_on_the_links_clock() -> None:
    hw = LinkHardware(stale_ns=DEFAULT_STALE_NS)
    before = now_ns()
    hw.put_status(STATUS, before - DEFAULT_STALE_NS - 20 * MS)
    _, st = exchange_once(hw)
    assert st["link_ok"] == 0 and 20 * MS <= st["link_stale_ns"] <= now_ns() - before + 20 * MS
    hw.put_status(STATUS, now_ns())
    _, st = exchange_once(hw)
    assert st["link_ok"] == 1 and st["link_stale_ns"] == 0


def test_a_late_tick_does_not_count_its_own_lateness_as_silence_on_the_link() -> None:
    """`link_lost` latches after stale time + `faults.link_lost_ms` without a round trip, as the
    link measures it (docs/core.md, link_lost). The tick's time is its deadline: after a late
    wake-up it lies in the past, and timed from there a CI run's core, 44 ms late, latched
    `link_lost` 55 ms after the last round trip instead of 80. Here the core runs 450 ms of ticks
    at once while the link has been silent for a fraction of that (a loss limit of 400 ms keeps
    the wall clock out of the verdict: this test's own stalls would need 350 ms to matter)."""
    lost_ms = 400.0
    core = Core(ChairConfig(faults={"link_lost_ms": lost_ms}), hw := LinkHardware())
    hw.put_status(STATUS, now_ns())
    core.run_until(5 * MS, False)
    assert not [e for e in core.drain_events() if e.kind in ("link", "fault")]
    # the last round trip is stale time + 50 ms old; the core then runs 450 ms of ticks
    hw.put_status(STATUS, now_ns() - DEFAULT_STALE_NS - 50 * MS)
    core.run_until(core.core_time_ns() + int((lost_ms + 50) * MS), False)
    events = [e for e in core.drain_events() if e.kind in ("link", "fault")]
    assert [(e.kind, e.code) for e in events] == [("link", 0)], events
    hw.put_status(STATUS, now_ns())  # a round trip: it comes back
    core.run_until(core.core_time_ns() + 2 * MS, False)
    events = [e for e in core.drain_events() if e.kind in ("link", "fault")]
    assert [(e.kind, e.code) for e in events] == [("link", 1)], events
    # silent as long as the limit: latched at once, with how long it was stale
    hw.put_status(STATUS, now_ns() - DEFAULT_STALE_NS - int((lost_ms + 1) * MS))
    core.run_until(core.core_time_ns() + 2 * MS, False)
    faults = [e for e in core.drain_events() if e.kind == "fault"]
    assert [FAULT_CODES[e.code] for e in faults] == ["link_lost"]
    assert faults[0].value >= lost_ms + 1 and faults[0].limit == lost_ms


def test_the_io_side_takes_the_latest_setpoint_the_tick_published() -> None:
    hw = LinkHardware()
    assert hw.take_setpoint() is None  # before the first tick
    exchange_once(hw, {"seq": 7, "pos_mm": (1.0, 2.0, 3.0)})
    exchange_once(hw, {"seq": 8, "pos_mm": (4.0, 5.0, 6.0), "heater_duty": 0.5, "enable": False})
    taken = hw.take_setpoint()
    assert taken is not None
    sp: dict[str, Any] = dict(zip(SETPOINT_FIELDS, taken, strict=True))
    assert sp["seq"] == 8 and sp["pos_mm"] == (4.0, 5.0, 6.0)
    assert sp["heater_duty"] == 0.5 and sp["enable"] is False and sp["published_ns"] > 0


@pytest.mark.parametrize(
    ("status", "confirmed_ns", "message"),
    [
        ({**STATUS, "pos_mm": (1.0, 2.0)}, 1, "pos_mm needs 3 values"),
        (tuple(STATUS.values())[:-1], 1, f"{len(STATUS_FIELDS)} fields"),
        (STATUS, 0, "confirmed_ns must be"),
    ],
)
def test_put_status_refuses_a_malformed_status(
    status: object, confirmed_ns: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LinkHardware().put_status(status, confirmed_ns)  # type: ignore[arg-type]


@pytest.mark.parametrize("stale_ns", [0, 999_999, 1_000_000_001])
def test_stale_time_outside_1ms_to_1s_is_refused(stale_ns: int) -> None:
    with pytest.raises(ValueError, match=r"stale_ns must be 1 ms \.\. 1 s"):
        LinkHardware(stale_ns=stale_ns)


# ---- the link driver --------------------------------------------------------------------------


def test_no_board_answering_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="No such file"):
        open_board_link(f"serial:{tmp_path}/no-such-tty", ChairConfig())
    a, b_ = os.openpty()  # a tty nobody answers on
    try:
        with pytest.raises(OSError, match="no board answering"):
            open_board_link(f"serial:{os.ttyname(b_)}", ChairConfig(), timeout_s=0.3)
    finally:
        os.close(a)
        os.close(b_)
    with pytest.raises(ValueError, match="serial:PATH or tcp:HOST:PORT"):
        open_board_link("usb:1", ChairConfig())


class AnsweringBoard:
    """A TCP listener that answers every HELLO with `ack(nonce)` (a board of its own making)."""

    def __init__(self, ack: Any) -> None:
        import socket
        import threading

        self.ack = ack
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.setpoints = 0
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self) -> None:
        from core_rt.board.protocol import (
            CONTROLLER_TO_BOARD,
            FrameDecoder,
            Hello,
            Setpoint,
            encode,
        )

        conn, _ = self.sock.accept()
        dec = FrameDecoder(expect=CONTROLLER_TO_BOARD)
        with conn:
            while data := conn.recv(4096):
                for f in dec.feed(data):
                    if isinstance(f.msg, Hello):
                        conn.sendall(encode(self.ack(f.msg.nonce), 0))
                    elif isinstance(f.msg, Setpoint):
                        self.setpoints += 1

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize(
    ("ack", "why"),
    [
        ({"version": 2}, "the board speaks protocol version 2; this controller speaks 3"),
        ({"watchdog_ms": 250}, "the board's watchdog is 250 ms"),
        ({"status_period_us": 20000}, "the board's STATUS period is 20000 us"),
    ],
)
def test_a_board_of_another_version_or_out_of_spec_is_refused_at_once_with_the_reason(
    ack: dict[str, int], why: str
) -> None:
    """Not after a 3 s timeout, not with a guess: the reason, and not one SETPOINT sent."""
    from core_rt.board.protocol import HelloAck

    board_ = AnsweringBoard(lambda nonce: HelloAck(nonce=nonce, **ack))
    try:
        t0 = time.monotonic()
        with pytest.raises(OSError, match=why):
            open_board_link(f"tcp:127.0.0.1:{board_.port}", ChairConfig(), timeout_s=3.0)
        assert time.monotonic() - t0 < 1.0 and board_.setpoints == 0
    finally:
        board_.close()


@pytest.mark.hil
@pytest.mark.realtime
def test_tcp_link_reconnects_after_the_board_restarts(tmp_path: Path) -> None:
    """A core on a TCP link: board gone → stale within the link's budget; a board back on the
    same port → the driver reconnects and says HELLO again; the core sees the link back."""
    cfg = ChairConfig()
    with board(tmp_path) as b:
        port = int(b.where)
        link = open_board_link(f"tcp:127.0.0.1:{port}", cfg)
        core = Core(cfg, link)
        core.start_realtime()

        def stale_ticks_in(seconds: float) -> int:
            s0 = link.link_counters()["stale_exchanges"]
            time.sleep(seconds)
            return int(link.link_counters()["stale_exchanges"] - s0)

        def wait_for(pred: Callable[[], bool], what: str) -> None:  # polled: counters only
            end = time.monotonic() + 5
            while not pred():
                assert time.monotonic() < end, f"timed out waiting for {what}"
                time.sleep(0.005)

        try:
            wait_for(lambda: link.counters()["hello_acks_in"] >= 1, "the board's HELLO_ACK")
            # (the windows below measure: how many ticks in 0.2 s saw a stale status)
            assert stale_ticks_in(0.2) < 20  # fresh (a scheduling hiccup aside)
            up = link.link_counters()["recoveries"]
            s0 = link.link_counters()["stale_exchanges"]
            b.stop()
            wait_for(lambda: link.link_counters()["stale_exchanges"] > s0 + 10, "the link stale")
            assert stale_ticks_in(0.2) >= 190  # every tick sees a stale status
            with board(tmp_path, port=port):
                deadline = time.monotonic() + 5
                while link.link_counters()["recoveries"] == up and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert stale_ticks_in(0.2) < 20
                c = link.counters()
                assert c["connects"] >= 2 and c["hellos_out"] >= 2 and c["hello_acks_in"] >= 2
        finally:
            core.stop_realtime()
            link.close()
