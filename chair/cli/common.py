"""What every ``chair`` command shares: exit codes, the usage error, the chair config loader."""

from __future__ import annotations

import argparse
import math
from typing import Any

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


def add_body_arguments(p: argparse.ArgumentParser) -> None:
    """The simulated body: its height and the seed of its variations."""
    p.add_argument(
        "--body-height",
        type=float,
        default=175.0,
        metavar="CM",
        help="simulated body height, 140–200 cm (default 175)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated body (default 0)")
    from sim.back import BACK_SHAPES

    p.add_argument(
        "--back",
        choices=BACK_SHAPES,
        default=None,
        help="the simulated back's curve (docs/simulator.md, Back); default: the flat back of "
        "uniform tissue that touches the heads at their home",
    )


def check_body_height(config: ChairConfig, height_cm: float) -> None:
    b = config.body
    if not b.height_min_cm <= height_cm <= b.height_max_cm:
        raise UsageError(f"--body-height must be {b.height_min_cm:g}..{b.height_max_cm:g} cm")


def _pose_mm(text: str) -> tuple[float, float, float]:
    """``CARRIAGE,WIDTH,DEPTH`` in mm → three finite numbers (the ranges: `check_start_pose`)."""
    parts = text.split(",")
    try:
        values = [float(x) for x in parts]
    except ValueError:
        values = []
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(
            f"expected CARRIAGE,WIDTH,DEPTH in mm, e.g. 100,130,40; got {text!r}"
        )
    return (values[0], values[1], values[2])


def add_start_pose_argument(p: argparse.ArgumentParser) -> None:
    """Where the simulated chair is at power-on (the controller takes it from the encoders)."""
    p.add_argument(
        "--start-pose",
        type=_pose_mm,
        metavar="CARRIAGE,WIDTH,DEPTH",
        help="where the simulated chair is at power-on, in mm, each inside its axis's range "
        "(default: park)",
    )


def check_start_pose(
    config: ChairConfig, pose: tuple[float, float, float] | None
) -> tuple[float, float, float] | None:
    """`--start-pose` inside the chair's axis ranges (a UsageError naming the axis otherwise)."""
    if pose is None:
        return None
    from sim.model import check_start_mm

    try:
        return check_start_mm(config, pose, "--start-pose")
    except ValueError as e:
        raise UsageError(str(e)) from None


MANUAL_FIELDS = ("technique", "area", "zone", "tempo", "width")
"""The manual-mode settings a remote steers (docs/chair.md §8), as CLI options of the same name."""


def add_zone_intensity_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--zone-intensity",
        action="append",
        default=[],
        metavar="ZONE=N",
        help="per-zone strength: N depth levels (-2..2) on top of the intensity in ZONE, "
        "clamped to the zone's cap (repeatable; docs/chair.md §8)",
    )


def add_manual_arguments(p: argparse.ArgumentParser, title: str) -> None:
    from chair.programs.manual import AREAS, MANUAL_TECHNIQUES, WIDTHS

    m = p.add_argument_group(
        title, "the technique, area, tempo and width a remote steers (the rest: their defaults)"
    )
    m.add_argument("--technique", help=" | ".join(MANUAL_TECHNIQUES))
    m.add_argument("--area", help=" | ".join(AREAS))
    m.add_argument("--zone", help="where a partial or spot area is centred (its middle)")
    m.add_argument("--tempo", type=int, help="1..5: the technique's rate")
    m.add_argument("--width", help=" | ".join(WIDTHS))


def manual_choices(args: argparse.Namespace) -> dict[str, Any]:
    """The manual-mode options given on the command line (the request model checks them)."""
    return {k: getattr(args, k) for k in MANUAL_FIELDS if getattr(args, k) is not None}


def zone_pairs(items: list[str]) -> dict[str, Any] | None:
    """``--zone-intensity ZONE=N`` flags as {zone: N} (the request model checks zone and range;
    here only the form). A zone given twice: the last one wins."""
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        zone, sep, text = item.partition("=")
        try:
            if not sep or not zone.strip():
                raise ValueError
            out[zone.strip()] = int(text.strip())
        except ValueError:
            raise UsageError(
                f"--zone-intensity {item!r}: expected ZONE=N with N a whole number -2..2, "
                "e.g. --zone-intensity shoulders=1"
            ) from None
    return out


def add_db_argument(p: argparse.ArgumentParser) -> None:
    """``--db PATH``: the chair's database (docs/chair.md §9)."""
    p.add_argument(
        "--db",
        metavar="PATH",
        help="the chair's database (default: $CHAIR_DB, else "
        "$XDG_STATE_HOME/massagechair/chair.db)",
    )
