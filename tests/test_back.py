"""The simulated back's contour and tissue (sim/back.py) and the depth drive's load in the plant."""

from __future__ import annotations

import math

import pytest

from core_rt.config import ChairConfig
from sim import PlantParams, SimPlant
from sim.back import BACK_SHAPES, NO_BODY_MM, SHAPES, BackParams, back_contour
from sim.model import BodyParams

CFG = ChairConfig()
PRESS_A_PER_MM = PlantParams().depth.press_a_per_mm
HEIGHTS = (140.0, 175.0, 200.0)


def contoured(shape: str, height: float = 175.0, seed: int = 1, **body: object) -> SimPlant:
    return SimPlant(
        CFG,
        body_height_cm=height,
        seed=seed,
        params=PlantParams(body=BodyParams(back=shape, **body)),  # type: ignore[arg-type]
    )


def at_u(p: SimPlant, u: float) -> float:
    """The track position at fraction u of the back (0 the seat crease, 1 the shoulder line)."""
    seat = CFG.carriage.seat_mm
    return seat + u * (p.true_shoulder_mm - seat)


@pytest.mark.parametrize("shape", BACK_SHAPES)
@pytest.mark.parametrize("height", HEIGHTS)
def test_every_back_lies_within_reach_and_off_the_heads_home(shape: str, height: float) -> None:
    """On the body the skin is never nearer than the cover (retracted heads press nothing) and
    within the depth axis's range; above the neck there is no body; the tissue is stiffer on
    the sacrum than in the lumbar hollow."""
    cover = BackParams().cover_mm
    for seed in range(12):
        p = contoured(shape, height, seed)
        assert p.back is not None
        top = p.true_shoulder_mm + BodyParams().neck_mm
        on_body = [p.true_surface_mm(y) for y in range(int(CFG.carriage.track_min_mm), int(top), 5)]
        assert min(on_body) >= cover - 1e-9
        assert max(on_body) < CFG.depth.max_mm
        assert p.true_surface_mm(top + 2) == NO_BODY_MM
        assert p.true_stiffness(top + 2) == 0.0
        assert p.true_stiffness(at_u(p, 0.07)) > p.true_stiffness(at_u(p, 0.24))


@pytest.mark.parametrize("shape", BACK_SHAPES)
def test_a_back_curves_as_its_family_says(shape: str) -> None:
    """The lumbar hollow lies deeper than the sacrum and the blades; how deep, and how far the
    blades stand out, follow the family (lordosis deepest, flat shallowest; broad blades
    furthest out), whatever the seed."""
    s = SHAPES[shape]
    for seed in range(6):
        p = contoured(shape, seed=seed)
        assert p.back is not None
        hollow = max(p.true_surface_mm(at_u(p, u / 100)) for u in range(10, 40))
        sacrum = p.true_surface_mm(at_u(p, 0.03))
        blades = min(p.true_surface_mm(at_u(p, u / 100)) for u in range(60, 98))
        assert hollow > sacrum + 0.5 * s.lumbar_hollow_mm
        assert hollow > blades
    normal = contoured("normal")
    assert normal.back is not None
    depth_of = {
        sh: max(
            c.true_surface_mm(at_u(c, u / 100)) - c.true_surface_mm(at_u(c, 0.03))
            for u in range(10, 40)
        )
        for sh, c in ((sh, contoured(sh)) for sh in ("flat", "normal", "lordosis"))
    }
    assert depth_of["flat"] < depth_of["normal"] < depth_of["lordosis"]

    def blades_stand_out(c: SimPlant) -> float:
        mid = c.true_surface_mm(at_u(c, 0.5))
        return mid - min(c.true_surface_mm(at_u(c, u / 100)) for u in range(60, 98))

    for seed in range(6):
        out = {sh: blades_stand_out(contoured(sh, seed=seed)) for sh in BACK_SHAPES}
        assert out["broad_blades"] > out["normal"] > out["slim_blades"]


def test_a_seed_gives_the_same_back_and_another_seed_another() -> None:
    a = back_contour(CFG, "normal", 900.0, 120.0, seed=3)
    b = back_contour(CFG, "normal", 900.0, 120.0, seed=3)
    c = back_contour(CFG, "normal", 900.0, 120.0, seed=4)
    assert a == b
    assert a.surface_mm != c.surface_mm
    with pytest.raises(ValueError, match="unknown back shape 'hunched'"):
        back_contour(CFG, "hunched", 900.0, 120.0, seed=3)


