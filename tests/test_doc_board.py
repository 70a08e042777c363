"""The board built from docs/board-protocol.md alone, against the real kit and controller.

tests/doc_board/board.py is written only from the document. Here it runs as its own process on
a TCP port and is driven by `chair board-check` (every check must pass), by a real session
(`chair run ... --hardware tcp:...` against the board with --depth-load: the contour scan from
the depth load, stopped with SIGTERM after it) and by a tiny controller of our own that
exercises the chair behind it (motors, heater, watchdog).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.doc_board import board as wire

pytestmark = [pytest.mark.hil, pytest.mark.realtime]

ROOT = Path(__file__).resolve().parents[1]
BOARD = ROOT / "tests" / "doc_board" / "board.py"
PARK_MM = (1200.0, 160.0, 0.0)  # the document's park pose
SHOULDER_MM = 810.0  # our simulated body's shoulder line (a 142 cm user: 320 + 3.45 × 142)
Event = dict[str, Any]


def env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


class BoardProcess:
    """The board as a subprocess; its JSON-line events (stderr) collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(BOARD), "--tcp", "0", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[Event] = []
        self.eof = False  # its stderr has ended: every event it wrote is in `events`
        self.cond = threading.Condition()
        lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        out, err = self.proc.stdout, self.proc.stderr
        threading.Thread(target=lambda: lines.put(out.readline()), daemon=True).start()
        threading.Thread(target=self._read_events, args=(err,), daemon=True).start()
        self.port = int(lines.get(timeout=15))

    def _read_events(self, stream: Any) -> None:
        for line in stream:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"ev": "text", "line": line.rstrip()}
            with self.cond:
                self.events.append(event)
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait_for(
        self, match: Callable[[Event], bool], timeout: float, start: int = 0, what: str = ""
    ) -> int:
        """Index of the first event from `start` on that matches, waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(start, len(self.events)):
                    if match(self.events[i]):
                        return i
                start = len(self.events)
                left = deadline - time.monotonic()
                code = self.proc.poll() if self.eof else None  # exited, all its events read
                if left <= 0 or code is not None:
                    why = f"the board exited ({code})" if code is not None else f"{timeout} s"
                    raise AssertionError(f"the board never showed {what or match}: {why}")
                self.cond.wait(left)

    def named(self, name: str) -> list[Event]:
        with self.cond:
            return [e for e in self.events if e["ev"] == name]

    def stop(self) -> Event:
        """SIGTERM; the board must exit 0 and report its counters."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=10) == 0
        i = self.wait_for(lambda e: e["ev"] == "exit", 5, what="its exit report")
        return self.events[i]


@pytest.fixture
def make_board() -> Iterator[Callable[..., BoardProcess]]:
    boards: list[BoardProcess] = []

    def make(*args: str) -> BoardProcess:
        boards.append(BoardProcess(*args))
        return boards[-1]

    yield make
    for b in boards:
        if b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait(timeout=5)


# --- 1. the conformance kit --------------------------------------------------------------------


