"""Web remote benchmark (docs/web.md, "Latency and the benchmark"): a click on the page until the
page shows the new state, beside the MQTT command → reply latency, both measured in the same run
against the same daemon — the real controller on the real-time core, its MQTT bridge and its web
remote sharing one `CommandDesk`, as `chair serve --web` runs them.

- **click_to_state**: headless Chromium clicks **Emergency stop**, then **Reset**, alternately, at
  most one click per 60 ms (within the page's rate limit of 20 commands/s); the page itself times
  each click (``performance.now()``) until its status element shows ``estop``
  (``idle``): the page's command, the WebSocket, the desk, the controller, the state coming back
  and the page drawing it.
- **mqtt_cmd_to_reply**: the same commands (estop, reset, alternately) published on
  ``<base>/cmd`` until their reply arrives on ``<base>/reply``.
- **telemetry_fps**: telemetry frames the page receives per second while the chair moves (the
  body scan of a session), counted in the page.

``python -m chair.bench.web --screenshot docs/web-remote.png`` saves a phone-sized picture of the
page mid-session instead (the README's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chair.bench import find_tool
from chair.bench.mqtt import percentiles, private_broker, realtime_controller
from chair.commands.desk import CommandDesk
from chair.mqtt.bridge import MqttBridge
from chair.mqtt.settings import MqttSettings
from chair.web.pairing import new_token
from chair.web.server import WebRemote
from core_rt.config import ChairConfig

if TYPE_CHECKING:
    from playwright.async_api import Browser, Playwright, ViewportSize

PHONE: ViewportSize = {"width": 390, "height": 844}
TELEMETRY_WINDOW_S = 5.0

# Runs in the page: `n` clicks, Emergency stop and Reset alternately, each timed from the click
# to the status element showing the state it asked for.
_CLICKS_JS = """
async (n) => {
  const PACE_MS = 60;
  const status = document.querySelector('[role=status]');
  const buttons = [...document.querySelectorAll('button')];
  const estop = buttons.find((b) => b.textContent.trim() === 'Emergency stop');
  const reset = buttons.find((b) => b.textContent.trim() === 'Reset');
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const shows = (want) => new Promise((resolve, reject) => {
    if (status.textContent.startsWith(want)) return resolve();
    const mo = new MutationObserver(() => {
      if (status.textContent.startsWith(want)) { mo.disconnect(); resolve(); }
    });
    mo.observe(status, { childList: true, characterData: true, subtree: true });
    setTimeout(() => { mo.disconnect(); reject(new Error(`no ${want} within 5 s`)); }, 5000);
  });
  const out = [];
  for (let i = 0; i < n; i++) {
    const [button, want] = i % 2 === 0 ? [estop, 'estop'] : [reset, 'idle'];
    while (button.disabled) await sleep(1);
    const t0 = performance.now();
    const done = shows(want);
    button.click();
    await done;
    const took = performance.now() - t0;
    out.push(took);
    await sleep(Math.max(0, PACE_MS - took));  // a brisk thumb, within the page's rate limit
  }
  return out;
}
"""

_COUNT_TELEMETRY_JS = """
async (seconds) => {
  // The page's own socket is private to its script: count on a second one, as a second phone
  // would see it (same cookie, same server).
  const ws = new WebSocket(`ws://${location.host}/ws`);
  const at = [];
  ws.onmessage = (e) => {
    if (JSON.parse(e.data).topic === 'telemetry') at.push(performance.now());
  };
  await new Promise((r) => ws.onopen = r);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  ws.close();
  // frames per second between the first frame and the last (a window's edges cut none off)
  return at.length < 2 ? 0 : (1000 * (at.length - 1)) / (at[at.length - 1] - at[0]);
}
"""


def find_chromium() -> str:
    return shutil.which("chromium") or find_tool(
        "chromium", "chromium", "the web remote's benchmark (a real browser)"
    )


async def launch_as_guest(playwright: Playwright, path: str) -> Browser:
    """Headless Chromium at `path`, at nice 10 and unable to raise the priority of its threads.

    Chromium run as root sets its compositor and I/O threads to nice -8 (root may). Beside the
    chair those threads then outrank the kernel's normal-priority workers, among them the one that
    carries a serial port's or a pty's received bytes to their reader, and the board link waits
    for that worker however high its own priority (docs/board-protocol.md, The host): traced, a
    test's browser held it 80 ms and the chair stopped on `link_lost`. A browser is the chair's
    guest (on a phone, not on the board): it starts at nice 10 and, as root, without
    CAP_SYS_NICE, so no thread of it can come back above that."""
    setpriv = shutil.which("setpriv")
    nice = shutil.which("nice")
    args = ["--no-sandbox"]
    if nice is None:
        return await playwright.chromium.launch(executable_path=path, args=args)
    drop = ""
    if os.geteuid() == 0 and setpriv is not None:
        drop = f"{shlex.quote(setpriv)} --inh-caps=-sys_nice --bounding-set=-sys_nice -- "
    with tempfile.TemporaryDirectory(prefix="chair-chromium-") as d:
        launcher = Path(d) / "chromium"
        launcher.write_text(
            f'#!/bin/sh\nexec {drop}{shlex.quote(nice)} -n 10 {shlex.quote(path)} "$@"\n'
        )
        launcher.chmod(0o755)
        return await playwright.chromium.launch(executable_path=str(launcher), args=args)


def run(clicks: int = 200, *, config: ChairConfig | None = None) -> dict[str, Any]:
    return asyncio.run(_run(clicks, config or ChairConfig()))


@contextlib.asynccontextmanager
async def _daemon(config: ChairConfig) -> AsyncIterator[tuple[Any, MqttSettings, str]]:
    """The controller on the real-time core with its MQTT bridge and web remote on one desk;
    yields it, the MQTT settings and the paired page's address."""
    async with private_broker(None) as url, realtime_controller(config) as (controller, _, _):
        settings = MqttSettings(broker=url, chair_id=f"bench-{uuid.uuid4().hex[:6]}")
        desk = CommandDesk(controller, config)
        bridge = MqttBridge(controller, settings, config=config, desk=desk)
        token = new_token()
        web = WebRemote(desk, token)
        sock = WebRemote.listen("127.0.0.1", 0)
        port = sock.getsockname()[1]
        tasks = [asyncio.create_task(bridge.run()), asyncio.create_task(web.serve(sock))]
        try:
            await asyncio.wait_for(bridge.connected.wait(), 10)
            yield controller, settings, f"http://127.0.0.1:{port}/?token={token}"
        finally:
            await bridge.stop()
            tasks[1].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _run(clicks: int, config: ChairConfig) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    async with _daemon(config) as (controller, settings, url), async_playwright() as p:
        browser = await launch_as_guest(p, find_chromium())
        try:
            page = await browser.new_page(viewport=PHONE)
            await page.goto(url)
            await page.get_by_role("status").filter(has_text="idle").wait_for(timeout=15_000)
            web_ms: list[float] = await page.evaluate(_CLICKS_JS, clicks)
            mqtt_ms = await _mqtt_round_trips(settings, clicks)
            await controller.start("relax")  # the body scan moves the carriage
            fps: float = await page.evaluate(_COUNT_TELEMETRY_JS, TELEMETRY_WINDOW_S)
            await controller.estop()
        finally:
            await browser.close()
    web = percentiles(web_ms, 0.50, 0.95, 0.99)
    mqtt = percentiles(mqtt_ms, 0.50, 0.95, 0.99)
    return {
        "clicks": clicks,
        "commands": "estop, reset (alternately)",
        "click_to_state_p50_ms": web[0],
        "click_to_state_p95_ms": web[1],
        "click_to_state_p99_ms": web[2],
        "mqtt_cmd_to_reply_p50_ms": mqtt[0],
        "mqtt_cmd_to_reply_p95_ms": mqtt[1],
        "mqtt_cmd_to_reply_p99_ms": mqtt[2],
        "telemetry_fps": round(fps, 2),
    }


