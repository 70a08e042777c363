"""A whole session driven over MQTT, with the simulated chair on a real board link.

Three real processes and a broker: `chair board --tcp 0` (the plant at its own real-time pace,
with its own watchdog), `chair serve --hardware tcp:127.0.0.1:PORT` (the unmodified controller,
real-time core), mosquitto; the test is only an MQTT client. The session's telemetry (published
at 50 Hz) and the summary carried by its `session_finished` event go through the independent
checker.

A session is at least 5 minutes by the reference chair's config; to keep the suite short this
test's chair config allows 1-minute sessions and a 1-second shoulder window (`--config`, the one
place chair numbers live). The program is delivered over MQTT (`install_program`, so it passes
`chair validate`'s full verification on the chair) and runs for one minute: kneading, then
tapping, with the heat on (`tests/data/hil_minute.toml`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from chair.bench.soak import steal_ms
from chair.checker import check_session
from core_rt.config import load_config
from tests.board_helpers import board
from tests.mqtt_broker import Mosquitto, have_mosquitto
from tests.mqtt_helpers import Observer

pytestmark = [pytest.mark.hil, pytest.mark.realtime, pytest.mark.broker]

ROOT = Path(__file__).resolve().parents[1]
MINUTES = 1.0
PROGRAM = ROOT / "tests" / "data" / "hil_minute.toml"
FOUND = (100.0, 90.0, 40.0)
"""Where the board starts (carriage, width, depth mm): below the seat, narrowest, pressing."""


async def test_a_whole_session_over_mqtt_with_the_board_on_the_link(tmp_path: Path) -> None:
    if not have_mosquitto():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    cfg_path = tmp_path / "hil-chair.toml"
    # the quickest session the controller allows: the scan at the carriage's top speed (the arm's
    # switch is read every tick: 0.1 mm a tick), a one-second adjust window
    cfg_path.write_text(
        "[session]\nmin_minutes = 1.0\n[body]\nadjust_window_s = 1.0\nscan_speed_mm_s = 100.0\n"
    )
    config = load_config(cfg_path)
    steal_before = steal_ms()
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        # found where a power cut left it: low on the track, heads narrow and pressing in
        # (a board without the depth load: the switch's quick scan; the contour over the link:
        # tests/test_hil_contour.py)
        start = ",".join(f"{v:g}" for v in FOUND)
        with board(tmp_path, "--start-pose", start, "--no-depth-load") as b:
            serve = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "chair", "--config", str(cfg_path), "serve",
                "--hardware", b.spec, "--broker", broker.url, "--chair-id", "hil",
                "--telemetry-hz", "50", "--no-discovery",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
                cwd=ROOT,
            )  # fmt: skip
            try:
                async with Observer(broker.url, base="massagechair/hil") as obs:
                    await obs.wait_for("availability", lambda m: m.payload == b"online", timeout=20)
                    r = await obs.cmd("install_program", toml=PROGRAM.read_text(), timeout=20)
                    assert r["ok"], r
                    mark = obs.mark()
                    r = await obs.cmd(
                        "start", program="hil_minute", minutes=MINUTES, heat="low", timeout=20
                    )
                    assert r["ok"], r
                    done = await obs.wait_for(
                        "event",
                        lambda m: m.json().get("event") == "session_finished",
                        since=mark,
                        timeout=MINUTES * 60 + 120,
                    )
                    # the chair at rest after the session (idle; a fault is reported below), and
                    # the last telemetry sample, at rest (the bridge sends one when it stops)
                    end_states = ("idle", "fault", "estop")
                    await obs.wait_for(
                        "telemetry",
                        lambda m: m.json().get("state") in end_states,
                        since=mark,
                        timeout=10,
                    )
                    end_state = obs.last_state()
                    finished = done.json()
                    telemetry = obs.json_on("telemetry", mark)
                    events = [e["event"] for e in obs.json_on("event", mark)]
                # the board's side: at park, at rest, heater off, its watchdog never tripped
                board_state = b.state()
                plant, watchdog = board_state["plant"], board_state["watchdog"]
            finally:
                serve.terminate()
                _, err = await asyncio.wait_for(serve.communicate(), 30)
            assert serve.returncode == 0, err.decode()[-2000:]
            after_exit = b.state()  # SIGTERM: the daemon said goodbye, the board is READY
    finally:
        broker.stop()

    summary = finished["summary"]
    diagnosis = {
        "end_reason": finished["end_reason"],
        "faults": summary["faults"],
        "link": summary.get("link"),
        "loop": summary.get("loop"),  # a late tick?
        "commands": summary.get("commands"),  # a late session (its event loop held up)?
        "board": board_state["counters"],  # a late board loop (max_loop_gap_ms)?
        # a frozen virtual machine (both sides late at once)?
        "steal_ms_per_cpu": [b - a for a, b in zip(steal_before, steal_ms(), strict=True)],
    }
    if not finished["completed"]:  # whole, where pytest's repr of the assertion would cut it
        print(json.dumps(diagnosis, indent=1, default=str))
    assert finished["completed"], diagnosis["end_reason"]
    assert end_state is not None and end_state["state"] == "idle", end_state
    assert events[0] == "session_started" and "shoulder_detected" in events
    assert events.count("step_started") >= 1 and events[-1] == "session_finished"
    assert {"scanning", "adjusting", "running", "settling", "idle"} <= {
        s["state"] for s in telemetry
    }
    # it started from where the board was (the encoders), heads back before any walk
    first = telemetry[0]
    assert (first["y_mm"], first["width_mm"]) == pytest.approx(FOUND[:2], abs=0.5)
    k = next(
        i
        for i, t in enumerate(telemetry)
        if abs(t["y_mm"] - first["y_mm"]) > 0.5 or abs(t["width_mm"] - first["width_mm"]) > 0.5
    )
    assert telemetry[k - 1]["depth_mm"] <= config.depth.retracted_mm + 0.5
    violations = check_session(telemetry, summary, config)
    # (a halt under pressure here: was the session late feeding the core? see `commands`)
    assert violations == [], (violations[:5], summary.get("commands"), summary.get("loop"))
    assert summary["safety"]["ok"]
    assert summary["zone_order_observed"] == summary["zone_order_planned"]
    assert abs(summary["program_seconds"] - MINUTES * 60) <= 2.0
    assert plant["pos_mm"][0] == pytest.approx(config.carriage.park_mm, abs=1.0)
    assert plant["heater_w"] == 0.0
    assert watchdog["trips"] == 0
    assert after_exit["watchdog"]["trips"] == 0 and after_exit["outputs"] == "ready"
    link = summary["link"]  # the link's counters in the summary (docs/board-protocol.md)
    assert link["board"]["board_id"] == "chair-sim" and link["board"]["version"] == 3
    assert link["forced_off"] == 0 and link["drops"]["bad_crc"] == 0
    assert link["setpoint_gap_ms"]["p99"] < 5.0
    assert "board link: chair-sim" in err.decode()  # and in the daemon's log
