"""Persistent STEM specimen: metal nanoparticles on a thin support film.

The stage plane is cut into square tiles; each tile's particles are drawn from a generator
seeded by (specimen seed, tile index), so any region looks the same whenever it is visited.
Candidates are placed uniformly and in agglomerates, removed where an empty-region mask is
low, then thinned by a Matérn type-II hard core (a candidate survives unless it overlaps one
of higher priority), which is local and therefore consistent across tile borders.

Particles are fcc crystallites: spheres, optionally truncated where they wet the support.
Their atoms are cut from the bulk lattice (randomly oriented, or with [110] along the beam)
on demand. The support is a film of mean thickness ``thickness_m`` with a smooth thickness
variation and a granular (amorphous) texture; its surface height is a tilted, warped plane.

Coordinates: stage metres, x right, y up (see `twin.scan`); z up, towards the gun.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import scipy.special
from scipy.spatial import cKDTree

from .config import METAL_NAMES, StemSpecimenConfig

AVOGADRO = 6.02214076e23  # exact (SI 2019)

# fcc metals: atomic number, cubic lattice constant (m) at room temperature
# (CRC Handbook of Chemistry and Physics, 97th ed., "Lattice constants of the elements").
METALS: dict[str, tuple[int, float]] = {
    "Au": (79, 4.078e-10),
    "Pt": (78, 3.924e-10),
    "Pd": (46, 3.891e-10),
    "Ag": (47, 4.086e-10),
    "Cu": (29, 3.615e-10),
    "Rh": (45, 3.803e-10),
    "Ir": (77, 3.839e-10),
    "Ni": (28, 3.524e-10),
}
assert tuple(METALS) == METAL_NAMES

# Support films: ((Z, atoms per formula unit), ...), density (kg/m³), molar mass (g/mol).
# Densities: amorphous carbon film ~2.0 g/cm³; others bulk values (CRC Handbook).
SUPPORTS: dict[str, tuple[tuple[tuple[int, int], ...], float, float]] = {
    "C": (((6, 1),), 2000.0, 12.011),
    "SiO2": (((14, 1), (8, 2)), 2200.0, 60.084),
    "Al2O3": (((13, 2), (8, 3)), 3950.0, 101.961),
    "TiO2": (((22, 1), (8, 2)), 4230.0, 79.866),
    "CeO2": (((58, 1), (8, 2)), 7220.0, 172.114),
    "MgO": (((12, 1), (8, 1)), 3580.0, 40.304),
    "Si3N4": (((14, 3), (7, 4)), 3170.0, 140.283),
}

_FCC_BASIS = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]])
_TILE_OFFSET = 1 << 20
_KEY_EMPTY, _KEY_HEIGHT, _KEY_THICK, _KEY_GRAIN = 0x1E, 0x2F, 0x3A, 0x4B


# ---- hashing and value noise -----------------------------------------------------------------
def _mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (Steele, Lea & Flood, OOPSLA 2014) on uint64 arrays (wraps)."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(30))
        h = h * np.uint64(0xBF58476D1CE4E5B9)
        h = h ^ (h >> np.uint64(27))
        h = h * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def hash_unit(ix: np.ndarray, iy: np.ndarray, key: int) -> np.ndarray:
    """Deterministic values in [-sqrt(3), sqrt(3)) (zero mean, unit variance) per lattice node."""
    with np.errstate(over="ignore"):
        a = np.asarray(ix, dtype=np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        b = np.asarray(iy, dtype=np.int64).astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    h = _mix64(a ^ _mix64(b ^ np.uint64(key & 0xFFFFFFFFFFFFFFFF)))
    u = (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return (2.0 * u - 1.0) * math.sqrt(3.0)


def value_noise(x_m: np.ndarray, y_m: np.ndarray, cell_m: float, key: int) -> np.ndarray:
    """Smooth value noise (smoothstep-interpolated lattice values) at stage points (m)."""
    u = np.asarray(x_m, dtype=np.float64) / cell_m
    v = np.asarray(y_m, dtype=np.float64) / cell_m
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    iu, iv = iu.astype(np.int64), iv.astype(np.int64)
    c00, c10 = hash_unit(iu, iv, key), hash_unit(iu + 1, iv, key)
    c01, c11 = hash_unit(iu, iv + 1, key), hash_unit(iu + 1, iv + 1, key)
    return (c00 * (1 - fu) + c10 * fu) * (1 - fv) + (c01 * (1 - fu) + c11 * fu) * fv


# ---- crystallites ------------------------------------------------------------------------------
def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random 3×3 rotation (unit quaternion from four normals; Shoemake 1992)."""
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def zone_axis_rotation(rng: np.random.Generator) -> np.ndarray:
    """Rotation putting the crystal's [110] along the beam (z), with a random in-plane angle."""
    # [110]/sqrt2 -> z, [-110]/sqrt2 -> x, [001] -> -y (a right-handed orthonormal set).
    base = np.array([[-1 / math.sqrt(2), 1 / math.sqrt(2), 0.0],
                     [0.0, 0.0, -1.0],
                     [1 / math.sqrt(2), 1 / math.sqrt(2), 0.0]])
    t = rng.uniform(0.0, 2 * math.pi)
    c, s = math.cos(t), math.sin(t)
    spin = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return spin @ base


