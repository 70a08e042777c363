"""`chair fleet serve|report|start`: the operator's service (docs/fleet-service.md,
docs/interfaces.md §7).

    chair fleet serve --broker URL [--db URL] [--instance NAME]
    chair fleet report [--json] [--db URL]
    chair fleet start CHAIR_ID PROGRAM [--minutes M] --broker URL [--db URL]

``serve`` collects every chair's session records and faults (the shared subscription
``$share/fleet/...``: run several instances, each with its own ``--instance``, on one database to
split the load); ``report`` sums them up; ``start`` starts a paid session on a chair and records
the order (exit 1 when the chair refuses, with its error code). ``--db`` is a file (SQLite,
default ``$CHAIR_FLEET_DB``, else ``$XDG_STATE_HOME/massagechair/fleet.db``) or
``postgresql://user@host:port/dbname``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from chair.cli.common import EXIT_OK, EXIT_USAGE, UsageError
from chair.mqtt.settings import add_broker_arguments, settings_from_args

T = TypeVar("T")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "fleet",
        help="the operator's service: collect every chair's records, report, paid starts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    s = verbs.add_parser(
        "serve",
        help="collect session records and faults from every chair (shared subscription)",
        description="Collect every chair's session records and faults into the database, "
        "raise fault alerts; several instances on one database share the load.",
    )
    add_broker_arguments(s, one_chair=False)
    g = s.add_argument_group("service")
    g.add_argument(
        "--instance",
        metavar="NAME",
        help="this instance's name: unique among running instances, the same across its "
        "restarts (default: the host name)",
    )
    g.add_argument("--group", metavar="NAME", help="the shared subscription's name (default fleet)")
    g.add_argument(
        "--fleet-topic", metavar="ROOT", help="the service's own topics (default <prefix>-fleet)"
    )
    g.add_argument(
        "--session-expiry",
        type=int,
        metavar="S",
        help="how long the broker keeps what comes for an instance that is away (default "
        "604800: a week)",
    )
    _db_argument(g)
    g.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"), help="logging"
    )
    s.set_defaults(handler=handle_serve)

    r = verbs.add_parser(
        "report",
        help="chairs, sessions, minutes and faults so far",
        description="Totals over the service's records, and per chair (docs/interfaces.md §7).",
    )
    r.add_argument("--json", action="store_true")
    _db_argument(r)
    r.set_defaults(handler=handle_report)

    st = verbs.add_parser(
        "start",
        help="start a paid session on a chair and record the order",
        description="Send CHAIR_ID the start command (MQTT 5 request/response), wait for its "
        "reply and record the order; exit 0 when the chair started, 1 when it refused (its "
        "error code is shown) or did not answer.",
    )
    st.add_argument("chair_id", metavar="CHAIR_ID")
    st.add_argument("program", metavar="PROGRAM")
    st.add_argument("--minutes", type=float, metavar="M", help="the paid length (5–30)")
    st.add_argument(
        "--order-id",
        metavar="ID",
        help="the order's id (default: a fresh one); the same id again is not run twice",
    )
    st.add_argument("--timeout", type=float, default=10.0, metavar="S", help="reply wait")
    st.add_argument("--json", action="store_true", help="print the order as JSON")
    add_broker_arguments(st, one_chair=False)
    _db_argument(st)
    st.set_defaults(handler=handle_start)


def _db_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--db",
        metavar="URL",
        help="a file (SQLite; default $CHAIR_FLEET_DB, else "
        "$XDG_STATE_HOME/massagechair/fleet.db) or postgresql://user@host:port/dbname",
    )


def _mqtt_settings(args: argparse.Namespace) -> Any:
    """The broker settings (flags over ``CHAIR_*`` environment over file), always MQTT 5."""
    try:
        # MQTT 5 for shared subscriptions, session expiry and request/response; "fleet": not a
        # chair, so a stray $CHAIR_ID does not matter
        return settings_from_args(args, protocol="5", chair_id="fleet")
    except ValueError as e:
        raise UsageError(str(e)) from None


def _target(args: argparse.Namespace) -> str:
    from chair.fleet.records import RecordsError, db_target, engine_of

    target = db_target(args.db)
    try:
        engine_of(target)
    except RecordsError as e:
        raise UsageError(str(e)) from None
    return target


def _with_records(target: str, fn: Callable[[Any], Awaitable[T]]) -> T:
    from chair.fleet.records import Records, RecordsError

    async def main() -> T:
        records = await Records.open(target)
        try:
            return await fn(records)
        finally:
            await records.close()

    try:
        return asyncio.run(main())
    except RecordsError as e:
        raise UsageError(str(e)) from None


# ---- serve -------------------------------------------------------------------------------------


def handle_serve(args: argparse.Namespace) -> int:
    from chair.fleet.service import FleetService, FleetSettings, default_instance

    mqtt = _mqtt_settings(args)
    try:
        settings = FleetSettings(
            mqtt,
            instance=args.instance or default_instance(),
            **{
                k: v
                for k, v in (
                    ("group", args.group),
                    ("fleet_topic", args.fleet_topic),
                    ("session_expiry_s", args.session_expiry),
                )
                if v is not None
            },
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    target = _target(args)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main() -> int:
        from chair.fleet.records import Records, RecordsError

        try:
            records = await Records.open(target)
        except RecordsError as e:
            raise UsageError(str(e)) from None
        service = FleetService(settings, records)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, service.stop)
        logging.getLogger("chair.fleet").info(
            "fleet service %s: database %s (%s, schema v%d), broker %s",
            settings.instance,
            records.display,
            records.engine,
            await records.version(),
            mqtt.broker,
        )
        try:
            await service.run()
        finally:
            await records.close()
        return EXIT_OK

    return asyncio.run(main())


# ---- report ------------------------------------------------------------------------------------


def handle_report(args: argparse.Namespace) -> int:
    report = _with_records(_target(args), lambda records: records.report())
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(
        f"{report['chairs']} chair(s), {report['sessions']} session(s), "
        f"{report['minutes']:.1f} minute(s), {report['faults']} fault(s)"
    )
    if report["by_chair"]:
        print(f"  {'chair':<24} {'sessions':>8} {'minutes':>9} {'faults':>6}")
    for chair_id, c in report["by_chair"].items():
        print(f"  {chair_id:<24} {c['sessions']:>8} {c['minutes']:>9.1f} {c['faults']:>6}")
    return EXIT_OK


# ---- start -------------------------------------------------------------------------------------


def handle_start(args: argparse.Namespace) -> int:
    import aiomqtt

    from chair.fleet.service import check_start, start_session

    mqtt = _mqtt_settings(args)
    if not args.timeout > 0:
        raise UsageError("--timeout must be > 0")
    try:
        check_start(args.chair_id, args.order_id)
    except ValueError as e:
        raise UsageError(str(e)) from None
    target = _target(args)

    async def act(records: Any) -> Any:
        return await start_session(
            mqtt,
            records,
            args.chair_id,
            args.program,
            args.minutes,
            order_id=args.order_id,
            timeout_s=args.timeout,
        )

    try:
        result = _with_records(target, act)
    except aiomqtt.MqttError as e:
        raise UsageError(f"broker {mqtt.broker}: {e}") from None
    if args.json:
        print(
            json.dumps(
                {
                    "order_id": result.order_id,
                    "chair_id": result.chair_id,
                    "status": result.status,
                    "session_id": result.session_id,
                    "error": None
                    if result.error_code is None
                    else {"code": result.error_code, "message": result.error_message},
                },
                indent=2,
            )
        )
    if result.ok:
        if not args.json:
            print(
                f"order {result.order_id}: chair {result.chair_id} started {args.program} "
                f"(session {result.session_id})"
            )
        return EXIT_OK
    if result.status == "refused":
        why = f"refused ({result.error_code}): {result.error_message}"
    else:
        why = (
            f"no reply within {args.timeout:g} s (its availability: "
            f"{result.availability or 'unknown'})"
        )
    print(
        f"chair fleet start: order {result.order_id}: chair {args.chair_id} {why}", file=sys.stderr
    )
    return EXIT_USAGE
