"""Massage programs: the model of a program file (TOML), its loading and its resolved settings.

A program is an ordered list of steps. Each step names a technique (docs/chair.md §3), where on the
back it works (one zone, or a sweep between two zones), how much of the session it takes, and how
it is done (depth level, carriage speed, head width, kneading, tapping, holds, heat). The model
only knows program vocabulary; every number of the chair (zones, caps, limits, width stops, depth
levels) comes from `core_rt.config.ChairConfig` when a step is resolved with `Step.settings`.

Public API::

    program = load_program("relax")            # a built-in (profiles/relax.toml) or a path
    program.techniques, program.zones          # implied by the steps
    step.settings(config)                      # -> StepSettings: every value concrete
    builtin_programs()                         # names of the built-ins

Errors (missing file, TOML syntax, schema, structure) raise `ProgramError` whose `issues` are
`Issue(file, field, rule, message)` tuples, e.g. ``Issue("x.toml", "steps[3].tap_hz", "schema",
"Input should be greater than 0")``; ``str(issue)`` is ``FILE: FIELD: RULE: message``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from core_rt.config import ZONES, ChairConfig

Zone = Literal["glutes", "sacrum", "lumbar", "mid_back", "upper_back", "shoulders", "neck"]
Technique = Literal[
    "effleurage",
    "rolling",
    "kneading",
    "tapping",
    "vibration",
    "shiatsu",
    "trigger_point",
    "friction",
]
Direction = Literal["up", "down", "up_down"]
SpeedName = Literal["slow", "medium", "fast"]
WidthName = Literal["narrow", "medium", "wide"]
KneadDirection = Literal["cw", "ccw", "alternate"]
HeatLevel = Literal["off", "low", "medium", "high"]

TECHNIQUES: tuple[str, ...] = (
    "effleurage",
    "rolling",
    "kneading",
    "tapping",
    "vibration",
    "shiatsu",
    "trigger_point",
    "friction",
)

# Named carriage speeds as fractions of the chair's carriage v_max (program vocabulary, not chair
# numbers: a faster chair plays the same program proportionally faster).
SPEED_FRACTIONS: dict[str, float] = {"slow": 0.2, "medium": 0.4, "fast": 0.7}
TRAVEL_SPEED_FRACTION = 0.7
"""Carriage speed when walking from one step's place to the next's (light contact)."""
FRICTION_WIDTH_STEP_MM = 10.0
"""Friction alternates the head width between `width` and `width` + this (− if above max)."""


@dataclass(frozen=True)
class TechniqueSpec:
    """How a technique is played on the chair, and its defaults (docs/chair.md §3)."""

    pattern: Literal["stroke", "points"]
    """stroke: carriage passes across the span; points: press-and-hold at points along it."""
    kneading: bool
    tapping: bool
    holds: bool
    light_returns: bool
    """Gliding strokes: pressure only upward, down strokes at depth <= level 1."""
    depth: int
    speed: str
    width: str
    direction: str
    knead_rpm: float = 0.0
    tap_hz: float | None = 0.0
    """None: the highest rate the zones allow (vibration)."""
    hold_s: float = 0.0
    spacing_mm: float = 0.0
    """Distance between points (points pattern)."""
    seed_name: str = ""
    pulses: int = 1
    """Presses at each point (shiatsu: 2-4 rhythmic pulses, docs/chair.md §3)."""
    release_s: float = 0.0
    """Light pause between two pulses at a point (shiatsu: 0.5-1 s)."""
    release_mm_s: float = 0.0
    """How fast the heads come back after a hold (0: the depth axis's v_max; trigger point
    releases slowly)."""
    hold_range_s: tuple[float, float] = (1.0, 30.0)
    """The hold a step may ask for (shiatsu: one pulse's press, 1-2 s; trigger point 5-10 s)."""
    max_depth: int = 5
    """Deepest level the technique may press (vibration is shallow: level 1)."""


TECHNIQUE_SPECS: dict[str, TechniqueSpec] = {
    "effleurage": TechniqueSpec(
        "stroke", False, False, False, True, 2, "medium", "wide", "up",
        seed_name="effleurage / gliding strokes",
    ),
    "rolling": TechniqueSpec(
        "stroke", False, False, False, True, 2, "slow", "medium", "up",
        seed_name="rolling (knuckles gliding either side of the spine)",
    ),
    "kneading": TechniqueSpec(
        "stroke", True, False, False, False, 3, "slow", "medium", "up_down",
        knead_rpm=30.0, seed_name="petrissage / kneading",
    ),
    "tapping": TechniqueSpec(
        "stroke", False, True, False, False, 2, "slow", "medium", "up_down",
        tap_hz=5.0, seed_name="tapotement / percussion",
    ),
    "vibration": TechniqueSpec(
        "stroke", False, True, False, False, 1, "slow", "medium", "up_down",
        tap_hz=None, seed_name="vibration (tapping at its highest rate, shallow)", max_depth=1,
    ),
    "shiatsu": TechniqueSpec(
        "points", False, False, True, False, 3, "medium", "narrow", "up",
        hold_s=1.5, spacing_mm=50.0, seed_name="shiatsu / pulsing, rhythmic pressure",
        pulses=3, release_s=0.75, hold_range_s=(1.0, 2.0),
    ),
    "trigger_point": TechniqueSpec(
        "points", False, False, True, False, 4, "medium", "narrow", "up",
        hold_s=8.0, spacing_mm=60.0, seed_name="trigger point (sustained pressure, slow release)",
        release_mm_s=4.0, hold_range_s=(5.0, 10.0),
    ),
    "friction": TechniqueSpec(
        "points", True, False, True, False, 3, "slow", "narrow", "up",
        knead_rpm=50.0, hold_s=6.0, spacing_mm=80.0, seed_name="friction (deep circular rubbing)",
    ),
    # manual mode only (docs/chair.md §8: "knead_tap (both at once)"); not a program technique
    "knead_tap": TechniqueSpec(
        "stroke", True, True, False, False, 3, "slow", "medium", "up_down",
        knead_rpm=30.0, tap_hz=5.0, seed_name="kneading and tapping at once (chair remotes)",
    ),
}  # fmt: skip
"""Every technique the chair plays: the program techniques (`TECHNIQUES`) and manual mode's."""


class Issue(NamedTuple):
    """One problem with a program: where (file, field path), which rule, and why."""

    file: str
    field: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.rule}: {self.message}"


