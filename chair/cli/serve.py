"""``chair serve``: the controller daemon with MQTT remote control (docs/interfaces.md §3,
docs/mqtt.md) and, with ``--web``, the chair's own web remote (docs/web.md).

The controller runs the chair; the MQTT bridge and the web remote are guest tasks beside it, both
handing their commands to one `CommandDesk`. SIGTERM or SIGINT settles a session in progress,
publishes ``offline`` and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chair.api import CommandError, ControllerAPI
from chair.cli.common import EXIT_OK, UsageError, add_db_argument
from chair.commands.desk import CommandDesk
from chair.lifecycle import SessionState
from chair.mqtt.bridge import MqttBridge
from chair.mqtt.settings import (
    MqttSettings,
    add_broker_arguments,
    add_outbox_argument,
    settings_from_args,
)
from core_rt.config import ChairConfig, load_config

log = logging.getLogger("chair.serve")

SETTLE_TIMEOUT_S = 120.0
"""Longest wait for a stopped session to settle before the daemon exits anyway."""
_HARDWARE = re.compile(r"^(sim|serial:.+|tcp:[^:]+:\d{1,5})$")
WEB_DEFAULT = "127.0.0.1:8080"
"""``--web`` alone: the web remote on this machine only (docs/web.md, Pairing)."""
WEB_TOKEN_SETTING = "web_token"
"""The database setting that keeps the pairing token across restarts."""


@dataclass(frozen=True)
class WebOptions:
    """``--web [HOST:]PORT`` and ``--web-token``."""

    host: str
    port: int
    token: str | None = None
    """The token given (flag or environment); None: the database's, else a new one."""


def web_options(spec: str | None, token: str | None, env: dict[str, str]) -> WebOptions | None:
    """``--web``'s address, checked; None without ``--web``. UsageError when malformed."""
    from chair.web.pairing import ENV_TOKEN, check_token

    if spec is None:
        return None
    host, sep, port_text = spec.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", spec
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--web {spec!r}: expected [HOST:]PORT with PORT 0..65535")
    token = token if token is not None else env.get(ENV_TOKEN) or None
    if token is not None:
        try:
            check_token(token)
        except ValueError as e:
            raise UsageError(f"--web-token: {e}") from None
    return WebOptions(host, int(port_text), token)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "serve",
        help="the controller daemon: MQTT remote control of the chair",
        description="Run the chair controller and serve it over MQTT (see docs/mqtt.md). "
        "Settings come from --config-file (TOML), then CHAIR_* environment variables, then flags.",
    )
    add_broker_arguments(p)
    g = p.add_argument_group("daemon")
    g.add_argument("--no-discovery", action="store_true", help="no Home Assistant discovery")
    add_outbox_argument(g)
    g.add_argument(
        "--telemetry-hz", type=float, metavar="N", help="telemetry rate while moving (default 10)"
    )
    g.add_argument(
        "--hardware",
        default="sim",
        metavar="SPEC",
        help="sim (default), serial:PATH or tcp:HOST:PORT (a board link)",
    )
    g.add_argument(
        "--speed",
        type=float,
        metavar="X",
        help="simulated seconds per second (tests and demos); default: the real-time core",
    )
    add_db_argument(g)
    w = p.add_argument_group("web remote (docs/web.md)")
    w.add_argument(
        "--web",
        nargs="?",
        const=WEB_DEFAULT,
        metavar="[HOST:]PORT",
        help=f"serve the web remote (alone: {WEB_DEFAULT}; 0.0.0.0:PORT for phones on the LAN)",
    )
    w.add_argument(
        "--web-token",
        metavar="TOKEN",
        help="the pairing token (else env CHAIR_WEB_TOKEN, else the one the database keeps)",
    )
    g.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"), help="logging"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(
            args,
            discovery=False if args.no_discovery else None,
            telemetry_hz=args.telemetry_hz,
        )
        chair_config = load_config(getattr(args, "config", None))
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not _HARDWARE.match(args.hardware):
        raise UsageError(f"--hardware {args.hardware!r}: use sim, serial:PATH or tcp:HOST:PORT")
    if args.speed is not None and not args.speed > 0:
        raise UsageError("--speed must be > 0")
    web = web_options(args.web, args.web_token, dict(os.environ))
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from chair.store import db_path

    return asyncio.run(
        _main(settings, chair_config, args.hardware, args.speed, db=db_path(args.db), web=web)
    )


