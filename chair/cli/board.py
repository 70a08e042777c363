"""`chair board (--pty | --tcp PORT)`: the simulated chair's board as its own process (HIL).

The first line on stdout says where the controller connects: the pseudo-terminal's path
(``--pty``) or the TCP port (``--tcp``, on 127.0.0.1 only; 0 picks a free one). Then:

    chair serve --hardware serial:/dev/pts/N      (or tcp:127.0.0.1:PORT)

Faults: ``--fault SPEC`` (repeatable, times count from the first valid SETPOINT) and, while it
runs, the ``--control PATH`` socket (one command per line: ``fault stall:carriage``,
``occupant leave``, ``link cut 500ms``, ``corrupt 0.01``, ``state``, ``quit``, ``help``).
Runs until SIGTERM/SIGINT or ``quit`` (exit 0). See docs/board-protocol.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType
from typing import Any

from chair.cli.common import (
    EXIT_OK,
    UsageError,
    add_body_arguments,
    chair_config,
    check_body_height,
)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "board",
        help="the simulated chair hardware as its own process, speaking the board protocol (HIL)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--pty", action="store_true", help="create a pseudo-terminal pair; print the path to open"
    )
    where.add_argument(
        "--tcp",
        type=int,
        metavar="PORT",
        help="listen on 127.0.0.1:PORT (0 = pick a free port; printed)",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault, e.g. stall:carriage@20s, counted from the first "
        "setpoint (repeatable)",
    )
    p.add_argument(
        "--control",
        metavar="PATH",
        help="Unix socket for run-time commands (fault, occupant, link cut, corrupt, state, quit)",
    )
    add_body_arguments(p)
    p.add_argument(
        "--thermal-scale",
        type=float,
        default=1.0,
        metavar="K",
        help="test hook: make the heating pad K times faster (default 1)",
    )
    p.add_argument(
        "--watchdog-ms",
        type=float,
        default=90.0,
        help="the board's own watchdog, 1–100 ms (default 90: stops within 100 ms)",
    )
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from sim.board import BoardEmulator, PtyLink, TcpLink, parse_faults
    from sim.board_control import ControlServer

    config = chair_config(args)
    check_body_height(config, args.body_height)
    if args.tcp is not None and not 0 <= args.tcp <= 65535:
        raise UsageError("--tcp PORT must be 0..65535")
    try:
        faults = parse_faults(args.fault)
        board = BoardEmulator(
            config,
            body_height_cm=args.body_height,
            seed=args.seed,
            faults=faults,
            thermal_scale=args.thermal_scale,
            watchdog_ms=args.watchdog_ms,
        )
    except ValueError as e:
        raise UsageError(str(e)) from e
    try:
        link = PtyLink() if args.pty else TcpLink(args.tcp)
    except OSError as e:
        raise UsageError(f"cannot open the link: {e}") from e
    try:
        control = ControlServer(args.control) if args.control else None
    except OSError as e:
        link.close()
        raise UsageError(f"--control {args.control}: {e.strerror or e}") from e

    def _stop(signum: int, frame: FrameType | None) -> None:
        board.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # the first line is for programs: where to connect; the rest is for people, on stderr
    print(link.path if isinstance(link, PtyLink) else link.port, flush=True)
    print(
        f"chair board: listening on {link.spec}; connect with "
        f"`chair serve --hardware {link.spec}`"
        + (f"; control socket {args.control}" if control else ""),
        file=sys.stderr,
        flush=True,
    )
    try:
        board.serve(link, control)
    finally:
        if control is not None:
            control.close()
        link.close()
    return EXIT_OK