def test_board_check_passes(make_board: Callable[..., BoardProcess]) -> None:
    board = make_board()
    result = subprocess.run(
        [sys.executable, "-m", "chair", "board-check", "--tcp", f"127.0.0.1:{board.port}"],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    print(result.stdout, result.stderr)
    assert result.returncode == 0, "a conformance check failed"
    report = board.stop()
    print("board counters after the kit:", report["counters"])
    assert report["counters"]["invalid_setpoints"] > 0  # the kit's invalid ones were counted
    assert report["counters"]["refused_setpoints"] > 0  # and the version-1 ones refused


# --- 2. a real session: the contour scan from the depth load, stopped after it ----------------


def test_session_scans_and_stops_cleanly(
    make_board: Callable[..., BoardProcess], tmp_path: Path
) -> None:
    """The board with --depth-load: the controller scans the back's contour from the load.

    The document ("The depth load and the contour scan"): the heads go to y ≈ 148 mm, come
    forward until the load says they touch, then walk up at 20 mm/s holding a light touch
    (30/66 mA), and the walk stops once the neck (softer tissue above the shoulder line) is
    seen. The session is stopped (SIGTERM) once the program starts after the adjust window.
    """
    # Found at the scan's start (the document: a board need not park first), to keep it short.
    board = make_board(
        *("--depth-load", "--start-pose", "150,130,0", "--shoulder-mm", str(SHOULDER_MM))
    )
    summary_path = tmp_path / "summary.json"
    run = subprocess.Popen(
        [
            *(sys.executable, "-m", "chair", "run", "quick", "--quiet"),
            *("--hardware", f"tcp:127.0.0.1:{board.port}", "--summary", str(summary_path)),
        ],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        on = board.wait_for(
            lambda e: e["ev"] == "state" and e["new"] == "ON", 15, what="the drives energised"
        )
        board.wait_for(lambda e: e["ev"] == "motion_on", 5, on, "the controller moving the chair")
        touched = board.wait_for(  # the touch: at most 21 s at the following's gain
            lambda e: e["ev"] == "touch" and e["touching"], 40, on, "the heads touching the skin"
        )
        released = board.wait_for(  # the walk: ~ 700 mm at 20 mm/s, on the skin all the way
            lambda e: e["ev"] == "touch" and not e["touching"],
            90,
            touched,
            "the heads leaving the skin after the walk",
        )
        rest = board.wait_for(  # the scan is over: the heads came back, the chair at rest
            lambda e: e["ev"] == "motion_off" and e["pose_mm"][2] < 1.0,
            15,
            released,
            "the chair at rest with the heads back after the scan",
        )
        # The adjust window, about 10 s of stillness; then the program starts and the session
        # is stopped. (The summary's shoulder line is set as the adjust window opens, just after
        # the board sees the heads home: a session stopped right there often reports none.)
        # The heads' last 0.5 mm/s may flicker the motion events as they stop: a start is
        # counted from 5 s into the window.
        rest_t = board.events[rest]["t"]
        started = board.wait_for(
            lambda e: e["ev"] == "motion_on" and e["t"] > rest_t + 5,
            30,
            rest,
            "the program starting after the adjust window",
        )
    finally:
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=30)
        print(out, err)
        with board.cond:  # what the board saw, for a failure's post-mortem
            notable = [
                e
                for e in board.events
                if e["ev"] != "summary" and (e["ev"] != "late_tick" or e["gap_ms"] >= 20)
            ]
            print(*(json.dumps(e) for e in notable[:60]), "...", sep="\n")
            print(*(json.dumps(e) for e in notable[-40:]), sep="\n")
        if summary_path.exists():  # and how the chair saw its session
            summary = json.loads(summary_path.read_text())
            seen = ("end_reason", "completed", "faults", "notes", "link", "loop", "commands")
            print(json.dumps({k: summary.get(k) for k in seen}))
            print("body:", json.dumps(summary.get("body")))
    assert run.returncode == 128 + signal.SIGTERM, err

    summary = json.loads(summary_path.read_text())
    shown = ("end_reason", "completed", "faults", "notes", "safety", "link")
    print(json.dumps({k: summary[k] for k in shown}, indent=1))
    assert summary["faults"] == []
    assert summary["end_reason"] == "stopped"
    assert summary["notes"] == ["stopped by the user"]  # no scan_failed, no "no neck" note
    assert summary["safety"]["ok"] is True
    link = summary["link"]
    assert link["board"]["board_id"] == "doc-board"
    assert link["board"]["flags"] & wire.FLAG_DEPTH_LOAD
    assert link["board_watchdog_seen"] == 0 and link["forced_off"] == 0
    assert link["disconnects"] == 0 and link["connects"] == 1

    # The board's side of the scan. The touch at the scan's start, on the back:
    touch, release = board.events[touched], board.events[released]
    print("touch:", touch, "release:", release, "rest:", board.events[rest])
    assert touch["carriage_mm"] == pytest.approx(148, abs=10) and touch["stiffness"] == 1.0
    walk_s = release["t"] - touch["t"]
    still_s = board.events[started]["t"] - board.events[rest]["t"]
    print(f"walk {walk_s:.1f} s, adjust window {still_s:.1f} s")
    assert 8 < still_s < 15
    still = board.events[rest]["pose_mm"]
    for e in board.events[rest:started]:  # holding every position through the window
        if e["ev"] in ("motion_on", "motion_off", "summary"):
            assert e["pose_mm"] == pytest.approx(still, abs=0.5), e
    # then on the skin without a break up past the shoulder line, into the neck, where the
    # walk stopped and the heads came back (the head never reached):
    assert release["stiffness"] == pytest.approx(0.3)
    assert SHOULDER_MM < release["carriage_mm"] < SHOULDER_MM + 120
    # walking at the contour scan's 20 mm/s (the switch's opening, at the shoulder line):
    opened = board.wait_for(
        lambda e: e["ev"] == "contact" and not e["closed"], 1, touched, "the back's end"
    )
    assert board.events[opened]["carriage_mm"] == pytest.approx(SHOULDER_MM, abs=1)
    assert board.events[opened]["carriage_mm_s"] == pytest.approx(20, abs=2)
    # walking up the back holding a light touch, 30 / 66 mA (the board's summaries every 0.5 s;
    # from 10 mm above the touch, the heads settled on the skin):
    loads = [
        e["depth_load_a"] * 1000
        for e in board.events[touched:released]
        if e["ev"] == "summary" and touch["carriage_mm"] + 10 < e["pose_mm"][0] < SHOULDER_MM
    ]
    print(f"loads on the back (mA): {len(loads)} samples, {sorted(loads)}")
    assert len(loads) > 40 and all(6 <= ma <= 100 for ma in loads), loads
    assert min(loads) < 40 and max(loads) > 45, "the touch alternates 30 and 66 mA"

    # The chair's side: the contour is the board's skin (a flat back 6 mm from the heads' home),
    # from the scan's start to the shoulder line, and the shoulder line is the board's.
    body = summary["body"]
    print("shoulder found:", body["shoulder_mm"], "the board's:", SHOULDER_MM)
    assert body["shoulder_mm"] == pytest.approx(SHOULDER_MM, abs=15)
    contour = body["contour"]
    assert contour[0][0] < 160 and contour[-1][0] > SHOULDER_MM
    on_back = [skin for y, skin in contour if y < SHOULDER_MM]
    assert on_back and all(abs(skin - wire.Body().back_depth_mm) < 0.5 for skin in on_back)

    # The board's side of the stop: enable 0 while ON, then the hang-up in READY, parked.
    gone = board.wait_for(lambda e: e["ev"] == "disconnect", 10, started, "the controller leaving")
    states = [e for e in board.events[:gone] if e["ev"] == "state"]
    assert not [e for e in states if e["new"] == "TRIPPED"], states
    assert (states[-1]["old"], states[-1]["new"], states[-1]["why"]) == ("ON", "READY", "enable 0")
    assert board.events[gone]["state"] == "READY"
    assert board.events[gone]["pose_mm"] == pytest.approx(PARK_MM, abs=1.0)
    report = board.stop()
    print("board counters after the session:", report["counters"])
    assert report["watchdog_trips"] == 0 and report["state"] == "READY"
    counters = report["counters"]
    for name in ("bad_crc", "bad_length", "duplicate", "out_of_order", "seq_gaps"):
        assert counters[name] == 0, name
    assert counters["invalid_setpoints"] == 0 and counters["refused_setpoints"] == 0


# --- 3. the chair behind the board, driven by a controller of our own --------------------------


class MiniController:
    """Just enough of a controller: HELLO, SETPOINTs, and STATUS parsing."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tx = 0
        self.sp = 0
        self.buf = b""

    def send(self, msg_type: int, payload: bytes) -> None:
        self.sock.sendall(wire.encode_frame(self.tx, msg_type, payload))
        self.tx += 1

    def frames(self) -> Iterator[tuple[int, bytes]]:
        while True:
            while len(self.buf) < 6 or len(self.buf) < 8 + self.buf[2]:
                self.buf += self.sock.recv(65536)
            assert self.buf[:2] == wire.SYNC
            n = self.buf[2]
            frame, self.buf = self.buf[: 8 + n], self.buf[8 + n :]
            assert wire.crc16(frame[2 : 6 + n]) == struct.unpack_from("<H", frame, 6 + n)[0]
            yield frame[5], frame[6 : 6 + n]

    def hello(self) -> tuple[Any, ...]:
        self.send(wire.HELLO, wire.HELLO_FMT.pack(wire.PROTOCOL_VERSION, 2000, 0xC0FFEE))
        self.sp = 0
        for msg_type, payload in self.frames():
            if msg_type == wire.HELLO_ACK:
                return wire.HELLO_ACK_FMT.unpack(payload)
        raise AssertionError

    def setpoint(
        self,
        pose_um: tuple[int, int, int],
        enable: int,
        knead: int = 0,
        tap: int = 0,
        duty: int = 0,
    ) -> None:
        self.sp += 1
        fields = (self.sp, *pose_um, 0, 0, 0, knead, tap, duty, enable, 0)
        self.send(wire.SETPOINT, wire.SETPOINT_FMT.pack(*fields))

    def status(self) -> dict[str, Any]:
        """The next STATUS that echoes our latest SETPOINT."""
        for msg_type, payload in self.frames():
            if msg_type == wire.STATUS:
                f = wire.STATUS_FMT.unpack(payload)
                if f[0] == self.sp:
                    return {
                        "enc": f[2:5],
                        "knead": f[5],
                        "tap": f[6],
                        "amps": f[7:12],
                        "therm": f[12],
                        "supply": f[13],
                        "switches": f[14],
                        "outputs": f[15],
                        "faults": f[16],
                    }
        raise AssertionError


def drive_until(
    ctl: MiniController,
    seconds: float,
    cond: Callable[[dict[str, Any]], bool],
    *,
    pose: tuple[int, int, int],
    **kw: int,
) -> dict[str, Any]:
    """Feed enable-1 SETPOINTs every 2 ms until `cond` holds on an echoing STATUS."""
    deadline = time.monotonic() + seconds
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        ctl.setpoint(pose, 1, **kw)
        st = ctl.status()
        if cond(st):
            return st
        time.sleep(0.002)
    raise AssertionError(f"not reached in {seconds} s: {st}")


def test_chair_physics_and_watchdog(make_board: Callable[..., BoardProcess]) -> None:
    board = make_board("--start-pose", "500,130,10", "--shoulder-mm", "800")
    ctl = MiniController(board.port)
    version, watchdog_ms, nonce, period_us, flags, board_id = ctl.hello()
    assert (version, nonce, flags, board_id.rstrip(b"\0")) == (3, 0xC0FFEE, 0, b"doc-board")
    assert 1 <= watchdog_ms <= 100 and 1 <= period_us <= 5000
    pose = (500_000, 130_000, 10_000)
    ctl.setpoint(pose, 0)
    st = ctl.status()
    assert st["outputs"] == 0 and st["switches"] == 0b1100  # arm pressing the back, seated
    therm0 = st["therm"]
    # Kneading, tapping and the heater: rates measured as they ramp, currents, warmth.
    st = drive_until(
        ctl,
        3,
        lambda s: s["knead"] > 29_000 and s["tap"] > 4_900,
        pose=pose,
        knead=30_000,
        tap=5_000,
        duty=0xFFFE,
    )
    assert st["outputs"] == 0b11 and st["faults"] == 0
    assert all(0 < a < 3000 for a in st["amps"]) and 20_000 < st["supply"] < 30_000
    assert st["enc"] == pytest.approx(pose, abs=50)
    st = drive_until(ctl, 3, lambda s: s["therm"] > therm0 + 5, pose=pose, duty=0xFFFE)
    # A carriage move: the encoder follows at (up to) the document's speed.
    up = (600_000, 130_000, 10_000)
    t0 = time.monotonic()
    st = drive_until(ctl, 3, lambda s: s["enc"][0] > 599_000, pose=up)
    assert time.monotonic() - t0 > 0.8  # 100 mm at ≤ 100 mm/s (+20 % for the loop)
    assert st["switches"] & 0b100  # still below the shoulder line
    # Silence while ON: the watchdog turns everything off and says so, within 100 ms.
    silent_since = time.monotonic()
    while not (st := ctl.status())["faults"] & 1:
        assert time.monotonic() - silent_since < 0.5, "the watchdog never tripped"
    assert time.monotonic() - silent_since < 0.15 and st["outputs"] == 0
    ctl.setpoint(up, 1)  # enable 1 while tripped: echoed, outputs stay off
    st = ctl.status()
    assert st["outputs"] == 0 and st["faults"] == 1
    ctl.setpoint(up, 0)  # the acknowledgement
    st = ctl.status()
    assert st["outputs"] == 0 and st["faults"] == 0
    ctl.sock.close()
    report = board.stop()
    assert report["watchdog_trips"] == 1


# --- the receive rules: the document's worked example -------------------------------------------


def test_worked_example_counters() -> None:
    def sp(seq: int) -> bytes:
        return wire.encode_frame(seq, wire.SETPOINT, wire.SETPOINT_FMT.pack(1, *[0] * 11))

    damaged = bytearray(sp(0x11))
    damaged[20] ^= 0x04
    stream = b"\x11\x22" + sp(0x10) + bytes(damaged) + b"\xa5\x5a\xff" + sp(0x10) + sp(0x13)
    for chunk in (len(stream), 1, 7):  # all at once, byte by byte, in odd pieces
        decoder = wire.Decoder()
        seqs = [
            f.seq for i in range(0, len(stream), chunk) for f in decoder.feed(stream[i : i + chunk])
        ]
        assert seqs == [0x10, 0x13]
        nonzero = {k: v for k, v in decoder.counters.items() if v}
        assert nonzero == {
            **{"bytes": 197, "frames": 2, "garbage_bytes": 53, "resyncs": 3},
            **{"bad_length": 1, "bad_crc": 1, "duplicate": 1, "seq_gaps": 2},
        }
    assert wire.crc16(bytes.fromhex("08 00 00 01 02 00 d0 07 78 56 34 12")) == 0xE84E
