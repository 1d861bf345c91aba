"""Configuration of the persistent specimen: particle populations and the stage-wide layout.

Both dataclasses are frozen, every field has a default, and ``__post_init__`` raises
``ValueError("<Class>.<field> = <value>: must be <allowed>")`` on bad values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .materials import get_material
from .shapes import SHAPE_NAMES

DISTRIBUTIONS = ("lognormal", "bimodal")
SIZE_CLIP_SIGMAS = 4.0      # diameters are clipped to median · exp(±4 σ)
MAX_EXTENT_FACTOR = 1.6     # bounding radius ≤ 1.6 × diameter for every allowed shape/aspect
ID_LIMIT = 2**31 - 1        # particle ids double as int32 labels


def _fail(cls: str, name: str, value: object, allowed: str) -> None:
    raise ValueError(f"{cls}.{name} = {value!r}: must be {allowed}")


def _number(cls: str, name: str, value: object, lo: float, hi: float, *, lo_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        _fail(cls, name, value, f"a finite number in {'(' if lo_open else '['}{lo:g}, {hi:g}]")
    return float(value)


def _pair(cls: str, obj: object, name: str, lo: float, hi: float, ordered: bool = False) -> None:
    value = getattr(obj, name)
    if isinstance(value, list):
        value = tuple(value)
        object.__setattr__(obj, name, value)
    if not isinstance(value, tuple) or len(value) != 2:
        _fail(cls, name, value, f"two numbers in [{lo:g}, {hi:g}]")
    for v in value:
        _number(cls, name, v, lo, hi)
    if ordered and value[0] > value[1]:
        _fail(cls, name, value, "(low, high) with low <= high")


@dataclass(frozen=True)
class Population:
    """One particle population.

    Diameters are projected-area-equivalent diameters d = sqrt(4·area/π). ``lognormal``:
    d = median · exp(σ·N(0,1)); ``bimodal``: with probability ``weight2`` the second mode
    (``median2_diameter_m``, ``sigma_log2``), otherwise the first. Diameters are clipped to
    median · exp(±4σ). ``aspect_ratio`` is a/b for ellipsoids; ``rod_aspect_ratio`` is length /
    width for rods (spherocylinders).
    """

    fraction: float = 1.0
    distribution: str = "lognormal"
    median_diameter_m: float = 60e-9
    sigma_log: float = 0.25
    median2_diameter_m: float = 150e-9
    sigma_log2: float = 0.15
    weight2: float = 0.3
    shapes: tuple[str, ...] = ("sphere",)
    shape_weights: tuple[float, ...] = (1.0,)
    aspect_ratio: tuple[float, float] = (1.2, 2.5)
    rod_aspect_ratio: tuple[float, float] = (2.0, 6.0)
    material: str = "TiO2"

    def __post_init__(self) -> None:
        c = "Population"
        _number(c, "fraction", self.fraction, 0.0, 1e6, lo_open=True)
        if self.distribution not in DISTRIBUTIONS:
            _fail(c, "distribution", self.distribution, f"one of {', '.join(DISTRIBUTIONS)}")
        _number(c, "median_diameter_m", self.median_diameter_m, 1e-9, 20e-6)
        _number(c, "median2_diameter_m", self.median2_diameter_m, 1e-9, 20e-6)
        _number(c, "sigma_log", self.sigma_log, 0.0, 1.5)
        _number(c, "sigma_log2", self.sigma_log2, 0.0, 1.5)
        _number(c, "weight2", self.weight2, 0.0, 1.0)
        for name in ("shapes", "shape_weights"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if not isinstance(self.shapes, tuple) or not self.shapes or any(s not in SHAPE_NAMES for s in self.shapes):
            _fail(c, "shapes", self.shapes, f"a non-empty tuple of {', '.join(SHAPE_NAMES)}")
        w = self.shape_weights
        if (not isinstance(w, tuple) or len(w) != len(self.shapes)
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0
                       for x in w)
                or sum(w) <= 0):
            _fail(c, "shape_weights", w, f"{len(self.shapes)} finite weights >= 0 with a positive sum (one per shape)")
        _pair(c, self, "aspect_ratio", 1.0, 10.0, ordered=True)
        _pair(c, self, "rod_aspect_ratio", 1.0, 12.0, ordered=True)
        try:
            get_material(self.material)
        except ValueError as exc:
            raise ValueError(f"Population.{exc}") from None

    def max_diameter_m(self) -> float:
        """Largest diameter this population can draw (the clip bound)."""
        d = self.median_diameter_m * math.exp(SIZE_CLIP_SIGMAS * self.sigma_log)
        if self.distribution == "bimodal":
            d = max(d, self.median2_diameter_m * math.exp(SIZE_CLIP_SIGMAS * self.sigma_log2))
        return d


@dataclass(frozen=True)
class SpecimenConfig:
    """The whole specimen. Lengths in metres; the stage area is centred on (0, 0).

    ``height_warp_m`` is the amplitude of the low-frequency warp of the substrate height: the
    warp is a sum of a few plane waves with the rms of one sinusoid of that amplitude
    (rms = height_warp_m/√2). SE contrast: ``edge_gain`` is the extra yield right at a particle
    outline, decaying as exp(−distance/``edge_length_m``) inwards; ``secant_cap`` bounds the
    secant-law tilt factor 1/cos θ.
    """

    tile_m: float = 20e-6
    extent_m: tuple[float, float] = (10e-3, 10e-3)
    density_per_m2: float = 2e12
    empty_fraction: float = 0.2
    empty_scale_m: float = 30e-6
    cluster_fraction: float = 0.3
    cluster_size_mean: float = 6.0
    substrate: str = "Si"
    texture_rms: float = 0.03
    texture_scale_m: float = 40e-9
    height_tilt_rad: tuple[float, float] = (2e-4, -1e-4)
    height_warp_m: float = 2e-6
    height_warp_scale_m: float = 2e-3
    edge_gain: float = 0.4
    edge_length_m: float = 10e-9
    secant_cap: float = 2.5
    populations: tuple[Population, ...] = (Population(),)

    def __post_init__(self) -> None:
        c = "SpecimenConfig"
        _number(c, "tile_m", self.tile_m, 1e-6, 1e-3)
        _pair(c, self, "extent_m", 1e-6, 0.2)
        if min(self.extent_m) <= 0:
            _fail(c, "extent_m", self.extent_m, "two numbers > 0")
        _number(c, "density_per_m2", self.density_per_m2, 0.0, 1e16)
        _number(c, "empty_fraction", self.empty_fraction, 0.0, 0.95)
        _number(c, "empty_scale_m", self.empty_scale_m, 1e-7, 1e-2)
        _number(c, "cluster_fraction", self.cluster_fraction, 0.0, 1.0)
        _number(c, "cluster_size_mean", self.cluster_size_mean, 2.0, 100.0)
        try:
            get_material(self.substrate)
        except ValueError:
            from .materials import MATERIAL_NAMES
            _fail(c, "substrate", self.substrate, f"one of {', '.join(MATERIAL_NAMES)}")
        _number(c, "texture_rms", self.texture_rms, 0.0, 0.5)
        _number(c, "texture_scale_m", self.texture_scale_m, 1e-10, 1e-5)
        _pair(c, self, "height_tilt_rad", -0.1, 0.1)
        _number(c, "height_warp_m", self.height_warp_m, 0.0, 1e-3)
        _number(c, "height_warp_scale_m", self.height_warp_scale_m, 1e-6, 1.0)
        _number(c, "edge_gain", self.edge_gain, 0.0, 10.0)
        _number(c, "edge_length_m", self.edge_length_m, 1e-10, 1e-6)
        _number(c, "secant_cap", self.secant_cap, 1.0, 20.0)
        if isinstance(self.populations, list):
            object.__setattr__(self, "populations", tuple(self.populations))
        if (not isinstance(self.populations, tuple) or not self.populations
                or not all(isinstance(p, Population) for p in self.populations)):
            _fail(c, "populations", self.populations, "a non-empty tuple of Population")
        d_max = self.max_diameter_m()
        if MAX_EXTENT_FACTOR * d_max > self.tile_m / 4:
            _fail(c, "tile_m", self.tile_m,
                  f">= {4 * MAX_EXTENT_FACTOR:g} x the largest particle diameter ({d_max:.3g} m)")
        if self.tiles_total() * self.tile_capacity_needed() > ID_LIMIT:
            _fail(c, "density_per_m2", self.density_per_m2,
                  "low enough that every particle on the stage gets an int32 id (about <= 2e9 particles in extent_m)")

    # ---- derived quantities ------------------------------------------------------------
    def max_diameter_m(self) -> float:
        return max(p.max_diameter_m() for p in self.populations)

    def tiles_shape(self) -> tuple[int, int]:
        """Number of tiles along x and y."""
        return (math.ceil(self.extent_m[0] / self.tile_m - 1e-9), math.ceil(self.extent_m[1] / self.tile_m - 1e-9))

    def tiles_total(self) -> int:
        nx, ny = self.tiles_shape()
        return nx * ny

    def expected_per_tile(self) -> float:
        return self.density_per_m2 * self.tile_m**2

    def tile_capacity_needed(self) -> int:
        """Particles per tile that the id scheme must allow (mean + a wide Poisson margin)."""
        n = self.expected_per_tile()
        return int(n + 10.0 * math.sqrt(n * max(self.cluster_size_mean, 1.0)) + 100)
