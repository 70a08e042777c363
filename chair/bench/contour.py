"""The back's contour (docs/chair.md §10), measured over generated bodies.

Two figures, each over every curve family of the simulator (docs/simulator.md, Back), several
heights and seeds:

- **scan**: the contour scan against the plant's hidden truth — the skin's error on the back
  (up to the shoulder line) and on the neck, max and RMS, and the shoulder line's error;
- **pressing relative to the surface** beside the **flat-depth baseline** (fixed depths from
  the heads' home, `contour.press_relative` off), on the same bodies: a program's depth means a
  press into the tissue. For every telemetry sample of the program where the heads press (deeper
  than the light level), the true press (the depth encoder against the plant's skin under the
  carriage's encoder) is compared with the intended one (`press_deviation`): how often the heads
  do not touch at all, how far they stray (mean and worst), how much deeper than intended they
  press at worst.

    python -m chair.bench.contour [--seeds 3] [--scan-seeds 40] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from pathlib import Path
from typing import Any

from core_rt.config import ChairConfig

HEIGHTS_CM = (140.0, 160.0, 175.0, 190.0, 200.0)
FAMILIES: tuple[str | None, ...] = (
    None,
    "flat",
    "normal",
    "lordosis",
    "kyphosis",
    "slim_blades",
    "broad_blades",
)


def _session(
    config: ChairConfig,
    back: str | None,
    height: float,
    seed: int,
    program: str = "quick",
    minutes: float | None = None,
) -> tuple[Any, list[dict[str, Any]], Any, list[str]]:
    """One fast session on a back: (result, telemetry, the plant, the independent checker's
    violations)."""
    from chair.controller import Controller

    controller = Controller.create(
        config, pacing="fast", body_height_cm=height, seed=seed, back=back
    )

    async def main() -> Any:
        async with controller:
            session = controller._make_session(program, minutes=minutes, intensity=3, heat="off")
            controller.session = session
            return await controller._run_session(session)

    result = asyncio.run(main())
    summary = controller.last_summary or {}
    violations = list(summary.get("safety", {}).get("violations", []))
    return result, controller.last_telemetry, controller.hardware, violations


def _rms(xs: list[float]) -> float:
    return math.sqrt(sum(x * x for x in xs) / len(xs)) if xs else 0.0


def scan_accuracy(config: ChairConfig, seeds: int = 3) -> dict[str, Any]:
    """The contour scan against the plant's truth over every family × height × seed."""
    back_err: list[float] = []
    neck_err: list[float] = []
    shoulder_err: list[float] = []
    failed = violations = 0
    for back in FAMILIES:
        for height in HEIGHTS_CM:
            for seed in range(seeds):
                result, _, plant, bad = _session(config, back, height, seed)
                violations += len(bad)
                if result.contour is None:
                    failed += 1
                    continue
                for p in result.contour.points:
                    e = p.surface_mm - plant.true_surface_mm(p.y_mm)
                    (back_err if p.y_mm <= plant.true_shoulder_mm else neck_err).append(e)
                shoulder_err.append(result.shoulder_mm - plant.true_shoulder_mm)
    return {
        "sessions": len(FAMILIES) * len(HEIGHTS_CM) * seeds,
        "scans_failed": failed,
        "back_max_mm": round(max(map(abs, back_err)), 2),
        "back_rms_mm": round(_rms(back_err), 2),
        "neck_max_mm": round(max(map(abs, neck_err)), 2),
        "neck_rms_mm": round(_rms(neck_err), 2),
        "shoulder_min_mm": round(min(shoulder_err), 1),
        "shoulder_max_mm": round(max(shoulder_err), 1),
        # the tests' bound on the shoulder line (tests/test_contour.py)
        "shoulder_off_10mm": sum(abs(e) > 10.0 for e in shoulder_err),
        "checker_violations": violations,
    }


