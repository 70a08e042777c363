"""Raw byte ports (core_rt.board.transport): what the link driver and the board emulator both
stand on. Real ptys and real loopback sockets, nothing mocked."""

from __future__ import annotations

import os
import socket
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core_rt.board.transport import (
    BACKLOG_BYTES,
    BAUD,
    Port,
    Pty,
    TcpListener,
    connect_tcp,
    open_port,
    open_serial,
    parse_spec,
)

ALL_BYTES = bytes(range(256)) * 4  # every byte value, CR, LF, XON/XOFF, ^C, ^D among them


def drain(port: Port, n: int, timeout_s: float = 2.0) -> bytes:
    """Read until `n` bytes came (or the time is up)."""
    out = bytearray()
    end = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < end:
        data = port.read(0.05)
        assert data is not None, "the other end hung up"
        out += data
    return bytes(out)


@pytest.fixture
def pty_pair() -> Iterator[tuple[Pty, Port]]:
    """A pty as the board holds it, and its slave opened as the controller opens a serial line."""
    pty = Pty()
    ctl = open_serial(pty.path)
    try:
        yield pty, ctl
    finally:
        ctl.close()
        pty.close()


# ---- specs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("serial:/dev/ttyUSB0", ("serial", "/dev/ttyUSB0", 0)),
        ("serial:/dev/chair-board", ("serial", "/dev/chair-board", 0)),
        ("tcp:127.0.0.1:5000", ("tcp", "127.0.0.1", 5000)),
        ("tcp:board.local:65535", ("tcp", "board.local", 65535)),
        ("tcp:[::1]:7", ("tcp", "::1", 7)),
    ],
)
def test_a_spec_names_a_serial_device_or_a_tcp_endpoint(
    spec: str, parsed: tuple[str, str, int]
) -> None:
    assert parse_spec(spec) == parsed


@pytest.mark.parametrize(
    "spec", ["sim", "usb:1", "serial:", "tcp:", "tcp:host", "tcp::80", "tcp:h:0", "tcp:h:65536"]
)
def test_a_bad_spec_is_refused_with_the_accepted_forms(spec: str) -> None:
    with pytest.raises(ValueError, match="serial:PATH or tcp:HOST:PORT"):
        parse_spec(spec)


def test_opening_what_is_not_there_raises_the_os_reason(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_port(f"serial:{tmp_path}/no-such-tty")
    free = TcpListener(0)
    port = free.port
    free.close()  # nobody listens there now
    with pytest.raises(ConnectionRefusedError):
        open_port(f"tcp:127.0.0.1:{port}")


# ---- serial lines (a pty) ------------------------------------------------------------------------


def test_a_serial_line_is_raw_921600_8n1_without_flow_control(pty_pair: tuple[Pty, Port]) -> None:
    _pty, ctl = pty_pair
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(ctl.fd)
    assert (ispeed, ospeed) == (BAUD, BAUD) == (termios.B921600, termios.B921600)
    assert not lflag & (termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
    assert not iflag & (termios.ICRNL | termios.INLCR | termios.IGNCR | termios.IXON)
    assert not oflag & termios.OPOST
    assert cflag & termios.CSIZE == termios.CS8 and cflag & termios.CLOCAL
    assert not cflag & (termios.PARENB | termios.CSTOPB | termios.CRTSCTS)
    assert cc[termios.VMIN] == 0 and cc[termios.VTIME] == 0
    assert not os.get_blocking(ctl.fd)


def test_every_byte_crosses_a_pty_unchanged_both_ways_and_nothing_echoes(
    pty_pair: tuple[Pty, Port],
) -> None:
    pty, ctl = pty_pair
    assert ctl.write(ALL_BYTES) == 0
    assert drain(pty.port, len(ALL_BYTES)) == ALL_BYTES
    assert pty.port.write(ALL_BYTES) == 0
    assert drain(ctl, len(ALL_BYTES)) == ALL_BYTES
    assert ctl.read(0.05) == b""  # no echo of what the controller sent


def test_read_waits_up_to_its_timeout_and_returns_nothing_when_nothing_came(
    pty_pair: tuple[Pty, Port],
) -> None:
    _pty, ctl = pty_pair
    t0 = time.monotonic()
    assert ctl.read(0.1) == b""
    assert time.monotonic() - t0 >= 0.09
    assert ctl.read() == b""  # no wait at all: a raw tty's empty read is not a hang-up


def test_the_board_side_pty_outlives_its_controllers(pty_pair: tuple[Pty, Port]) -> None:
    """A controller closing the line is no hang-up for the board: the next one opens it again."""
    pty, ctl = pty_pair
    ctl.close()
    assert pty.port.read(0.05) == b""
    again = open_serial(pty.path)
    try:
        assert pty.port.write(b"\xa5\x5a") == 0
        assert drain(again, 2) == b"\xa5\x5a"
    finally:
        again.close()


def test_the_controller_sees_the_board_side_going_as_a_hang_up(pty_pair: tuple[Pty, Port]) -> None:
    pty, ctl = pty_pair
    pty.close()
    assert ctl.read(1.0) is None


# ---- TCP -----------------------------------------------------------------------------------------


def test_tcp_listens_on_loopback_only_and_both_ends_have_no_nagle_delay() -> None:
    listener = TcpListener(0)
    try:
        assert listener.sock.getsockname() == ("127.0.0.1", listener.port) and listener.port > 0
        assert listener.accept() is None  # nobody waiting: no block
        ctl = connect_tcp("127.0.0.1", listener.port)
        deadline = time.monotonic() + 2
        board = listener.accept()
        while board is None and time.monotonic() < deadline:
            time.sleep(0.01)
            board = listener.accept()
        assert board is not None
        try:
            for p in (ctl, board):
                assert p.sock is not None and p.sock.getblocking() is False
                assert p.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert ctl.write(ALL_BYTES) == 0 and drain(board, len(ALL_BYTES)) == ALL_BYTES
            assert board.write(ALL_BYTES) == 0 and drain(ctl, len(ALL_BYTES)) == ALL_BYTES
            board.close()
            assert ctl.read(1.0) is None  # EOF: the other end has gone
        finally:
            ctl.close()
            board.close()
    finally:
        listener.close()


# ---- writing to a peer that does not read --------------------------------------------------------


@pytest.mark.parametrize("max_backlog", [0, BACKLOG_BYTES])
def test_writes_never_block_the_backlog_is_bounded_and_every_byte_is_accounted_for(
    max_backlog: int,
) -> None:
    """Nobody reads: a write never blocks, the backlog never grows past `max_backlog`, and it is
    dropped whole, counted. Every byte written is then received, dropped, or still waiting."""
    a, b = socket.socketpair()
    a.setblocking(False)
    port = Port(a, max_backlog=max_backlog)
    reader = Port(b)
    frame = bytes(range(48))
    written = dropped = 0
    drops = []
    try:
        for _ in range(100_000):
            t0 = time.monotonic()
            d = port.write(frame)
            assert time.monotonic() - t0 < 0.5
            written += len(frame)
            assert port.pending <= max_backlog
            if d:
                drops.append(d)
                dropped += d
                if len(drops) >= 3:
                    break
        assert len(drops) >= 3, "the socket never filled up"
        if max_backlog:
            assert all(d > max_backlog for d in drops)  # the whole backlog at once
        waiting = port.pending
        received = len(drain(reader, written - dropped - waiting))
        assert received + dropped + waiting == written
    finally:
        port.close()
        reader.close()
