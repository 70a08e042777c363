"""Raw byte ports for the board wire: a serial device, a pseudo-terminal or a TCP socket.

Both ends of the wire stand on this module: the controller's link driver (`core_rt.board.link`)
opens a serial device or connects over TCP (`open_port`); the board emulator (`sim.board`) holds a
pty's master (`Pty`) or listens on loopback TCP (`TcpListener`). Every port is raw (no echo, no
line discipline; a tty at 921600 baud, 8N1, no flow control; TCP without Nagle's delay) and
non-blocking:

- `Port.read(timeout_s)` waits up to `timeout_s` for bytes: ``b""`` when none came, None when the
  other end has gone (EOF, hang-up, an I/O error).
- `Port.write(data)` never blocks. What the OS does not take at once waits in a backlog of at most
  `max_backlog` bytes; beyond that the backlog is dropped and its size returned (the reader's
  decoder resynchronises on the next frame). Any other error raises OSError.

See docs/board-protocol.md (Plugging in a real board) for the line settings.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import termios

BAUD = termios.B921600
READ_SIZE = 8192
"""Most bytes taken from a port per read (about 150 STATUS frames)."""
BACKLOG_BYTES = 4096
"""The link driver's write backlog: about 80 SETPOINTs, 170 ms at 500 Hz; older ones are useless."""
LOOPBACK = "127.0.0.1"


def parse_spec(spec: str) -> tuple[str, str, int]:
    """``serial:PATH`` → ("serial", PATH, 0); ``tcp:HOST:PORT`` → ("tcp", HOST, PORT).

    Raises ValueError for anything else."""
    kind, sep, rest = spec.partition(":")
    if kind == "serial" and sep and rest:
        return "serial", rest, 0
    if kind == "tcp" and sep:
        host, sep2, port = rest.rpartition(":")
        if sep2 and host and port.isdigit() and 0 < int(port) < 65536:
            return "tcp", host.strip("[]"), int(port)
    raise ValueError(f"bad hardware {spec!r}: expected sim, serial:PATH or tcp:HOST:PORT")


def make_raw(fd: int) -> None:
    """cfmakeraw + 921600 baud, 8N1, no flow control, non-blocking reads; flush stale input."""
    iflag, oflag, cflag, lflag, _, _, cc = termios.tcgetattr(fd)
    iflag &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
        | termios.IXOFF
        | termios.IXANY
    )
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag &= ~(termios.CSIZE | termios.PARENB | termios.CSTOPB | termios.CRTSCTS)
    cflag |= termios.CS8 | termios.CREAD | termios.CLOCAL
    cc[termios.VMIN] = 0
    cc[termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, BAUD, BAUD, cc])
    termios.tcflush(fd, termios.TCIOFLUSH)


class Port:
    """One open byte port, raw and non-blocking: a tty or pty file descriptor, or a connected
    socket. The port owns it and closes it in `close()`."""

    def __init__(self, conn: int | socket.socket, *, max_backlog: int = BACKLOG_BYTES) -> None:
        if isinstance(conn, socket.socket):
            self.sock: socket.socket | None = conn
            self.fd = conn.fileno()
        else:
            self.sock = None
            self.fd = conn
        self.max_backlog = max_backlog
        self._backlog = bytearray()

    def fileno(self) -> int:
        return self.fd

    @property
    def pending(self) -> int:
        """Bytes waiting in the backlog for the OS to take them."""
        return len(self._backlog)

    def read(self, timeout_s: float = 0.0) -> bytes | None:
        """Bytes that arrive within `timeout_s` (``b""``: none); None when the other end has gone.

        Reads only once select() says the port is readable: a raw tty (VMIN = VTIME = 0) reads
        zero bytes when empty, and zero bytes from a readable port is a hang-up."""
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            return b""
        try:
            data = (
                self.sock.recv(READ_SIZE) if self.sock is not None else os.read(self.fd, READ_SIZE)
            )
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:
            return None
        return data if data else None

    def write(self, data: bytes) -> int:
        """Send `data` behind the backlog without blocking; returns the bytes dropped because the
        other end is not reading (the backlog grew past `max_backlog`)."""
        backlog = self._backlog
        backlog += data
        try:
            n = self.sock.send(backlog) if self.sock is not None else os.write(self.fd, backlog)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            backlog.clear()
            raise
        del backlog[:n]
        if len(backlog) > self.max_backlog:
            dropped = len(backlog)
            backlog.clear()
            return dropped
        return 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        else:
            with contextlib.suppress(OSError):
                os.close(self.fd)


def open_serial(path: str, *, max_backlog: int = BACKLOG_BYTES) -> Port:
    """Open a serial device (or a pty's slave) raw and non-blocking. A path that is not a tty
    (a FIFO, say) is opened as it is."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if os.isatty(fd):
            make_raw(fd)
    except BaseException:
        os.close(fd)
        raise
    return Port(fd, max_backlog=max_backlog)


def _nodelay(sock: socket.socket) -> socket.socket:
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def connect_tcp(
    host: str, port: int, *, timeout_s: float = 1.0, max_backlog: int = BACKLOG_BYTES
) -> Port:
    """Connect to a board on TCP (within `timeout_s`), then non-blocking, no Nagle delay."""
    return Port(
        _nodelay(socket.create_connection((host, port), timeout=timeout_s)), max_backlog=max_backlog
    )


def open_port(spec: str, *, max_backlog: int = BACKLOG_BYTES) -> Port:
    """The port a spec names (`parse_spec`): ValueError for a bad spec, OSError from the OS."""
    kind, where, port = parse_spec(spec)
    if kind == "serial":
        return open_serial(where, max_backlog=max_backlog)
    return connect_tcp(where, port, max_backlog=max_backlog)


class Pty:
    """A pseudo-terminal pair for the side that plays the device: `port` is the master, `path`
    the slave, which the other side opens as it would a USB serial adapter (`open_serial`).

    The slave is raw before anyone opens it (no echo of what the other side sends) and stays
    open here, so the master never reads a hang-up between two users of the slave."""

    def __init__(self, *, max_backlog: int = 0) -> None:
        master, self._slave = os.openpty()
        try:
            make_raw(self._slave)  # 921600 baud is harmless on a pty; what a real line would use
            os.set_blocking(master, False)
            self.path = os.ttyname(self._slave)
        except BaseException:
            os.close(master)
            os.close(self._slave)
            raise
        self.port = Port(master, max_backlog=max_backlog)

    def close(self) -> None:
        self.port.close()
        with contextlib.suppress(OSError):
            os.close(self._slave)


class TcpListener:
    """A non-blocking TCP listener on 127.0.0.1 only (never another interface); `port` is the
    one bound (0 asks the OS for a free one)."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((LOOPBACK, port))
            self.sock.listen(2)
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise
        self.port: int = self.sock.getsockname()[1]

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self, *, max_backlog: int = BACKLOG_BYTES) -> Port | None:
        """The next waiting connection as a port, or None when there is none."""
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        return Port(_nodelay(conn), max_backlog=max_backlog)

    def close(self) -> None:
        self.sock.close()