def press_deviation(
    config: ChairConfig,
    telemetry: list[dict[str, Any]],
    plant: Any,
    lo_mm: float = -math.inf,
    hi_mm: float = math.inf,
) -> tuple[list[float], int]:
    """Over the program's samples where the heads press deeper than the light level with the
    carriage in [lo_mm, hi_mm]: the true press (the depth encoder against the plant's skin under
    the carriage's encoder, 0 when off the skin) less the intended one (`press_mm` once the
    surface is known, else the depth). Returns the deviations and how many touched nothing."""
    light = config.depth.level_mm(1)
    dev: list[float] = []
    untouched = 0
    for s in telemetry:
        intended = s["press_mm"] if s.get("press_mm") is not None else s["depth_mm"]
        if s["state"] != "running" or intended <= light or not lo_mm <= s["y_meas_mm"] <= hi_mm:
            continue
        true = max(0.0, s["depth_meas_mm"] - plant.true_surface_mm(s["y_meas_mm"]))
        dev.append(true - intended)
        untouched += true <= 0.0
    return dev, untouched


def _deviation_figures(dev: list[float], untouched: int) -> dict[str, Any]:
    n = len(dev)
    return {
        "samples": n,
        "untouched_pct": round(100.0 * untouched / n, 1),
        "mean_abs_mm": round(sum(map(abs, dev)) / n, 2),
        "worst_shallower_mm": round(-min(dev), 2),
        "worst_deeper_mm": round(max(dev), 2),
    }


def pressing(
    config: ChairConfig, seeds: int = 2, program: str = "relax", minutes: float = 15.0
) -> dict[str, Any]:
    """Pressing relative to the scanned surface beside today's fixed depths on the same backs:
    the true press against the intended one, per family."""
    baseline = config.model_copy(
        update={"contour": config.contour.model_copy(update={"press_relative": False})}
    )
    out: dict[str, Any] = {}
    for back in FAMILIES:
        row: dict[str, Any] = {}
        for name, cfg in (("relative", config), ("fixed_depth", baseline)):
            dev: dict[str, list[float]] = {"back": [], "neck": []}
            untouched = {"back": 0, "neck": 0}
            for height in (HEIGHTS_CM[0], HEIGHTS_CM[2], HEIGHTS_CM[-1]):
                for seed in range(seeds):
                    result, telemetry, plant, _ = _session(
                        cfg, back, height, seed, program, minutes
                    )
                    sh = result.shoulder_mm
                    for part, lo, hi in (("back", -math.inf, sh), ("neck", sh, math.inf)):
                        d, u = press_deviation(cfg, telemetry, plant, lo, hi)
                        dev[part] += d
                        untouched[part] += u
            row[name] = {p: _deviation_figures(dev[p], untouched[p]) for p in dev if dev[p]}
        out["flat (before contours)" if back is None else back] = row
    return out


def every_program(config: ChairConfig, minutes: float = 5.0) -> dict[str, Any]:
    """Every built-in program on every curve family (heights in turn, 140–200 cm), pressing
    relative to the scanned surface: sessions completed, the independent checker's violations,
    and the worst press deeper than intended against the plant's truth on the back."""
    from chair.programs.model import builtin_programs

    runs = failed = violations = 0
    deeper = 0.0
    for i, program in enumerate(builtin_programs()):
        for j, back in enumerate(FAMILIES[1:]):
            height = HEIGHTS_CM[(i + j) % len(HEIGHTS_CM)]
            result, telemetry, plant, bad = _session(config, back, height, i + j, program, minutes)
            runs += 1
            failed += not result.completed
            violations += len(bad)
            dev, _ = press_deviation(config, telemetry, plant, hi_mm=result.shoulder_mm or 0.0)
            deeper = max(deeper, *dev) if dev else deeper
    return {
        "sessions": runs,
        "not_completed": failed,
        "checker_violations": violations,
        "worst_deeper_than_intended_mm": round(deeper, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m chair.bench.contour", description=__doc__)
    ap.add_argument("--seeds", type=int, default=3, help="seeds per family and height")
    ap.add_argument(
        "--scan-seeds", type=int, help="seeds per family and height for the scan (default --seeds)"
    )
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    config = ChairConfig()
    report = {
        "scan": scan_accuracy(config, args.scan_seeds or args.seeds),
        "pressing": pressing(config, max(1, args.seeds - 1)),
        "every_program": every_program(config),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
