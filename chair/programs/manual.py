"""Manual mode (docs/chair.md §8): the user's live settings turned into what the planner plays.

Every chair remote lets the user pick a technique, an area (spot / partial / whole), move it up or
down, and set the tempo, width and strength live. Here the settings (`ManualSettings`) and the
scanned body's zones make a one-step synthetic program over an explicit span
(`manual_step`), which the programs' own planner plays for a short segment
(`chair.programs.plan.build_segment`): the same setup at light contact, the same caps, the same
spine clearance, tapping only once the width is reached; `check_plan` and the core's guard judge
it like any program. The session (`chair.manual_session`) plans the next segment from where the
heads are when one ends or when a setting changes.

The words (techniques, areas, widths) are defined here once; every number (area half-widths, the
move step and range, tempo fractions, segment length) is the chair config's `manual` section.

    settings = ManualSettings(technique="kneading", area="partial", zone="upper_back")
    centre = zone_centre_mm(zones, settings.zone)
    span = area_span_mm(settings.area, centre, zones, config)
    step = manual_step(settings, span, zones, config)    # -> StepSettings
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

from chair.programs.model import (
    SPEED_FRACTIONS,
    TECHNIQUE_SPECS,
    Program,
    Step,
    StepSettings,
    WidthName,
)
from chair.programs.plan import (
    ZONE_MARGIN_MM,
    PlanError,
    SessionPlan,
    build_segment,
    zones_touched,
)
from core_rt.config import ZONES, ChairConfig

MANUAL = "manual"
"""The program name that starts manual mode (`chair run manual`, MQTT `start` {program})."""

ManualTechnique = Literal["kneading", "tapping", "knead_tap", "rolling", "shiatsu", "vibration"]
MANUAL_TECHNIQUES: tuple[str, ...] = get_args(ManualTechnique)
Area = Literal["whole", "partial", "spot"]
AREAS: tuple[str, ...] = get_args(Area)
WIDTHS: tuple[str, ...] = get_args(WidthName)
WHOLE_ZONES = ("sacrum", "shoulders")
"""The whole area: shoulders to sacrum (docs/chair.md §8), bottom and top zone."""
FIELDS: tuple[str, ...] = ("technique", "area", "zone", "tempo", "width")
"""What a user sets (MQTT `manual` {...}, `chair run manual --technique ...`)."""


@dataclass(frozen=True)
class ManualSettings:
    """What the user chose; a `set` changes any subset (`changed`)."""

    technique: str = "kneading"
    area: str = "partial"
    zone: str = "upper_back"
    """Where a partial or spot area is centred when chosen (its middle)."""
    tempo: int = 3
    width: str = "medium"

    def changed(self, **fields: Any) -> ManualSettings:
        return replace(self, **{k: v for k, v in fields.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def body_band_mm(zones: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """Where an area may lie: the body's zones, the planner's margin inside their outer edges."""
    return zones[ZONES[0]][0] + ZONE_MARGIN_MM, zones[ZONES[-1]][1] - ZONE_MARGIN_MM


def zone_centre_mm(zones: dict[str, tuple[float, float]], zone: str) -> float:
    lo, hi = zones[zone]
    return 0.5 * (lo + hi)


def clamp_centre_mm(centre_mm: float, zones: dict[str, tuple[float, float]]) -> float:
    """The centre kept on the body (a `move` beyond it stops at the body's end)."""
    lo, hi = body_band_mm(zones)
    return min(max(centre_mm, lo), hi)


def zone_at_mm(zones: dict[str, tuple[float, float]], y: float) -> str:
    """The zone a centre is in (the nearest at the body's ends)."""
    for z in reversed(ZONES):
        if y >= zones[z][0]:
            return z
    return ZONES[0]


def area_span_mm(
    area: str, centre_mm: float, zones: dict[str, tuple[float, float]], config: ChairConfig
) -> tuple[float, float]:
    """[lo, hi] track mm the heads work over: whole = sacrum..shoulders; partial/spot = the
    centre ± the config's half-width, kept on the body (shifted, never shorter than a spot)."""
    m = config.manual
    if area == "whole":
        return zones[WHOLE_ZONES[0]][0] + ZONE_MARGIN_MM, zones[WHOLE_ZONES[1]][1] - ZONE_MARGIN_MM
    half = m.partial_half_mm if area == "partial" else m.spot_half_mm
    lo_b, hi_b = body_band_mm(zones)
    lo, hi = max(centre_mm - half, lo_b), min(centre_mm + half, hi_b)
    short = 2 * m.spot_half_mm - (hi - lo)
    if short > 0:  # at the body's end: keep a spot's length, inside the body
        lo, hi = max(lo - short, lo_b), min(hi + short, hi_b)
    return lo, hi


def manual_program(settings: ManualSettings) -> Program:
    """The one-step synthetic program a manual session runs (its name is `MANUAL`). Its step
    only carries what a Program needs (budgets, names); the plan plays `manual_step`."""
    technique = "kneading" if settings.technique == "knead_tap" else settings.technique
    return Program(
        name=MANUAL,
        title="Manual",
        description="The user steers technique, area, tempo, width and strength live.",
        steps=[Step(technique=technique, zone=settings.zone)],
    )


def manual_step(
    settings: ManualSettings,
    span_mm: tuple[float, float],
    zones: dict[str, tuple[float, float]],
    config: ChairConfig,
) -> StepSettings:
    """The settings as one concrete step over `span_mm`. Tempo scales the technique's rate
    within the lowest caps of the zones the span touches and the motors' maxima: kneading rpm,
    tapping Hz, rolling's stroke speed, shiatsu's pulse rate (a shorter press)."""
    spec = TECHNIQUE_SPECS[settings.technique]
    m = config.manual
    frac = m.tempo_fractions[settings.tempo - 1]
    touched = zones_touched(zones, *span_mm)
    caps = [config.body.zone_caps[z] for z in touched]
    depth = min([spec.depth, spec.max_depth] + [c.depth_level for c in caps])
    knead = frac * min([config.kneading.max_rpm] + [c.knead_rpm for c in caps])
    tap = frac * min([config.tapping.max_hz] + [c.tap_hz for c in caps])
    v_max = config.carriage.limits.v_max
    speed = SPEED_FRACTIONS[spec.speed] * v_max
    if settings.technique == "rolling":
        speed = frac * min(m.stroke_speed_max_mm_s, v_max)
    lo, hi = spec.hold_range_s
    hold = hi - (hi - lo) * (settings.tempo - 1) / (len(m.tempo_fractions) - 1)
    w = config.width
    width = {"narrow": w.narrow_mm, "medium": w.medium_mm, "wide": w.wide_mm}[settings.width]
    if spec.kneading:  # the kneading orbit needs more room beside the spine (docs/chair.md §2)
        width = max(width, config.min_width_mm(True))
    return StepSettings(
        technique=settings.technique,
        pattern=spec.pattern,
        zones=tuple(touched),
        ends=(touched[0], touched[-1]),
        direction=spec.direction,
        depth_level=depth,
        speed_mm_s=speed,
        width_mm=width,
        friction_width_mm=width,
        knead_rpm=knead if spec.kneading else 0.0,
        # one direction: a reversal's ramp would outlast a spot's short passes (the carriage
        # would wait for it pressing in)
        knead_direction="cw",
        tap_hz=tap if spec.tapping else 0.0,
        hold_s=hold if spec.holds else 0.0,
        spacing_mm=spec.spacing_mm,
        heat=False,
        repeat=1,
        light_returns=spec.light_returns,
        pulses=spec.pulses,
        release_s=spec.release_s,
        release_mm_s=spec.release_mm_s,
        span_mm=span_mm,
    )


def plan_segment(
    settings: ManualSettings,
    centre_mm: float,
    config: ChairConfig,
    shoulder_mm: float,
    left_s: float,
    intensity: int,
    heat_level: str,
    pose: tuple[float, float, float],
    zone_intensity: dict[str, int] | None = None,
) -> tuple[SessionPlan, StepSettings, float] | None:
    """The next segment of manual mode from the heads' `pose` (carriage, width, depth): whole
    passes in up to `config.manual.segment_s` (up to `max_segment_s` when one pass needs more),
    never past `left_s`. Returns (plan, step, budget), or None when not one pass fits."""
    zones = config.zones_for_shoulder(shoulder_mm)
    span = area_span_mm(settings.area, centre_mm, zones, config)
    step = manual_step(settings, span, zones, config)
    m = config.manual
    budget = min(m.segment_s, left_s)
    program = manual_program(settings)
    while True:
        try:
            plan = build_segment(
                program, step, config, shoulder_mm, budget, intensity, heat_level,
                start_y_mm=pose[0], start_width_mm=pose[1], start_depth_mm=pose[2],
                zone_intensity=zone_intensity,
            )  # fmt: skip
        except PlanError:
            if budget >= min(m.max_segment_s, left_s) - 1e-9:
                return None
            budget = min(2 * budget, m.max_segment_s, left_s)
            continue
        return plan, step, budget
