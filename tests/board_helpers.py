"""`chair board` as a subprocess for the tests: the simulated board on a real pty or TCP port,
driven through its control channel (`sim.board_control.ControlClient`).

The HIL sessions run over loopback TCP; a few tests run on the pty (`over="pty"`), as a USB serial
adapter would be opened, and are marked `alone`. Every byte written to a pty reaches its reader
through the kernel's flip-buffer work in a nice-0 kworker, and the reader waits for it in state D
(docs/board-protocol.md, The host): beside a CPU hog and the other test worker, that kworker was
held off both CPUs for 48-84 ms and the link was lost (50 ms), a defect of the test machine's
pty, not of the controller or the board. Loopback TCP moves the bytes in the sender's own
context (a SCHED_FIFO thread), so the sessions measure the product; the pty tests run by
themselves, with a CPU free for the kworker."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from sim.board_control import ControlClient

ROOT = Path(__file__).resolve().parents[1]
Line = Literal["tcp", "pty"]


def child_env() -> dict[str, str]:
    """This environment, with the checkout first on PYTHONPATH (for `python -m chair`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


class Board:
    """`python -m chair board` as a subprocess with its control channel."""

    def __init__(self, tmp: Path, *args: str, over: Line = "tcp", port: int = 0) -> None:
        self.sock = str(tmp / f"board-{time.monotonic_ns()}.sock")
        where = ["--tcp", str(port)] if over == "tcp" else ["--pty"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chair", "board", *where, "--control", self.sock, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=ROOT,
        )
        first = read_first_line(self.proc, 15.0)
        self.where = first
        self.spec = f"tcp:127.0.0.1:{first}" if over == "tcp" else f"serial:{first}"
        self.ctl = ControlClient(self.sock)

    def cmd(self, line: str) -> dict[str, Any]:
        return self.ctl.cmd(line)

    def state(self) -> dict[str, Any]:
        return self.ctl.cmd("state")

    def events(self, name: str, after_ns: int = 0) -> list[int]:
        return [
            e["t_ns"]
            for e in self.state()["events"]
            if e["event"] == name and e["t_ns"] >= after_ns
        ]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.ctl.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(10)
        finally:
            for s in (self.proc.stdout, self.proc.stderr):
                if s is not None:
                    s.close()


def read_first_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The first line `proc` prints on stdout, within `timeout_s` (AssertionError otherwise)."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout_s):
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"no first line within {timeout_s} s: {err}")
    line = proc.stdout.readline().strip()
    assert line, f"board exited: {proc.wait()} {proc.stderr.read() if proc.stderr else ''}"
    return line


@contextlib.contextmanager
def board(tmp: Path, *args: str, over: Line = "tcp", port: int = 0) -> Iterator[Board]:
    """A `chair board` for the block, on loopback TCP (`port`, 0: a free one) or a pty; it must
    exit 0 when stopped."""
    b = Board(tmp, *args, over=over, port=port)
    try:
        yield b
    finally:
        rc = b.stop()
        assert rc == 0, f"chair board exited with {rc}"
