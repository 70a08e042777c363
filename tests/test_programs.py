"""Program files: the built-ins load and validate; generated valid programs validate and plan
correctly for any body, intensity and length; invalid programs are rejected through the CLI with
the right file, field path and rule; the schema and listing commands work."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chair.cli import main
from chair.programs.model import (
    TECHNIQUE_SPECS,
    TECHNIQUES,
    Program,
    ProgramError,
    builtin_programs,
    load_program,
    parse_program,
)
from chair.programs.plan import build_plan, step_time_bounds
from chair.programs.validate import check_plan, validate_file, validate_program
from core_rt.config import ZONES, ChairConfig
from tests.test_plan import assert_plan_sound

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ChairConfig()
REQUIRED = {
    "relax",
    "deep_tissue",
    "shiatsu",
    "trigger_point",
    "neck_shoulders",
    "lumbar_heat",
    "quick",
    "gentle",
}
SEED = re.compile(r"\b00[0-4]_[0-9a-f]{16}\.txt\b")


def run_chair(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "chair", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


# ---- built-ins ---------------------------------------------------------------------------------


def test_the_required_builtins_exist() -> None:
    names = builtin_programs()
    assert len(names) >= 8
    assert set(names) >= REQUIRED


@pytest.mark.parametrize("name", builtin_programs())
def test_builtin_loads_and_validates(name: str) -> None:
    p = load_program(name)
    assert p.name == name
    assert p.techniques and p.zones
    assert validate_file(name, CONFIG) == []


@pytest.mark.parametrize("name", builtin_programs())
def test_builtin_cites_the_seeds_for_every_step(name: str) -> None:
    text = (ROOT / "profiles" / f"{name}.toml").read_text(encoding="utf-8")
    assert SEED.search(text), "the file names the seed articles it follows"
    blocks = text.split("[[steps]]")[1:]
    assert blocks
    for k, block in enumerate(blocks):
        assert re.search(r"^#", block, re.M), f"step {k} has a comment saying which guidance"


def test_builtins_follow_their_purpose() -> None:
    gentle = load_program("gentle")
    assert not {"tapping", "vibration"} & set(gentle.techniques)
    assert all(s.settings(CONFIG).depth_level <= 2 for s in gentle.steps)
    quick = load_program("quick")
    assert 5 <= quick.default_minutes <= 10
    heat = load_program("lumbar_heat")
    assert heat.default_heat != "off"  # heat is the session's, held in every step
    assert "neck" in load_program("neck_shoulders").zones
    for name in builtin_programs():
        p = load_program(name)
        first, last = p.steps[0], p.steps[-1]
        # warm-up strokes first and gentle strokes last (seeds: 004, 000)
        assert first.technique == "effleurage" and last.technique == "effleurage"
        assert last.settings(CONFIG).depth_level == 1


# ---- generated valid programs ------------------------------------------------------------------


@st.composite
def valid_steps(draw: st.DrawFn) -> dict[str, Any]:
    """One step within every rule (caps of every zone it touches, spine clearance, directions)."""
    c = CONFIG
    tech = draw(st.sampled_from(TECHNIQUES))
    spec = TECHNIQUE_SPECS[tech]
    top = ZONES.index("shoulders") if spec.tapping else len(ZONES) - 1
    lo = draw(st.integers(0, top))
    hi = draw(st.integers(lo, top))
    step: dict[str, Any] = {"technique": tech}
    if lo == hi and draw(st.booleans()):
        step["zone"] = ZONES[lo]
    else:
        step["from"], step["to"] = ZONES[lo], ZONES[hi]
    caps = [c.body.zone_caps[z] for z in ZONES[lo : hi + 1]]
    direction = draw(st.sampled_from([None, "up", "down", "up_down"]))
    if direction:
        step["direction"] = direction
    light_only = spec.light_returns and (direction or spec.direction) != "up"
    cap_d = 1 if light_only else min(x.depth_level for x in caps)
    cap_d = min(cap_d, spec.max_depth)
    if light_only or draw(st.booleans()):
        step["depth"] = draw(st.integers(1, cap_d))
    speed = draw(
        st.one_of(
            st.none(),
            st.sampled_from(["slow", "medium", "fast"]),
            st.floats(15, c.carriage.limits.v_max),
        )
    )
    if speed is not None:
        step["speed"] = speed
    wmin = c.min_width_mm(spec.kneading)
    width = draw(
        st.one_of(
            st.none(),
            st.sampled_from(["narrow", "medium", "wide"]),
            st.floats(max(wmin, c.width.min_mm), c.width.max_mm),
        )
    )
    if width is not None:
        step["width"] = width
    if spec.kneading:
        cap_k = min(x.knead_rpm for x in caps)
        if draw(st.booleans()):
            step["knead_rpm"] = draw(st.floats(5, cap_k))
        if draw(st.booleans()):
            step["knead_direction"] = draw(st.sampled_from(["cw", "ccw", "alternate"]))
    if spec.tapping and draw(st.booleans()):
        step["tap_hz"] = draw(st.floats(1, min(x.tap_hz for x in caps)))
    if spec.holds and draw(st.booleans()):
        step["hold_s"] = draw(st.floats(*spec.hold_range_s).filter(lambda h: h <= 12))
    if spec.pulses > 1 and draw(st.booleans()):
        step["pulses"] = draw(st.integers(2, 4))
    step["heat"] = draw(st.booleans())
    step["repeat"] = draw(st.integers(1, 3))
    return step


@st.composite
def valid_programs(draw: st.DrawFn) -> Program:
    """Programs that must validate: steps within the rules, each given at least the time it can
    need in the shortest session (the validator's own bound, times a margin)."""
    steps = draw(st.lists(valid_steps(), min_size=1, max_size=6))
    default = draw(st.sampled_from([5.0, 7.5, 10.0, 15.0, 20.0, 30.0]))
    skel = Program.model_validate({"name": "gen", "title": "Generated", "steps": steps})
    bounds = step_time_bounds(skel, CONFIG)
    margins = [draw(st.floats(1.0, 2.0)) for _ in steps]
    need = [b * m for b, m in zip(bounds, margins, strict=True)]
    kept = []
    total = 0.0
    shortest = CONFIG.session.min_minutes * 60
    for s, n in zip(steps, need, strict=True):
        if total + n > shortest:
            break  # a prefix: each step's bound depends on the step before it
        kept.append((s, n))
        total += n
    assume(kept)
    scale = default * 60 / total
    as_seconds = [draw(st.booleans()) for _ in kept]
    if all(as_seconds):
        as_seconds[-1] = draw(st.booleans())
    out = []
    for (s, n), secs in zip(kept, as_seconds, strict=True):
        s = dict(s)
        if secs:
            s["seconds"] = n * scale
        else:
            s["share"] = n
        out.append(s)
    if all("seconds" in s for s in out):  # the seconds must add up exactly
        out[-1]["seconds"] = default * 60 - sum(s["seconds"] for s in out[:-1])
    return Program.model_validate(
        {
            "name": "gen",
            "title": "Generated",
            "default_minutes": default,
            "default_heat": draw(st.sampled_from(["off", "low", "medium", "high"])),
            "steps": out,
        }
    )


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    program=valid_programs(),
    height=st.floats(140, 200),
    intensity=st.integers(1, 5),
    minutes=st.floats(5, 30),
    heat=st.sampled_from(["off", "low", "medium", "high"]),
)
def test_generated_valid_programs_validate_and_plan_correctly(
    program: Program, height: float, intensity: int, minutes: float, heat: str
) -> None:
    issues = validate_program(
        program, CONFIG, "gen.toml", plan_heights=(140, 200), plan_intensities=(5,),
        plan_minutes=(5, 30),
    )  # fmt: skip
    assert issues == []
    sh = min(CONFIG.shoulder_for_height_mm(height), CONFIG.body.shoulder_max_mm)
    plan = build_plan(program, CONFIG, sh, minutes, intensity, heat)
    assert abs(plan.duration_s - minutes * 60) <= 0.5
    assert check_plan(plan, program, CONFIG) == []
    if minutes <= 12:  # the independent sampler too, where it is quick
        assert_plan_sound(plan, program, CONFIG)