async def _main(
    settings: MqttSettings,
    config: ChairConfig,
    hardware: str,
    speed: float | None,
    *,
    db: Path | None = None,
    web: WebOptions | None = None,
) -> int:
    try:
        from chair.controller import Controller
    except ImportError as e:
        raise UsageError(f"the controller is not available: {e}") from None
    if speed is None:  # the real-time core: keep the daemon's own threads off its CPU
        from chair.driver import keep_off_rt_cpu

        keep_off_rt_cpu(config)
    try:
        controller = Controller.create(config, hardware=hardware, speed=speed, db=db)
    except (ValueError, OSError) as e:  # a board link that cannot be opened, say
        raise UsageError(f"--hardware {hardware}: {e}") from None
    return await serve_chair(controller, settings, config, web=web)


async def serve_chair(
    controller: Any,
    settings: MqttSettings,
    config: ChairConfig,
    *,
    web: WebOptions | None = None,
    stop: asyncio.Event | None = None,
    signals: bool = True,
    on_bridge: Callable[[MqttBridge], None] | None = None,
) -> int:
    """One chair as `chair serve` runs it, from a `Controller` not yet opened: open it (core and
    hardware), start its runner, log its board link, serve the web remote when `web` says so,
    and serve it over MQTT until SIGTERM/SIGINT or `stop` (see `serve`); close it on the way
    out. Several chairs may share one event loop (`chair fleet-sim`, docs/fleet-sim.md): each
    with its own `stop`, none with `signals`."""
    async with controller:  # opens the core and the hardware; closes them on the way out
        controller.serve()  # the runner that idles the core between sessions
        watch = None
        if controller.link_report() is not None:
            watch = asyncio.create_task(watch_link(controller.link_report), name="link-log")
        web_socket = token = None
        if web is not None:
            from chair.web.pairing import pairing_url, print_pairing
            from chair.web.server import WebRemote

            token = await pairing_token(controller, web)
            try:
                web_socket = WebRemote.listen(web.host, web.port)
            except OSError as e:
                raise UsageError(f"--web {web.host}:{web.port}: {e.strerror or e}") from None
            port = web_socket.getsockname()[1]
            print_pairing(pairing_url(web.host, port, token), sys.stdout)
        try:
            return await serve(
                controller,
                settings,
                config,
                stop=stop,
                web=(web_socket, token),
                signals=signals,
                on_bridge=on_bridge,
            )
        finally:
            if watch is not None:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch


async def pairing_token(controller: Any, web: WebOptions) -> str:
    """The token given, else the one the chair's database keeps (made and kept on first use),
    else a new one for this run (no database: phones pair again after a restart)."""
    from chair.store import StoreError
    from chair.web.pairing import new_token

    if web.token is not None:
        return web.token
    store = getattr(controller, "store", None)
    if store is None:
        log.warning("web remote: no database, so a new pairing token for this run only")
        return new_token()
    try:
        token: str | None = await store.setting(WEB_TOKEN_SETTING)
        if token is None:
            token = new_token()
            await store.put_setting(WEB_TOKEN_SETTING, token)
    except StoreError as e:
        log.warning("web remote: %s; a new pairing token for this run only", e)
        return new_token()
    return token


LINK_LOG_PERIOD_S = 10.0
LINK_TROUBLE = ("disconnects", "forced_off", "stale_episodes", "board_watchdog_seen")
"""Counters of the board link whose growth `chair serve` logs (with every drop reason)."""


def link_trouble(report: dict[str, Any]) -> dict[str, int]:
    """The board link's counters that mean trouble: drops by reason, resyncs, seq gaps,
    disconnects, forced stops, stale episodes, board watchdog reports."""
    out = {f"drops.{k}": int(v) for k, v in report["drops"].items()}
    out["resyncs"] = int(report["resyncs"])
    out["seq_gaps"] = int(report["seq_gaps"])
    out.update({k: int(report[k]) for k in LINK_TROUBLE})
    return out