class ProgramError(Exception):
    """A program could not be loaded; `issues` says every reason found."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = issues


def _custom(rule: str, field: str, message: str) -> PydanticCustomError:
    # The error type is our stable rule id; `field` is appended to pydantic's location.
    return PydanticCustomError(rule, message, {"field": field})


class Step(BaseModel):
    """One step of a program: a technique, where it works, how long, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    technique: Technique = Field(
        description="What the heads do (docs/chair.md §3): effleurage and rolling are long strokes "
        "(pressure upward only); kneading rotates the heads; tapping percusses; vibration is "
        "tapping at the highest allowed rate, shallow; shiatsu and trigger_point press and "
        "hold at points either side of the spine; friction kneads fast at one spot."
    )
    zone: Zone | None = Field(
        None, description="Work inside this one zone. Give either `zone` or `from` + `to`."
    )
    from_: Zone | None = Field(
        None,
        alias="from",
        description="Sweep: the lower end zone (bottom to top: glutes, sacrum, lumbar, "
        "mid_back, upper_back, shoulders, neck). The sweep covers both zones and all between.",
    )
    to: Zone | None = Field(None, description="Sweep: the upper end zone (at or above `from`).")
    direction: Direction | None = Field(
        None,
        description="Which way the working passes go: `up` (work upward, light return down), "
        "`down` (work downward, light return up) or `up_down` (work both ways). Default per "
        "technique: up for strokes and points, up_down for kneading/tapping/vibration.",
    )
    share: float | None = Field(
        None,
        gt=0,
        description="Relative share of the session (default 1 when `seconds` is not given). "
        "Shares split what the `seconds` steps leave of the default session length.",
    )
    seconds: float | None = Field(
        None,
        gt=0,
        le=1800,
        description="Length of the step at the program's default_minutes. Scaled like every "
        "step when the user picks another session length (order and proportions are kept).",
    )
    depth: int | None = Field(
        None,
        ge=1,
        le=5,
        description="Pressure level 1-5 (the chair's depth levels) at intensity 5; lower "
        "intensities press less: depth_mm = level_mm × (intensity + 5) / 10. Default per "
        "technique, lowered to the zones' cap.",
    )
    speed: Annotated[float, Field(gt=0)] | SpeedName | None = Field(
        None,
        description="Carriage speed: mm/s, or slow/medium/fast (0.2/0.4/0.7 × the chair's "
        "carriage v_max). Used for passes and for moving between points.",
    )
    width: Annotated[float, Field(gt=0)] | WidthName | None = Field(
        None,
        description="Head spacing centre to centre: mm, or the chair's narrow/medium/wide "
        "stop. Kneading needs at least the chair's kneading minimum (spine clearance).",
    )
    knead_rpm: float | None = Field(
        None, gt=0, description="Kneading speed, rpm (kneading and friction only)."
    )
    knead_direction: KneadDirection | None = Field(
        None,
        description="Kneading rotation: cw, ccw, or alternate (reverses every pass or press). "
        "Kneading and friction only; default alternate.",
    )
    tap_hz: float | None = Field(
        None,
        gt=0,
        description="Tapping rate, Hz (tapping and vibration only). Vibration defaults to "
        "the highest rate the zones allow.",
    )
    heat: bool = Field(
        False,
        description="Marks a step the author meant to be warm. Kept so older program files "
        "load; it changes nothing: heat is the session's choice, held from the program's "
        "start to the settle in every program (docs/chair.md §3; `default_heat` suggests it).",
    )
    hold_s: float | None = Field(
        None,
        ge=1,
        le=30,
        description="Press time, s: each pulse's press for shiatsu (1-2 s), the sustained hold "
        "for trigger_point (5-10 s), the rubbing time at each spot for friction.",
    )
    pulses: int | None = Field(
        None,
        ge=2,
        le=4,
        description="Shiatsu only: rhythmic presses at each point before moving on (default 3).",
    )
    repeat: int = Field(
        1,
        ge=1,
        le=20,
        description="Minimum number of passes (or presses) the step must hold at every "
        "session length; the plan fits as many whole ones as the step's time allows.",
    )
    note: str = Field("", max_length=200, description="Free text shown by `chair show`.")

    @model_validator(mode="after")
    def _structure(self) -> Step:
        spec = TECHNIQUE_SPECS[self.technique]
        if self.zone is not None and (self.from_ is not None or self.to is not None):
            raise _custom("zone-or-sweep", "zone", "give either `zone` or `from`/`to`, not both")
        if self.zone is None and (self.from_ is None or self.to is None):
            missing = "to" if self.from_ is not None else "from"
            if self.to is None and self.from_ is None:
                missing = "zone"
            raise _custom("zone-or-sweep", missing, "a step needs `zone`, or both `from` and `to`")
        if (
            self.from_ is not None
            and self.to is not None
            and ZONES.index(self.from_) > ZONES.index(self.to)
        ):
            raise _custom(
                "sweep-order",
                "from",
                f"`from` ({self.from_}) must be at or below `to` ({self.to}), bottom to top;"
                ' use direction = "down" for downward passes',
            )
        if self.share is not None and self.seconds is not None:
            raise _custom("share-or-seconds", "seconds", "give either `share` or `seconds`")
        for name, applies, who in (
            ("knead_rpm", spec.kneading, "kneading and friction"),
            ("knead_direction", spec.kneading, "kneading and friction"),
            ("tap_hz", spec.tapping, "tapping and vibration"),
            ("hold_s", spec.holds, "shiatsu, trigger_point and friction"),
            ("pulses", spec.pulses > 1, "shiatsu"),
        ):
            if not applies and getattr(self, name) is not None:
                raise _custom(
                    "technique-field",
                    name,
                    f"`{name}` does not apply to {self.technique} (only to {who})",
                )
        lo, hi = spec.hold_range_s
        if self.hold_s is not None and not lo <= self.hold_s <= hi:
            raise _custom(
                "technique-hold",
                "hold_s",
                f"{self.technique} holds {lo:g}-{hi:g} s (docs/chair.md §3), not {self.hold_s:g}",
            )
        if self.depth is not None and self.depth > spec.max_depth:
            raise _custom(
                "technique-depth",
                "depth",
                f"{self.technique} presses at most level {spec.max_depth} (docs/chair.md §3)",
            )
        return self

    # ---- derived ------------------------------------------------------------------------------

    @property
    def ends(self) -> tuple[str, str]:
        """(lower zone, upper zone) of the step's span."""
        if self.zone is not None:
            return self.zone, self.zone
        assert self.from_ is not None and self.to is not None
        return self.from_, self.to

    @property
    def zones(self) -> tuple[str, ...]:
        """Every zone the step works in, bottom to top."""
        lo, hi = self.ends
        return ZONES[ZONES.index(lo) : ZONES.index(hi) + 1]

    @property
    def where_field(self) -> str:
        """The field that says where the step works (for error paths)."""
        return "zone" if self.zone is not None else "from"

    def settings(self, config: ChairConfig) -> StepSettings:
        """Every value of the step made concrete for `config` (technique defaults filled in,
        defaults lowered to the caps of the zones the step touches; explicit values kept as
        written so that validation can judge them)."""
        spec = TECHNIQUE_SPECS[self.technique]
        caps = [config.body.zone_caps[z] for z in self.zones]
        cap_depth = min(c.depth_level for c in caps)
        cap_tap = min(c.tap_hz for c in caps)
        cap_knead = min(c.knead_rpm for c in caps)
        v_max = config.carriage.limits.v_max
        if self.speed is None or isinstance(self.speed, str):
            speed = SPEED_FRACTIONS[self.speed or spec.speed] * v_max
        else:
            speed = float(self.speed)
        w = config.width
        stops = {"narrow": w.narrow_mm, "medium": w.medium_mm, "wide": w.wide_mm}
        if self.width is None or isinstance(self.width, str):
            width = stops[self.width or spec.width]
        else:
            width = float(self.width)
        width2 = width
        if spec.kneading:
            # friction's second width: a small change around the spot (docs/chair.md §3)
            width2 = width + FRICTION_WIDTH_STEP_MM
            if width2 > w.max_mm:
                width2 = width - FRICTION_WIDTH_STEP_MM
        depth = self.depth if self.depth is not None else min(spec.depth, cap_depth)
        knead = 0.0
        if spec.kneading:
            knead = (
                self.knead_rpm
                if self.knead_rpm is not None
                else min(spec.knead_rpm, cap_knead, config.kneading.max_rpm)
            )
        tap = 0.0
        if spec.tapping:
            if self.tap_hz is not None:
                tap = self.tap_hz
            elif spec.tap_hz is None:
                tap = min(cap_tap, config.tapping.max_hz)
            else:
                tap = min(spec.tap_hz, cap_tap, config.tapping.max_hz)
        return StepSettings(
            technique=self.technique,
            pattern=spec.pattern,
            zones=self.zones,
            ends=self.ends,
            direction=self.direction or spec.direction,
            depth_level=depth,
            speed_mm_s=speed,
            width_mm=width,
            friction_width_mm=width2 if self.technique == "friction" else width,
            knead_rpm=knead,
            knead_direction=(self.knead_direction or "alternate") if spec.kneading else "cw",
            tap_hz=tap,
            hold_s=(self.hold_s if self.hold_s is not None else spec.hold_s) if spec.holds else 0.0,
            spacing_mm=spec.spacing_mm,
            heat=self.heat,
            repeat=self.repeat,
            light_returns=spec.light_returns,
            pulses=self.pulses if self.pulses is not None else spec.pulses,
            release_s=spec.release_s,
            release_mm_s=spec.release_mm_s,
        )


