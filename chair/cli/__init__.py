"""The ``chair`` command line (docs/interfaces.md §2).

Every command is a module of this package exposing ``register(subparsers)``; `COMMANDS` lists them
in the order ``chair --help`` shows them. A command's handler is stored as its parser's
``handler`` default and returns the exit code (`chair.cli.common`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from chair import __version__
from chair.cli import (
    bench,
    board,
    board_check,
    fleet,
    fleet_sim,
    programs,
    provision,
    remote,
    run,
    serve,
    users,
)
from chair.cli.common import EXIT_USAGE, UsageError

COMMANDS = (
    programs,
    run,
    serve,
    remote,
    users,
    board,
    board_check,
    bench,
    fleet,
    fleet_sim,
    provision,
)
"""Each registers one or more subcommands (`programs` registers programs/show/schema/validate,
`users` registers users and history)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own exit code is 2; ours is 1
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="chair",
        description="Massage-chair controller: programs, sessions, remote control, HIL, "
        "benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"chair {__version__}")
    parser.add_argument("--config", metavar="PATH", help="chair hardware config (TOML)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(handler(args))
    except UsageError as e:
        print(f"chair {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
