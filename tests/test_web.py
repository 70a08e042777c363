"""The web remote's server (docs/web.md): pairing, the WebSocket's messages, the commands through
the one desk, refusals and limits, with the real controller behind it. The page itself in a real
browser: tests/test_web_browser.py."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import websockets

from chair.api import ERROR_CODES
from chair.cli.common import EXIT_USAGE, UsageError
from chair.cli.serve import WebOptions, pairing_token, web_options
from chair.commands.feed import significant
from chair.store import Store
from chair.web.pairing import COOKIE, pairing_url
from chair.web.server import MAX_MESSAGE_BYTES, RATE_BURST, RATE_PER_S
from tests.mqtt_helpers import BAD_PAYLOADS
from tests.web_helpers import Remote, aget, page, web_remote

pytest_plugins = ["tests.web_fixtures"]  # the `remote` fixture


# ---- pairing ------------------------------------------------------------------------------------


async def test_without_the_token_every_path_answers_401(remote: Remote) -> None:
    paths = (
        "/",
        "/assets/remote.js",
        "/assets/icon.svg",
        "/?x=1",
        "/ws",
        "/nowhere",
        "/favicon.ico",
    )
    for path in paths:
        status, headers, body = await aget(remote.url + path)
        assert status == 401, path
        assert headers["www-authenticate"].startswith("Bearer")
        assert headers["x-frame-options"] == "DENY" and "content-security-policy" in headers
        assert b"pair" in body
    for bad in ("", "wrong-token-0123456789", remote.token + "x", remote.token[:-1]):
        status, headers, _ = await aget(f"{remote.url}/?token={bad}")
        assert status == 401 and "set-cookie" not in headers, bad
        status, _, _ = await aget(remote.url + "/", {"Cookie": f"{COOKIE}={bad}"})
        assert status == 401, bad
    for headers in ({}, {"Authorization": "Bearer nope-nope-nope-nope"}, {"Cookie": f"{COOKIE}=x"}):
        with pytest.raises(websockets.InvalidStatus) as e:
            async with websockets.connect(remote.ws_url, additional_headers=headers):
                pass
        assert e.value.response.status_code == 401
        assert e.value.response.headers["X-Frame-Options"] == "DENY"
    assert not remote.server.pages and remote.server.connections == 0


async def test_pairing_sets_an_httponly_cookie_and_the_address_forgets_the_token(
    remote: Remote,
) -> None:
    status, headers, _ = await aget(f"{remote.url}/?token={remote.token}")
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={remote.token};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    status, headers, body = await aget(remote.url + "/", {"Cookie": f"{COOKIE}={remote.token}"})
    assert status == 200 and b'aria-label="Intensity"' in body
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    status, headers, body = await aget(
        remote.url + "/assets/remote.js", {"Authorization": f"Bearer {remote.token}"}
    )
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    status, _, _ = await aget(
        remote.url + "/assets/../server.py", {"Authorization": f"Bearer {remote.token}"}
    )
    assert status in (401, 404)
    for path in ("/assets/secrets.txt", "/nowhere", "/ws"):  # (/ws without the upgrade)
        status, headers, _ = await aget(
            remote.url + path, {"Authorization": f"Bearer {remote.token}"}
        )
        assert status == 404 and headers["cache-control"] == "no-store", path
        assert headers["x-content-type-options"] == "nosniff", path
    # The cookie opens the WebSocket too; a page of another site does not.
    cookie_header = {"Cookie": f"{COOKIE}={remote.token}"}
    async with websockets.connect(remote.ws_url, additional_headers=cookie_header) as ws:
        assert json.loads(await ws.recv())["topic"] == "hello"
    with pytest.raises(websockets.InvalidStatus) as e:
        async with websockets.connect(
            remote.ws_url, additional_headers=cookie_header, origin="http://evil.example"
        ):
            pass
    assert e.value.response.status_code == 403


def test_the_pairing_address_and_the_web_options() -> None:
    assert pairing_url("127.0.0.1", 8080, "t" * 20) == f"http://127.0.0.1:8080/?token={'t' * 20}"
    assert pairing_url("::1", 80, "t" * 20).startswith("http://[::1]:80/")
    assert "0.0.0.0" not in pairing_url("0.0.0.0", 8080, "t" * 20)
    assert web_options(None, None, {}) is None
    assert web_options("8081", None, {}) == WebOptions("127.0.0.1", 8081, None)
    assert web_options("0.0.0.0:80", "a" * 16, {}) == WebOptions("0.0.0.0", 80, "a" * 16)
    assert web_options("[::1]:80", None, {"CHAIR_WEB_TOKEN": "b" * 16}).token == "b" * 16  # type: ignore[union-attr]
    for spec in ("", "host:", "x:70000", "localhost:http"):
        with pytest.raises(UsageError):
            web_options(spec, None, {})
    for token in ("short", "with space and more chars", "é" * 20, "x" * 129):
        with pytest.raises(UsageError, match="16-128"):
            web_options("8080", token, {})


async def test_the_pairing_token_is_kept_in_the_database_across_restarts(tmp_path: Path) -> None:
    class Chair:
        store: Store | None = None

    chair = Chair()
    chair.store = await Store.open(tmp_path / "chair.db")
    first = await pairing_token(chair, WebOptions("127.0.0.1", 0))
    await chair.store.close()
    chair.store = await Store.open(tmp_path / "chair.db")
    try:
        assert await pairing_token(chair, WebOptions("127.0.0.1", 0)) == first  # still paired
        assert await pairing_token(chair, WebOptions("127.0.0.1", 0, "g" * 16)) == "g" * 16
    finally:
        await chair.store.close()
    chair.store = None  # no database: a token for this run, not the kept one
    assert await pairing_token(chair, WebOptions("127.0.0.1", 0)) != first
    assert len(first) >= 16


# ---- the WebSocket ------------------------------------------------------------------------------


async def test_a_page_gets_hello_then_the_state_at_once(remote: Remote) -> None:
    async with page(remote) as p:
        (t0, hello), (t1, state) = p.messages[:2]
        assert (t0, t1) == ("hello", "state")
        assert "manual" not in hello["programs"] and hello["manual"] == "manual"
        assert hello["programs"] and set(hello["programs"]) < set(remote.ctl.programs())
        assert hello["heat_levels"][0] == "off" and hello["intensities"] == [1, 2, 3, 4, 5]
        assert hello["zones"][0] == "glutes" and hello["zones"][-1] == "neck"
        assert state["state"] == "idle" and "preset" in state
        assert significant(state) == significant(remote.desk.state_payload())


async def test_a_whole_session_over_the_websocket_with_telemetry_at_10_hz(remote: Remote) -> None:
    async with page(remote) as p:
        reply = await p.command(action="start", program="quick", minutes=5, heat="high")
        assert reply["ok"] and reply["state"]["state"] in ("scanning", "adjusting", "running")
        await p.state("running")
        mark = len(p.messages)
        await p.wait_for("2 s of telemetry", lambda: len(p.on("telemetry", mark)) >= 20, 10)
        # the clocks move on the page: the state is re-read every 0.5 s in a session
        clocks = [s["elapsed_s"] for s in p.on("state", mark) if s["state"] == "running"]
        assert len(clocks) >= 2 and clocks == sorted(clocks) and clocks[-1] > clocks[0]
        samples = p.on("telemetry", mark)
        span = samples[-1]["t"] - samples[0]["t"]  # simulated seconds at speed 60
        assert span / 60 <= (len(samples) - 1) / 8.0, "fewer than 8 samples per wall second"
        assert len({s["y_mm"] for s in samples}) > 5  # the roller moves
        assert (await p.command(action="pause"))["state"]["state"] == "paused"
        assert (await p.command(action="resume"))["state"]["state"] == "running"
        mark = len(p.messages)
        assert (await p.command(action="stop"))["ok"]
        await p.state("idle", mark)
        finished = await p.wait_for(
            "session_finished",
            lambda: [e for e in p.on("event", mark) if e["event"] == "session_finished"],
        )
        assert "outbox_id" not in finished[0]
        assert finished[0]["session_id"] == reply["state"]["session_id"]


async def test_every_bad_command_of_the_mqtt_suite_is_refused_and_changes_nothing() -> None:
    # (a budget for them all: the rate limit has its own test)
    async with web_remote(rate_burst=1000) as remote, page(remote) as p:
        assert (await p.command(action="start", program="relax", minutes=30, intensity=2))["ok"]
        before = await p.state("running")
        mark = len(p.messages)
        for payload, _ in BAD_PAYLOADS:
            await p.ws.send(payload)
        await p.wait_for(
            "a reply to each", lambda: len(p.on("reply", mark)) >= len(BAD_PAYLOADS), 30
        )
        replies = p.on("reply", mark)
        assert len(replies) == len(BAD_PAYLOADS)
        codes = [r["error"]["code"] for r in replies]
        assert codes == [code for _, code in BAD_PAYLOADS]  # the same codes as over MQTT
        after = remote.ctl.state()
        assert after["state"] == "running" and after["fault"] is None
        for key in ("program", "session_id", "intensity", "zone_intensity", "manual"):
            assert after[key] == before[key], key
        assert {s["state"] for s in p.on("state", mark)} <= {"running"}
        await p.command(action="stop")


async def test_a_flood_of_10000_messages_is_refused_and_the_session_runs_undisturbed(
    remote: Remote,
) -> None:
    async with page(remote) as p, page(remote) as other:
        assert (await p.command(action="start", program="relax", minutes=30))["ok"]
        before = await p.state("running")
        t_before = remote.ctl.telemetry()["t"]  # type: ignore[index]
        mark, other_mark = len(p.messages), len(other.messages)
        flood = [
            json.dumps({"id": f"f{i}", "action": "set", "intensity": 1 + i % 5})
            for i in range(10_000)
        ]
        t0 = time.monotonic()
        for m in flood:
            await p.ws.send(m)
        # straight after the flood: never rate limited (it comes after the 10 000 on the socket:
        # about 10 s of the loop's work on a quiet machine, so a generous ceiling)
        stop = await p.command(timeout=120, action="estop")
        took_s = time.monotonic() - t0
        assert stop["ok"] and stop["state"]["state"] == "estop"
        replies = [r for r in p.on("reply", mark) if r["id"] != stop["id"]]
        assert len(replies) == len(flood)  # one answer each
        refused = [r for r in replies if r["error"] and r["error"]["code"] == "rate_limited"]
        # all but the budget: the burst, and what the rate refilled while the flood lasted
        assert len(refused) >= len(flood) - RATE_BURST - RATE_PER_S * took_s - 1
        assert all(r["error"] is None or r["error"]["code"] in ERROR_CODES for r in replies)
        assert refused[0]["id"] is None and "per second" in refused[0]["error"]["message"]
        # The session ran on under the flood until the e-stop: no fault, the clock moved, and
        # only the commands within the budget reached it (a change of intensity each).
        states = p.on("state", mark)
        assert all(s["fault"] is None for s in states if s["state"] != "estop")
        assert {s["state"] for s in states} <= {"running", "estop"}
        assert remote.ctl.telemetry()["t"] > t_before  # type: ignore[index]
        assert before["session_id"] == stop["state"]["session_id"]
        # The other page saw it all: the flood costs the sender its own replies only.
        await other.state("estop", other_mark)
        assert not other.on("reply", other_mark)
        assert (await other.command(action="reset"))["state"]["state"] == "idle"


async def test_an_oversized_message_is_refused_and_a_huge_one_closes_the_socket(
    remote: Remote,
) -> None:
    async with page(remote) as p:
        await p.ws.send(json.dumps({"id": "big", "action": "preset", "pad": "x" * 5000}))
        reply = await p.wait_for("a refusal", lambda: p.on("reply"))  # unread: no id to echo
        assert reply[0]["error"]["code"] == "too_large" and reply[0]["id"] is None
        await p.ws.send("x" * (MAX_MESSAGE_BYTES + 1))
        await asyncio.wait_for(p.closed.wait(), 10)
        assert p.ws.close_code == 1009
    async with page(remote) as p:  # the chair took no harm
        assert (await p.command(action="status"))["state"]["state"] == "idle"


async def test_a_page_dropped_mid_session_changes_nothing_and_a_new_one_sees_it_at_once(
    remote: Remote,
) -> None:
    async with page(remote) as p:
        assert (await p.command(action="start", program="relax", minutes=30))["ok"]
        running = await p.state("running")
        sock = p.ws.transport.get_extra_info("socket")
        sock.shutdown(socket.SHUT_RDWR)  # the network is cut under the page
        await asyncio.wait_for(p.closed.wait(), 10)
    async with page(remote) as fresh:
        await fresh.wait_for("the page gone", lambda: len(remote.server.pages) == 1, 25)
        state = fresh.on("state")[0]  # at once, before anything changed
        assert state["state"] == "running" and state["session_id"] == running["session_id"]
        assert remote.ctl.state()["state"] == "running"
        assert (await fresh.command(action="estop"))["state"]["state"] == "estop"


async def test_replies_go_to_the_page_that_asked_and_ids_are_shared_with_every_remote(
    remote: Remote,
) -> None:
    async with page(remote) as a, page(remote) as b:
        b_mark = len(b.messages)
        first = await a.command(action="set", intensity=2)
        assert first["ok"]
        await a.ws.send(json.dumps({"id": "same", "action": "start", "program": "quick"}))
        started = await a.reply_to("same")
        assert started["ok"]
        await b.ws.send(json.dumps({"id": "same", "action": "start", "program": "quick"}))
        again = await b.reply_to("same")  # seen before: the first reply, not a second start
        assert again == started
        # MQTT hands its commands to the same desk: the id is known there too.
        future = remote.desk.submit(b'{"id":"same","action":"start","program":"quick"}')
        assert (await future) == started
        assert [r["id"] for r in b.on("reply", b_mark)] == ["same"]
        await a.state("running")
        await a.command(action="stop")


def _run_serve(args: list[str]) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "chair", "serve", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--web", "x:99999"], "PORT 0..65535"),
        (["--web", "8080", "--web-token", "short"], "16-128"),
    ],
)
def test_chair_serve_refuses_bad_web_options_clearly(args: list[str], says: str) -> None:
    done = _run_serve(args)
    assert done.returncode == EXIT_USAGE and says in done.stderr, done.stderr


def test_chair_serve_says_when_the_web_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run_serve(
            [
                "--web",
                f"127.0.0.1:{port}",
                "--broker",
                "mqtt://127.0.0.1:1",
                "--db",
                str(tmp_path / "c.db"),
            ]
        )
    assert done.returncode == EXIT_USAGE and f"--web 127.0.0.1:{port}" in done.stderr
    assert "in use" in done.stderr