# ---- invalid programs: one per rule, through the CLI ---------------------------------------------

BASE = """\
name = "bad"
title = "Bad"
default_minutes = 15

[[steps]]
technique = "effleurage"
from = "lumbar"
to = "shoulders"
share = 3

[[steps]]
technique = "kneading"
from = "mid_back"
to = "shoulders"
share = 3
"""

# (file stem, extra TOML for a third step or a replacement, expected field, expected rule)
INVALID: list[tuple[str, str, str, str]] = [
    ("schema_depth", 'technique = "kneading"\nzone = "glutes"\ndepth = 9', "steps[2].depth",
     "schema"),
    ("schema_extra", 'technique = "kneading"\nzone = "glutes"\npressure = 3', "steps[2].pressure",
     "schema"),
    ("schema_technique", 'technique = "karate"\nzone = "glutes"', "steps[2].technique", "schema"),
    ("zone_or_sweep", 'technique = "kneading"', "steps[2].zone", "zone-or-sweep"),
    ("sweep_order", 'technique = "kneading"\nfrom = "shoulders"\nto = "lumbar"', "steps[2].from",
     "sweep-order"),
    ("share_or_seconds", 'technique = "kneading"\nzone = "glutes"\nshare = 1\nseconds = 30',
     "steps[2].seconds", "share-or-seconds"),
    ("technique_field", 'technique = "kneading"\nzone = "glutes"\ntap_hz = 5', "steps[2].tap_hz",
     "technique-field"),
    ("pulses_field", 'technique = "kneading"\nzone = "glutes"\npulses = 3', "steps[2].pulses",
     "technique-field"),
    ("shiatsu_hold", 'technique = "shiatsu"\nzone = "glutes"\nhold_s = 5', "steps[2].hold_s",
     "technique-hold"),
    ("trigger_hold", 'technique = "trigger_point"\nzone = "glutes"\nhold_s = 2',
     "steps[2].hold_s", "technique-hold"),
    ("vibration_deep", 'technique = "vibration"\nzone = "glutes"\ndepth = 3', "steps[2].depth",
     "technique-depth"),
    ("zone_cap_depth", 'technique = "kneading"\nfrom = "lumbar"\nto = "mid_back"\ndepth = 4',
     "steps[2].depth", "zone-cap-depth"),
    ("zone_cap_tapping_neck", 'technique = "tapping"\nzone = "neck"', "steps[2].zone",
     "zone-cap-tapping"),
    ("zone_cap_tapping_hz", 'technique = "tapping"\nzone = "lumbar"\ntap_hz = 8',
     "steps[2].tap_hz", "zone-cap-tapping"),
    ("zone_cap_kneading", 'technique = "kneading"\nzone = "neck"\nknead_rpm = 40',
     "steps[2].knead_rpm", "zone-cap-kneading"),
    ("rate_limit", 'technique = "kneading"\nzone = "glutes"\nknead_rpm = 75', "steps[2].knead_rpm",
     "rate-limit"),
    ("spine_clearance", 'technique = "kneading"\nzone = "glutes"\nwidth = 92', "steps[2].width",
     "spine-clearance"),
    ("width_range", 'technique = "effleurage"\nzone = "glutes"\nwidth = 200', "steps[2].width",
     "width-range"),
    ("speed_limit", 'technique = "effleurage"\nzone = "glutes"\nspeed = 150', "steps[2].speed",
     "speed-limit"),
    ("down_stroke", 'technique = "effleurage"\nfrom = "lumbar"\nto = "shoulders"\n'
     'direction = "up_down"\ndepth = 3', "steps[2].depth", "down-stroke-pressure"),
    ("too_short", 'technique = "effleurage"\nfrom = "glutes"\nto = "neck"\ndepth = 1\n'
     'speed = "slow"\nshare = 0.05', "steps[2].share", "step-too-short"),
]  # fmt: skip


