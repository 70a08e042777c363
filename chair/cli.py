"""The ``chair`` command line (INTERFACES §2).

Each command lives in its own module ``chair.cmd_<name>`` exposing ``register(subparsers)``;
the module's handler is stored as the parser's ``handler`` default and returns the exit code.
Exit codes: 0 success, 1 bad input or usage, 2 a safety check failed, 3 the session ended in a
fault.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from chair import __version__
from core_rt.config import ChairConfig, load_config

COMMANDS = ("programs", "show", "schema", "validate", "run", "serve", "remote", "board", "bench")
EXIT_OK, EXIT_USAGE, EXIT_SAFETY, EXIT_FAULT = 0, 1, 2, 3


class UsageError(Exception):
    """Bad input from the user: printed as one clear line, exit code 1, no traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own exit code is 2; ours is 1
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def chair_config(args: argparse.Namespace) -> ChairConfig:
    """The chair config of `--config` (the reference chair without it); a bad file is a
    UsageError naming it."""
    try:
        return load_config(getattr(args, "config", None))
    except ValueError as e:
        raise UsageError(str(e)) from e


def check_body_height(config: ChairConfig, height_cm: float) -> None:
    b = config.body
    if not b.height_min_cm <= height_cm <= b.height_max_cm:
        raise UsageError(f"--body-height must be {b.height_min_cm:g}..{b.height_max_cm:g} cm")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="chair",
        description="Massage-chair controller: programs, sessions, remote control, HIL, "
        "benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"chair {__version__}")
    parser.add_argument("--config", metavar="PATH", help="chair hardware config (TOML)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    seen: set[str] = set()
    for name in COMMANDS:
        if name in seen:
            continue
        module_name = f"chair.cmd_{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            p = sub.add_parser(name, help="(not available yet)")
            p.set_defaults(handler=_not_yet(name))
            seen.add(name)
            continue
        seen.update(module.register(sub))
    return parser


def _not_yet(name: str):  # type: ignore[no-untyped-def]
    def handler(args: argparse.Namespace) -> int:
        print(f"chair {name}: not available in this version yet", file=sys.stderr)
        return EXIT_USAGE

    return handler


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
