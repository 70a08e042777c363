"""sim — the simulated chair.

Stands on `core_rt` only (never imports `chair`). The plant (`sim.plant.SimPlant`, compiled) sits
behind the core's hardware seam in-process: motors and drives, encoders, limit and contact
switches, the seated body, the heating pad, the supply, and faults injected at given times
(`sim.faults`). Plant-only numbers live in `sim.model.PlantParams`. See docs/simulator.md.

    plant = SimPlant(ChairConfig(), body_height_cm=175, seed=1,
                     faults=[parse_fault("stall:carriage@120s")])
"""

from typing import Any

from sim.faults import FAULT_KINDS, FaultSpec, parse_fault
from sim.model import PlantParams

__all__ = ["FAULT_KINDS", "FaultSpec", "PlantParams", "SimPlant", "parse_fault"]


def __getattr__(name: str) -> Any:  # the compiled plant is imported on first use
    if name == "SimPlant":
        from sim.plant import SimPlant

        return SimPlant
    raise AttributeError(name)
