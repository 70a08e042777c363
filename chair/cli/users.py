"""`chair users list|show NAME|add NAME|set NAME ...|rm NAME [--json]` and `chair history
[--user NAME] [--limit N] [--json]`: the user profiles and the session records in the chair's
database (docs/chair.md §9, docs/interfaces.md §2).

A profile's values are checked by the same request model the sessions use
(`chair.requests.UserProfile`); an unknown user is an error (exit 1), never a new profile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from chair.cli.common import EXIT_OK, UsageError, add_db_argument, chair_config, zone_pairs

T = TypeVar("T")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "users",
        help="user profiles: what each user's sessions start from",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, help_ in (
        ("list", "list the profiles"),
        ("show", "one profile"),
        ("add", "a new profile"),
        ("set", "change a profile"),
        ("rm", "remove a profile (its history stays)"),
    ):
        v = verbs.add_parser(verb, help=help_)
        if verb != "list":
            v.add_argument("name", metavar="NAME")
        if verb in ("add", "set"):
            v.add_argument("--height", type=float, metavar="CM", help="body height hint")
            v.add_argument(
                "--shoulder-offset", type=float, metavar="MM", help="the adjust window's nudge"
            )
            v.add_argument("--intensity", type=int, help="1..5")
            v.add_argument("--heat", help="off, low, medium or high")
            v.add_argument(
                "--zone-intensity",
                action="append",
                default=[],
                metavar="ZONE=N",
                help="per-zone strength, N in -2..2 (repeatable)",
            )
            v.add_argument("--program", help="favourite program")
            v.add_argument("--minutes", type=float, help="favourite length, 5–30")
        v.add_argument("--json", action="store_true")
        add_db_argument(v)
        v.set_defaults(handler=handle_users)

    h = sub.add_parser(
        "history",
        help="session records, newest first",
        description="Session records from the chair's database, newest first (docs/chair.md §9).",
    )
    h.add_argument("--user", metavar="NAME")
    h.add_argument("--limit", type=int, metavar="N")
    h.add_argument("--json", action="store_true")
    add_db_argument(h)
    h.set_defaults(handler=handle_history)


def _with_store(args: argparse.Namespace, fn: Callable[[Any], Awaitable[T]]) -> T:
    from chair.store import Store, StoreError, db_path

    async def main() -> T:
        store = await Store.open(db_path(args.db))
        try:
            return await fn(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except StoreError as e:
        raise UsageError(str(e)) from None


def _profile(args: argparse.Namespace) -> dict[str, Any]:
    """The options given, checked by the sessions' own request model."""
    from chair.api import CommandError
    from chair.programs.manual import MANUAL
    from chair.programs.model import ProgramError, load_program
    from chair.requests import UserProfile, parse_request

    data: dict[str, Any] = {"name": args.name}
    for opt, key in _OPTIONS.items():
        value = getattr(args, opt, None)
        if opt == "zone_intensity":
            value = zone_pairs(value or [])
        if value is not None:
            data[key] = value
    try:
        req = parse_request(UserProfile, data, chair_config(args), prefix="--")
    except CommandError as e:
        msg = e.message
        for opt, key in _OPTIONS.items():
            msg = msg.replace(f"--{key}", "--" + opt.replace("_", "-"))
        raise UsageError(msg) from None
    if req.program is not None and req.program != MANUAL:
        try:
            load_program(req.program)
        except ProgramError as e:
            raise UsageError(f"--program: {e}") from None
    return req.model_dump(exclude_none=True, exclude={"name"})


_OPTIONS = {
    "height": "height_cm",
    "shoulder_offset": "shoulder_offset_mm",
    "intensity": "intensity",
    "heat": "heat",
    "zone_intensity": "zone_intensity",
    "program": "program",
    "minutes": "minutes",
}


