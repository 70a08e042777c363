"""The benchmarks of `chair bench` (docs/interfaces.md §5): each measures ours beside its baseline
in the same run — the planner against ruckig, the core's jitter against cyclictest and asyncio, a
simulated session against the wall clock, MQTT commands against the broker's round trip, the board
link over a real pty."""

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout, for a child's PYTHONPATH


class MissingToolError(RuntimeError):
    """A benchmark baseline needs a program that is not installed (the message says how to
    install it)."""


def find_tool(name: str, package: str, why: str) -> str:
    """Path of the program `name`, or MissingToolError naming the Debian `package` to install."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if path is None:
        raise MissingToolError(
            f"{name} not found: {why} needs it. Install it with 'sudo apt-get install {package}' "
            "(`make bench` installs it)."
        )
    return path


@contextlib.contextmanager
def board_process(*args: str) -> Iterator[str]:
    """`chair board --pty ARGS...` as a child process for the block; yields its link spec
    (``serial:/dev/pts/N``) and stops it (SIGTERM, then SIGKILL after 5 s) on the way out."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    board = subprocess.Popen(
        [sys.executable, "-m", "chair", "board", "--pty", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert board.stdout is not None
        path = board.stdout.readline().strip()
        if not path:
            raise RuntimeError(f"chair board did not start (exit {board.wait()})")
        yield f"serial:{path}"
    finally:
        board.terminate()
        try:
            board.wait(5)
        except subprocess.TimeoutExpired:
            board.kill()
            board.wait()
        if board.stdout is not None:
            board.stdout.close()
