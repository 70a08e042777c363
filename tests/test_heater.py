"""The heater (core_rt.heater) on the simulated chair: its PI loop holding the pad's target, the
refresh watchdog, the not-heating check on a dead element, and a stuck element's power cut.

The rig and the reaction every latched fault must show are in tests/core_helpers.py. The guard's
checks on the pad thermistor (open, shorted, over-temperature) are in test_guard.py.
"""

from __future__ import annotations

import pytest

from tests.core_helpers import (
    CFG,
    INJECT_S,
    Rig,
    S,
    check_fault_reaction,
    fault_code,
)

# ---- the heater's element ------------------------------------------------------------------------


def test_after_an_over_temperature_trip_a_stuck_heater_stops_heating() -> None:
    rig = Rig([f"heater_stuck_on@{INJECT_S}s"])
    rig.heat_c = CFG.heater.levels_c["low"]
    rig.run_to_fault(200.0)
    peak = 0.0
    for _ in range(60):
        rig.run(1.0)
        peak = max(peak, rig.plant.state()["pad_c"])
    assert not rig.plant.state()["fuse_blown"]
    assert peak < CFG.heater.trip_c + 2.0


def test_a_dead_heater_is_a_not_heating_fault_within_60_s_of_full_duty() -> None:
    rig = Rig([f"heater_dead@{INJECT_S}s"])
    rig.core.move("carriage", 900.0)
    rig.run(INJECT_S)
    rig.heat_c = CFG.heater.levels_c["high"]
    e = rig.run_to_fault(120.0)
    assert fault_code(e) == "heater_not_heating"
    saturated = next(r.t_ns for r in rig.telemetry if r.heater_duty >= 1.0)
    assert 0 < e.t_ns - saturated <= 60 * S
    assert e.value < CFG.heater.not_heating_rise_c
    check_fault_reaction(rig, e, "heater_not_heating", persistent=False)


def test_a_working_heater_at_full_duty_is_not_a_fault() -> None:
    rig = Rig()
    rig.heat_c = CFG.heater.levels_c["high"]
    rig.run(120.0)
    assert not rig.find("fault")


# ---- the PI loop and the refresh watchdog -------------------------------------------------------


def test_heater_holds_its_target_within_one_degree_once_settled() -> None:
    target = CFG.heater.levels_c["high"]
    rig = Rig()
    rig.heat_c = target
    rig.run(400.0)
    settled = [r.heat_c for r in rig.since(200 * S)]
    assert max(settled) <= target + CFG.heater.steady_band_c
    assert sum(settled) / len(settled) == pytest.approx(target, abs=0.2)
    assert max(r.heat_c for r in rig.telemetry) <= target + CFG.heater.steady_band_c
    assert not rig.find("fault")


def test_heater_turns_off_when_its_target_is_not_refreshed_for_3_s() -> None:
    rig = Rig()
    rig.core.heat(CFG.heater.levels_c["medium"])
    t_set = rig.now
    rig.run(5.0)  # heartbeats only
    off = rig.find("heater_off")
    assert [(e.t_ns, e.code) for e in off] == [(t_set + round(CFG.heater.refresh_timeout_s * S), 1)]
    assert all(r.heater_duty > 0.0 for r in rig.telemetry if r.t_ns < off[0].t_ns)
    assert all(r.heater_duty == 0.0 for r in rig.since(off[0].t_ns))
    snap = rig.core.snapshot()
    assert snap["heat_target_c"] == 0.0 and snap["mode"] == "run"
    assert not rig.find("fault")
