"""STEM scenario: frozen config dataclasses and the TOML loader for ``mode = "stem"`` files.

A STEM scenario file has the top-level key ``mode = "stem"`` and the tables ``[specimen]``
(with ``[specimen.support]`` and ``[[specimen.populations]]``), ``[optics]``,
``[[detectors]]``, ``[scan]``, ``[drift]``, ``[stage]``, ``[damage]``, ``[initial]``,
``[task]`` and ``[budget]``. Every key has a default; unknown keys are errors. SI units.
The generic tables (scan, drift, stage, task, budget) are the SEM twin's dataclasses with
STEM defaults.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..config import BudgetConfig, TaskConfig, scenario_path
from ..loader import ScenarioError, from_table
from ..scan import DriftConfig, ScanConfig
from ..stage import StageConfig

#: Metals the specimen can be made of (fcc; see `twin.stem.specimen.METALS`).
METAL_NAMES: tuple[str, ...] = ("Au", "Pt", "Pd", "Ag", "Cu", "Rh", "Ir", "Ni")
#: Support films (see `twin.stem.specimen.SUPPORTS`).
SUPPORT_NAMES: tuple[str, ...] = ("C", "SiO2", "Al2O3", "TiO2", "CeO2", "MgO", "Si3N4")


def _finite(cls: str, name: str, v: float, lo: float = -math.inf, hi: float = math.inf,
            lo_open: bool = False) -> None:
    ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        low = f"> {lo}" if lo_open else f">= {lo}"
        raise ValueError(f"{cls}.{name} = {v}: must be a finite number {low} and <= {hi}")


def _pair(cls: str, name: str, v: tuple[float, float], positive: bool = True) -> None:
    if len(v) != 2 or not all(math.isfinite(x) for x in v) or not v[0] < v[1] or (positive and v[0] <= 0):
        low = "0 < low < high" if positive else "low < high"
        raise ValueError(f"{cls}.{name} = {v}: must be (low, high) with {low}")


@dataclass(frozen=True)
class SupportConfig:
    """Support film under the particles.

    ``thickness_m`` is the mean film thickness; it varies by a relative rms
    ``thickness_variation`` with correlation length ``variation_length_m``. The film's
    surface height (what focus follows) is a tilted plane ``tilt_x, tilt_y`` (dz/dx, dz/dy)
    plus a warp of rms ``warp_m`` with correlation length ``warp_length_m``. A beam-sensitive
    film loses mass as ``exp(-dose/critical_dose)`` (see ``[damage]``).
    """

    material: str = "C"
    thickness_m: float = 5e-9
    thickness_variation: float = 0.1
    variation_length_m: float = 200e-9
    warp_m: float = 50e-9
    warp_length_m: float = 20e-6
    tilt: tuple[float, float] = (0.0, 0.0)
    grain_cell_m: float = 0.15e-9

    def __post_init__(self) -> None:
        if self.material not in SUPPORT_NAMES:
            raise ValueError(f"SupportConfig.material = {self.material!r}: must be one of {', '.join(SUPPORT_NAMES)}")
        _finite("SupportConfig", "thickness_m", self.thickness_m, 0.0, 1e-6)
        _finite("SupportConfig", "thickness_variation", self.thickness_variation, 0.0, 0.5)
        _finite("SupportConfig", "variation_length_m", self.variation_length_m, 1e-9, 1e-3)
        _finite("SupportConfig", "warp_m", self.warp_m, 0.0, 10e-6)
        _finite("SupportConfig", "warp_length_m", self.warp_length_m, 1e-7, 1e-2)
        _finite("SupportConfig", "grain_cell_m", self.grain_cell_m, 0.05e-9, 1e-9)
        if len(self.tilt) != 2 or not all(math.isfinite(t) and abs(t) <= 0.5 for t in self.tilt):
            raise ValueError(f"SupportConfig.tilt = {self.tilt}: must be two slopes in [-0.5, 0.5]")


@dataclass(frozen=True)
class ParticlePopulation:
    """One kind of particle: element, lognormal size (projected diameter) and shape.

    ``truncation`` is the fraction of the sphere's diameter cut away where it wets the
    support (0 = sphere, 0.5 = hemisphere). ``zone_axis_fraction`` of the particles sit with
    a [110] axis along the beam (lattice columns resolved); the rest are oriented at random.
    ``fraction`` is this population's share of the particle number.
    """

    element: str = "Pt"
    fraction: float = 1.0
    median_diameter_m: float = 3e-9
    sigma_log: float = 0.3
    min_diameter_m: float = 1e-9
    max_diameter_m: float = 20e-9
    truncation: float = 0.0
    zone_axis_fraction: float = 0.3

    def __post_init__(self) -> None:
        if self.element not in METAL_NAMES:
            raise ValueError(f"ParticlePopulation.element = {self.element!r}: must be one of {', '.join(METAL_NAMES)}")
        _finite("ParticlePopulation", "fraction", self.fraction, 0.0, 1.0, lo_open=True)
        _finite("ParticlePopulation", "median_diameter_m", self.median_diameter_m, 0.5e-9, 50e-9)
        _finite("ParticlePopulation", "sigma_log", self.sigma_log, 0.0, 1.5)
        _finite("ParticlePopulation", "min_diameter_m", self.min_diameter_m, 0.5e-9, 50e-9)
        _finite("ParticlePopulation", "max_diameter_m", self.max_diameter_m, 0.5e-9, 50e-9)
        if self.min_diameter_m >= self.max_diameter_m:
            raise ValueError(f"ParticlePopulation.min_diameter_m = {self.min_diameter_m}: must be < max_diameter_m")
        _finite("ParticlePopulation", "truncation", self.truncation, 0.0, 0.5)
        _finite("ParticlePopulation", "zone_axis_fraction", self.zone_axis_fraction, 0.0, 1.0)


@dataclass(frozen=True)
class StemSpecimenConfig:
    """Supported metal nanoparticles, persistent over the stage, generated lazily per tile.

    ``density_per_m2`` is the mean number of candidate particles per m² before hard-core
    thinning (particles may not overlap by more than ``overlap``× the smaller radius) and
    before the empty-region mask removes ``empty_fraction`` of the area (correlation length
    ``empty_length_m``). ``cluster_fraction`` of the particles sit in agglomerates of mean
    size ``cluster_size`` and rms radius ``cluster_radius_m``. Frames whose pixel is at most
    ``atomic_pixel_m`` are rendered atom by atom; coarser frames from particle thickness.
    """

    tile_m: float = 200e-9
    density_per_m2: float = 1e15
    populations: tuple[ParticlePopulation, ...] = (ParticlePopulation(),)
    cluster_fraction: float = 0.2
    cluster_size: float = 5.0
    cluster_radius_m: float = 8e-9
    overlap: float = 0.15
    empty_fraction: float = 0.1
    empty_length_m: float = 300e-9
    atomic_pixel_m: float = 0.1e-9
    support: SupportConfig = field(default_factory=SupportConfig)

    def __post_init__(self) -> None:
        _finite("StemSpecimenConfig", "tile_m", self.tile_m, 20e-9, 10e-6)
        _finite("StemSpecimenConfig", "density_per_m2", self.density_per_m2, 0.0, 1e17)
        if not self.populations:
            raise ValueError("StemSpecimenConfig.populations = (): need at least one population")
        _finite("StemSpecimenConfig", "cluster_fraction", self.cluster_fraction, 0.0, 1.0)
        _finite("StemSpecimenConfig", "cluster_size", self.cluster_size, 1.0, 1000.0)
        _finite("StemSpecimenConfig", "cluster_radius_m", self.cluster_radius_m, 0.5e-9, 1e-6)
        _finite("StemSpecimenConfig", "overlap", self.overlap, 0.0, 1.0)
        _finite("StemSpecimenConfig", "empty_fraction", self.empty_fraction, 0.0, 0.95)
        _finite("StemSpecimenConfig", "empty_length_m", self.empty_length_m, 10e-9, 1e-3)
        _finite("StemSpecimenConfig", "atomic_pixel_m", self.atomic_pixel_m, 0.0, 0.5e-9)
        largest = max(p.max_diameter_m for p in self.populations)
        if self.tile_m < 4 * largest:
            raise ValueError(f"StemSpecimenConfig.tile_m = {self.tile_m}: must be >= 4x the largest "
                             f"particle diameter ({largest})")


@dataclass(frozen=True)
class StemOpticsConfig:
    """Probe-forming optics of a (scanning) transmission electron microscope.

    Aberrations in Krivanek notation (metres): the driver's ``defocus_m`` is Δf = −C10
    (abTEM's ``defocus``; positive = underfocus = focus below the entrance surface).
    Two-fold astigmatism C12 = ``intrinsic_c12_m`` − ``stigmator_gain_m`` × stigmator, as a
    cartesian pair (C12·cos 2φ12, C12·sin 2φ12) in stage axes. ``c30_m`` is Cs (≈ 1 µm on a
    probe-corrected column, ≈ 1 mm uncorrected). ``reduced_brightness`` (A m⁻² sr⁻¹ V⁻¹) sets
    the demagnified source size at a given current; ``atom_sigma_m`` is the rms width of one
    atom's high-angle scattering (thermal vibration + localisation).
    """

    convergence_semiangle_rad: float = 25e-3
    c30_m: float = 1e-6
    intrinsic_c12_m: tuple[float, float] = (0.0, 0.0)
    stigmator_gain_m: float = 20e-9
    stigmator_limit: float = 1.0
    reduced_brightness: float = 1e9
    atom_sigma_m: float = 0.1e-10
    defocus_range_m: tuple[float, float] = (-1e-6, 1e-6)
    hv_range_v: tuple[float, float] = (60e3, 300e3)
    current_range_a: tuple[float, float] = (1e-12, 500e-12)
    working_distance_range_m: tuple[float, float] = (1e-3, 10e-3)

    def __post_init__(self) -> None:
        _finite("StemOpticsConfig", "convergence_semiangle_rad", self.convergence_semiangle_rad, 1e-3, 60e-3)
        _finite("StemOpticsConfig", "c30_m", self.c30_m, -10e-3, 10e-3)
        if len(self.intrinsic_c12_m) != 2 or not all(math.isfinite(v) and abs(v) <= 10e-6 for v in self.intrinsic_c12_m):
            raise ValueError(f"StemOpticsConfig.intrinsic_c12_m = {self.intrinsic_c12_m}: must be two numbers in [-1e-5, 1e-5]")
        _finite("StemOpticsConfig", "stigmator_gain_m", self.stigmator_gain_m, 0.0, 10e-6, lo_open=True)
        _finite("StemOpticsConfig", "stigmator_limit", self.stigmator_limit, 0.0, 100.0, lo_open=True)
        _finite("StemOpticsConfig", "reduced_brightness", self.reduced_brightness, 0.0, 1e12, lo_open=True)
        _finite("StemOpticsConfig", "atom_sigma_m", self.atom_sigma_m, 0.0, 1e-10)
        _pair("StemOpticsConfig", "defocus_range_m", self.defocus_range_m, positive=False)
        _pair("StemOpticsConfig", "hv_range_v", self.hv_range_v)
        _pair("StemOpticsConfig", "current_range_a", self.current_range_a)
        _pair("StemOpticsConfig", "working_distance_range_m", self.working_distance_range_m)


@dataclass(frozen=True)
class StemDetectorConfig:
    """One STEM detector.

    ``kind`` "annular": dark field collecting ``inner_rad``..``outer_rad``; each atom scatters
    a fraction σ(Z) ∝ Z^``z_exponent`` of the probe into it (incoherent approximation).
    ``kind`` "bf": bright field up to ``outer_rad``; the signal is the unscattered fraction
    (mass-thickness contrast only; no phase contrast). Signal chain as the SEM detector:
    Poisson counts, ``gain`` counts per electron at ``reference_dwell_s``, ``offset``,
    ``read_noise``, ``bit_depth``.
    """

    name: str = "HAADF"
    kind: str = "annular"
    inner_rad: float = 70e-3
    outer_rad: float = 200e-3
    z_exponent: float = 1.7
    efficiency: float = 0.9
    gain: float = 300.0
    offset: float = 1000.0
    read_noise: float = 20.0
    bit_depth: int = 16
    reference_dwell_s: float = 1e-6

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("StemDetectorConfig.name = '': must be a non-empty string")
        if self.kind not in ("annular", "bf"):
            raise ValueError(f"StemDetectorConfig.kind = {self.kind!r}: must be 'annular' or 'bf'")
        _finite("StemDetectorConfig", "inner_rad", self.inner_rad, 0.0, 0.5)
        _finite("StemDetectorConfig", "outer_rad", self.outer_rad, 0.0, 0.5, lo_open=True)
        if self.kind == "annular" and not self.inner_rad < self.outer_rad:
            raise ValueError(f"StemDetectorConfig.inner_rad = {self.inner_rad}: must be < outer_rad ({self.outer_rad})")
        _finite("StemDetectorConfig", "z_exponent", self.z_exponent, 1.0, 2.0)
        _finite("StemDetectorConfig", "efficiency", self.efficiency, 0.0, 1.0, lo_open=True)
        _finite("StemDetectorConfig", "gain", self.gain, 0.0, 1e6, lo_open=True)
        _finite("StemDetectorConfig", "offset", self.offset, 0.0, 65535.0)
        _finite("StemDetectorConfig", "read_noise", self.read_noise, 0.0, 1e4)
        if not 8 <= self.bit_depth <= 16:
            raise ValueError(f"StemDetectorConfig.bit_depth = {self.bit_depth}: must be in [8, 16]")
        _finite("StemDetectorConfig", "reference_dwell_s", self.reference_dwell_s, 0.0, 1.0, lo_open=True)


def _default_detectors() -> tuple[StemDetectorConfig, ...]:
    return (
        StemDetectorConfig(name="HAADF", kind="annular", inner_rad=70e-3, outer_rad=200e-3, z_exponent=1.7),
        StemDetectorConfig(name="ADF", kind="annular", inner_rad=35e-3, outer_rad=70e-3, z_exponent=1.4),
        StemDetectorConfig(name="BF", kind="bf", inner_rad=0.0, outer_rad=10e-3, z_exponent=1.4,
                           gain=10.0, read_noise=5.0),
    )


@dataclass(frozen=True)
class DamageConfig:
    """Beam damage driven by the areal dose (e/m²; 1 e/Å² = 1e20 e/m²).

    The support loses mass as ``exp(-D/support_critical_dose_e_per_m2)`` (0 disables).
    Particles hop: each frame moves every particle in the scanned field by a Gaussian step of
    rms ``hop_rms_m·sqrt(D_frame/hop_dose_e_per_m2)·(hop_reference_diameter_m/d)²`` per axis.
    """

    enabled: bool = False
    support_critical_dose_e_per_m2: float = 0.0
    hop_rms_m: float = 0.0
    hop_dose_e_per_m2: float = 1e22
    hop_reference_diameter_m: float = 2e-9

    def __post_init__(self) -> None:
        _finite("DamageConfig", "support_critical_dose_e_per_m2", self.support_critical_dose_e_per_m2, 0.0, 1e30)
        _finite("DamageConfig", "hop_rms_m", self.hop_rms_m, 0.0, 1e-6)
        _finite("DamageConfig", "hop_dose_e_per_m2", self.hop_dose_e_per_m2, 0.0, 1e30, lo_open=True)
        _finite("DamageConfig", "hop_reference_diameter_m", self.hop_reference_diameter_m, 0.1e-9, 1e-6)


@dataclass(frozen=True)
class StemInitialState:
    """Instrument state when the STEM twin starts (SI units). ``defocus_m`` is Δf = −C10."""

    high_voltage_v: float = 200e3
    beam_current_a: float = 20e-12
    defocus_m: float = 0.0
    working_distance_m: float = 5e-3
    fov_m: float = 50e-9
    shape_px: tuple[int, int] = (512, 512)
    dwell_s: float = 2e-6
    line_integration: int = 1
    scan_rotation_rad: float = 0.0
    detector: str = "HAADF"
    stigmator: tuple[float, float] = (0.0, 0.0)
    stage_x_m: float = 0.0
    stage_y_m: float = 0.0
    brightness: float = 0.5
    contrast: float = 0.5

    def __post_init__(self) -> None:
        for name in ("high_voltage_v", "beam_current_a", "working_distance_m", "fov_m", "dwell_s"):
            _finite("StemInitialState", name, getattr(self, name), 0.0, math.inf, lo_open=True)
        _finite("StemInitialState", "defocus_m", self.defocus_m)
        if len(self.shape_px) != 2 or min(self.shape_px) < 8:
            raise ValueError(f"StemInitialState.shape_px = {self.shape_px}: each side must be >= 8")
        if self.line_integration < 1:
            raise ValueError(f"StemInitialState.line_integration = {self.line_integration}: must be >= 1")
        for name in ("brightness", "contrast"):
            _finite("StemInitialState", name, getattr(self, name), 0.0, 1.0)


def _stem_scan() -> ScanConfig:
    return ScanConfig(flyback_s=100e-6, line_jitter_m=5e-12, vibration_amplitude_m=10e-12,
                      vibration_frequency_hz=50.0, vibration_angle_rad=0.3, max_width_px=4096,
                      max_height_px=4096, dwell_range_s=(0.5e-6, 1e-3), fov_range_m=(2e-9, 2e-6))


def _stem_drift() -> DriftConfig:
    # ~0.5 nm/min thermal drift and a few nm of creep after a stage move (side-entry holder).
    return DriftConfig(velocity_m_per_s=(8e-12, -4e-12), settle_amplitude_m=5e-9, settle_tau_s=60.0,
                       settle_length_m=1e-6)


def _stem_stage() -> StageConfig:
    # Side-entry goniometer: ±1 mm in x, y; ±0.2 mm z; ±35° alpha tilt; no rotation axis to speak of.
    return StageConfig(x_range_m=(-1e-3, 1e-3), y_range_m=(-1e-3, 1e-3), z_range_m=(-0.2e-3, 0.2e-3),
                       tilt_range_rad=(-0.61, 0.61), rot_range_rad=(-0.01, 0.01), speed_m_per_s=20e-6,
                       z_speed_m_per_s=5e-6, tilt_speed_rad_per_s=0.02, rot_speed_rad_per_s=0.01,
                       settle_s=1.0, backlash_m=20e-9, repeatability_m=10e-9, angle_backlash_rad=1e-4,
                       angle_repeatability_rad=2e-5)


@dataclass(frozen=True)
class StemScenario:
    """Everything the STEM twin and an experiment need, loaded from one TOML file."""

    mode: str = "stem"
    name: str = "stem-default"
    description: str = ""
    seed: int = 0
    train_seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7)
    test_seeds: tuple[int, ...] = (100, 101, 102, 103, 104)
    specimen: StemSpecimenConfig = field(default_factory=StemSpecimenConfig)
    optics: StemOpticsConfig = field(default_factory=StemOpticsConfig)
    detectors: tuple[StemDetectorConfig, ...] = field(default_factory=_default_detectors)
    scan: ScanConfig = field(default_factory=_stem_scan)
    drift: DriftConfig = field(default_factory=_stem_drift)
    stage: StageConfig = field(default_factory=_stem_stage)
    damage: DamageConfig = field(default_factory=DamageConfig)
    initial: StemInitialState = field(default_factory=StemInitialState)
    task: TaskConfig = field(default_factory=TaskConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)

    def __post_init__(self) -> None:
        if self.mode != "stem":
            raise ValueError(f"StemScenario.mode = {self.mode!r}: must be 'stem'")
        names = [d.name for d in self.detectors]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"StemScenario.detectors = {names}: need at least one, names unique")
        if self.initial.detector not in names:
            raise ValueError(f"StemInitialState.detector = {self.initial.detector!r}: must be one of {names}")
        if set(self.train_seeds) & set(self.test_seeds):
            raise ValueError("StemScenario.train_seeds and test_seeds must be disjoint")
        alpha = self.optics.convergence_semiangle_rad
        for d in self.detectors:
            if d.kind == "annular" and d.inner_rad <= alpha:
                raise ValueError(f"StemDetectorConfig.inner_rad = {d.inner_rad} ({d.name}): must exceed the "
                                 f"convergence semi-angle {alpha}")

    def replace(self, **changes: object) -> "StemScenario":
        """A copy with some top-level fields replaced (see dataclasses.replace)."""
        return dataclasses.replace(self, **changes)


def _resolve(name_or_path: str | Path) -> Path:
    """A scenario file path, or a shipped name (``scenarios/<name>.toml``)."""
    try:
        return scenario_path(name_or_path)
    except (FileNotFoundError, NotADirectoryError, ModuleNotFoundError):
        shipped = Path(__file__).resolve().parents[2] / "scenarios" / f"{name_or_path}.toml"
        if shipped.is_file():
            return shipped
        raise


def is_stem_table(data: dict) -> bool:
    """True when a parsed scenario table declares ``mode = "stem"``."""
    return isinstance(data, dict) and data.get("mode") == "stem"


def scenario_mode(name_or_path: str | Path) -> str:
    """The ``mode`` a scenario file declares: "stem", or "sem" when it has no mode key.

    For dispatch (``twin.TwinMicroscope("stem-catalyst")``); raises `ScenarioError` on bad TOML.
    """
    path = _resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    mode = data.get("mode", "sem")
    if mode not in ("sem", "stem"):
        raise ScenarioError(f"{path}: mode = {mode!r}: must be 'sem' or 'stem'")
    return mode


def load_stem_scenario(name_or_path: str | Path | StemScenario) -> StemScenario:
    """Load and validate a STEM scenario by shipped name (e.g. 'stem-catalyst') or TOML path.

    The file must say ``mode = "stem"``; unknown keys and wrong types raise `ScenarioError`.
    """
    if isinstance(name_or_path, StemScenario):
        return name_or_path
    path = _resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    if not is_stem_table(data):
        raise ScenarioError(f"{path}: mode = {data.get('mode')!r}: a STEM scenario needs mode = \"stem\"")
    data.setdefault("name", path.stem)
    return from_table(StemScenario, data, "", str(path))