def cluster_atoms(element: str, diameter_m: float, truncation: float, rotation: np.ndarray) -> np.ndarray:
    """Atom positions (N, 3) in metres of an fcc crystallite relative to its sphere centre.

    The sphere of ``diameter_m`` is centred on a lattice site; ``truncation`` (0..0.5) of the
    diameter is cut off at the bottom (z), where the particle wets the support.
    """
    if element not in METALS:
        raise ValueError(f"element = {element!r}: must be one of {', '.join(METALS)}")
    a = METALS[element][1]
    r = 0.5 * diameter_m
    n = int(math.ceil(r / a)) + 1
    g = np.arange(-n, n + 1, dtype=np.float64)
    cells = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 1, 3)
    lattice = ((cells + _FCC_BASIS[None]) * a).reshape(-1, 3)
    pos = lattice @ np.asarray(rotation, dtype=np.float64).T
    keep = np.einsum("ij,ij->i", pos, pos) <= r * r
    keep &= pos[:, 2] >= -r + 2.0 * r * truncation
    return pos[keep]


def fcc_number_density(element: str) -> float:
    """Atoms per m³ of the fcc metal (4 atoms per cubic cell)."""
    return 4.0 / METALS[element][1] ** 3


def truncated_sphere_volume(diameter_m: np.ndarray, truncation: np.ndarray) -> np.ndarray:
    """Volume (m³) of a sphere with the bottom cap of height truncation·d removed."""
    r = 0.5 * np.asarray(diameter_m, dtype=np.float64)
    h = 2.0 * r * np.asarray(truncation, dtype=np.float64)
    return 4.0 / 3.0 * math.pi * r**3 - math.pi * h * h * (3 * r - h) / 3.0


def support_number_densities(material: str) -> tuple[tuple[int, float], ...]:
    """((Z, atoms per m³), ...) of a support material."""
    comp, rho, molar = SUPPORTS[material]
    units = rho * 1e3 / molar * AVOGADRO  # formula units per m³ (rho in g/m³)
    return tuple((z, n * units) for z, n in comp)


# ---- particle table ------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class StemParticleTable:
    """Ground-truth particles (arrays of equal length). Positions in stage metres.

    ``diameter_m`` is the projected (outline) diameter = the sphere's; ``z_m`` is the height
    of the particle's mid-plane (support surface under it + half the particle's height, as in
    `twin.specimen.ParticleTable`); ``element`` indexes ``METAL_NAMES``; ``population`` indexes
    ``StemSpecimenConfig.populations``; ``orient_seed`` fixes the crystal orientation;
    ``zone_axis`` marks particles with [110] along the beam.
    """

    id: np.ndarray
    x_m: np.ndarray
    y_m: np.ndarray
    z_m: np.ndarray
    diameter_m: np.ndarray
    element: np.ndarray
    truncation: np.ndarray
    zone_axis: np.ndarray
    orient_seed: np.ndarray
    population: np.ndarray

    def __len__(self) -> int:
        return int(self.id.shape[0])

    @property
    def element_names(self) -> np.ndarray:
        return np.asarray(METAL_NAMES, dtype=object)[self.element]

    @property
    def projected_area_m2(self) -> np.ndarray:
        return 0.25 * math.pi * self.diameter_m**2

    def take(self, index: np.ndarray) -> "StemParticleTable":
        return StemParticleTable(**{k: getattr(self, k)[index] for k in _TABLE_FIELDS})

    @staticmethod
    def concat(tables: list["StemParticleTable"]) -> "StemParticleTable":
        if not tables:
            return empty_table()
        return StemParticleTable(**{k: np.concatenate([getattr(t, k) for t in tables]) for k in _TABLE_FIELDS})

    def to_dict(self) -> dict[str, list]:
        d = {k: getattr(self, k).tolist() for k in _TABLE_FIELDS}
        d["element"] = [METAL_NAMES[e] for e in self.element]
        return d


