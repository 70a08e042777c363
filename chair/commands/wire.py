"""The JSON every remote sends: compact, and never NaN (JSON has none)."""

from __future__ import annotations

import json
import math
from typing import Any


def dumps(obj: Any) -> bytes:
    """Compact JSON; non-finite floats become null (JSON has no NaN)."""
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        text = json.dumps(_finite(obj), separators=(",", ":"), default=str)
    return text.encode("utf-8")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def significant(state: dict[str, Any]) -> dict[str, Any]:
    """The state without what changes continuously (clocks, pad temperature, the board link's
    counters): a remote sends the state at once when this part changes, and the rest at most
    every so often."""
    view = {k: v for k, v in state.items() if k not in ("elapsed_s", "remaining_s", "link")}
    heat = view.get("heat")
    if isinstance(heat, dict):
        view["heat"] = {k: v for k, v in heat.items() if k != "temp_c"}
    return view
