"""`chair fleet-sim` (docs/fleet-sim.md, docs/interfaces.md §7) against a real mosquitto: the
command as a process with real controllers (their Cython cores, the simulated plant) in two
worker processes, and a fleet chair side by side with a `chair serve` chair.

The chairs' config allows half-minute sessions and the chairs run at speed 10, so sessions start
and finish within the test; every wait is on a message, with generous ceilings (this machine's
two cores are shared with the rest of the suite).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.mqtt_broker import Mosquitto
from tests.mqtt_helpers import Observer, v5_properties

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = [pytest.mark.broker]

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
}
for _k in [k for k in ENV if k.startswith("CHAIR_")]:
    del ENV[_k]  # settings come from the flags below only

SECTION_7 = {
    "chairs": int,
    "connected": int,
    "sessions_started": int,
    "sessions_finished": int,
    "msgs_per_s": float,
    "cmd_reply_p50_ms": float,
    "cmd_reply_p99_ms": float,
    "cpu_s": float,
}
"""`chair fleet-sim --json` (docs/interfaces.md §7): every field and its type."""


def short_sessions(tmp_path: Path) -> Path:
    """A chair config whose sessions may last half a minute (the reference chair's: 5..30)."""
    path = tmp_path / "short.toml"
    path.write_text("[session]\nmin_minutes = 0.5\n")
    return path


async def test_fleet_sim_runs_twenty_chairs(broker: Mosquitto, tmp_path: Path) -> None:
    config = short_sessions(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chair", "--config", str(config), "fleet-sim",
        "--chairs", "20", "--workers", "2", "--minutes", "0.4", "--speed", "10",
        "--program", "manual", "--session-minutes", "0.5", "--ramp-s", "5", "--probe-s", "2",
        "--broker", broker.url, "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode == 0, err.decode()[-3000:]
    report = json.loads(out)
    for name, kind in SECTION_7.items():
        assert isinstance(report[name], kind), (name, report[name])
    assert report["chairs"] == 20 and report["connected"] == 20, report
    assert report["chairs_failed"] == 0 and report["workers"] == 2
    # every chair ran a session (each starts its first within the ramp's 5 s)
    assert report["sessions_started"] >= 20
    assert report["sessions_finished"] == report["sessions_started"], report
    assert report["sessions_completed"] >= 1  # a half-minute session at speed 10 ends in ~10 s
    assert report["commands_lost"] == 0
    # the one refusal that may happen: the run ends as a session has just begun to settle
    assert set(report["commands_refused"]) <= {"stop:not_allowed"}, report["commands_refused"]
    by_action = report["cmd_reply_ms_by_action"]
    assert by_action["start"]["n"] == report["sessions_started"]
    assert by_action["status"]["n"] > 20
    assert 0 < report["cmd_reply_p50_ms"] <= report["cmd_reply_p99_ms"] < 30_000
    # the chairs' messages: telemetry in sessions, states, events, replies; all delivered
    topics = report["msgs_received_by_topic"]
    assert topics["telemetry"] > 0 and topics["event"] >= 2 * report["sessions_started"]
    assert topics["availability"] >= 20
    assert report["msgs_per_s"] > 0
    assert report["msgs_received"] >= report["msgs_published"] * 0.95
    assert report["cpu_s"] > 0 and report["cpu_s_per_chair_hour"] > 0
    assert report["lag_max_ms"] >= 0 and report["lag_max_chair"].startswith("sim-")


async def _reply(
    obs: Observer, base: str, action: str, timeout: float = 30.0, **fields: Any
) -> dict[str, Any]:
    """Send `action` to the chair at `base` as fleet-sim's operator does (MQTT 5, a response
    topic and correlation data); its reply from the response topic."""
    cmd_id = uuid.uuid4().hex
    response = f"{base}/reply/{obs.identifier}"
    mark = obs.mark()
    await obs.publish(
        f"{base}/cmd",
        json.dumps({"id": cmd_id, "action": action, **fields}),
        properties=v5_properties(response, cmd_id.encode()),
    )
    msg = await obs.wait_for(response, since=mark, timeout=timeout)
    assert bytes(msg.properties.CorrelationData) == cmd_id.encode()
    reply = msg.json()
    assert reply["id"] == cmd_id
    return dict(reply)


def _schema(obj: Any) -> Any:
    """The shape of a JSON value: keys (recursively for objects), not values."""
    if isinstance(obj, dict):
        return {k: _schema(v) for k, v in obj.items() if k not in ("link",)}
    return None


async def test_a_fleet_chair_answers_like_chair_serve(broker: Mosquitto, tmp_path: Path) -> None:
    """A chair hosted by a fleet-sim worker and a `chair serve` chair give `status` and `start`
    the same replies (the same schema, the same outcome) and the same `session_started`."""
    serve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chair", "serve", "--broker", broker.url, "--chair-id", "ref",
        "--speed", "10", "--no-discovery", "--telemetry-hz", "1", "--log-level", "warning",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=ENV, cwd=ROOT,
    )  # fmt: skip
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chair.fleet.sim_worker",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=ENV, cwd=ROOT,
    )  # fmt: skip
    assert worker.stdin is not None and worker.stdout is not None
    spec = {"worker": 0, "chairs": [["sim-0", 0]], "mqtt": {"broker": broker.url}, "speed": 10}
    worker.stdin.write(json.dumps(spec).encode() + b"\n")
    await worker.stdin.drain()
    bases = ("massagechair/ref", "massagechair/sim-0")
    try:
        async with Observer(broker.url, subscriptions=("massagechair/#",)) as obs:
            for base in bases:
                await obs.wait_for(
                    f"{base}/availability", lambda m: m.payload == b"online", timeout=60
                )
            ref, sim = [await _reply(obs, b, "status") for b in bases]
            assert ref["ok"] and sim["ok"] and ref["error"] is None and sim["error"] is None
            assert _schema(sim) == _schema(ref)
            assert sim["state"]["state"] == ref["state"]["state"] == "idle"

            mark = obs.mark()
            ref, sim = [await _reply(obs, b, "start", program="relax") for b in bases]
            assert ref["ok"] and sim["ok"], (ref, sim)
            assert _schema(sim) == _schema(ref)
            assert sim["state"]["state"] == ref["state"]["state"] == "scanning"
            assert sim["state"]["program"] == ref["state"]["program"] == "relax"
            started = [
                (
                    await obs.wait_for(
                        f"{b}/event",
                        lambda m: m.json()["event"] == "session_started",
                        since=mark,
                        timeout=30,
                    )
                ).json()
                for b in bases
            ]
            assert _schema(started[1]) == _schema(started[0])
            assert started[1]["session_id"] == sim["state"]["session_id"]

            ref, sim = [await _reply(obs, b, "pause") for b in bases]  # not while scanning
            assert not ref["ok"] and not sim["ok"]
            assert ref["error"]["code"] == sim["error"]["code"] == "not_allowed"

            # both stop as `chair serve` does on SIGTERM: the session settles, offline goes out
            worker.stdin.write(b"stop\n")
            await worker.stdin.drain()
            serve.send_signal(signal.SIGTERM)
            for base in bases:
                await obs.wait_for(
                    f"{base}/availability", lambda m: m.payload == b"offline", timeout=60
                )
            finished = obs.json_on(f"{bases[1]}/event")
            assert any(e["event"] == "session_finished" for e in finished)
        lines = [json.loads(x) for x in (await asyncio.wait_for(worker.stdout.read(), 60)).split()]
        assert lines[-1]["final"] and lines[-1]["chairs"] == 1 and lines[-1]["failed"] == 0
        assert await asyncio.wait_for(worker.wait(), 30) == 0
        assert await asyncio.wait_for(serve.wait(), 30) == 0
    finally:
        for p in (worker, serve):
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()


