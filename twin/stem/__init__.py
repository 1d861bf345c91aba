"""STEM mode of the twin: supported metal nanoparticles imaged by an aberrated probe (HAADF/ADF/BF).

`StemTwinMicroscope(scenario, seed)` implements `drivers.Microscope` with
``limits().mode == "stem"``. Scenario files say ``mode = "stem"`` (`load_stem_scenario`).
Ground truth is in `twin.stem.truth`; abTEM references in `twin.stem.abtem_ref`.
Submodules are imported lazily, so importing this package does not import the SEM twin.
"""
from __future__ import annotations

from typing import Any

__all__ = ["StemTwinMicroscope", "StemScenario", "load_stem_scenario", "scenario_mode"]


def __getattr__(name: str) -> Any:
    if name == "StemTwinMicroscope":
        from .microscope import StemTwinMicroscope

        return StemTwinMicroscope
    if name in ("StemScenario", "load_stem_scenario", "scenario_mode"):
        from . import config

        return getattr(config, name)
    raise AttributeError(f"module 'twin.stem' has no attribute {name!r}")