def _write_invalid(tmp: Path) -> dict[str, tuple[str, str]]:
    expected = {}
    for stem, extra, field, rule in INVALID:
        path = tmp / f"{stem}.toml"
        path.write_text(BASE + "\n[[steps]]\n" + extra + "\n", encoding="utf-8")
        expected[str(path)] = (field, rule)
    seconds = tmp / "seconds_sum.toml"
    seconds.write_text(
        BASE.replace("share = 3", "seconds = 60"), encoding="utf-8"
    )  # 120 s of steps for a 15 min program
    expected[str(seconds)] = ("steps", "seconds-sum")
    broken = tmp / "broken.toml"
    broken.write_text(BASE + "\n[[steps]\ntechnique = \n", encoding="utf-8")
    expected[str(broken)] = ("-", "toml")
    expected[str(tmp / "missing.toml")] = ("-", "file")
    expected["no_such_program"] = ("-", "unknown-program")
    return expected


def _lines_by_file(out: str) -> dict[str, list[tuple[str, str, str]]]:
    found: dict[str, list[tuple[str, str, str]]] = {}
    for line in out.splitlines():
        file, field, rule, msg = line.split(": ", 3)
        found.setdefault(file, []).append((field, rule, msg))
    return found


def test_invalid_programs_are_rejected_with_file_field_and_rule(tmp_path: Path) -> None:
    expected = _write_invalid(tmp_path)
    r = run_chair("validate", *expected)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    found = _lines_by_file(r.stdout)
    for file, (field, rule) in expected.items():
        got = found.get(file, [])
        assert any((f, ru) == (field, rule) for f, ru, _ in got), (file, field, rule, got)
        assert all(msg.strip() for _, _, msg in got)
    assert {rule for *_, rule in INVALID} <= {ru for lines in found.values() for _, ru, _ in lines}


