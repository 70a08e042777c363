"""Hardware in the loop: the link's own safety, measured from the board's side.

A real `chair board` process, the real controller and its C link loop: the board goes silent,
deaf or hangs up while the carriage runs at full speed, and the board's log of every SETPOINT it
received says how soon the controller commanded drives off and how fast it still commanded the
carriage in between (docs/board-protocol.md, Link loss). Then every kind of end a controller has
(stop, fault, SIGTERM, SIGINT) must leave the board de-energised by the controller's goodbye,
never by the board's watchdog (docs/board-protocol.md, Shutdown).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from chair.controller import Controller
from core_rt.config import ChairConfig
from tests.board_helpers import ROOT, Board, board, child_env, read_first_line
from tests.test_hil import MS, controller, observe, reach, start_motion, until

pytestmark = [pytest.mark.hil, pytest.mark.realtime]

LINK_DEADLINE_MS = ChairConfig().link.deadline_ms
"""docs/chair.md §6: a lost link stops the chair within 100 ms."""


async def at_full_speed(b: Board, ctl: Controller) -> float:
    """Wait until the board is commanded at the carriage's top speed (cruising); returns it."""
    v_max = ChairConfig().carriage.limits.v_max

    def fast() -> float | None:
        sps = b.cmd(f"setpoints {time.monotonic_ns() - 20 * MS}")["setpoints"]
        v = max((s["max_speed_mm_s"] for s in sps if s["enable"]), default=0.0)
        return v if v >= v_max - 0.05 else None  # cruising: no more acceleration

    return float(await until(fast, 5.0, "the carriage at full speed", step_s=0.01, ctl=ctl))


def after_loss(b: Board, t_loss: int) -> tuple[float, float, list[dict[str, Any]]]:
    """(ms from the loss to the first drives-off SETPOINT, the largest speed commanded after the
    loss while enabled, the SETPOINTs since)."""
    sps = b.cmd(f"setpoints {t_loss}")["setpoints"]
    off = [s for s in sps if not s["enable"]]
    assert off, f"no drives-off SETPOINT reached the board after the loss ({len(sps)} received)"
    off_ms = (off[0]["t_ns"] - t_loss) / MS
    v = max((s["max_speed_mm_s"] for s in sps if s["enable"]), default=0.0)
    return off_ms, v, sps


@pytest.mark.parametrize("how", ["mute", "deaf"])
async def test_board_silent_or_deaf_mid_stroke_drives_off_within_100ms(
    tmp_path: Path, how: str
) -> None:
    """Silent: no STATUS comes back, our SETPOINTs still arrive. Deaf: STATUS goes on but echoes
    nothing new. Either way the controller has no round trip and must command drives off (enable
    0 on the wire) within 100 ms of the last STATUS, with no further acceleration."""
    with board(tmp_path) as b:
        async with controller(b) as w:
            ctl = w.ctl
            start_motion(ctl, heat_c=45.0)
            v_loss = await at_full_speed(b, ctl)
            t_loss = b.cmd(f"link {how}")["t_ns"]
            await reach(ctl, "fault", 5, "link_lost")
            ev = w.fault_event()
            assert ev is not None and ev[1] == "link_lost"
            await observe(0.15)  # what the controller sends after the loss: every SETPOINT off
            off_ms, v_after, sps = after_loss(b, t_loss)
            fault_ms = (ev[0] - t_loss) / MS
            print(
                f"board {how}: drives off on the wire {off_ms:.1f} ms after the loss "
                f"(core link_lost {fault_ms:.1f} ms), speed at loss {v_loss:.1f} mm/s, "
                f"largest after {v_after:.1f} mm/s"
            )
            assert off_ms <= LINK_DEADLINE_MS and fault_ms <= LINK_DEADLINE_MS
            assert v_after <= v_loss + 0.5  # braking or cruising, never faster
            # from then on every SETPOINT says drives off, heater off
            first_off = next(i for i, s in enumerate(sps) if not s["enable"])
            assert all(not s["enable"] and s["heater_duty"] == 0 for s in sps[first_off:])
            c = ctl.hardware.counters()
            assert c["forced_off"] >= 1 and c["tick"]["stale_episodes"] >= 1
            s = b.state()
            if how == "mute":  # it heard the drives-off: a normal stop, no watchdog trip
                assert s["outputs"] == "ready" and s["watchdog"]["trips"] == 0
            else:  # deaf: only its own watchdog could stop it
                assert s["outputs"] == "tripped"
            b.cmd("link restore")


