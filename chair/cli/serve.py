"""``chair serve``: the controller daemon with MQTT remote control (docs/interfaces.md §3,
docs/mqtt.md).

The controller runs the chair; the MQTT bridge is a guest task beside it. SIGTERM or SIGINT settles
a session in progress, publishes ``offline`` and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chair.api import CommandError, ControllerAPI
from chair.cli.common import EXIT_OK, UsageError, add_db_argument
from chair.lifecycle import SessionState
from chair.mqtt.bridge import MqttBridge
from chair.mqtt.settings import MqttSettings, add_broker_arguments, settings_from_args
from core_rt.config import ChairConfig, load_config

log = logging.getLogger("chair.serve")

SETTLE_TIMEOUT_S = 120.0
"""Longest wait for a stopped session to settle before the daemon exits anyway."""
_HARDWARE = re.compile(r"^(sim|serial:.+|tcp:[^:]+:\d{1,5})$")


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
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from chair.store import db_path

    return asyncio.run(
        _main(settings, chair_config, args.hardware, args.speed, db=db_path(args.db))
    )


async def _main(
    settings: MqttSettings,
    config: ChairConfig,
    hardware: str,
    speed: float | None,
    *,
    db: Path | None = None,
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
    async with controller:  # opens the core and the hardware; closes them on the way out
        controller.serve()  # the runner that idles the core between sessions
        watch = None
        if controller.link_report() is not None:
            watch = asyncio.create_task(watch_link(controller.link_report), name="link-log")
        try:
            return await serve(controller, settings, config)
        finally:
            if watch is not None:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch


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
) -> int:
    """Serve `controller` over MQTT until SIGTERM/SIGINT (or `stop` is set); then settle a session
    in progress, publish ``offline`` and return 0."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    bridge = MqttBridge(controller, settings, config=config)
    bridge_task = asyncio.create_task(bridge.run(), name="mqtt-bridge")
    stop_task = asyncio.create_task(stop.wait())
    log.info(
        "serving chair %s on %s (topics %s/...)",
        settings.chair_id,
        settings.broker,
        settings.topics.base,
    )
    try:
        await asyncio.wait({bridge_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if bridge_task.done():
            bridge_task.result()  # the bridge ended on its own: a bug, raise it
        log.info("stopping: settling any session first")
        await settle(controller)
        await bridge.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(bridge_task), 5.0)
    finally:
        stop_task.cancel()
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
    except CommandError as e:
        log.error("the session did not settle: %s", e.message)