def test_rules_that_depend_on_the_chair_use_its_config(tmp_path: Path) -> None:
    cfg = tmp_path / "chair.toml"
    # a chair with 20 min sessions and a sliver of a neck zone
    cfg.write_text(
        "[session]\nmax_minutes = 20.0\n\n[body]\n"
        "zone_edges = [-0.25, 0.0, 0.12, 0.35, 0.60, 0.85, 1.05, 1.08]\n",
        encoding="utf-8",
    )
    long = tmp_path / "long.toml"
    long.write_text(BASE.replace("default_minutes = 15", "default_minutes = 25"), encoding="utf-8")
    neck = tmp_path / "neck.toml"
    neck.write_text(BASE + '\n[[steps]]\ntechnique = "effleurage"\nzone = "neck"\ndepth = 1\n',
                    encoding="utf-8")  # fmt: skip
    r = run_chair("--config", str(cfg), "validate", str(long), str(neck))
    assert r.returncode == 1
    found = _lines_by_file(r.stdout)
    assert ("default_minutes", "session-length") in [(f, ru) for f, ru, _ in found[str(long)]]
    assert ("steps[2].zone", "zone-band") in [(f, ru) for f, ru, _ in found[str(neck)]]
    # the same files are fine on the reference chair
    assert run_chair("validate", str(long), str(neck)).returncode == 0


def test_validate_accepts_valid_files_and_builtin_names(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(BASE, encoding="utf-8")
    r = run_chair("validate", str(good), "relax", "gentle")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == [f"{good}: ok", "relax: ok", "gentle: ok"]


def test_load_errors_carry_every_issue() -> None:
    text = BASE + '\n[[steps]]\ntechnique = "kneading"\nzone = "glutes"\ndepth = 0\nspeed = -1\n'
    with pytest.raises(ProgramError) as e:
        parse_program(text, "x.toml")
    got = {(i.file, i.field, i.rule) for i in e.value.issues}
    assert got == {("x.toml", "steps[2].depth", "schema"), ("x.toml", "steps[2].speed", "schema")}
    assert str(e.value.issues[0]).startswith("x.toml: steps[2].")


# ---- the other commands ------------------------------------------------------------------------


def test_schema_is_a_json_schema_of_program_files() -> None:
    r = run_chair("schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["type"] == "object"
    assert {"name", "title", "steps"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
    step = schema["$defs"]["Step"]
    assert step["additionalProperties"] is False
    assert {"technique", "zone", "from", "to", "share", "seconds", "depth", "speed", "width",
            "knead_rpm", "knead_direction", "tap_hz", "heat", "hold_s", "repeat"} <= set(
        step["properties"])  # fmt: skip
    assert set(step["properties"]["technique"]["enum"]) == set(TECHNIQUES)
    assert all(p.get("description") for p in step["properties"].values())


def test_programs_json_lists_the_builtins() -> None:
    r = run_chair("programs", "--json")
    assert r.returncode == 0
    rows = json.loads(r.stdout)
    assert len(rows) >= 8
    assert {row["name"] for row in rows} >= REQUIRED
    for row in rows:
        assert set(row) == {"name", "title", "default_minutes", "techniques", "zones"}
        assert row["techniques"] and row["zones"]


def test_show_prints_steps(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "relax", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    prog = load_program("relax")
    assert len(data["steps"]) == len(prog.steps)
    assert sum(s["seconds_at_default"] for s in data["steps"]) == pytest.approx(15 * 60, abs=0.01)
    assert data["steps"][0]["file"]["from"] == "lumbar"
    assert main(["show", "relax"]) == 0
    out = capsys.readouterr().out
    assert "kneading" in out and "lumbar → shoulders" in out
    assert main(["programs"]) == 0
    assert "deep_tissue" in capsys.readouterr().out


def test_show_unknown_program_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "no_such_program"]) == 1
    err = capsys.readouterr().err
    assert "no such built-in program" in err and "Traceback" not in err


def test_the_documented_example_is_a_valid_program() -> None:
    doc = (ROOT / "docs" / "programs.md").read_text(encoding="utf-8")
    m = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert m is not None
    program = parse_program(m.group(1), "docs/programs.md")
    assert validate_program(program, CONFIG, "docs/programs.md") == []