async def _mqtt_round_trips(settings: MqttSettings, n: int) -> list[float]:
    t = settings.topics
    out: list[float] = []
    async with settings.client(f"bench-web-{uuid.uuid4().hex[:8]}") as client:
        await client.subscribe(t.reply, qos=1)
        replies = aiter(client.messages)
        for i in range(n):
            action = "estop" if i % 2 == 0 else "reset"
            cid = f"w{i}"
            sent = time.monotonic_ns()
            await client.publish(t.cmd, json.dumps({"id": cid, "action": action}), qos=1)
            while True:
                msg = await asyncio.wait_for(anext(replies), 5.0)
                reply = json.loads(bytes(msg.payload or b""))
                if reply.get("id") == cid:
                    break
            if not reply["ok"]:
                raise RuntimeError(f"{action} refused: {reply['error']}")
            out.append((time.monotonic_ns() - sent) / 1e6)
    return out


async def screenshot(path: Path, *, speed: float = 20.0) -> None:
    """A phone-sized picture of the page mid-session (simulated chair at `speed`)."""
    from playwright.async_api import async_playwright

    from chair.controller import Controller

    config = ChairConfig()
    controller = Controller.create(config, hardware="sim", speed=speed)
    async with controller, async_playwright() as p:
        controller.serve()
        token = new_token()
        web = WebRemote(CommandDesk(controller, config), token)
        sock = WebRemote.listen("127.0.0.1", 0)
        task = asyncio.create_task(web.serve(sock))
        browser = await launch_as_guest(p, find_chromium())
        try:
            page = await browser.new_page(viewport=PHONE, device_scale_factor=2)
            await page.goto(f"http://127.0.0.1:{sock.getsockname()[1]}/?token={token}")
            await page.get_by_role("combobox", name="Program").select_option("lumbar_heat")
            await page.get_by_role("combobox", name="Heat").select_option("medium")
            await page.get_by_role("button", name="Start").click()
            status = page.get_by_role("status")
            await status.filter(has_text="running").wait_for(timeout=60_000)
            await status.filter(has_text="kneading").wait_for(timeout=120_000)
            await page.wait_for_timeout(1500)  # a picture, not a test: let the roller move
            await page.evaluate("window.scrollTo(0, 0)")
            await page.screenshot(path=str(path))
            await controller.estop()
        finally:
            await browser.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clicks", type=int, default=200)
    parser.add_argument("--screenshot", type=Path, metavar="PNG")
    args = parser.parse_args()
    if args.screenshot is not None:
        asyncio.run(screenshot(args.screenshot))
        print(args.screenshot)
    else:
        print(json.dumps(run(args.clicks), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