@dataclass(frozen=True)
class StepSettings:
    """A step with every value concrete for one chair (see `Step.settings`)."""

    technique: str
    pattern: str
    zones: tuple[str, ...]
    ends: tuple[str, str]
    direction: str
    depth_level: int
    speed_mm_s: float
    width_mm: float
    friction_width_mm: float
    knead_rpm: float
    knead_direction: str
    tap_hz: float
    hold_s: float
    spacing_mm: float
    heat: bool
    repeat: int
    light_returns: bool
    pulses: int = 1
    release_s: float = 0.0
    release_mm_s: float = 0.0
    span_mm: tuple[float, float] | None = None
    """Where the carriage works, explicitly (track mm, bottom to top); None: the step's zones.
    Manual mode sets it to the user's area (docs/chair.md §8)."""


class Program(BaseModel):
    """A massage program: named, described, and an ordered list of steps."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"title": "Massage program (chair program file, TOML)"},
    )

    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        max_length=40,
        description="Identifier (lower case, digits, _); built-ins are named like their file.",
    )
    title: str = Field(min_length=1, max_length=80, description="Human title.")
    description: str = Field("", max_length=2000, description="What the program is for.")
    default_minutes: float = Field(
        15.0,
        ge=5,
        le=30,
        description="Session length when the user does not choose one (5-30 min; 30 is a "
        "hard cap). The steps scale to any chosen length, keeping order and proportions.",
    )
    default_heat: HeatLevel = Field(
        "off", description="Suggested heat level when the user does not choose one."
    )
    default_intensity: int = Field(
        3, ge=1, le=5, description="Suggested intensity (1-5) when the user does not choose one."
    )
    steps: list[Step] = Field(min_length=1, max_length=40, description="In order.")

    @model_validator(mode="after")
    def _seconds_fit(self) -> Program:
        fixed = sum(s.seconds for s in self.steps if s.seconds is not None)
        total = self.default_minutes * 60.0
        has_share = any(s.seconds is None for s in self.steps)
        if has_share and fixed >= total:
            raise _custom(
                "seconds-sum",
                "steps",
                f"the `seconds` steps take {fixed:g} s, leaving nothing of the default "
                f"{total:g} s for the `share` steps",
            )
        if not has_share and abs(fixed - total) > 1.0:
            raise _custom(
                "seconds-sum",
                "steps",
                f"every step has `seconds`: they must add up to default_minutes × 60 = "
                f"{total:g} s, not {fixed:g} s",
            )
        return self

    @property
    def techniques(self) -> list[str]:
        """Techniques used, in order of first appearance."""
        return list(dict.fromkeys(s.technique for s in self.steps))

    @property
    def zones(self) -> list[str]:
        """Zones the steps work in, bottom to top."""
        used = {z for s in self.steps for z in s.zones}
        return [z for z in ZONES if z in used]

    def step_weights(self) -> list[float]:
        """Each step's seconds at the default length (seconds as given; shares split the rest).
        Scaling these by minutes / default_minutes gives the step budgets of any session."""
        total = self.default_minutes * 60.0
        fixed = sum(s.seconds for s in self.steps if s.seconds is not None)
        shares = sum(s.share or 1.0 for s in self.steps if s.seconds is None)
        rest = max(total - fixed, 0.0)
        return [
            s.seconds if s.seconds is not None else (s.share or 1.0) / shares * rest
            for s in self.steps
        ]

    def step_budgets(self, minutes: float) -> list[float]:
        """Seconds of each step for a session of `minutes` (they add up to minutes × 60)."""
        w = self.step_weights()
        k = minutes * 60.0 / sum(w)
        return [x * k for x in w]


# ---- loading -------------------------------------------------------------------------------------


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "-"


def issues_from_validation(file: str, err: ValidationError) -> list[Issue]:
    """pydantic errors as issues: our custom errors keep their rule id, the rest are `schema`."""
    issues: list[Issue] = []
    union_seen: set[str] = set()
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        ctx = e.get("ctx") or {}
        typ = str(e["type"])
        rule = "schema"
        if "field" in ctx and typ not in ("value_error", "assertion_error"):
            rule = typ
            loc = (*loc, str(ctx["field"]))
        member = loc[-1] if loc and isinstance(loc[-1], str) and _is_union_member(loc[-1]) else None
        if member is not None:
            # a value rejected by every member of a union (number | name): report the member
            # that matches what was written (a string -> the names, anything else -> number)
            loc = loc[:-1]
            wrote_str = isinstance(e.get("input"), str)
            if wrote_str != member.startswith("literal"):
                continue
            path = _field_path(loc)
            if path in union_seen:
                continue
            union_seen.add(path)
        issues.append(Issue(file, _field_path(loc), rule, e["msg"]))
    return issues


def _is_union_member(part: str) -> bool:
    return part.startswith("literal[") or part in ("constrained-float", "float", "int", "str")


PROFILES_PACKAGE = "chair.profiles"
PROFILES_LABEL = "profiles"
"""Where built-in programs are named from in messages (the folder they are written in)."""


def builtin_programs() -> list[str]:
    """Names of the built-in programs (profiles/*.toml), sorted."""
    root = resources.files(PROFILES_PACKAGE)
    return sorted(
        p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml") and p.is_file()
    )


def parse_program(text: str, file: str) -> Program:
    """A program from TOML text; `file` names it in issues."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProgramError([Issue(file, "-", "toml", f"not valid TOML: {e}")]) from e
    try:
        return Program.model_validate(data)
    except ValidationError as e:
        raise ProgramError(issues_from_validation(file, e)) from e


def program_source(path_or_name: str | Path) -> tuple[str, str]:
    """(file label, TOML text) of a built-in name or a path; ProgramError if neither."""
    s = str(path_or_name)
    p = Path(s)
    looks_like_path = p.suffix == ".toml" or "/" in s or "\\" in s or p.exists()
    if not looks_like_path:
        res = resources.files(PROFILES_PACKAGE) / f"{s}.toml"
        if res.is_file():
            return f"{PROFILES_LABEL}/{s}.toml", res.read_text(encoding="utf-8")
        names = ", ".join(builtin_programs())
        raise ProgramError(
            [Issue(s, "-", "unknown-program", f"no such built-in program (built-ins: {names})")]
        )
    try:
        return s, p.read_text(encoding="utf-8")
    except OSError as e:
        raise ProgramError([Issue(s, "-", "file", f"cannot read: {e.strerror or e}")]) from e
    except UnicodeDecodeError as e:
        raise ProgramError([Issue(s, "-", "file", f"not UTF-8 text: {e}")]) from e


def load_program(path_or_name: str | Path) -> Program:
    """A built-in program by name (e.g. ``"relax"``) or a program file by path."""
    file, text = program_source(path_or_name)
    return parse_program(text, file)


def program_json_schema() -> dict[str, Any]:
    """The JSON Schema of a program file (field docs included)."""
    schema = Program.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
