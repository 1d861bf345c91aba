"""The SEM digital twin: a persistent specimen seen through simulated optics, scan and detector.

`TwinMicroscope(scenario, seed)` implements `drivers.Microscope`. Ground truth lives in
`twin.truth` and is for benchmarks, training and rewards only.
"""
from .config import Scenario, load_scenario, scenario_names
from .loader import ScenarioError
from .microscope import TwinMicroscope

__all__ = ["TwinMicroscope", "Scenario", "load_scenario", "scenario_names", "ScenarioError"]
