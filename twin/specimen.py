"""The persistent SEM specimen: seeded particles over the whole stage, generated lazily per tile.

Public API (used by `twin.microscope` and `twin.truth`):

* `Population`, `SpecimenConfig` — configuration (see `twin.specimen_config`).
* `Specimen(cfg, seed)` with
  - ``height_m(x_m, y_m)``: substrate surface height z (m) at stage points: tilted plane + warp;
  - ``populated(x_m, y_m)``: False inside empty regions;
  - ``texture(x_m, y_m)``: unit-rms substrate texture (the SE map uses 1 + texture_rms · texture);
  - ``particles_in(x0_m, y0_m, x1_m, y1_m)``: every particle whose centre lies in the rectangle;
  - ``render(grid)`` -> `SignalMaps` (se, bse, label, height_m, insulator) at the grid's points;
  - ``ids_of_labels(labels)`` / ``label_to_id(label)``: label values are the particle ids.
* `ParticleTable` — ground-truth columns; `SignalMaps`.

Stage coordinates in metres, the extent centred on (0, 0). Tile (i, j) covers
[−ex/2 + i·tile, −ex/2 + (i+1)·tile) × [−ey/2 + j·tile, …) and is generated from
SeedSequence([seed, 1, i, j]) alone, so moving away and back, or a fresh `Specimen` with the
same seed visiting in any order, gives the same particles. Global fields (empty-region mask,
height warp, texture) are functions of stage coordinates drawn from SeedSequence([seed, 0]).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from drivers.validate import real

from . import texture as tx
from .materials import MATERIAL_NAMES, MATERIALS, get_material
from .shapes import SHAPE_NAMES, bounding_radius
from .specimen_config import ID_LIMIT, Population, SpecimenConfig
from .specimen_raster import MaterialArrays, ScanFrame, SignalMaps, render_maps, BSE_DEPTH_FRACTION
from .specimen_tiles import generate_tile

__all__ = ["Population", "SpecimenConfig", "Specimen", "ParticleTable", "SignalMaps"]

MAX_QUERY_TILES = 10_000
TEXTURE_SPACING_PER_SCALE = 1.0 / 0.7     # lattice spacing giving a 1/e correlation length = texture_scale_m
EMPTY_WAVELENGTH_PER_SCALE = 2.5          # mask wave length: empty patches come out ~empty_scale_m across


@dataclass(frozen=True, eq=False)
class ParticleTable:
    """Ground-truth particles: equal-length numpy arrays, one row per particle.

    id: int64, unique and stable (1 + tile_index·capacity + index in tile; < 2**31, equal to
    the label value). x_m, y_m: centre (m). z_m: height of the particle's mid-plane, i.e.
    substrate height at the centre + height_m/2 (m). diameter_m: projected-area-equivalent
    diameter sqrt(4·area/π) (m). shape: code into ``SHAPE_NAMES``; material: code into
    ``MATERIAL_NAMES``. orientation_rad: long-axis angle from +x. semi_a_m, semi_b_m: outline
    parameters (see `twin.shapes`); height_m: vertical extent (m); sides: polygon sides (faceted,
    else 0); facet_slope: tan of the facet angle; cluster: id of the cluster's first particle
    (0 for isolated particles); population: index into ``SpecimenConfig.populations``.
    """

    id: np.ndarray
    x_m: np.ndarray
    y_m: np.ndarray
    z_m: np.ndarray
    diameter_m: np.ndarray
    shape: np.ndarray
    material: np.ndarray
    orientation_rad: np.ndarray
    semi_a_m: np.ndarray
    semi_b_m: np.ndarray
    height_m: np.ndarray
    sides: np.ndarray
    facet_slope: np.ndarray
    cluster: np.ndarray
    population: np.ndarray

    shape_names: ClassVar[tuple[str, ...]] = SHAPE_NAMES
    material_names: ClassVar[tuple[str, ...]] = MATERIAL_NAMES
    _DTYPES: ClassVar[dict[str, type]] = {"id": np.int64, "shape": np.int8, "material": np.int16, "sides": np.int8,
                                          "cluster": np.int64, "population": np.int16}

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_columns(cls, cols: dict[str, np.ndarray]) -> "ParticleTable":
        return cls(**{k: np.asarray(cols[k], dtype=cls._DTYPES.get(k, np.float64)) for k in cls.columns()})

    @classmethod
    def empty(cls) -> "ParticleTable":
        return cls.from_columns({k: np.zeros(0) for k in cls.columns()})

    @classmethod
    def concat(cls, tables: list["ParticleTable"]) -> "ParticleTable":
        if not tables:
            return cls.empty()
        return cls.from_columns({k: np.concatenate([getattr(t, k) for t in tables]) for k in cls.columns()})

    def __len__(self) -> int:
        return len(self.id)

    def select(self, which: np.ndarray) -> "ParticleTable":
        """Rows chosen by a boolean mask or an index array."""
        return ParticleTable.from_columns({k: getattr(self, k)[which] for k in self.columns()})

    def shape_name(self) -> np.ndarray:
        return np.asarray(SHAPE_NAMES, dtype=object)[self.shape]

    def material_name(self) -> np.ndarray:
        return np.asarray(MATERIAL_NAMES, dtype=object)[self.material]

    def to_dict(self) -> dict[str, np.ndarray]:
        """Column view for CSV: shape and material as names."""
        out = {k: getattr(self, k) for k in self.columns()}
        out["shape"], out["material"] = self.shape_name(), self.material_name()
        return out

    def to_records(self) -> list[dict]:
        """One dict of Python scalars per particle (shape and material as names)."""
        d = self.to_dict()
        keys = list(d)
        return [{k: d[k][i].item() if hasattr(d[k][i], "item") else d[k][i] for k in keys} for i in range(len(self))]


class Specimen:
    """The persistent specimen of one seed. ``cache_tiles`` bounds the LRU tile cache."""

    def __init__(self, cfg: SpecimenConfig, seed: int, cache_tiles: int = 256):
        if not isinstance(cfg, SpecimenConfig):
            raise ValueError(f"cfg = {type(cfg).__name__}: must be a SpecimenConfig")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed = {seed!r}: must be an integer >= 0")
        if not isinstance(cache_tiles, int) or cache_tiles < 1:
            raise ValueError(f"cache_tiles = {cache_tiles!r}: must be an integer >= 1")
        self.cfg = cfg
        self.seed = int(seed)
        self._cache: OrderedDict[tuple[int, int], ParticleTable] = OrderedDict()
        self._cache_tiles = cache_tiles
        self._capacity = ID_LIMIT // cfg.tiles_total()
        ss = np.random.SeedSequence([self.seed, 0])
        r_mask, r_warp, r_tex, r_thr = (np.random.default_rng(s) for s in ss.spawn(4))
        self._mask = tx.PlaneWaves(r_mask, 12, EMPTY_WAVELENGTH_PER_SCALE * cfg.empty_scale_m)
        self._warp = tx.PlaneWaves(r_warp, 6, cfg.height_warp_scale_m)
        self._texture = tx.ValueNoise(int(r_tex.integers(0, 2**62)), cfg.texture_scale_m * TEXTURE_SPACING_PER_SCALE)
        ex, ey = cfg.extent_m
        if cfg.empty_fraction > 0:
            probe = self._mask(r_thr.uniform(-ex / 2, ex / 2, 20000), r_thr.uniform(-ey / 2, ey / 2, 20000))
            self._threshold = float(np.quantile(probe, cfg.empty_fraction))
        else:
            self._threshold = -math.inf
        self._mats = _material_arrays(cfg, 5e3)
        self._max_radius = 1.6 * cfg.max_diameter_m()

    # ---- stage-wide fields ---------------------------------------------------------------
    def height_m(self, x_m, y_m):
        """Substrate surface height z (m) at stage points: tilted plane plus low-frequency warp."""
        x, y = _coords(x_m, y_m)
        tx_, ty_ = self.cfg.height_tilt_rad
        z = math.tan(tx_) * x + math.tan(ty_) * y + (self.cfg.height_warp_m / math.sqrt(2.0)) * self._warp(x, y)
        return float(z) if np.ndim(z) == 0 else z

    def populated(self, x_m, y_m):
        """True where particles may lie (outside the empty regions; ignores the stage extent)."""
        x, y = _coords(x_m, y_m)
        m = self._mask(x, y) >= self._threshold
        return bool(m) if np.ndim(m) == 0 else m

    def texture(self, x_m, y_m) -> np.ndarray:
        """Unit-rms substrate texture (float32) at stage points."""
        x, y = _coords(x_m, y_m)
        return self._texture(x, y)

    # ---- particles -----------------------------------------------------------------------
    def _tile(self, i: int, j: int) -> ParticleTable:
        key = (i, j)
        t = self._cache.get(key)
        if t is None:
            cols = generate_tile(self.cfg, self.seed, i, j, self._capacity, self._populated_arr, self._height_arr)
            t = ParticleTable.from_columns(cols)
            self._cache[key] = t
            while len(self._cache) > self._cache_tiles:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return t

    def _populated_arr(self, x, y):
        return self._mask(x, y) >= self._threshold

    def _height_arr(self, x, y):
        return np.asarray(self.height_m(x, y), float)

    def _gather(self, x0: float, y0: float, x1: float, y1: float) -> ParticleTable:
        """Particles of every tile that may own a particle reaching into the rectangle."""
        cfg = self.cfg
        m = 0.5 * cfg.tile_m
        ex, ey = cfg.extent_m
        ntx, nty = cfg.tiles_shape()
        i0 = max(math.floor((x0 - m + ex / 2) / cfg.tile_m), 0)
        i1 = min(math.floor((x1 + m + ex / 2) / cfg.tile_m), ntx - 1)
        j0 = max(math.floor((y0 - m + ey / 2) / cfg.tile_m), 0)
        j1 = min(math.floor((y1 + m + ey / 2) / cfg.tile_m), nty - 1)
        if i1 < i0 or j1 < j0:
            return ParticleTable.empty()
        n = (i1 - i0 + 1) * (j1 - j0 + 1)
        if n > MAX_QUERY_TILES:
            raise ValueError(f"query rectangle {x1 - x0:.3g} m x {y1 - y0:.3g} m: must span at most "
                             f"{MAX_QUERY_TILES} tiles of {cfg.tile_m:g} m")
        return ParticleTable.concat([self._tile(i, j) for i in range(i0, i1 + 1) for j in range(j0, j1 + 1)])

    def particles_in(self, x0_m: float, y0_m: float, x1_m: float, y1_m: float) -> ParticleTable:
        """Every particle whose centre lies in [x0, x1] × [y0, y1] (m), sorted by id."""
        x0, y0 = real("x0_m", x0_m), real("y0_m", y0_m)
        x1, y1 = real("x1_m", x1_m), real("y1_m", y1_m)
        if x1 < x0 or y1 < y0:
            raise ValueError(f"rectangle ({x0}, {y0})-({x1}, {y1}) m: must have x1_m >= x0_m and y1_m >= y0_m")
        t = self._gather(x0, y0, x1, y1)
        inside = (t.x_m >= x0) & (t.x_m <= x1) & (t.y_m >= y0) & (t.y_m <= y1)
        t = t.select(inside)
        return t.select(np.argsort(t.id, kind="stable"))

    # ---- rendering -----------------------------------------------------------------------
    def render(self, grid, *, beam_energy_ev: float = 5e3) -> SignalMaps:
        """SE, BSE, label, height and insulator maps at the grid's actual sample points.

        ``beam_energy_ev`` only sets the BSE information depth (thin particles show some
        substrate backscatter); SE yields are the ~5 keV table values.
        """
        frame = ScanFrame.of(grid)
        if not (np.isfinite(frame.origin).all() and frame.pixel_m > 0):
            raise ValueError(f"grid.origin_m/pixel_size_m = {tuple(frame.origin)}/{frame.pixel_m}: must be finite, > 0")
        energy = real("beam_energy_ev", beam_energy_ev, (50.0, 1e6))
        mats = self._mats if energy == 5e3 else _material_arrays(self.cfg, energy)
        bx0, by0, bx1, by1 = frame.corners_bbox()
        t = self._gather(bx0, by0, bx1, by1)
        if len(t):
            r = bounding_radius(t.shape, t.semi_a_m, t.semi_b_m, t.sides)
            near = (t.x_m + r >= bx0) & (t.x_m - r <= bx1) & (t.y_m + r >= by0) & (t.y_m - r <= by1)
            t = t.select(near)
        spacing = self.cfg.texture_scale_m * TEXTURE_SPACING_PER_SCALE
        stride = int(min(max(spacing / (3.0 * frame.pixel_m), 2), 16))
        sub_se = tx.on_grid(self._texture, grid.x_m, grid.y_m, stride,
                            scale=mats.sub_se * self.cfg.texture_rms, offset=mats.sub_se)
        return render_maps(t, grid, frame, mats, self.cfg, sub_se)

    # ---- labels --------------------------------------------------------------------------
    @staticmethod
    def ids_of_labels(labels) -> np.ndarray:
        """Particle ids (int64) of label values (they are equal; 0 stays 0)."""
        a = np.asarray(labels)
        if a.size and (a.min() < 0 or a.max() > ID_LIMIT):
            raise ValueError(f"labels range [{a.min()}, {a.max()}]: must be in [0, {ID_LIMIT}]")
        return a.astype(np.int64)

    label_to_id = ids_of_labels


def _coords(x_m, y_m) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x_m, dtype=np.float64)
    y = np.asarray(y_m, dtype=np.float64)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x_m, y_m: must be finite stage coordinates (m)")
    return x, y


def _material_arrays(cfg: SpecimenConfig, energy_ev: float) -> MaterialArrays:
    mats = [MATERIALS[n] for n in MATERIAL_NAMES]
    sub = get_material(cfg.substrate)
    f32 = lambda v: np.array(v, np.float32)  # noqa: E731
    return MaterialArrays(
        se=f32([m.se_yield for m in mats]),
        eta=f32([m.bse_eta for m in mats]),
        tilt_exp=f32([9.0 / math.sqrt(m.z_eff) for m in mats]),
        insulator=f32([1.0 if m.insulator else 0.0 for m in mats]),
        bse_depth_m=f32([BSE_DEPTH_FRACTION * m.range_m(energy_ev) for m in mats]),
        sub_se=sub.se_yield, sub_eta=sub.bse_eta, sub_insulator=1.0 if sub.insulator else 0.0,
    )