async def watch_link(
    report: Callable[[], dict[str, Any] | None], period_s: float = LINK_LOG_PERIOD_S
) -> None:
    """Log the board link once at start, then every counter of trouble that grew, at most every
    `period_s` (docs/board-protocol.md, Counters): the counters are in the open, not only in
    the summary and the MQTT state."""
    first = report()
    if first is None:
        return
    board = first["board"] or {}
    log.info(
        "board link: %s, protocol %s, SCHED_FIFO %s",
        board.get("board_id", "?"),
        board.get("version", "?"),
        "yes" if first["sched_fifo"] else "no (a normal thread)",
    )
    last = link_trouble(first)
    while True:
        await asyncio.sleep(period_s)
        now = report()
        if now is None:
            return
        cur = link_trouble(now)
        grew = {k: v - last[k] for k, v in cur.items() if v > last[k]}
        last = cur
        if grew:
            log.warning(
                "board link: %s (round trip p99 %s ms, SETPOINT gap max %s ms)",
                ", ".join(f"{k} +{d}" for k, d in sorted(grew.items())),
                now["rtt_ms"]["p99"],
                now["setpoint_gap_ms"]["max"],
            )


async def serve(
    controller: ControllerAPI,
    settings: MqttSettings,
    config: ChairConfig | None = None,
    *,
    stop: asyncio.Event | None = None,
    web: tuple[socket.socket | None, str | None] = (None, None),
    signals: bool = True,
    on_bridge: Callable[[MqttBridge], None] | None = None,
) -> int:
    """Serve `controller` over MQTT (and the web remote on `web`'s listening socket with its
    pairing token) until SIGTERM/SIGINT (or `stop` is set); then settle a session in progress,
    publish ``offline`` and return 0. Without `signals` only `stop` ends it (the signals are the
    caller's); `on_bridge` is handed the chair's `MqttBridge` once made (its counters)."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT) if signals else ():
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    desk = CommandDesk(controller, config)
    bridge = MqttBridge(controller, settings, config=config, desk=desk)
    if on_bridge is not None:
        on_bridge(bridge)
    bridge_task = asyncio.create_task(bridge.run(), name="mqtt-bridge")
    web_task = None
    web_socket, token = web
    if web_socket is not None and token is not None:
        from chair.web.server import WebRemote

        remote = WebRemote(
            desk, token, chair_id=settings.chair_id, telemetry_hz=max(settings.telemetry_hz, 10.0)
        )
        web_task = asyncio.create_task(remote.serve(web_socket), name="web-remote")
    stop_task = asyncio.create_task(stop.wait())
    log.info(
        "serving chair %s on %s (topics %s/...)",
        settings.chair_id,
        settings.broker,
        settings.topics.base,
    )
    try:
        tasks = {bridge_task, stop_task} | ({web_task} if web_task is not None else set())
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if bridge_task.done():
            bridge_task.result()  # the bridge ended on its own: a bug, raise it
        if web_task is not None and web_task.done():
            web_task.result()  # the same for the web remote
        log.info("stopping: settling any session first")
        await settle(controller)
        await bridge.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(bridge_task), 5.0)
    finally:
        stop_task.cancel()
        if web_task is not None and not web_task.done():
            web_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await web_task
        if not bridge_task.done():
            bridge_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await bridge_task
        for sig in installed:
            loop.remove_signal_handler(sig)
    log.info("stopped")
    return EXIT_OK


async def settle(controller: ControllerAPI, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
    """Stop a session in progress and wait until the chair has settled (or faulted)."""
    if SessionState(controller.state()["state"]).in_session:
        try:
            await controller.stop()
        except CommandError as e:  # it ended or settles already: wait for that below
            log.info("stop before exit: %s", e.message)
    try:
        await controller.wait_for_state(
            lambda s: not s.in_session and s != SessionState.SETTLING,
            timeout_s=timeout_s,
            what="settle before exit",
        )
        # and closed: its summary made and `session_finished` handed to the bridge, which
        # publishes it before `offline` (the state reads idle a moment before)
        await controller.wait_session(timeout_s)
    except CommandError as e:
        log.error("the session did not settle: %s", e.message)
