"""The web remote's page in a real browser (headless Chromium driven by Playwright), in front of
the real controller (docs/web.md, The page): a whole session clicked through, the e-stop and the
reset, manual mode steered live, and a page lost mid-session. Controls are found by their
accessible names, as a screen reader finds them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, ViewportSize, async_playwright, expect

from chair.bench.web import launch_as_guest
from tests.web_helpers import CuttableLink, Remote, chromium_path, until_state, web_remote

PHONE: ViewportSize = {"width": 390, "height": 844}
"""A phone-sized screen first (docs/web.md)."""
SPEED = 20.0
"""Simulated seconds per wall second: a 5-minute program lasts 15 s, time enough to click."""
T = 30_000
"""Ceiling of every wait on the page, in ms (they return as soon as the page shows it)."""


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    path = chromium_path()
    async with async_playwright() as p:
        b = await launch_as_guest(p, path)
        try:
            yield b
        finally:
            await b.close()


@pytest_asyncio.fixture
async def remote() -> AsyncIterator[Remote]:
    async with web_remote(speed=SPEED) as r:
        yield r


ERRORS: dict[int, list[str]] = {}
"""Script errors and console errors of each page (by id): a clean page has none."""


async def paired_page(browser: Browser, url: str, token: str) -> Page:
    """A phone that scanned the pairing QR code: the remote, idle or wherever the chair is."""
    page = await browser.new_page(viewport=PHONE)
    errors = ERRORS.setdefault(id(page), [])
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(f"{url}/?token={token}")
    assert page.url == f"{url}/"  # the token left the address bar
    await expect(page.get_by_text("connected", exact=True)).to_be_visible(timeout=T)
    return page


def errors_on(page: Page) -> list[str]:
    return ERRORS.get(id(page), [])


def status(page: Page) -> Any:
    return page.get_by_role("status")


async def number(page: Page, role: str, name: str) -> float:
    value = await page.get_by_role(role, name=name).get_attribute("aria-valuenow")  # type: ignore[arg-type]
    assert value is not None
    return float(value)


async def grows(page: Page, role: str, name: str, by: float = 0.0) -> None:
    """Wait until the indicator's aria-valuenow has moved up by more than `by`."""
    start = await number(page, role, name)
    await page.wait_for_function(
        """([role, name, start, by]) => {
            const el = [...document.querySelectorAll(`[role=${role}]`)]
                .find((e) => e.getAttribute("aria-label") === name);
            return el && Number(el.getAttribute("aria-valuenow")) > start + by;
        }""",
        arg=[role, name, start, by],
        timeout=T,
    )


async def test_a_whole_session_clicked_through_with_time_roller_and_heat(
    browser: Browser, remote: Remote
) -> None:
    anonymous = await browser.new_page()
    response = await anonymous.goto(remote.url + "/")
    assert response is not None and response.status == 401  # not paired: nothing
    page = await paired_page(browser, remote.url, remote.token)
    await expect(status(page)).to_contain_text("idle")
    for name in ("Pause", "Resume", "Stop", "Reset"):
        await expect(page.get_by_role("button", name=name, exact=True)).to_be_disabled()
    await page.get_by_role("combobox", name="Program").select_option("quick")
    await page.get_by_role("spinbutton", name="Minutes").fill("5")
    await page.get_by_role("combobox", name="Heat").select_option("high")
    await page.get_by_role("slider", name="Intensity").fill("4")
    await page.get_by_role("button", name="Start").click()

    await expect(status(page)).to_contain_text("running", timeout=T)
    state = remote.ctl.state()
    assert (state["program"], state["intensity"], state["heat"]["level"]) == ("quick", 4, "high")
    # The time and the roller move on the page; the pad heats toward its target.
    await grows(page, "progressbar", "Time")
    roller = page.get_by_role("meter", name="Roller position")
    before = await roller.get_attribute("aria-valuenow")
    await expect(roller).not_to_have_attribute("aria-valuenow", before or "", timeout=T)
    pad = page.get_by_role("meter", name="Pad temperature")
    await expect(pad).to_have_attribute("aria-valuetext", re.compile(r"high"), timeout=T)
    await grows(page, "meter", "Pad temperature", by=0.5)
    await page.screenshot(path="out/web-remote-session.png", full_page=True)

    await page.get_by_role("button", name="Pause").click()
    await expect(status(page)).to_contain_text("paused", timeout=T)
    assert remote.ctl.state()["state"] == "paused"
    paused_at = await number(page, "progressbar", "Time")
    await page.get_by_role("button", name="Resume").click()
    await expect(status(page)).to_contain_text("running", timeout=T)
    await grows(page, "progressbar", "Time")
    assert await number(page, "progressbar", "Time") > paused_at
    await page.get_by_role("button", name="Stop", exact=True).click()
    await expect(status(page)).to_contain_text("idle", timeout=T)
    await expect(page.get_by_role("button", name="Start")).to_be_enabled()
    assert remote.ctl.state()["state"] == "idle"
    assert errors_on(page) == []


