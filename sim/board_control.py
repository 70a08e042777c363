"""The board emulator's control channel: a Unix stream socket, one command per line, one reply
line per command, ``ok {json}`` or ``error message``.

`ControlServer` is the board's end (`chair board --control PATH`; `sim.board.BoardEmulator.serve`
selects on it); `ControlClient` is the other end, for tests and people::

    from sim.board_control import ControlClient

    with ControlClient("/tmp/board.sock") as board:
        t_ns = board.cmd("fault stall:carriage")["t_ns"]  # when the board applied it

The commands (``state``, ``fault``, ``occupant``, ``link cut``, ``corrupt``, ``repair``, ``quit``;
``help`` lists them) are the board's, `sim.board.BoardEmulator.command`; docs/board-protocol.md
has the table.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from typing import Any, Protocol


class Commandable(Protocol):
    """What the server drives: one command line in, the ``ok`` reply's data out (ValueError for
    a bad command, which becomes the ``error`` reply)."""

    def command(self, line: str) -> dict[str, Any]: ...


class ControlServer:
    """The board's control channel: a Unix stream socket, one command per line, one reply line
    per command (``ok {json}`` / ``error message``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(4)
        self.listener.setblocking(False)
        self.clients: dict[int, tuple[socket.socket, bytearray]] = {}

    def fds(self) -> list[int]:
        return [self.listener.fileno(), *self.clients]

    def readable(self, fd: int, board: Commandable) -> None:
        if fd == self.listener.fileno():
            with contextlib.suppress(BlockingIOError, InterruptedError):
                conn, _ = self.listener.accept()
                conn.setblocking(True)
                conn.settimeout(1.0)
                self.clients[conn.fileno()] = (conn, bytearray())
            return
        conn, buf = self.clients[fd]
        try:
            data = conn.recv(4096)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(fd)
            return
        buf += data
        if len(buf) > 65536:
            self._drop(fd)
            return
        while b"\n" in buf:
            raw, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                reply = "ok " + json.dumps(board.command(line), separators=(",", ":"))
            except ValueError as e:
                reply = f"error {e}"
            try:
                conn.sendall(reply.encode() + b"\n")
            except OSError:
                self._drop(fd)
                return

    def _drop(self, fd: int) -> None:
        conn, _ = self.clients.pop(fd)
        conn.close()

    def close(self) -> None:
        for fd in list(self.clients):
            self._drop(fd)
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class ControlClient:
    """A small client of the control channel (tests, `chair bench`): ``cmd(line) -> dict``."""

    def __init__(self, path: str, timeout_s: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout_s)
        self.sock.connect(path)
        self._buf = b""

    def cmd(self, line: str) -> dict[str, Any]:
        """Send one command; return the ``ok`` data, or raise RuntimeError with the error."""
        self.sock.sendall(line.encode() + b"\n")
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the board closed its control channel")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\n")
        text = raw.decode()
        if text.startswith("ok "):
            data: dict[str, Any] = json.loads(text[3:])
            return data
        raise RuntimeError(text.removeprefix("error ").strip())

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
