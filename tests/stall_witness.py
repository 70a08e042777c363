"""A witness of the machine's own stalls, for the HIL tests (README, Tests: "When the machine
stalls").

The HIL tests run a board process and the controller on a 1 kHz link whose deadline is 100 ms
(docs/board-protocol.md, Link loss): a CPU taken away for that long is a link loss, and the
chair rightly stops. On a virtual machine the host can take a virtual CPU away (steal time);
measured on this project's 2-vCPU VM, while the suite ran, a SCHED_FIFO 99 thread pinned to each
CPU saw gaps of 100-103 ms a few times in 6 minutes, the CPU's steal counter rising with them,
and the HIL tests running across them failed on `link_lost`.

The witness is one process per CPU, pinned, at SCHED_FIFO 99 — above the core (80), the board
(70) and the link thread (60) — sleeping 2 ms at a time and writing each wake-up later than
`REPORT_MS` as a JSON line: nothing in the machine but the kernel's stop tasks or the host can
delay it that long. A stall it saw is the platform's, not the product's. Without SCHED_FIFO (not
permitted) it does not run and attributes nothing.

Run as a script (one CPU): ``python tests/stall_witness.py CPU OUT``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PRIORITY = 99
SLEEP_S = 0.002
REPORT_MS = 20.0
"""Wake-ups later than this are written down (a stall that matters is 50 ms or more)."""
STEAL_EVERY = 50
"""Read the CPU's steal counter every this many wake-ups (100 ms), to say how much of a stall
the host took."""


@dataclass(frozen=True)
class Stall:
    end_s: float
    """When the witness woke (time.monotonic(), comparable across processes)."""
    cpu: int
    gap_ms: float
    steal_ms: int
    """The CPU's steal time over the stall and up to 100 ms before it (10 ms resolution)."""

    @property
    def start_s(self) -> float:
        return self.end_s - self.gap_ms / 1000

    def __str__(self) -> str:
        return f"cpu{self.cpu} stalled {self.gap_ms:.0f} ms (host steal {self.steal_ms} ms)"


class StallWitness:
    """One witness process per CPU, writing to files in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: list[subprocess.Popen[bytes]] = []
        self.available = False

    def start(self) -> bool:
        """Start the witnesses; False when SCHED_FIFO is not permitted (nothing attributed)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        cpus = sorted(os.sched_getaffinity(0))
        for cpu in cpus:
            out = self.directory / f"cpu{cpu}.jsonl"
            self.procs.append(subprocess.Popen([sys.executable, __file__, str(cpu), str(out)]))
        deadline = time.monotonic() + 10
        ready: list[bool] = []
        while time.monotonic() < deadline and len(ready) < len(cpus):
            ready = [
                json.loads(lines[0])["sched_fifo"]
                for cpu in cpus
                if (lines := _lines(self.directory / f"cpu{cpu}.jsonl"))
            ]
            time.sleep(0.05)
        self.available = len(ready) == len(cpus) and all(ready)
        if not self.available:
            self.stop()
        return self.available

    def stop(self, *, remove: bool = False) -> None:
        """Stop the witnesses; `remove` also deletes their files (the reports keep what matters)."""
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(timeout=10)
        self.procs = []
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)

    def stalls(self, from_s: float, to_s: float, at_least_ms: float) -> list[Stall]:
        """The stalls of at least `at_least_ms` that overlap [from_s, to_s] (time.monotonic())."""
        found = []
        for path in sorted(self.directory.glob("cpu*.jsonl")):
            for line in _lines(path)[1:]:
                r = json.loads(line)
                s = Stall(r["t"], r["cpu"], r["gap_ms"], r["steal_ms"])
                if s.gap_ms >= at_least_ms and s.end_s >= from_s and s.start_s <= to_s:
                    found.append(s)
        return sorted(found, key=lambda s: s.end_s)


def stall(witness: StallWitness, seconds: float = 0.12) -> None:
    """For the witness's own tests: take the first witness's CPU away from it for `seconds`
    (SIGSTOP), and wait until it wrote the stall down."""
    proc = witness.procs[0]
    before = time.monotonic()
    os.kill(proc.pid, signal.SIGSTOP)
    time.sleep(seconds)  # the stall itself, not a wait for an outcome
    os.kill(proc.pid, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while not witness.stalls(before, time.monotonic(), seconds * 1000 * 0.9):
        assert time.monotonic() < deadline, "the witness never wrote the stall down"
        time.sleep(0.01)


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if line.endswith("}")]


def _steal_ms(cpu: int) -> int:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                return int(line.split()[8]) * 10  # USER_HZ ticks of 10 ms
    return 0


def watch(cpu: int, out: Path) -> None:
    os.sched_setaffinity(0, {cpu})
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(PRIORITY))
        fifo = True
    except OSError:
        fifo = False
    with out.open("w") as f:
        f.write(json.dumps({"cpu": cpu, "sched_fifo": fifo}) + "\n")
        f.flush()
        if not fifo:
            return
        steal = _steal_ms(cpu)
        last = time.monotonic()
        n = 0
        parent = os.getppid()
        while os.getppid() == parent:  # a witness never outlives the tests it serves
            time.sleep(SLEEP_S)
            now = time.monotonic()
            gap_ms = (now - last) * 1000
            n += 1
            if gap_ms > REPORT_MS:
                now_steal = _steal_ms(cpu)
                record = {"t": now, "cpu": cpu, "gap_ms": round(gap_ms, 1)}
                f.write(json.dumps({**record, "steal_ms": now_steal - steal}) + "\n")
                f.flush()
                steal, n = now_steal, 0
            elif n >= STEAL_EVERY:
                steal, n = _steal_ms(cpu), 0
            last = now


if __name__ == "__main__":
    watch(int(sys.argv[1]), Path(sys.argv[2]))
