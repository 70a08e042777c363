"""`chair board (--pty | --tcp PORT)`: the simulated chair's board as its own process (HIL).

The first line on stdout says where the controller connects: the pseudo-terminal's path
(``--pty``) or the TCP port (``--tcp``, on 127.0.0.1 only; 0 picks a free one). Then:

    chair serve --hardware serial:/dev/pts/N      (or tcp:127.0.0.1:PORT)

``--start-pose CARRIAGE,WIDTH,DEPTH`` (mm) puts the chair there at power-on (default: park), as
a chair left mid-track by a power cut; the controller takes it from the encoders.

Faults: ``--fault SPEC`` (repeatable, times count from the first valid SETPOINT) and, while it
runs, the ``--control PATH`` socket (one command per line: ``fault stall:carriage``,
``occupant leave``, ``link cut 500ms``, ``corrupt 0.01``, ``state``, ``quit``, ``help``).
Runs until SIGTERM/SIGINT or ``quit`` (exit 0). See docs/board-protocol.md.

Broken on purpose, for the conformance kit (``chair board-check``): ``--break RULE``
(repeatable; or ``break RULE...`` / ``break none`` on the control socket) breaks one rule:

    wrong-nonce             HELLO_ACK carries another nonce than the HELLO's
    ack-their-version       HELLO_ACK says the HELLO's version instead of the board's own
    no-version-check        drives SETPOINTs after a HELLO of another protocol version
    stale-echo              keeps the previous echo across a HELLO (instead of 0)
    slow-status             a STATUS every 10 ms while declaring 1 ms
    set-link-lost-bit       sets the controller's LINK_LOST bit (3) in its fault bits
    energise-from-safe      energises on enable 1 in SAFE (without an enable 0 first)
    hello-keeps-on          a HELLO leaves energised outputs on
    accept-sentinels        applies SETPOINTs that carry a sentinel
    echo-invalid            echoes invalid SETPOINTs (without applying them)
    invalid-feeds-watchdog  an invalid SETPOINT feeds the watchdog
    no-watchdog             never trips
    slow-watchdog           trips after 150 ms of silence (declaring its usual watchdog)
    auto-resume             re-energises after a trip on enable 1, without the enable 0
    sticky-trip             an enable-0 SETPOINT does not clear a trip
    trip-on-goodbye         the watchdog is armed in READY too: a normal stop then trips
    no-disconnect-trip      a TCP disconnect while energised does not trip
    ignore-crc              accepts frames whatever their CRC
    accept-duplicates       accepts duplicate and out-of-order SEQs
    load-flag-unkept        HELLO_ACK says it measures the depth load, every STATUS the sentinel
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
    add_start_pose_argument,
    chair_config,
    check_body_height,
    check_start_pose,
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
    add_start_pose_argument(p)
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
    p.add_argument(
        "--no-depth-load",
        action="store_true",
        help="a board that does not measure the depth drive's load (HELLO_ACK flag 0, the "
        "STATUS field its sentinel): the chair scans by the arm's contact switch",
    )
    p.add_argument(
        "--break",
        dest="breaks",
        action="append",
        default=[],
        metavar="RULE",
        help="test hook: break one protocol rule on purpose (repeatable; the rules: above)",
    )
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from sim.board import BoardEmulator, PtyLink, TcpLink, parse_faults
    from sim.board_control import ControlServer

    config = chair_config(args)
    check_body_height(config, args.body_height)
    start_mm = check_start_pose(config, args.start_pose)
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
            start_mm=start_mm,
            breaks=args.breaks,
            back=args.back,
            depth_load=not args.no_depth_load,
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
