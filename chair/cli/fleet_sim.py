"""`chair fleet-sim --chairs N --broker URL [--minutes M] [--json]` (docs/fleet-sim.md,
docs/interfaces.md §7): N simulated chairs, each a real controller with its own core, plant,
session and MQTT identity, in a few worker processes, driven over MQTT like an operator drives a
fleet. It shows its progress, then the figures of §7 (``--json``: one JSON object on stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiomqtt

from chair.cli.common import EXIT_OK, EXIT_USAGE, UsageError, chair_config
from chair.fleet.sim import FleetOptions, identity_files
from chair.mqtt.settings import add_broker_arguments, add_outbox_argument, settings_from_args

MAX_CHAIRS = 100_000
CYCLE_EXTRA_S = 100.0
"""A session's length beyond its program: the body scan (about a minute), the adjusting window,
settling at the end."""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "fleet-sim",
        help="N simulated chairs, each a real controller with its own MQTT identity",
        description="Run N simulated chairs (each `chair serve`'s own code: a controller with its "
        "core, plant and session, and its MQTT bridge) in a few worker processes, in virtual "
        "time paced to the wall clock; start sessions on them over MQTT as an operator does, "
        "and report reply times, message rates, CPU and how far the chairs' clocks lag "
        "(docs/fleet-sim.md). The global --config gives the chairs' config (e.g. shorter "
        "sessions).",
    )
    g = p.add_argument_group("the fleet")
    g.add_argument("--chairs", type=int, required=True, metavar="N", help="how many chairs")
    _number(g, "--minutes", "M", "how long it runs")
    _number(g, "--workers", "W", "worker processes (0: the CPU count)", kind=int)
    _text(g, "--id-prefix", "P", "chair ids P0, P1, ...")
    g.add_argument("--json", action="store_true", help="the report as JSON, no progress display")
    s = p.add_argument_group("sessions (what the operator does)")
    _text(s, "--program", "NAME", "every session's program")
    s.add_argument(
        "--session-minutes", type=float, metavar="S", help="session length (default: program's)"
    )
    _number(s, "--busy", "F", "share of the chairs that run sessions, 0..1 (the rest idle)")
    _number(s, "--gap-s", "S", "pause between sessions (±50%%)")
    s.add_argument(
        "--ramp-s",
        type=float,
        metavar="S",
        help="the first sessions start spread over S seconds (default: one session's cycle, "
        "its minutes + 100 s + the gap: the rate at which a fleet of busy chairs starts them)",
    )
    _number(s, "--probe-s", "S", "ask each chair its status every S seconds (0: never)")
    _number(s, "--seed", "N", "chairs' bodies and the schedule", kind=int)
    c = p.add_argument_group("the chairs")
    _number(c, "--speed", "X", "simulated seconds per second (1: the wall clock)")
    _number(
        c,
        "--pace-ms",
        "MS",
        "a chair's clock runs in chunks of this much wall time",
        default=FleetOptions.pace_s * 1000.0,
    )
    _number(c, "--telemetry-hz", "N", "telemetry in a session")
    _number(c, "--heartbeat-s", "S", "the state at least this often between changes")
    c.add_argument("--discovery", action="store_true", help="Home Assistant discovery (off)")
    c.add_argument(
        "--check",
        action="store_true",
        help="sessions keep their telemetry for the independent checker (memory!)",
    )
    c.add_argument("--state-dir", metavar="DIR", help="a database per chair here (default: none)")
    add_outbox_argument(c)
    c.add_argument(
        "--identities",
        metavar="DIR",
        help="each chair logs in with its own certificate and key as `chair provision` issues "
        "them, DIR/<chair id>/<chair id>.crt and .key (e.g. the CA's chairs/ directory); the "
        "broker options' certificate, user name and password are then the operator's alone",
    )
    c.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    c.add_argument(
        "--profile", metavar="PATH", help="cProfile each worker into PATH.<worker> (debugging)"
    )
    add_broker_arguments(p)
    p.set_defaults(handler=run)


def _number(
    group: argparse._ArgumentGroup,
    flag: str,
    metavar: str,
    what: str,
    *,
    kind: type[int] | type[float] = float,
    default: float | None = None,
) -> None:
    """A numeric option whose default is `FleetOptions`' field of the same name (one owner)."""
    if default is None:
        default = getattr(FleetOptions, flag.removeprefix("--").replace("-", "_"))
    group.add_argument(
        flag, type=kind, default=default, metavar=metavar, help=f"{what} (default {default:g})"
    )


def _text(group: argparse._ArgumentGroup, flag: str, metavar: str, what: str) -> None:
    """A text option whose default is `FleetOptions`' field of the same name."""
    default = getattr(FleetOptions, flag.removeprefix("--").replace("-", "_"))
    group.add_argument(flag, default=default, metavar=metavar, help=f"{what} (default {default})")