async def test_board_hangs_up_mid_stroke_the_link_is_lost_within_100ms(tmp_path: Path) -> None:
    """TCP: the board closes the connection while energised. It trips at once on its side; the
    controller latches link_lost within 100 ms and, reconnected, only ever sends drives off."""
    with board(tmp_path) as b:
        async with controller(b) as w:
            ctl = w.ctl
            start_motion(ctl)
            await at_full_speed(b, ctl)
            t_drop = b.cmd("link drop")["t_ns"]
            await reach(ctl, "fault", 5, "link_lost")
            ev = w.fault_event()
            assert ev is not None and ev[1] == "link_lost"
            assert (ev[0] - t_drop) / MS <= LINK_DEADLINE_MS
            assert b.events("watchdog_trip", t_drop)  # the board's side: at once
            await until(lambda: ctl.hardware.counters()["connects"] >= 2, 5, "the reconnect")
            await until(lambda: b.cmd(f"setpoints {t_drop}")["setpoints"], 3, "new SETPOINTs")
            await observe(0.1)  # a run of them, not the first alone
            sps = b.cmd(f"setpoints {t_drop}")["setpoints"]
            assert sps and all(not s["enable"] for s in sps)
            assert b.state()["drives_on"] is False


async def test_full_heater_power_reaches_the_board_as_a_valid_setpoint(tmp_path: Path) -> None:
    """Protocol 2: full power is 0xFFFE, not the "missing" sentinel, so a board that follows
    the document applies it (before, such a board refused every SETPOINT and the link died)."""
    with board(tmp_path) as b:
        async with controller(b) as w:
            ctl = w.ctl
            t0 = time.monotonic_ns()
            ctl.core.heat(ChairConfig().heater.levels_c["high"])

            def full_power() -> bool:
                sps = b.cmd(f"setpoints {t0}")["setpoints"]
                return any(s["heater_duty"] == 1.0 and s["applied"] for s in sps)

            await until(full_power, 3, "a full-power SETPOINT applied by the board")
            await until(lambda: b.state()["plant"]["heater_w"] > 0, 3, "the pad heating")
            await observe(0.2)  # a run of full-power SETPOINTs, none refused
            s = b.state()
            assert s["counters"]["invalid_setpoints"] == 0
            assert s["plant"]["heater_w"] > 0 and ctl.state_name == "idle"


# ---- every end says goodbye ----------------------------------------------------------------------


def board_after_goodbye(b: Board, t0: int) -> dict[str, Any]:
    """The board de-energised by a drives-off SETPOINT (READY), not by its watchdog."""
    s = b.state()
    assert s["watchdog"]["trips"] == 0 and not b.events("watchdog_trip", t0), s["events"][-8:]
    assert s["outputs"] == "ready" and not s["drives_on"]
    assert s["plant"]["heater_w"] == 0.0
    return s


