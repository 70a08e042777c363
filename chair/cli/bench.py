"""`chair bench [--json] [--quick]`: every benchmark beside its baseline, measured in one run."""

from __future__ import annotations

import argparse
import json
from typing import Any

from chair.cli.common import UsageError, chair_config

SECTIONS = ("planner", "sim", "jitter", "mqtt", "web", "store", "hil", "fleet")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("bench", help="benchmarks, each beside its baseline from the same run")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--quick", action="store_true", help="shorter runs (smoke test)")
    p.add_argument("--only", action="append", choices=SECTIONS, help="run only these sections")
    p.add_argument("--seconds", type=float, default=10.0, help="jitter: seconds per measurement")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from chair.bench import MissingToolError

    try:
        return _run(args)
    except MissingToolError as e:  # a baseline's program is missing: say what to install
        raise UsageError(str(e)) from None


def _run(args: argparse.Namespace) -> int:
    config = chair_config(args)
    out: dict[str, Any] = {}
    only = set(args.only or SECTIONS)
    # every baseline's program is looked for before minutes are spent on the other sections
    if "jitter" in only:
        from chair.bench.jitter import find_cyclictest

        find_cyclictest()
    if only & {"mqtt", "store", "web", "fleet"}:
        from chair.bench.mqtt import find_mosquitto

        find_mosquitto()
    if "web" in only:
        from chair.bench.web import find_chromium

        find_chromium()
    if "planner" in only:
        from chair.bench.core import tick_cost
        from chair.bench.planner import run as planner

        out["planner"] = planner(moves=5000 if args.quick else 20000)
        out["planner"].update(tick_cost(config, seconds=10 if args.quick else 60))
    if "sim" in only:
        from chair.bench.sim import run as sim

        out["sim"] = sim(config, quick=args.quick)
    if "jitter" in only:
        from chair.bench.core import RealtimeChair
        from chair.bench.jitter import run as jitter

        out["jitter"] = jitter(
            hz=config.loop.tick_hz,
            seconds=args.seconds,
            priority=config.loop.rt_priority,
            quick=args.quick,
            core_factory=lambda: RealtimeChair(config),
            cpu=config.loop.rt_cpu_resolved(),  # cyclictest on the core's CPU
        )
    if "mqtt" in only:
        from chair.bench.mqtt import run as mqtt

        out["mqtt"] = mqtt(commands=100 if args.quick else 500)
        j = out.get("jitter")
        if j and j.get("cyclictest_p99_us"):
            ratio = out["mqtt"]["core_p99_us_with_daemon"] / j["cyclictest_p99_us"]
            out["mqtt"]["core_p99_with_daemon_over_cyclictest_p99"] = round(ratio, 3)
    if "web" in only:
        from chair.bench.web import run as web

        out["web"] = web(clicks=50 if args.quick else 200, config=config)
    if "store" in only:
        from chair.bench.store import run as store

        out["store"] = store(records=100 if args.quick else 500)
    if "hil" in only:
        from chair.bench.hil import run as hil

        out["hil"] = hil(quick=args.quick)
    if "fleet" in only:
        from chair.bench.fleet import run as fleet

        out["fleet"] = fleet(quick=args.quick, config_path=getattr(args, "config", None))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        _print(out)
    return 0


def _print(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for name, sec in out.items():
        t = Table(title=name, show_header=False)
        t.add_column("metric")
        t.add_column("value", justify="right")
        for k, v in sec.items():
            t.add_row(k, json.dumps(v) if isinstance(v, dict | list) else str(v))
        console.print(t)
