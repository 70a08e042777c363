"""`chair run PROGRAM_OR_PATH [options]`: one whole session on the simulated chair
(docs/interfaces.md §2).

Exit codes: 0 completed and every safety check held; 1 bad input (also a program that cannot
be planned for the scanned body in the minutes asked: the chair settles); 2 a safety check failed;
3 the session ended in a fault (or an e-stop); 128 + N after signal N (SIGINT 130, SIGTERM 143).

SIGINT or SIGTERM stops the session as the Stop key does (it settles: heater off, heads back,
carriage to park; the summary is written); a second one e-stops. Either way the controller
closes cleanly: drives and heater off on the board before the link closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from chair.cli.common import (
    EXIT_FAULT,
    EXIT_OK,
    EXIT_SAFETY,
    EXIT_USAGE,
    UsageError,
    add_body_arguments,
    add_db_argument,
    add_manual_arguments,
    add_start_pose_argument,
    add_zone_intensity_argument,
    chair_config,
    check_body_height,
    check_start_pose,
    manual_choices,
    zone_pairs,
)

if TYPE_CHECKING:
    from chair.controller import Controller


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "run",
        help="run a whole session (scan → program → settle) on the simulated chair",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "program",
        metavar="PROGRAM_OR_PATH",
        nargs="?",
        help="the program (with --user: default the user's favourite)",
    )
    p.add_argument(
        "--minutes",
        type=float,
        help="session length, 5–30 (default: the user's for their favourite, else the program's)",
    )
    p.add_argument("--intensity", type=int, help="1..5 (default: the program's)")
    p.add_argument("--heat", help="off, low, medium or high (default: the program's)")
    add_zone_intensity_argument(p)
    add_manual_arguments(p, "manual mode (PROGRAM = manual; docs/chair.md §8)")
    add_body_arguments(p)
    add_start_pose_argument(p)
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=float, default=60.0, help="simulated seconds per wall second (default 60)"
    )
    pace.add_argument("--fast", action="store_true", help="virtual time, as fast as possible")
    pace.add_argument(
        "--realtime", action="store_true", help="the real-time core against the wall clock"
    )
    p.add_argument(
        "--hardware",
        default="sim",
        help="sim (default), serial:PATH or tcp:HOST:PORT (a board, see HIL docs)",
    )
    p.add_argument("--telemetry", metavar="PATH.jsonl")
    p.add_argument("--telemetry-hz", type=float, default=50.0)
    p.add_argument("--summary", metavar="PATH.json")
    p.add_argument("--plot", metavar="PATH.png")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault, e.g. stall:carriage@120s (repeatable)",
    )
    p.add_argument(
        "--user",
        metavar="NAME",
        help="start from this user's memory and update it when the session completes",
    )
    add_db_argument(p)
    p.add_argument("--json", action="store_true", help="print the summary JSON on stdout")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from chair.api import CommandError
    from chair.controller import Controller
    from chair.driver import Pacing
    from chair.programs.manual import MANUAL
    from chair.programs.model import ProgramError, load_program
    from chair.report import write_plot, write_telemetry
    from chair.requests import StartRequest, parse_request

    config = chair_config(args)
    from chair.store import db_path

    db = db_path(args.db)
    if args.user is not None:  # checked now: a clear error before the chair moves
        profile = _user_profile(config, db, args.user)
        if args.program is None:
            args.program = None if profile is None else profile.program
            if args.program is None:
                raise UsageError(f"user {args.user!r} has no favourite program yet: name one")
    if args.program is None:
        raise UsageError("PROGRAM_OR_PATH is required (or --user with a favourite program)")
    check_body_height(config, args.body_height)
    start_pose = check_start_pose(config, args.start_pose)
    try:  # the same request model as the controller and MQTT: one check, one message
        choices = {
            "minutes": args.minutes,
            "intensity": args.intensity,
            "heat": args.heat,
            "zone_intensity": zone_pairs(args.zone_intensity),
        }
        manual = manual_choices(args)
        if manual and args.program != MANUAL:
            raise UsageError(
                f"--{', --'.join(manual)}: manual mode's options need PROGRAM 'manual'"
            )
        if args.program == MANUAL:
            choices["manual"] = manual
        req = parse_request(StartRequest, choices, config, prefix="--")
    except CommandError as e:
        raise UsageError(
            e.message.replace("--zone_intensity", "--zone-intensity").replace("--manual ", "--")
        ) from None
    if not 0 < args.telemetry_hz <= config.loop.tick_hz:
        raise UsageError(f"--telemetry-hz must be in (0, {config.loop.tick_hz}]")
    if not 0 < args.speed <= 1e6:
        raise UsageError("--speed must be in (0, 1e6]")
    program: Any = MANUAL
    try:
        if args.program != MANUAL:
            program = load_program(args.program)
    except ProgramError as e:
        raise UsageError(str(e)) from e
    from sim.faults import parse_fault

    for f in args.fault:
        try:
            parse_fault(f)
        except ValueError as e:
            raise UsageError(f"--fault {f!r}: {e}") from e
    pacing: Pacing = "fast" if args.fast else "realtime" if args.realtime else "paced"
    if args.hardware != "sim":
        if args.fast:
            raise UsageError("--fast needs the simulated chair: a board runs in real time")
        pacing = "realtime"  # a board runs at its own real-time pace
    try:
        controller = Controller.create(
            config,
            hardware=args.hardware,
            pacing=pacing,
            speed=args.speed,
            body_height_cm=args.body_height,
            seed=args.seed,
            back=args.back,
            faults=args.fault,
            telemetry_hz=args.telemetry_hz,
            start_pose_mm=start_pose,
            db=db,
        )
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from e
    default_minutes = (
        config.session.default_minutes if program == MANUAL else program.default_minutes
    )
    minutes = req.minutes if req.minutes is not None else default_minutes
    if req.minutes is None and args.user is not None:
        minutes = None  # the user's, for their favourite program (the controller decides)
    live = (
        None
        if (args.quiet or args.json or (not sys.stdout.isatty() and pacing == "fast"))
        else "live"
    )

    signals: list[int] = []

    async def main() -> Any:
        async with controller:
            task = asyncio.ensure_future(
                # intensity/heat not given (None): the session takes the program's defaults
                controller.run_session(
                    program,
                    minutes=minutes,
                    intensity=req.intensity,
                    heat=req.heat,
                    zone_intensity=req.zone_intensity,
                    manual=req.manual,
                    user=args.user,
                )
            )
            _stop_on_signals(controller, signals)
            if live:
                from chair.display import LiveView

                shown = program
                if program == MANUAL:
                    from chair.programs.manual import ManualSettings, manual_program

                    shown = manual_program(ManualSettings().changed(**(req.manual or {})))
                await LiveView(controller, config, shown).follow(task)
            return await task

    t0 = time.perf_counter()
    result = asyncio.run(main())
    wall = time.perf_counter() - t0
    session_tlm = controller.last_telemetry
    summary = dict(controller.last_summary or {})
    summary["wall_seconds"] = round(wall, 4)  # the whole command, set-up included
    violations = summary["safety"]["violations"]
    if args.telemetry:
        write_telemetry(args.telemetry, session_tlm)
    if args.summary:
        with open(args.summary, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    if args.plot:
        write_plot(args.plot, session_tlm, summary, result, config=config)
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        from chair.display import print_summary

        print_summary(summary, args)
    if signals:  # stopped by SIGINT/SIGTERM: the session settled (or e-stopped) and said so
        return 128 + signals[0]
    if result.end_reason == "plan_error":  # the program and the minutes do not fit this body
        print(f"chair run: error: {result.notes[-1]}", file=sys.stderr)
        return EXIT_USAGE
    if result.faults and result.end_reason in ("fault", "estop"):
        return EXIT_FAULT
    if violations:
        return EXIT_SAFETY
    return EXIT_OK


def _user_profile(config: Any, db: Any, name: str) -> Any:
    """The user's memory, checked (None when the database is off: the session runs without
    it); an unknown or malformed name is a UsageError."""
    from chair.api import CommandError
    from chair.requests import StartRequest, UserProfile, parse_request
    from chair.store import USER_FIELDS, Store, StoreError

    try:
        parse_request(StartRequest, {"user": name}, config, prefix="--")
    except CommandError as e:
        raise UsageError(e.message) from None

    async def read() -> dict[str, Any] | None:
        store = await Store.open(db)
        try:
            return await store.user(name)
        finally:
            await store.close()

    try:
        row = asyncio.run(read())
    except StoreError:  # the controller says so, once, and runs without history
        return None
    if row is None:
        raise UsageError(f"no user {name!r} (add one with `chair users add NAME`)")
    data = {k: row[k] for k in ("name", *USER_FIELDS) if row.get(k) not in (None, {})}
    try:
        return parse_request(UserProfile, data, config)
    except CommandError:
        return UserProfile(name=row["name"])  # the controller says what is wrong with it


def _stop_on_signals(controller: Controller, seen: list[int]) -> None:
    """SIGINT/SIGTERM: the first stops the session (it settles), the next ones e-stop."""
    loop = asyncio.get_running_loop()

    from chair.api import CommandError

    async def quietly(action: Any) -> None:
        with contextlib.suppress(CommandError):  # e.g. the session is already over
            await action

    tasks: set[asyncio.Task[None]] = set()  # held until done (the loop keeps weak references)

    def on_signal(sig: int) -> None:
        seen.append(sig)
        if len(seen) == 1 and controller.state_name.in_session:
            action = controller.stop()
        else:
            action = controller.estop()
        task = loop.create_task(quietly(action))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