@pytest.mark.alone  # on the pty (tests/board_helpers.py)
@pytest.mark.parametrize("how", ["sigterm", "sigint", "fault"])
def test_chair_run_ends_with_a_goodbye_never_by_the_board_watchdog(
    tmp_path: Path, how: str
) -> None:
    """`chair run --hardware`: SIGTERM and SIGINT stop the session (it settles, the summary is
    written, exit 128 + N); a fault ends it (exit 3). Each time the last SETPOINTs say drives and
    heater off, so the board never has to trip its watchdog. On a pty, as on a serial line, the
    board cannot see the controller go: only the goodbye or the watchdog ends its outputs."""
    with board(tmp_path, over="pty") as b:
        summary = tmp_path / "summary.json"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "-c",
                "import sys; from chair.cli import main; print('ready', flush=True); "
                "sys.exit(main(sys.argv[1:]))",
                "run",
                "lumbar_heat",
                "--heat",
                "high",
                "--hardware",
                b.spec,
                "--quiet",
                "--summary",
                str(summary),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=ROOT,
        )
        try:
            assert read_first_line(proc, 20) == "ready"
            t0 = time.monotonic_ns()
            deadline = time.monotonic() + 20
            while not b.state()["drives_on"] or not b.events("motion_on", t0):
                assert proc.poll() is None, _ended_early(proc, summary)
                assert time.monotonic() < deadline, "the session never got the chair moving"
                time.sleep(0.02)
            if how == "fault":
                b.cmd("fault overcurrent:carriage")
                want = 3
            else:
                sig = signal.SIGTERM if how == "sigterm" else signal.SIGINT
                proc.send_signal(sig)
                want = 128 + sig
            rc = proc.wait(30)
            err = proc.stderr.read() if proc.stderr else ""
            assert rc == want, err
            board_after_goodbye(b, t0)
            report = json.loads(summary.read_text())
            assert report["link"]["goodbyes"] == 0  # counted as the link closes, after this
            assert report["link"]["board"]["version"] == 3
            if how != "fault":
                assert report["end_reason"] == "stopped", (
                    f"faults {report['faults']}, notes {report['notes']}, link {report['link']}, "
                    f"loop {report.get('loop')}, board events {b.state()['events'][-20:]}"
                )
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            for f in (proc.stdout, proc.stderr):
                if f is not None:
                    f.close()


def _ended_early(proc: subprocess.Popen[str], summary: Path) -> str:
    """Why a `chair run --quiet` ended before the test was done with it: its stderr, and the
    summary's end, faults and link report when it wrote one."""
    err = proc.stderr.read() if proc.stderr else ""
    if not summary.exists():
        return f"exit {proc.wait()}, no summary; stderr: {err}"
    r = json.loads(summary.read_text())
    return (
        f"exit {proc.wait()}, {r['end_reason']}: faults {r['faults']}, notes {r['notes']}, "
        f"link {r['link']}, loop {r.get('loop')}; stderr: {err}"
    )


async def test_a_stopped_session_and_a_closed_controller_leave_the_board_ready(
    tmp_path: Path,
) -> None:
    cfg = ChairConfig.model_validate({"body": {"adjust_window_s": 1.0}})
    with board(tmp_path) as b:
        t0 = time.monotonic_ns()
        async with controller(b, cfg) as w:
            ctl = w.ctl
            await ctl.start("quick", heat="low")
            await until(lambda: b.events("motion_on", t0), 20, "the scan to move the chair")
            await ctl.stop()
            await asyncio.wait_for(ctl.wait_session(), 30)
            assert ctl.last_result is not None and ctl.last_result.end_reason == "stopped"
            assert ctl.state()["link"]["forced_off"] == 0
        board_after_goodbye(b, t0)
        assert b.events("drives_off", t0)


async def test_chair_serve_logs_the_link_and_every_counter_of_trouble_that_grows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The counters in the open: `chair serve`'s log names the board, then each drop reason as
    it grows (here: 2 % of the board's bytes corrupted)."""
    from chair.cli.serve import watch_link

    with board(tmp_path) as b:
        async with controller(b) as w:
            caplog.set_level("INFO", logger="chair.serve")
            task = asyncio.create_task(watch_link(w.ctl.link_report, period_s=0.2))
            try:
                await until(lambda: "board link: chair-sim" in caplog.text, 2, "the first line")
                b.cmd("corrupt 0.02")
                await until(lambda: "drops.bad_crc +" in caplog.text, 3, "a drop logged")
            finally:
                task.cancel()
                b.cmd("corrupt 0")
            report = w.ctl.state()["link"]
            assert report["drops"]["bad_crc"] > 0 and report["board"]["board_id"] == "chair-sim"