def _show(user: dict[str, Any]) -> str:
    rows = [f"{user['name']}"]
    labels = {
        "height_cm": ("height", "cm"),
        "shoulder_offset_mm": ("shoulder offset", "mm"),
        "intensity": ("intensity", ""),
        "heat": ("heat", ""),
        "zone_intensity": ("zone strength", ""),
        "program": ("favourite program", ""),
        "minutes": ("minutes", ""),
    }
    for key, (label, unit) in labels.items():
        v = user.get(key)
        if v in (None, {}):
            v = "-"
        elif isinstance(v, dict):
            v = ", ".join(f"{z}{o:+d}" for z, o in v.items())
        elif isinstance(v, float):
            v = f"{v:g}"
        rows.append(f"  {label:<18} {v}{(' ' + unit) if unit and v != '-' else ''}")
    return "\n".join(rows)


def handle_users(args: argparse.Namespace) -> int:
    verb = args.verb
    fields: dict[str, Any] = {}
    if verb != "list":  # checked before the database is opened
        parse_request_name(args)
    if verb in ("add", "set"):
        fields = _profile(args)
        if verb == "set" and not fields:
            raise UsageError("set needs at least one option (--intensity, --heat, ...)")

    async def act(store: Any) -> Any:
        if verb == "list":
            return await store.users()
        if verb == "show":
            return await store.user(args.name)
        if verb == "add":
            if not await store.add_user(args.name, fields):
                raise UsageError(f"user {args.name!r} exists (change it with `chair users set`)")
            return await store.user(args.name)
        if verb == "set":
            if not await store.update_user(args.name, fields):
                return None
            return await store.user(args.name)
        return await store.remove_user(args.name)

    result = _with_store(args, act)
    if (verb in ("show", "set") and result is None) or (verb == "rm" and result is False):
        raise UsageError(f"no user {args.name!r} (add one with `chair users add NAME`)")
    if args.json:
        print(json.dumps(result if verb != "rm" else {"removed": args.name}, indent=2))
    elif verb == "list":
        if not result:
            print("no users yet: add one with `chair users add NAME`")
        for u in result:
            print(_show(u))
    elif verb == "rm":
        print(f"removed {args.name}")
    else:
        print(_show(result))
    return EXIT_OK


def parse_request_name(args: argparse.Namespace, name: str | None = None) -> None:
    """The user's name, checked as a session's `user` is."""
    from chair.api import CommandError
    from chair.requests import StartRequest, parse_request

    try:
        parse_request(StartRequest, {"user": name or args.name}, chair_config(args), prefix="")
    except CommandError as e:
        raise UsageError(f"user name {e.message.removeprefix('user ')}") from None


def handle_history(args: argparse.Namespace) -> int:
    if args.user is not None:
        parse_request_name(args, args.user)
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    records = _with_store(args, lambda store: store.history(args.user, args.limit))
    if args.json:
        print(json.dumps(records, indent=2))
        return EXIT_OK
    if not records:
        print("no sessions yet")
    for r in records:
        print(_history_line(r))
    return EXIT_OK


def _history_line(r: dict[str, Any]) -> str:
    """One record on one line; a value changed behind the chair's back is shown as it is."""
    faults = r.get("faults")
    codes = (
        ", ".join(str(f.get("code")) if isinstance(f, dict) else str(f) for f in faults)
        if isinstance(faults, list)
        else str(faults)
    )

    def num(v: Any, spec: str) -> str:
        return format(v, spec) if isinstance(v, int | float) else str(v)

    return (
        f"{str(r.get('started_at'))[:19].replace('T', ' ')}  {r.get('session_id')!s:<12} "
        f"{r.get('user') or '-'!s:<12} {r.get('program')!s:<12} "
        f"{r.get('outcome') or 'open'!s:<11} "
        f"{num(r.get('minutes_run'), '5.1f')}/{num(r.get('minutes_planned'), 'g')} min  "
        f"intensity {r.get('intensity')}  heat {r.get('heat')}  faults {codes or '-'}"
    )
