"""Faults the simulated chair can suffer, and the ``--fault SPEC`` syntax that names them.

A spec is ``KIND[:TARGET]@SECONDSs``, seconds counted from the plant's epoch (the start of the
session): ``stall:carriage@120s``, ``thermistor_open@300s``, ``occupant_leaves@200s``,
``estop@60s``. `parse_fault` turns one into a `FaultSpec` or raises `ValueError` saying what is
wrong. Plant faults change what the sensors report (see docs/simulator.md); session faults
(``estop``, ``link_loss``) are not the plant's: the session or the board link acts them out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal

from core_rt.config import AXES, POSITION_AXES

MOTORS: tuple[str, ...] = AXES
"""Every motor drives one axis, in the core's order (the index of ``current_a``)."""

FAULT_KINDS: dict[str, str] = {
    "stall": "axis jams: its encoder stops while it is driven and its current rises "
    "(target: carriage, width or depth)",
    "overcurrent": "a motor draws well above its over-current limit while energised "
    "(target: carriage, width, depth, kneading or tapping)",
    "thermistor_open": "pad thermistor open: the reading drops to -40 °C",
    "thermistor_short": "pad thermistor shorted: the reading jumps to 150 °C",
    "heater_dead": "heater element open: no heat whatever the duty (heater not heating)",
    "heater_stuck_on": "heater switch stuck on: full power whatever the duty while the "
    "chair is enabled (over-temperature)",
    "limit_switch_both": "both track limit switches read active",
    "supply_low": "supply voltage drops to about 17 V",
    "supply_high": "supply voltage rises to about 33 V",
    "occupant_leaves": "the user stands up: seat occupancy and arm contact go to 0",
    "lean_forward": "the user leans forward: the back's skin moves 40 mm away from the heads, "
    "out of their reach",
    "shift": "the user settles back into the chair: the back's skin moves 10 mm nearer the "
    "heads at once (a jump in its contour)",
    "depth_load_lost": "the depth drive's load sensor fails: its reading goes missing (NaN)",
    "estop": "the user presses the emergency stop (session-level; the plant ignores it)",
    "link_loss": "the board link goes silent (HIL only; the in-process plant ignores it)",
}
"""Every fault kind and what it does, for docs and CLI help."""

FAULT_TARGETS: dict[str, tuple[str, ...]] = {"stall": POSITION_AXES, "overcurrent": MOTORS}
"""Kinds that need a target, and the targets each accepts. Other kinds take none."""

SESSION_KINDS: frozenset[str] = frozenset({"estop", "link_loss"})
"""Kinds the in-process plant does not act out (see `SimPlant.session_faults`)."""

_SYNTAX = "expected KIND[:TARGET]@SECONDSs, e.g. stall:carriage@120s or estop@60s"
_TIME = re.compile(r"(-?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)s?", re.ASCII)
_NAME = re.compile(r"[a-z_]+", re.ASCII)


@dataclass(frozen=True)
class FaultSpec:
    """One fault: `kind` (a key of `FAULT_KINDS`), `at_s` seconds after the plant's epoch, and a
    `target` for the kinds that need one (`FAULT_TARGETS`). Invalid values raise `ValueError`."""

    kind: str
    at_s: float
    target: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (known: {', '.join(FAULT_KINDS)})")
        targets = FAULT_TARGETS.get(self.kind)
        if targets is None and self.target is not None:
            raise ValueError(f"fault {self.kind!r} takes no target (got {self.target!r})")
        if targets is not None and self.target is None:
            raise ValueError(f"fault {self.kind!r} needs a target: one of {', '.join(targets)}")
        if targets is not None and self.target not in targets:
            raise ValueError(
                f"fault {self.kind!r}: unknown target {self.target!r} (one of {', '.join(targets)})"
            )
        if isinstance(self.at_s, bool) or not isinstance(self.at_s, int | float):
            raise ValueError(f"fault {self.kind!r}: time must be a number of seconds")
        if not math.isfinite(self.at_s) or self.at_s < 0:
            raise ValueError(
                f"fault {self.kind!r}: time must be finite and >= 0 s, got {self.at_s}"
            )

    def __str__(self) -> str:
        name = self.kind if self.target is None else f"{self.kind}:{self.target}"
        # shortest exact decimal, never an exponent (the syntax has none): parses back equal
        seconds = format(Decimal(repr(float(self.at_s))), "f").removesuffix(".0")
        return f"{name}@{seconds}s"


def parse_fault(spec: str) -> FaultSpec:
    """Parse ``KIND[:TARGET]@SECONDSs`` (the trailing ``s`` may be omitted) into a `FaultSpec`.

    Raises `ValueError` with a message naming the spec and what is wrong with it.
    """
    if not isinstance(spec, str):
        raise ValueError(f"bad fault spec {spec!r}: not a string; {_SYNTAX}")
    text = spec.strip()
    if not text:
        raise ValueError(f"empty fault spec: {_SYNTAX}")
    if "@" not in text:
        raise ValueError(f"fault spec {spec!r}: missing time '@SECONDSs'; {_SYNTAX}")
    name, _, when = text.rpartition("@")
    kind, sep, target = name.partition(":")
    kind, target = kind.strip().lower(), target.strip().lower()
    if not _NAME.fullmatch(kind):
        raise ValueError(f"bad fault spec {spec!r}: kind {kind!r} is not a name; {_SYNTAX}")
    if sep and not _NAME.fullmatch(target):
        raise ValueError(f"bad fault spec {spec!r}: target {target!r} is not a name; {_SYNTAX}")
    m = _TIME.fullmatch(when.strip())
    if m is None:
        raise ValueError(
            f"fault spec {spec!r}: time {when!r} is not a number of seconds; {_SYNTAX}"
        )
    if m.group(1):
        raise ValueError(f"fault spec {spec!r}: time must be >= 0 s, got -{m.group(2)}")
    at_s = float(m.group(2))
    if not math.isfinite(at_s):
        raise ValueError(f"fault spec {spec!r}: time {m.group(2)!r} is too large")
    try:
        return FaultSpec(kind=kind, at_s=at_s, target=target if sep else None)
    except ValueError as e:
        raise ValueError(f"fault spec {spec!r}: {e}") from None
