"""`chair board-check (--tcp HOST:PORT | --serial PATH)`: the board conformance kit.

Plays the controller against a board (ours, ``chair board``, or a chair maker's) and runs a
scripted suite of the protocol's rules: handshake, rates, every SETPOINT field's range, sentinels,
invalid commands, STATUS fields, the watchdog (trip time, clear rule, re-energise), the goodbye,
corruption, HELLO while energised, version mismatch, disconnect. Prints a pass/fail table (or
``--json``). Run it on an empty chair: the kit energises the drives only to hold them still.

Exit status: 0 when no check failed (a SKIP is no failure), 2 when one failed, 1 for a usage
error (a bad address, a port that cannot be opened). See docs/board-protocol.md, Conformance kit.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from chair.board_check import CHECKS, FAIL, PASS, Result, format_measured, run
from chair.cli.common import EXIT_OK, EXIT_SAFETY, UsageError, chair_config


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "board-check",
        help="the board conformance kit: run the protocol's rules against a board",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="checks:\n"
        + "\n".join(f"  {name:<18} {what}" for name, (_, what) in CHECKS.items()),
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", metavar="HOST:PORT", help="a board on TCP")
    where.add_argument("--serial", metavar="PATH", help="a board on a serial line (or a pty)")
    p.add_argument(
        "--only",
        nargs="+",
        action="extend",
        choices=list(CHECKS),
        metavar="NAME",
        help="run only these checks (names below)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    config = chair_config(args)
    spec = f"tcp:{args.tcp}" if args.tcp is not None else f"serial:{args.serial}"
    live = None if args.json else _Live()
    try:
        report = run(spec, config, args.only, progress=None if live is None else live.row)
    except ValueError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot open {spec}: {e.strerror or e}") from None
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        assert live is not None
        live.done(report.passed, report.board_id, spec)
    return EXIT_OK if report.passed else EXIT_SAFETY


class _Live:
    """The table, one row as each check ends (rich), then the verdict."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console()
        self.rows: list[Result] = []

    def row(self, r: Result) -> None:
        self.rows.append(r)
        style = {PASS: "green", FAIL: "bold red"}.get(r.verdict, "yellow")
        self.console.print(
            f"[{style}]{r.verdict:<4}[/] {r.name:<18} {r.reason}",
            highlight=False,
            markup=True,
            soft_wrap=True,
        )

    def done(self, passed: bool, board_id: str | None, spec: str) -> None:
        from rich.table import Table

        table = Table(title=f"board {board_id or '?'} on {spec}", title_justify="left")
        for col in ("check", "result", "reason", "measured"):
            table.add_column(col, overflow="fold")
        for r in self.rows:
            style = {PASS: "green", FAIL: "bold red"}.get(r.verdict, "yellow")
            table.add_row(r.name, f"[{style}]{r.verdict}[/]", r.reason, format_measured(r.measured))
        self.console.print()
        self.console.print(table)
        failed = [r.name for r in self.rows if r.verdict == FAIL]
        if passed:
            self.console.print("[green]conforms: every check passed[/]")
        else:
            self.console.print(f"[bold red]does not conform: {', '.join(failed)}[/]")
        sys.stdout.flush()
