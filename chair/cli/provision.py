"""`chair provision CHAIR_ID --ca DIR [--out DIR] [--days N]`: a key and a client certificate
for one chair, signed by the fleet's CA in DIR (created there when DIR is new or empty);
`chair provision --revoke NAME --ca DIR`: revoke it (DIR/crl.pem is rewritten);
`chair provision --broker HOST[,HOST...] --ca DIR`: the broker's server certificate
(docs/fleet.md, docs/interfaces.md §7).

The certificate's CN is the chair id, checked by the chair's own rule for `chair_id`; with
the broker set up as docs/fleet.md says, a chair can then publish and subscribe only under its
own base topic `<prefix>/<chair_id>`. `--service` issues the same kind of identity to an
instance of the operator's service (`chair fleet serve`), which reads every chair.

Every error (a bad chair id, a CA directory that cannot be read, revoking a name the CA never
issued to, ...) is one line on stderr with exit code 1, and nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from chair.cli.common import EXIT_OK, UsageError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "provision",
        help="a client key and certificate for one chair, signed by the fleet's CA",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("chair_id", nargs="?", metavar="CHAIR_ID", help="the chair to provision")
    p.add_argument("--ca", required=True, type=Path, metavar="DIR", help="the fleet's CA directory")
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--revoke",
        metavar="NAME",
        help="revoke every certificate issued to this chair (or service) and rewrite the CRL",
    )
    what.add_argument(
        "--broker",
        metavar="HOST[,HOST...]",
        help="issue the broker's server certificate for these names (and IP 127.0.0.1)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where the key and certificates go (default DIR/chairs/CHAIR_ID, DIR/broker)",
    )
    p.add_argument(
        "--days", type=int, metavar="N", help="validity in days (default 730, two years)"
    )
    p.add_argument(
        "--service",
        action="store_true",
        help="CHAIR_ID names an instance of the operator's service, not a chair",
    )
    p.add_argument(
        "--prefix",
        default=None,
        metavar="P",
        help="the chairs' topic prefix, for the broker rules (default massagechair)",
    )
    p.set_defaults(handler=handle_provision)


def handle_provision(args: argparse.Namespace) -> int:
    from chair.fleet import identity

    modes = [x for x in (args.chair_id, args.revoke, args.broker) if x is not None]
    if len(modes) != 1:
        raise UsageError("give one of CHAIR_ID, --revoke NAME or --broker HOST[,HOST...]")
    if args.chair_id is None:
        for flag, given in (("--service", args.service), ("--prefix", args.prefix is not None)):
            if given:
                raise UsageError(f"{flag} goes with CHAIR_ID only")
    if args.revoke is not None and (args.out is not None or args.days is not None):
        raise UsageError("--revoke takes no --out or --days")
    try:
        if args.revoke is not None:
            return _revoke(args.ca, args.revoke)
        if args.broker is not None:
            issued = identity.issue_broker(
                args.ca,
                args.broker.split(","),
                out_dir=args.out,
                days=args.days if args.days is not None else identity.BROKER_DAYS,
            )
        else:
            issued = identity.issue_client(
                args.ca,
                args.chair_id,
                kind="service" if args.service else "chair",
                out_dir=args.out,
                days=args.days if args.days is not None else identity.CLIENT_DAYS,
                prefix=args.prefix or identity.DEFAULT_PREFIX,
            )
    except identity.IdentityError as e:
        raise UsageError(str(e)) from None
    if issued.ca_created:
        print(f"created the fleet CA in {args.ca} (keep {identity.CA_KEY} secret)")
    print(
        f"{issued.kind} {issued.name}: serial {issued.serial:x}, "
        f"valid until {issued.not_after:%Y-%m-%d}"
    )
    rows = [("key", issued.key), ("certificate", issued.cert), ("CA", issued.ca)]
    if issued.dynsec is not None:
        rows.append(("broker rules", issued.dynsec))
    for label, path in rows:
        print(f"  {label:<13}{path}")
    return EXIT_OK


def _revoke(ca: Path, name: str) -> int:
    from chair.fleet import identity

    serials = identity.revoke(ca, name)
    if not serials:
        print(f"{name}: already revoked; nothing changed")
        return EXIT_OK
    print(f"revoked {name}: serial {', '.join(f'{s:x}' for s in serials)}")
    print(f"  CRL          {ca / identity.CRL}  (give it to the broker and reload it)")
    rules = ca / "dynsec" / f"{name}.revoke.json"
    if rules.is_file():
        print(f"  broker rules {rules}  (deletes the client: disconnects it now)")
    return EXIT_OK