def options_from_args(args: argparse.Namespace) -> Any:
    """The run's options, checked (UsageError naming what is wrong)."""
    from chair.api import CommandError
    from chair.programs.manual import MANUAL
    from chair.programs.model import ProgramError, load_program
    from chair.requests import StartRequest, parse_request

    config = chair_config(args)
    if not 1 <= args.chairs <= MAX_CHAIRS:
        raise UsageError(f"--chairs must be 1..{MAX_CHAIRS}")
    if not args.minutes > 0:
        raise UsageError("--minutes must be > 0")
    if args.workers < 0:
        raise UsageError("--workers must be >= 0 (0: the CPU count)")
    if not 0.0 <= args.busy <= 1.0:
        raise UsageError("--busy must be in 0..1")
    if not 0 < args.speed <= 1000:
        raise UsageError("--speed must be in (0, 1000]")
    if not 1.0 <= args.pace_ms <= 1000.0:
        raise UsageError("--pace-ms must be in 1..1000")
    for name in ("gap_s", "probe_s", "ramp_s"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0")
    default_minutes = config.session.default_minutes
    if args.program != MANUAL:
        try:
            default_minutes = load_program(args.program).default_minutes
        except ProgramError as e:
            raise UsageError(f"--program: {e}") from None
    try:
        parse_request(
            StartRequest, {"program": args.program, "minutes": args.session_minutes}, config
        )
    except CommandError as e:
        raise UsageError(f"--session-minutes: {e.message}") from None
    if args.state_dir is not None:
        os.makedirs(args.state_dir, exist_ok=True)
    if args.identities is not None:
        _check_identities(
            Path(args.identities), [f"{args.id_prefix}{k}" for k in range(args.chairs)]
        )
    ramp_s = args.ramp_s
    if ramp_s is None:  # steady state: sessions start as often as a busy fleet starts them
        ramp_s = (args.session_minutes or default_minutes) * 60.0 + CYCLE_EXTRA_S + args.gap_s
    return FleetOptions(
        chairs=args.chairs,
        minutes=args.minutes,
        workers=args.workers,
        program=args.program,
        session_minutes=args.session_minutes,
        speed=args.speed,
        pace_s=args.pace_ms / 1000.0,
        telemetry_hz=args.telemetry_hz,
        heartbeat_s=args.heartbeat_s,
        busy=args.busy,
        gap_s=args.gap_s,
        probe_s=args.probe_s,
        ramp_s=ramp_s,
        id_prefix=args.id_prefix,
        seed=args.seed,
        config_path=getattr(args, "config", None),
        state_dir=args.state_dir,
        identities=args.identities,
        discovery=args.discovery,
        keep_telemetry=args.check,
        log_level=args.log_level,
        profile=args.profile,
    )


def _check_identities(directory: Path, chair_ids: list[str]) -> None:
    """Every chair's certificate and key are there (UsageError naming the first missing)."""
    if not directory.is_dir():
        raise UsageError(f"--identities {directory}: not a directory")
    for chair_id in chair_ids:
        for path in identity_files(directory, chair_id):
            if not path.is_file():
                raise UsageError(
                    f"--identities {directory}: no {path.name} for chair {chair_id} ({path}; "
                    f"issue it with `chair provision {chair_id} --ca CA --out {path.parent}`)"
                )


def run(args: argparse.Namespace) -> int:
    from chair.fleet.sim import FleetSim

    if args.chair_id is not None:
        raise UsageError("fleet-sim names its chairs itself: use --id-prefix")
    options = options_from_args(args)
    try:
        settings = settings_from_args(
            args,
            chair_id=f"{options.id_prefix}0",
            telemetry_hz=options.telemetry_hz,
            state_interval_s=options.heartbeat_s,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        if args.json:
            report = asyncio.run(FleetSim(settings, options).run())
            print(json.dumps(report, indent=2))
        else:
            report = _with_display(FleetSim, settings, options)
    except aiomqtt.MqttError as e:  # the operator's own connection: before any chair starts
        raise UsageError(f"broker {settings.broker}: {e}") from None
    return _verdict(report)


def _verdict(report: dict[str, Any]) -> int:
    """0 when every chair came online and every session started also finished."""
    problems = []
    if report["connected"] < report["chairs"]:
        problems.append(f"{report['chairs'] - report['connected']} chair(s) never came online")
    if report["sessions_finished"] < report["sessions_started"]:
        left = report["sessions_started"] - report["sessions_finished"]
        problems.append(f"{left} session(s) did not finish")
    if problems:
        print(f"chair fleet-sim: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _with_display(sim_class: Any, settings: Any, options: Any) -> dict[str, Any]:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    live = Live(_panel({"phase": "starting", "chairs": options.chairs}), console=console)

    def show(snap: dict[str, Any]) -> None:
        live.update(_panel(snap))

    with live:
        report: dict[str, Any] = asyncio.run(sim_class(settings, options, progress=show).run())
    console.line()
    _print_report(console, report)
    return report


def _panel(s: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title=f"chair fleet-sim: {s['phase']}", show_header=False, min_width=60)
    t.add_column("what")
    t.add_column("value", justify="right")
    if "elapsed_s" not in s:
        t.add_row("chairs", str(s["chairs"]))
        return t
    t.add_row("time", f"{s['elapsed_s']:.0f} / {s['run_s']:.0f} s")
    t.add_row(
        "chairs started / online / ever", f"{s['created']} / {s['online']} / {s['connected']}"
    )
    t.add_row("in a session", str(s["in_session"]))
    t.add_row("sessions started / finished", f"{s['sessions_started']} / {s['sessions_finished']}")
    t.add_row("messages / s", f"{s['msgs_per_s_now']:.0f}")
    t.add_row("reply p50 / p99 (ms)", f"{s['cmd_reply_p50_ms']:.1f} / {s['cmd_reply_p99_ms']:.1f}")
    t.add_row("workers' CPU", f"{s['workers_cpu_pct']:.0f} % ({s['workers']} workers)")
    t.add_row("clock lag now / max (ms)", f"{s['lag_now_ms']:.0f} / {s['lag_max_ms']:.0f}")
    return t


def _print_report(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title="fleet-sim", show_header=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in report.items():
        t.add_row(k, json.dumps(v) if isinstance(v, dict | list) else str(v))
    console.print(t)