_TABLE_FIELDS = ("id", "x_m", "y_m", "z_m", "diameter_m", "element", "truncation", "zone_axis", "orient_seed",
                 "population")
_DTYPES = (np.int64, np.float64, np.float64, np.float64, np.float64, np.int8, np.float64, bool, np.uint64, np.int8)


def empty_table() -> StemParticleTable:
    return StemParticleTable(**{k: np.zeros(0, dtype=t) for k, t in zip(_TABLE_FIELDS, _DTYPES)})


# ---- the specimen -----------------------------------------------------------------------------
class StemSpecimen:
    """Lazily generated, persistent particle field and support film (stage metres)."""

    def __init__(self, cfg: StemSpecimenConfig, seed: int, tile_cache: int = 4096, atom_cache: int = 256):
        self.cfg = cfg
        self.seed = int(seed) & 0x7FFFFFFFFFFFFFFF
        self._key = int(np.random.SeedSequence([self.seed, 0x57E3]).generate_state(1, np.uint64)[0])
        self._raw: OrderedDict[tuple[int, int], dict] = OrderedDict()
        self._tiles: OrderedDict[tuple[int, int], StemParticleTable] = OrderedDict()
        self._atoms: OrderedDict[int, tuple[np.ndarray, int]] = OrderedDict()
        self._tile_cache = tile_cache
        self._atom_cache = atom_cache
        self._offsets: dict[int, tuple[float, float]] = {}
        self._hop_max = 0.0
        pops = cfg.populations
        w = np.array([p.fraction for p in pops], dtype=np.float64)
        self._pop_p = w / w.sum()
        self._empty_threshold = self._calibrate_empty()
        self._h0 = float(self.height_m(0.0, 0.0))
        spill = 4.0 * cfg.cluster_radius_m + max(p.max_diameter_m for p in pops)
        self._halo = int(math.ceil(spill / cfg.tile_m))

    # -- fields over the stage ---------------------------------------------------------------
    def _k(self, tag: int) -> int:
        return (self._key ^ (tag * 0x9E3779B97F4A7C15)) & 0xFFFFFFFFFFFFFFFF

    def _calibrate_empty(self) -> float:
        """Noise level below which the area is empty, so ``empty_fraction`` of it is."""
        if self.cfg.empty_fraction <= 0:
            return -math.inf
        pts = np.random.default_rng(12345).uniform(-1e3, 1e3, size=(2, 20000)) * self.cfg.empty_length_m
        return float(np.quantile(value_noise(pts[0], pts[1], self.cfg.empty_length_m, self._k(_KEY_EMPTY)),
                                 self.cfg.empty_fraction))

    def height_m(self, x_m: np.ndarray | float, y_m: np.ndarray | float) -> np.ndarray:
        """Support surface height (m, +z towards the gun): tilted plane plus smooth warp."""
        s = self.cfg.support
        x, y = np.asarray(x_m, dtype=np.float64), np.asarray(y_m, dtype=np.float64)
        warp = s.warp_m * value_noise(x, y, s.warp_length_m, self._k(_KEY_HEIGHT)) if s.warp_m else 0.0
        return s.tilt[0] * x + s.tilt[1] * y + warp

    def relative_height_m(self, x_m: float, y_m: float) -> float:
        """Height relative to the stage origin's (m)."""
        return float(self.height_m(x_m, y_m)) - self._h0

    def support_thickness_m(self, x_m: np.ndarray, y_m: np.ndarray) -> np.ndarray:
        """Film thickness (m) before beam damage."""
        s = self.cfg.support
        if s.thickness_variation == 0:
            return np.full(np.shape(x_m), s.thickness_m)
        n = value_noise(x_m, y_m, s.variation_length_m, self._k(_KEY_THICK))
        return s.thickness_m * np.maximum(1.0 + s.thickness_variation * n, 0.0)

    def grain_nodes(self, level: int, i0: int, i1: int, j0: int, j1: int) -> np.ndarray:
        """Unit-variance texture values on the node lattice of spacing ``grain_cell·2**level``
        for node columns i0..i1 (x) and rows j0..j1 (y), as an array [j, i]."""
        ii, jj = np.meshgrid(np.arange(i0, i1 + 1), np.arange(j0, j1 + 1))
        return hash_unit(ii, jj, self._k(_KEY_GRAIN) + level)

    # -- particles ------------------------------------------------------------------------------
    def _tile_rng(self, i: int, j: int, tag: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, tag, i + _TILE_OFFSET, j + _TILE_OFFSET]))

    def _raw_tile(self, i: int, j: int) -> dict:
        """Candidates of tile (i, j) before hard-core thinning (cached)."""
        key = (i, j)
        hit = self._raw.get(key)
        if hit is not None:
            self._raw.move_to_end(key)
            return hit
        cfg, t = self.cfg, self.cfg.tile_m
        rng = self._tile_rng(i, j, 0xA1)
        lam = cfg.density_per_m2 * t * t
        n_free = rng.poisson(lam * (1.0 - cfg.cluster_fraction))
        n_cent = rng.poisson(lam * cfg.cluster_fraction / cfg.cluster_size)
        members = 1 + rng.poisson(cfg.cluster_size - 1.0, size=n_cent)
        free = rng.uniform(0.0, t, size=(n_free, 2))
        cent = rng.uniform(0.0, t, size=(n_cent, 2))
        clus = np.repeat(cent, members, axis=0) + rng.normal(0.0, cfg.cluster_radius_m, size=(int(members.sum()), 2))
        xy = np.concatenate([free, clus]) + (i * t, j * t)
        n = xy.shape[0]
        pop = rng.choice(len(cfg.populations), size=n, p=self._pop_p)
        u = rng.random(n)
        zone_u = rng.random(n)
        seeds = rng.integers(0, np.iinfo(np.int64).max, size=n, dtype=np.int64).astype(np.uint64)
        prio = rng.random(n)
        diam = np.empty(n)
        trunc = np.empty(n)
        elem = np.empty(n, dtype=np.int8)
        zone = np.empty(n, dtype=bool)
        for k, p in enumerate(cfg.populations):
            m = pop == k
            lo = scipy.special.ndtr(math.log(p.min_diameter_m / p.median_diameter_m) / max(p.sigma_log, 1e-9))
            hi = scipy.special.ndtr(math.log(p.max_diameter_m / p.median_diameter_m) / max(p.sigma_log, 1e-9))
            q = lo + (hi - lo) * u[m]
            d = p.median_diameter_m * np.exp(p.sigma_log * scipy.special.ndtri(np.clip(q, 1e-12, 1 - 1e-12)))
            diam[m] = np.clip(d, p.min_diameter_m, p.max_diameter_m)
            trunc[m] = p.truncation
            elem[m] = METAL_NAMES.index(p.element)
            zone[m] = zone_u[m] < p.zone_axis_fraction
        keep = self._not_empty(xy[:, 0], xy[:, 1])
        ids = (np.int64(i + _TILE_OFFSET) << np.int64(42)) | (np.int64(j + _TILE_OFFSET) << np.int64(21)) \
            | np.arange(n, dtype=np.int64)
        raw = {"id": ids[keep], "xy": xy[keep], "d": diam[keep], "trunc": trunc[keep], "elem": elem[keep],
               "zone": zone[keep], "seed": seeds[keep], "prio": prio[keep], "pop": pop[keep].astype(np.int8)}
        self._raw[key] = raw
        if len(self._raw) > self._tile_cache:
            self._raw.popitem(last=False)
        return raw

    def _not_empty(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.cfg.empty_fraction <= 0 or x.size == 0:
            return np.ones(x.shape, dtype=bool)
        return value_noise(x, y, self.cfg.empty_length_m, self._k(_KEY_EMPTY)) >= self._empty_threshold

    def _tile(self, i: int, j: int) -> StemParticleTable:
        """Particles of tile (i, j) after Matérn-II thinning against all neighbours (cached)."""
        key = (i, j)
        hit = self._tiles.get(key)
        if hit is not None:
            self._tiles.move_to_end(key)
            return hit
        own = self._raw_tile(i, j)
        h = self._halo
        near = [self._raw_tile(a, b) for a in range(i - h, i + h + 1) for b in range(j - h, j + h + 1)]
        xy = np.concatenate([r["xy"] for r in near])
        rad = 0.5 * np.concatenate([r["d"] for r in near])
        prio = np.concatenate([r["prio"] for r in near])
        ids = np.concatenate([r["id"] for r in near])
        keep = np.ones(len(own["id"]), dtype=bool)
        if len(xy) and len(own["id"]):
            r_own = 0.5 * own["d"]
            pairs = cKDTree(own["xy"]).sparse_distance_matrix(
                cKDTree(xy), float(r_own.max() + rad.max()), output_type="ndarray")
            a, b, dist = pairs["i"], pairs["j"], pairs["v"]
            limit = r_own[a] + rad[b] - self.cfg.overlap * np.minimum(r_own[a], rad[b])
            beaten = (dist < limit) & (prio[b] > own["prio"][a]) & (ids[b] != own["id"][a])
            keep[np.unique(a[beaten])] = False
        xy_k = own["xy"][keep]
        half_height = 0.5 * own["d"][keep] * (1.0 - own["trunc"][keep])
        table = StemParticleTable(
            id=own["id"][keep], x_m=xy_k[:, 0].copy(), y_m=xy_k[:, 1].copy(),
            z_m=np.asarray(self.height_m(xy_k[:, 0], xy_k[:, 1]), dtype=np.float64).reshape(-1) + half_height,
            diameter_m=own["d"][keep], element=own["elem"][keep], truncation=own["trunc"][keep],
            zone_axis=own["zone"][keep], orient_seed=own["seed"][keep], population=own["pop"][keep])
        self._tiles[key] = table
        if len(self._tiles) > self._tile_cache:
            self._tiles.popitem(last=False)
        return table

    def particles_in(self, x0_m: float, y0_m: float, x1_m: float, y1_m: float) -> StemParticleTable:
        """Every particle whose (current) centre lies in the rectangle [x0, x1] × [y0, y1] (m)."""
        t = self.cfg.tile_m
        pad = 4.0 * self.cfg.cluster_radius_m + self._max_hop()
        i0, i1 = int(math.floor((x0_m - pad) / t)), int(math.floor((x1_m + pad) / t))
        j0, j1 = int(math.floor((y0_m - pad) / t)), int(math.floor((y1_m + pad) / t))
        if (i1 - i0 + 1) * (j1 - j0 + 1) > 250_000:
            raise ValueError(f"region {x1_m - x0_m:.3g} m x {y1_m - y0_m:.3g} m: too large to list particles")
        table = StemParticleTable.concat([self._tile(i, j) for i in range(i0, i1 + 1) for j in range(j0, j1 + 1)])
        table = self._displaced(table)
        inside = (table.x_m >= x0_m) & (table.x_m <= x1_m) & (table.y_m >= y0_m) & (table.y_m <= y1_m)
        return table.take(np.flatnonzero(inside))

    # -- beam damage: particle hops ----------------------------------------------------------------
    def _max_hop(self) -> float:
        return self._hop_max

    def _displaced(self, table: StemParticleTable) -> StemParticleTable:
        if not self._offsets or len(table) == 0:
            return table
        keys = np.fromiter(self._offsets, dtype=np.int64, count=len(self._offsets))
        hit = np.flatnonzero(np.isin(table.id, keys))
        if hit.size == 0:
            return table
        x, y = table.x_m.copy(), table.y_m.copy()
        for k in hit:
            dx, dy = self._offsets[int(table.id[k])]
            x[k] += dx
            y[k] += dy
        return StemParticleTable(**{**{f: getattr(table, f) for f in _TABLE_FIELDS}, "x_m": x, "y_m": y})

    def hop(self, ids: np.ndarray, dx_m: np.ndarray, dy_m: np.ndarray) -> None:
        """Displace particles permanently (beam-induced motion)."""
        for pid, dx, dy in zip(ids.tolist(), np.asarray(dx_m).tolist(), np.asarray(dy_m).tolist()):
            ox, oy = self._offsets.get(pid, (0.0, 0.0))
            self._offsets[pid] = (ox + dx, oy + dy)
            self._hop_max = max(self._hop_max, math.hypot(ox + dx, oy + dy))

    # -- atoms ------------------------------------------------------------------------------------
    def atoms_xy(self, table: StemParticleTable, k: int) -> tuple[np.ndarray, int]:
        """Projected atom positions (N, 2, float64, m, relative to the particle centre) and Z of
        particle ``k`` of ``table`` (cached per particle id)."""
        pid = int(table.id[k])
        hit = self._atoms.get(pid)
        if hit is not None:
            self._atoms.move_to_end(pid)
            return hit
        pos, z = self.atoms_3d(table, k)
        out = (np.ascontiguousarray(pos[:, :2]), z)
        self._atoms[pid] = out
        if len(self._atoms) > self._atom_cache:
            self._atoms.popitem(last=False)
        return out

    def atoms_3d(self, table: StemParticleTable, k: int) -> tuple[np.ndarray, int]:
        """Atom positions (N, 3) in m relative to the sphere centre, and the atomic number."""
        name = METAL_NAMES[int(table.element[k])]
        rng = np.random.default_rng(int(table.orient_seed[k]))
        rot = zone_axis_rotation(rng) if bool(table.zone_axis[k]) else random_rotation(rng)
        return cluster_atoms(name, float(table.diameter_m[k]), float(table.truncation[k]), rot), METALS[name][0]


class DoseMap:
    """Accumulated areal dose (e/m²) per scanned rectangle, in stage coordinates.

    Rectangles with the same centre, size and rotation (to 0.1 % of the size) are merged.
    """

    def __init__(self) -> None:
        self._rects = np.zeros((0, 6))  # cx, cy, half-width, half-height, rotation, dose

    def __len__(self) -> int:
        return len(self._rects)

    def add(self, center_m: tuple[float, float], size_m: tuple[float, float], rotation_rad: float,
            dose_e_per_m2: float) -> None:
        if dose_e_per_m2 <= 0:
            return
        row = np.array([center_m[0], center_m[1], 0.5 * size_m[0], 0.5 * size_m[1], rotation_rad % math.pi,
                        dose_e_per_m2])
        if len(self._rects):
            tol = 1e-3 * min(size_m)
            same = np.all(np.abs(self._rects[:, :4] - row[:4]) <= tol, axis=1) \
                & (np.abs(self._rects[:, 4] - row[4]) <= 1e-6)
            hit = np.flatnonzero(same)
            if hit.size:
                self._rects[hit[0], 5] += dose_e_per_m2
                return
        self._rects = np.vstack([self._rects, row])

    def dose_at(self, x_m: np.ndarray, y_m: np.ndarray) -> np.ndarray:
        """Accumulated dose (e/m²) at stage points."""
        x, y = np.asarray(x_m, dtype=np.float64), np.asarray(y_m, dtype=np.float64)
        out = np.zeros(np.broadcast(x, y).shape)
        if not len(self._rects):
            return out
        reach = np.hypot(self._rects[:, 2], self._rects[:, 3])
        near = (self._rects[:, 0] + reach >= x.min()) & (self._rects[:, 0] - reach <= x.max()) \
            & (self._rects[:, 1] + reach >= y.min()) & (self._rects[:, 1] - reach <= y.max())
        for cx, cy, hw, hh, rot, dose in self._rects[near]:
            c, s = math.cos(rot), math.sin(rot)
            u = (x - cx) * c + (y - cy) * s
            v = -(x - cx) * s + (y - cy) * c
            out += np.where((np.abs(u) <= hw) & (np.abs(v) <= hh), dose, 0.0)
        return out