def test_a_taller_body_has_a_longer_hollow_at_its_own_height() -> None:
    """The profile is laid out in fractions of the back's length: it scales with the body."""
    short, tall = contoured("lordosis", 140.0), contoured("lordosis", 200.0)
    deepest = {
        k: max(range(int(CFG.carriage.seat_mm), 700), key=p.true_surface_mm)
        for k, p in (("short", short), ("tall", tall))
    }
    assert deepest["tall"] > deepest["short"]


@pytest.mark.parametrize("shape", ["normal", "lordosis", "broad_blades"])
def test_the_depth_load_is_the_tissue_pressed_times_its_stiffness(shape: str) -> None:
    """At rest on the back, the load the plant reports is press_a_per_mm · stiffness ·
    (depth − surface) (within its noise), zero short of the skin, and the depth drive's
    current carries it; the true press depth is what the state says."""
    p = contoured(shape)
    for y in (250.0, 340.0, 450.0, 600.0, 800.0, p.true_shoulder_mm - 20.0):
        surface = p.true_surface_mm(y)
        for depth in (surface - 2.0, surface + 5.0, min(surface + 12.0, CFG.depth.max_mm)):
            depth = max(depth, 0.0)
            s = p.step({"pos_mm": (y, 130.0, depth)}, n=1500)
            press = max(0.0, s["pos_mm"][2] - p.true_surface_mm(s["pos_mm"][0]))
            expected = PRESS_A_PER_MM * p.true_stiffness(s["pos_mm"][0]) * press
            assert s["depth_load_a"] == pytest.approx(expected, abs=0.01)
            assert p.state()["press_mm"] == pytest.approx(press, abs=0.05)
            assert s["current_a"][2] >= expected - 1e-9


def test_no_load_when_nobody_is_seated_above_the_head_or_with_the_drives_off() -> None:
    p = contoured("normal", seated_at_start=False)
    s = p.step({"pos_mm": (600.0, 130.0, 35.0)}, n=1500)
    assert abs(s["depth_load_a"]) < 0.01
    q = contoured("normal")
    s = q.step({"pos_mm": (q.true_shoulder_mm + 200.0, 130.0, 35.0)}, n=1500)
    assert abs(s["depth_load_a"]) < 0.01
    s = q.step({"pos_mm": (600.0, 130.0, 35.0)}, n=3000)
    assert s["depth_load_a"] > 0.1
    s = q.step({"pos_mm": (600.0, 130.0, 35.0), "enable": False}, n=5)
    assert s["depth_load_a"] == 0.0


def test_the_flat_back_of_before_loads_every_millimetre_of_depth() -> None:
    """Without a curve family the back is today's: flat at the heads' home, uniform tissue, the
    neck lighter; the load is press_a_per_mm · depth."""
    p = SimPlant(CFG, seed=1)
    assert p.back is None
    s = p.step({"pos_mm": (600.0, 130.0, 16.0)}, n=1500)
    assert s["depth_load_a"] == pytest.approx(PRESS_A_PER_MM * 16.0, abs=0.01)
    assert p.true_surface_mm(600.0) == 0.0
    assert p.true_stiffness(p.true_shoulder_mm + 50) == BodyParams().neck_load
    assert not math.isnan(s["depth_load_a"])


def test_the_arm_contact_switch_closes_only_when_the_heads_press_into_the_skin() -> None:
    """On a contoured back the roller arm's switch needs the heads `contact_depth_mm` into the
    tissue: in the lumbar hollow the depth that closes it on the sacrum does not."""
    p = contoured("lordosis")
    hollow_y = max(range(int(CFG.carriage.seat_mm), 700), key=p.true_surface_mm)
    sacrum_y = at_u(p, 0.03)
    depth = p.true_surface_mm(sacrum_y) + 6.0
    assert p.step({"pos_mm": (sacrum_y, 130.0, depth)}, n=8000)["arm_contact"] == 1
    assert p.step({"pos_mm": (hollow_y, 130.0, depth)}, n=3000)["arm_contact"] == 0