def test_identities_must_all_be_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--identities DIR`: a chair whose certificate (or key) `chair provision` never wrote
    stops the run before anything starts, with one line naming it (docs/fleet-sim.md,
    Identity)."""
    from chair.cli import main

    ca = tmp_path / "ca"
    for chair_id in ("sim-0", "sim-2"):
        assert main(["provision", chair_id, "--ca", str(ca)]) == 0
    (ca / "chairs" / "sim-2" / "sim-2.key").unlink()
    capsys.readouterr()
    base = ["fleet-sim", "--broker", "mqtts://127.0.0.1:1", "--json"]
    cases = {
        "3": f"no sim-1.crt for chair sim-1 ({ca / 'chairs' / 'sim-1' / 'sim-1.crt'}; issue it "
        f"with `chair provision sim-1 --ca CA --out {ca / 'chairs' / 'sim-1'}`)",
        "1": None,  # sim-0 alone is all there: the run goes on to the (absent) broker
    }
    for chairs, expected in cases.items():
        rc = main([*base, "--chairs", chairs, "--identities", str(ca / "chairs")])
        out, err = capsys.readouterr()
        assert rc == 1 and out == "", (chairs, out, err)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("chair fleet-sim: error: "), lines
        if expected is not None:
            assert lines[0].endswith(expected), lines[0]
        else:
            assert "--identities" not in lines[0] and "broker" in lines[0], lines[0]
    (ca / "chairs" / "sim-1").mkdir()
    (ca / "chairs" / "sim-1" / "sim-1.crt").write_text("")
    assert main([*base, "--chairs", "3", "--identities", str(ca / "chairs")]) == 1
    assert "no sim-1.key for chair sim-1" in capsys.readouterr().err
    assert main([*base, "--chairs", "1", "--identities", str(tmp_path / "none")]) == 1
    assert capsys.readouterr().err.strip().endswith(f"{tmp_path / 'none'}: not a directory")