async def test_emergency_stop_and_reset_from_the_page(browser: Browser, remote: Remote) -> None:
    page = await paired_page(browser, remote.url, remote.token)
    await page.get_by_role("combobox", name="Program").select_option("relax")
    await page.get_by_role("button", name="Start").click()
    await expect(status(page)).to_contain_text("running", timeout=T)
    estop = page.get_by_role("button", name="Emergency stop")
    await expect(estop).to_be_in_viewport()  # always on screen, wherever the page is scrolled
    await page.mouse.wheel(0, 2000)
    await expect(estop).to_be_in_viewport()
    await estop.click()
    await expect(status(page)).to_contain_text("estop", timeout=T)
    assert remote.ctl.state()["state"] == "estop"
    await expect(page.get_by_role("button", name="Start")).to_be_disabled()
    await page.get_by_role("button", name="Reset").click()
    await expect(status(page)).to_contain_text("idle", timeout=T)
    assert errors_on(page) == []


async def test_manual_mode_is_steered_live_from_the_page(browser: Browser, remote: Remote) -> None:
    page = await paired_page(browser, remote.url, remote.token)
    technique = page.get_by_role("combobox", name="Technique")
    await expect(technique).to_be_hidden()  # manual controls only when manual mode is chosen
    await page.get_by_role("combobox", name="Program").select_option("manual")
    await technique.select_option("kneading")
    await page.get_by_role("combobox", name="Area").select_option("spot")
    await page.get_by_role("combobox", name="Zone").select_option("upper_back")
    await page.get_by_role("button", name="Start").click()
    await expect(status(page)).to_contain_text("running", timeout=T)
    started = await until_state(
        remote, "manual centre known", lambda s: (s["manual"] or {}).get("centre_mm") is not None
    )
    assert started["manual"]["technique"] == "kneading" and started["manual"]["area"] == "spot"

    await technique.select_option("tapping")
    await until_state(remote, "tapping", lambda s: s["manual"]["technique"] == "tapping")
    await page.get_by_role("slider", name="Speed").fill("5")
    await until_state(remote, "tempo 5", lambda s: s["manual"]["tempo"] == 5)
    centre = started["manual"]["centre_mm"]
    await page.get_by_role("button", name="Up").click()
    moved = await until_state(
        remote, "centre moved up", lambda s: s["manual"]["centre_mm"] > centre + 1
    )
    assert moved["manual"]["centre_mm"] <= centre + 25.0 + 0.1
    await page.get_by_role("button", name="Down").click()
    up_at = moved["manual"]["centre_mm"]
    await until_state(remote, "centre back down", lambda s: s["manual"]["centre_mm"] < up_at - 1)
    strength = page.get_by_role("spinbutton", name="Strength upper back")
    await page.get_by_text("Per-zone strength").click()
    await strength.fill("-1")
    await strength.dispatch_event("change")
    await until_state(
        remote, "softer upper back", lambda s: s["zone_intensity"] == {"upper_back": -1}
    )
    await page.get_by_role("button", name="Stop", exact=True).click()
    await expect(status(page)).to_contain_text("idle", timeout=T)
    assert errors_on(page) == []


async def test_a_page_lost_mid_session_changes_nothing_and_a_fresh_page_still_stops_it(
    browser: Browser, remote: Remote
) -> None:
    async with CuttableLink(int(remote.url.rsplit(":", 1)[1])) as link:
        page = await paired_page(browser, link.url, remote.token)
        await page.get_by_role("combobox", name="Program").select_option("relax")
        await page.get_by_role("button", name="Start").click()
        await expect(status(page)).to_contain_text("running", timeout=T)
        session_id = remote.ctl.state()["session_id"]

        # The network is cut under the page: it says so, and the session runs on.
        assert link.cut() >= 2
        await expect(page.get_by_text("connection lost", exact=False)).to_be_visible(timeout=T)
        t_cut = remote.ctl.telemetry()["t"]  # type: ignore[index]
        # It reconnects by itself and shows where the chair is at once.
        await expect(page.get_by_text("connected", exact=True)).to_be_visible(timeout=T)
        await expect(status(page)).to_contain_text("running", timeout=T)
        assert remote.ctl.telemetry()["t"] > t_cut  # type: ignore[index]

        # The page is closed: still nothing changes.
        await page.close()
        await until_state(remote, "no page left", lambda s: not remote.server.pages, timeout=15)
        state = remote.ctl.state()
        assert state["state"] == "running" and state["session_id"] == session_id
        assert state["fault"] is None

        # A fresh page (another phone) sees the session at once and its Emergency stop stops it.
        fresh = await paired_page(browser, remote.url, remote.token)
        await expect(status(fresh)).to_contain_text("running", timeout=T)
        await fresh.get_by_role("button", name="Emergency stop").click()
        await expect(status(fresh)).to_contain_text("estop", timeout=T)
        assert remote.ctl.state()["session_id"] == session_id


@pytest.fixture(autouse=True)
def _out_dir() -> None:
    from tests.web_helpers import screenshot_dir

    screenshot_dir()
