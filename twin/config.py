"""Scenario files: one TOML file describes specimen, instrument, artifacts, task and budgets.

Top-level keys: ``name``, ``description``, ``seed``, ``train_seeds``, ``test_seeds``; tables
``[specimen]`` (with ``[[specimen.populations]]``), ``[optics]``, ``[[detectors]]``,
``[scan]``, ``[drift]``, ``[stage]``, ``[charging]``, ``[contamination]``, ``[initial]``,
``[task]``, ``[budget]``. Every key has a default; unknown keys are errors. See
``scenarios/README.md`` for every key with its unit.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .detector import DetectorConfig
from .exposure import ChargingConfig, ContaminationConfig
from .loader import ScenarioError, from_table
from .optics import OpticsConfig
from .scan import DriftConfig, ScanConfig
from .specimen import SpecimenConfig
from .stage import StageConfig


def _default_detectors() -> tuple[DetectorConfig, ...]:
    return (
        DetectorConfig(name="InLens", signal="se"),
        DetectorConfig(name="ETD", signal="se", efficiency=0.15, gain=60.0),
        DetectorConfig(name="BSD", signal="bse", efficiency=0.5, gain=40.0),
    )


@dataclass(frozen=True)
class InitialState:
    """Instrument state when the twin starts (SI units)."""

    high_voltage_v: float = 5e3
    beam_current_a: float = 100e-12
    working_distance_m: float = 5e-3
    fov_m: float = 5e-6
    shape_px: tuple[int, int] = (768, 1024)
    dwell_s: float = 1e-6
    line_integration: int = 1
    scan_rotation_rad: float = 0.0
    detector: str = "InLens"
    stigmator: tuple[float, float] = (0.0, 0.0)
    stage_x_m: float = 0.0
    stage_y_m: float = 0.0
    brightness: float = 0.5
    contrast: float = 0.5

    def __post_init__(self) -> None:
        for name in ("high_voltage_v", "beam_current_a", "working_distance_m", "fov_m", "dwell_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"InitialState.{name} = {getattr(self, name)}: must be > 0")
        if min(self.shape_px) < 8:
            raise ValueError(f"InitialState.shape_px = {self.shape_px}: each side must be >= 8")
        if self.line_integration < 1:
            raise ValueError(f"InitialState.line_integration = {self.line_integration}: must be >= 1")
        for name in ("brightness", "contrast"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"InitialState.{name} = {getattr(self, name)}: must be in [0, 1]")


@dataclass(frozen=True)
class TaskConfig:
    """What the experiment must measure: mean projected-area-equivalent diameter to a precision."""

    quantity: str = "mean_diameter"
    target_rel_precision: float = 0.02  # half-width of the credible interval / mean
    credibility: float = 0.95
    per_mode: bool = False  # bimodal specimens: a target per mode

    def __post_init__(self) -> None:
        if self.quantity not in ("mean_diameter",):
            raise ValueError(f"TaskConfig.quantity = {self.quantity!r}: must be 'mean_diameter'")
        if not 0.0 < self.target_rel_precision < 1.0:
            raise ValueError(f"TaskConfig.target_rel_precision = {self.target_rel_precision}: must be in (0, 1)")
        if not 0.5 <= self.credibility < 1.0:
            raise ValueError(f"TaskConfig.credibility = {self.credibility}: must be in [0.5, 1)")


@dataclass(frozen=True)
class BudgetConfig:
    """Hard limits for one experiment (instrument seconds, electrons, frames)."""

    max_instrument_s: float = 3600.0
    max_electrons: float = 1e15
    max_frames: int = 2000

    def __post_init__(self) -> None:
        if self.max_instrument_s <= 0 or self.max_electrons <= 0 or self.max_frames < 1:
            raise ValueError(f"BudgetConfig = {self}: every budget must be > 0")


@dataclass(frozen=True)
class Scenario:
    """Everything the twin and an experiment need, loaded from one TOML file."""

    name: str = "default"
    description: str = ""
    seed: int = 0
    train_seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7)
    test_seeds: tuple[int, ...] = (100, 101, 102, 103, 104)
    specimen: SpecimenConfig = field(default_factory=SpecimenConfig)
    optics: OpticsConfig = field(default_factory=OpticsConfig)
    detectors: tuple[DetectorConfig, ...] = field(default_factory=_default_detectors)
    scan: ScanConfig = field(default_factory=ScanConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    stage: StageConfig = field(default_factory=StageConfig)
    charging: ChargingConfig = field(default_factory=ChargingConfig)
    contamination: ContaminationConfig = field(default_factory=ContaminationConfig)
    initial: InitialState = field(default_factory=InitialState)
    task: TaskConfig = field(default_factory=TaskConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)

    def __post_init__(self) -> None:
        names = [d.name for d in self.detectors]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"Scenario.detectors = {names}: need at least one, names unique")
        if self.initial.detector not in names:
            raise ValueError(f"InitialState.detector = {self.initial.detector!r}: must be one of {names}")
        if set(self.train_seeds) & set(self.test_seeds):
            raise ValueError("Scenario.train_seeds and test_seeds must be disjoint")

    def replace(self, **changes: object) -> "Scenario":
        """A copy with some top-level fields replaced (see dataclasses.replace)."""
        return dataclasses.replace(self, **changes)


def scenarios_dir() -> Path:
    """The shipped `scenarios` folder (beside the `twin` package, in a checkout or site-packages)."""
    return Path(__file__).resolve().parent.parent / "scenarios"


def scenario_names() -> list[str]:
    """Names of the scenarios shipped in the `scenarios` folder."""
    return sorted(p.stem for p in scenarios_dir().glob("*.toml") if p.stem != "thresholds")


def scenario_path(name_or_path: str | Path) -> Path:
    """Resolve a shipped scenario name or a file path to a path; raise FileNotFoundError."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"scenario file {str(path)!r} does not exist")
        return path
    shipped = scenarios_dir() / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    raise FileNotFoundError(
        f"scenario {str(name_or_path)!r} is neither a file nor one of: {', '.join(scenario_names())}"
    )


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load and validate a scenario by shipped name (e.g. 'default') or TOML path."""
    if isinstance(name_or_path, Scenario):
        return name_or_path
    path = scenario_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    if data.get("mode", "sem") == "stem":
        raise ScenarioError(f"{path}: a STEM scenario (mode = 'stem'); load it with twin.stem.load_stem_scenario "
                            "or open it with twin.TwinMicroscope")
    data.pop("mode", None) if data.get("mode") == "sem" else None
    data.setdefault("name", path.stem)
    return from_table(Scenario, data, "", str(path))
