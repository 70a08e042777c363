"""``chair programs``, ``chair show``, ``chair schema`` and ``chair validate``: programs as files.

- ``programs [--json]``: the built-in programs (name, title, default minutes, techniques, zones).
- ``show PROGRAM [--json]``: one program step by step, with every value resolved for the chair.
- ``schema``: the JSON Schema of a program file, to stdout.
- ``validate PATH_OR_NAME...``: schema + static safety verification for every body height, every
  intensity and every session length; prints ``FILE: FIELD_PATH: RULE: message`` per problem
  (``FILE: ok`` when there is none); exit 0 if all are valid, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from chair.cli.common import EXIT_OK, EXIT_USAGE, UsageError, chair_config
from chair.programs.model import (
    Program,
    ProgramError,
    builtin_programs,
    load_program,
    program_json_schema,
)
from chair.programs.validate import validate_file
from core_rt.config import ChairConfig


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("programs", help="list the built-in programs")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_programs)

    p = sub.add_parser("show", help="one program, step by step")
    p.add_argument("program", metavar="PROGRAM", help="built-in name or path to a .toml file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("schema", help="the JSON Schema of a program file")
    p.set_defaults(handler=cmd_schema)

    p = sub.add_parser(
        "validate",
        help="verify program files (every body height, intensity and session length)",
    )
    p.add_argument("programs", nargs="+", metavar="PATH_OR_NAME")
    p.set_defaults(handler=cmd_validate)


def _config(args: argparse.Namespace) -> ChairConfig:
    return chair_config(args)


def _load(name: str) -> Program:
    try:
        return load_program(name)
    except ProgramError as e:
        if len(e.issues) == 1 and e.issues[0].rule in ("unknown-program", "file"):
            i = e.issues[0]
            raise UsageError(f"{i.file}: {i.message}") from e
        for i in e.issues:
            print(i, file=sys.stderr)
        raise UsageError(f"{name}: not a valid program ({len(e.issues)} problem(s) above)") from e


def _summary(p: Program) -> dict[str, Any]:
    return {
        "name": p.name,
        "title": p.title,
        "default_minutes": p.default_minutes,
        "techniques": p.techniques,
        "zones": p.zones,
    }


def cmd_programs(args: argparse.Namespace) -> int:
    rows = [_summary(_load(n)) for n in builtin_programs()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Built-in programs")
    for col in ("name", "title", "min", "techniques", "zones"):
        t.add_column(col, justify="right" if col == "min" else "left")
    for r in rows:
        t.add_row(
            r["name"],
            r["title"],
            f"{r['default_minutes']:g}",
            ", ".join(r["techniques"]),
            ", ".join(r["zones"]),
        )
    con = Console()
    Console(width=160).print(t) if not con.is_terminal else con.print(t)
    return EXIT_OK


def _where(step: Any) -> str:
    return step.zone if step.zone is not None else f"{step.from_} → {step.to}"


def show_data(p: Program, config: ChairConfig) -> dict[str, Any]:
    """A program with every step's resolved values (what `show --json` prints)."""
    budgets = p.step_budgets(p.default_minutes)
    steps = []
    for i, (st, b) in enumerate(zip(p.steps, budgets, strict=True)):
        s = st.settings(config)
        steps.append(
            {
                "index": i,
                "file": st.model_dump(by_alias=True, exclude_none=True),
                "technique": s.technique,
                "zones": list(s.zones),
                "direction": s.direction,
                "seconds_at_default": round(b, 3),
                "depth_level": s.depth_level,
                "speed_mm_s": s.speed_mm_s,
                "width_mm": s.width_mm,
                "knead_rpm": s.knead_rpm,
                "knead_direction": s.knead_direction if s.knead_rpm else None,
                "tap_hz": s.tap_hz,
                "hold_s": s.hold_s,
                "heat": s.heat,
                "repeat": s.repeat,
                "note": st.note,
            }
        )
    return {
        **_summary(p),
        "description": p.description,
        "default_heat": p.default_heat,
        "default_intensity": p.default_intensity,
        "steps": steps,
    }


def cmd_show(args: argparse.Namespace) -> int:
    config = _config(args)
    p = _load(args.program)
    data = show_data(p, config)
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    con = Console()
    if not con.is_terminal:
        con = Console(width=160)  # piped: do not squeeze the table into 80 columns
    con.print(f"[bold]{p.title}[/bold] ({p.name}) — {p.default_minutes:g} min by default")
    if p.description:
        con.print(p.description.strip())
    t = Table()
    cols = ("#", "technique", "where", "dir", "time", "depth", "speed", "width", "rates", "hold")
    for col in (*cols, "heat", "note"):
        t.add_column(col)
    for st, d in zip(p.steps, data["steps"], strict=True):
        rates = []
        if d["knead_rpm"]:
            rates.append(f"{d['knead_rpm']:g} rpm {d['knead_direction']}")
        if d["tap_hz"]:
            rates.append(f"{d['tap_hz']:g} Hz")
        secs = d["seconds_at_default"]
        t.add_row(
            str(d["index"]),
            d["technique"],
            _where(st),
            d["direction"],
            f"{int(secs // 60)}:{secs % 60:04.1f}",
            f"L{d['depth_level']}",
            f"{d['speed_mm_s']:g} mm/s",
            f"{d['width_mm']:g} mm",
            ", ".join(rates) or "-",
            f"{d['hold_s']:g} s" if d["hold_s"] else "-",
            "on" if d["heat"] else "-",
            d["note"],
        )
    con.print(t)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(program_json_schema(), indent=2))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    config = _config(args)
    bad = 0
    for name in args.programs:
        issues = validate_file(name, config)
        if issues:
            bad += 1
            for i in issues:
                print(i)
        else:
            print(f"{name}: ok")
    return EXIT_USAGE if bad else EXIT_OK
