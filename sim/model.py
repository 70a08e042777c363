"""Numbers of the simulated plant that are not properties of the chair's spec.

The chair itself (track, ranges, limits, levels, thresholds) is `core_rt.config.ChairConfig`; this
model holds only what a real chair would measure rather than specify: drive bandwidths, motor
currents, thermal constants, sensor noise, body variation. The defaults give a plant that behaves
like the reference chair (see docs/simulator.md); tests and experiments override single fields,
e.g. ``PlantParams(heater=ThermalParams(heater_w=60.0))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sim.back import BackParams, BackShape

if TYPE_CHECKING:
    from core_rt.config import ChairConfig


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AxisDrive(_Model):
    """A position axis: motor + drive closing a stiff position loop with velocity feed-forward.

    Cascade ``v_cmd = v_ff + kp·(ref − p)`` (limited to the motor's top speed), ``a = kv·(v_cmd −
    v)`` (limited by the drive's current limit), with ``kp·kv = wn²`` and ``kv = 2·ζ·wn``: a
    2nd-order loop for small errors that stays well behaved for big steps. ``ref`` is the
    setpoint interpolated by the feed-forward within the period. Currents while energised are
    ``hold + friction·min(1, |v|/1 mm/s) + accel·|a| + press·depth·body``.
    """

    bandwidth_hz: float = Field(default=25.0, gt=0)
    """Closed-loop natural frequency wn/2π: error ≈ a/wn² ≈ 0.02 mm at 400 mm/s²."""
    damping: float = Field(default=1.0, gt=0)
    """ζ of the position loop (1 = critically damped, no overshoot)."""
    top_speed_factor: float = Field(default=2.0, gt=1)
    """Motor top speed relative to the chair's v_max for the axis."""
    coast_decel_mm_s2: float = Field(default=2000.0, gt=0)
    """Friction deceleration while de-energised (enable = 0): 100 mm/s coasts to rest in 50 ms."""
    hold_a: float = Field(default=0.05, ge=0)
    """Current of the energised drive at rest."""
    friction_a: float = Field(default=0.3, ge=0)
    """Extra current while moving (Coulomb friction)."""
    accel_a_per_mm_s2: float = Field(default=5e-4, gt=0)
    """Current per mm/s² of acceleration demand."""
    press_a_per_mm: float = Field(default=0.0, ge=0)
    """Load current per mm of depth while the heads press on the body (depth: always; carriage
    and width: while moving, as friction)."""


class RateMotor(_Model):
    """A rate axis (kneading rpm, tapping Hz): first-order lag to the commanded rate."""

    tau_s: float = Field(default=0.05, gt=0)
    """Time constant while energised (3 rpm of lag at the planner's 60 rpm/s)."""
    coast_tau_s: float = Field(default=0.3, gt=0)
    """Time constant of the run-down while de-energised."""
    hold_a: float = Field(default=0.1, ge=0)
    per_rate_a: float = Field(default=0.01, ge=0)
    """Current per rpm (kneading) or per Hz (tapping)."""
    per_accel_a: float = Field(default=0.001, ge=0)
    """Current per rpm/s or Hz/s of rate change."""
    press_a_per_mm: float = Field(default=0.02, ge=0)
    """Load current per mm of depth while running against the body."""


class ThermalParams(_Model):
    """Lumped pad: ``C·dT/dt = P·duty − G_amb·(T − T_amb) − G_skin·seated·(T − T_skin)``.

    Defaults: seated, the unheated pad rests at 26.9 °C, 45 °C needs duty ≈ 0.41 and full duty
    would settle at 71 °C (48 °C after about 70 s); empty, 45 °C needs duty ≈ 0.29. Time
    constant C/(G_amb + G_skin): 111 s seated, 200 s empty. The pad starts at its unheated
    equilibrium, so it does not drift by itself at the start of a session.
    """

    heater_w: float = Field(default=80.0, gt=0)
    capacity_j_per_k: float = Field(default=200.0, gt=0)
    loss_ambient_w_per_k: float = Field(default=1.0, gt=0)
    loss_skin_w_per_k: float = Field(default=0.8, ge=0)
    ambient_c: float = 22.0
    """Room temperature."""
    skin_c: float = 33.0
    """Skin temperature of the seated user's back."""
    thermistor_tau_s: float = Field(default=3.0, gt=0)
    """Lag of the thermistor behind the pad."""
    thermistor_noise_c: float = Field(default=0.05, ge=0)
    """Standard deviation of the reading's noise."""
    thermistor_open_c: float = -40.0
    thermistor_short_c: float = 150.0
    thermal_fuse_c: float = 55.0
    """One-shot thermal cut-off in the pad (last resort against a stuck-on heater)."""


class SupplyParams(_Model):
    nominal_v: float = 24.0
    resistance_ohm: float = Field(default=0.1, ge=0)
    """Source resistance: the supply sags by this times the total motor current."""
    noise_v: float = Field(default=0.03, ge=0)
    """Standard deviation of the reading's noise."""
    low_v: float = 17.0
    """Supply under the ``supply_low`` fault."""
    high_v: float = 33.0
    """Supply under the ``supply_high`` fault."""


class BodyParams(_Model):
    """The seated user, parametrised by body height (the shoulder line comes from the config)."""

    shoulder_variation_mm: float = Field(default=10.0, ge=0)
    """Per-seed deviation of the true shoulder line from the config's mean, uniform ±this."""
    contact_depth_mm: float = Field(default=4.0, ge=0)
    """The arm's contact switch closes when the heads are at least this far forward."""
    neck_mm: float = Field(default=120.0, ge=0)
    """Length of the neck above the shoulder line (the heads still touch it, lightly)."""
    neck_load: float = Field(default=0.3, ge=0, le=1)
    """Load on the heads at the neck relative to the back."""
    seated_at_start: bool = True
    back: BackShape | None = None
    """The back's curve family (`sim.back.BACK_SHAPES`, docs/simulator.md, Back); None: the flat
    back of uniform tissue that touches the heads at their home (depth 0), as before contours."""
    contour: BackParams = BackParams()
    """Numbers shared by every back of the family (cover, neck, variation, stiffness)."""
    lean_forward_mm: float = Field(default=40.0, ge=0)
    """Under the ``lean_forward`` fault the back's skin moves this far away from the heads."""
    shift_mm: float = Field(default=10.0, ge=0)
    """Under the ``shift`` fault the back's skin moves this much nearer the heads, at once."""
    load_noise_a: float = Field(default=0.002, ge=0)
    """Standard deviation of the depth drive's load reading (`depth_load_a`)."""


class PlantParams(_Model):
    """Everything the simulated plant needs beyond `ChairConfig`, with documented defaults."""

    carriage: AxisDrive = AxisDrive(
        coast_decel_mm_s2=2000.0, hold_a=0.1, friction_a=0.6, press_a_per_mm=0.01
    )
    width: AxisDrive = AxisDrive(coast_decel_mm_s2=1000.0, press_a_per_mm=0.005)
    depth: AxisDrive = AxisDrive(
        coast_decel_mm_s2=1000.0, accel_a_per_mm_s2=1e-3, press_a_per_mm=0.03
    )
    kneading: RateMotor = RateMotor()
    tapping: RateMotor = RateMotor(per_rate_a=0.08, per_accel_a=0.002)
    heater: ThermalParams = ThermalParams()
    supply: SupplyParams = SupplyParams()
    body: BodyParams = BodyParams()
    encoder_mm: float = Field(default=0.02, gt=0)
    """Encoder resolution of the three position axes."""
    limit_switch_mm: float = Field(default=0.5, ge=0)
    """A track limit switch is active within this distance of its end of the track."""
    drive_limit_frac: float = Field(default=0.85, gt=0, lt=1)
    """Each drive limits its current to this fraction of the chair's over-current threshold, so
    a stalled or blocked axis draws a high current without tripping over-current."""
    overcurrent_factor: float = Field(default=2.0, gt=1)
    """Under the ``overcurrent`` fault the motor draws this multiple of its threshold."""
    start_mm: tuple[float, float, float] | None = None
    """Carriage, width and depth at start, each inside its axis's range (`check_start_mm`);
    None = park (carriage and width park, depth at its minimum)."""

    @model_validator(mode="after")
    def _check(self) -> PlantParams:
        if self.heater.thermal_fuse_c <= self.heater.ambient_c:
            raise ValueError("heater.thermal_fuse_c must be above heater.ambient_c")
        return self

    @property
    def axes(self) -> tuple[AxisDrive, AxisDrive, AxisDrive]:
        """The position axes in the core's order (carriage, width, depth)."""
        return (self.carriage, self.width, self.depth)


def check_start_mm(
    config: ChairConfig, start_mm: Sequence[float], name: str = "start_mm"
) -> tuple[float, float, float]:
    """A start pose (carriage, width, depth in mm) as a tuple, each value a finite number inside
    its axis's range in `config` (the track, the width's and the depth's ranges); otherwise a
    ValueError, its message `name` and what is wrong."""
    pose = tuple(start_mm)
    if len(pose) != 3:
        raise ValueError(f"{name}: needs carriage, width and depth (3 values), got {len(pose)}")
    ranges = (
        ("carriage", config.carriage.track_min_mm, config.carriage.track_max_mm),
        ("width", config.width.min_mm, config.width.max_mm),
        ("depth", config.depth.min_mm, config.depth.max_mm),
    )
    out = []
    for value, (axis, lo, hi) in zip(pose, ranges, strict=True):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name}: {axis} must be a number of mm, got {value!r}")
        v = float(value)
        if not (math.isfinite(v) and lo <= v <= hi):
            raise ValueError(f"{name}: {axis} {v:g} mm is outside its range {lo:g}..{hi:g} mm")
        out.append(v)
    return (out[0], out[1], out[2])
