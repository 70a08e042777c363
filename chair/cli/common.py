"""What every ``chair`` command shares: exit codes, the usage error, the chair config loader."""

from __future__ import annotations

import argparse

from core_rt.config import ChairConfig, load_config

EXIT_OK, EXIT_USAGE, EXIT_SAFETY, EXIT_FAULT = 0, 1, 2, 3
"""0 success, 1 bad input or usage, 2 a safety check failed, 3 the session ended in a fault."""


class UsageError(Exception):
    """Bad input from the user: printed as one clear line, exit code 1, no traceback."""


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
