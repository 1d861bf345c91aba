"""Particle generation for one tile of the persistent specimen.

A tile's particles come from a Generator seeded with SeedSequence([seed, 1, i, j]) only, so
they do not depend on which tiles were generated before. Single particles and cluster seeds
are uniform in the tile; clusters grow by attaching each new member to a random earlier one
at a centre distance of (r₁ + r₂)·U(0.85, 1), with r the outline radius along the joining
line, rejecting placements closer than 0.84·(r₁ + r₂) to any other member (8 tries per
member, then the member is dropped). Members stay within ``tile_m / 4`` of their seed, so a
tile's particles never reach further than half a tile beyond it. Particles in empty regions
or outside the stage extent are removed afterwards; ids keep their index in the tile.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from . import shapes as sh
from .materials import material_code
from .specimen_config import SIZE_CLIP_SIGMAS, Population, SpecimenConfig

TRIES = 8
TOUCH_RANGE = (0.85, 1.0)
MIN_GAP_FACTOR = 0.84
MAX_CLUSTER_SIZE = 200


def _diameters(rng: np.random.Generator, pop: Population, n: int) -> np.ndarray:
    z = np.clip(rng.standard_normal(n), -SIZE_CLIP_SIGMAS, SIZE_CLIP_SIGMAS)
    d = pop.median_diameter_m * np.exp(pop.sigma_log * z)
    if pop.distribution == "bimodal":
        second = rng.random(n) < pop.weight2
        z2 = np.clip(rng.standard_normal(n), -SIZE_CLIP_SIGMAS, SIZE_CLIP_SIGMAS)
        d = np.where(second, pop.median2_diameter_m * np.exp(pop.sigma_log2 * z2), d)
    return d


def _attributes(rng: np.random.Generator, pops: tuple[Population, ...], pop: np.ndarray) -> dict[str, np.ndarray]:
    """Size, shape, material and geometry of every particle, population by population."""
    n = len(pop)
    cols = {k: np.zeros(n) for k in ("diameter_m", "aspect", "plateau", "rise", "orientation_rad")}
    cols["shape"] = np.zeros(n, np.int8)
    cols["sides"] = np.zeros(n, np.int8)
    cols["material"] = np.zeros(n, np.int16)
    for p, P in enumerate(pops):
        idx = np.flatnonzero(pop == p)
        m = len(idx)
        if m == 0:
            continue
        w = np.asarray(P.shape_weights, float)
        codes = np.array([sh.shape_code(s) for s in P.shapes], np.int8)
        shape = codes[rng.choice(len(codes), m, p=w / w.sum())]
        ell = rng.uniform(*P.aspect_ratio, m)
        rod = rng.uniform(*P.rod_aspect_ratio, m)
        cols["diameter_m"][idx] = _diameters(rng, P, m)
        cols["shape"][idx] = shape
        cols["aspect"][idx] = np.where(shape == sh.ROD, rod, np.where(shape == sh.ELLIPSOID, ell, 1.0))
        cols["sides"][idx] = np.where(shape == sh.FACETED, rng.integers(4, 9, m), 0)
        cols["plateau"][idx] = rng.uniform(0.4, 0.75, m)      # plateau / outline inradius
        cols["rise"][idx] = rng.uniform(0.5, 1.0, m)          # faceted thickness / (2 · inradius)
        cols["orientation_rad"][idx] = rng.uniform(0.0, 2.0 * math.pi, m)
        cols["material"][idx] = material_code(P.material)
    return cols


def _geometry(cols: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """Semi-axes, vertical extent and facet slope, added to ``cols`` in place."""
    code = cols["shape"]
    a, b = sh.dimensions(code, cols["diameter_m"], cols["aspect"], cols["sides"], cols["plateau"])
    faceted = code == sh.FACETED
    # Facets inclined 25°–60° from the plateau; the side wall keeps >= 20 % of the thickness.
    slope = np.where(faceted, np.tan(rng.uniform(math.radians(25.0), math.radians(60.0), len(code))), 0.0)
    thick = np.maximum(2.0 * a * cols["rise"], slope * (a - b) / 0.8)
    height = np.select([faceted, code == sh.SPHERE], [thick, 2.0 * a], 2.0 * b)
    cols["semi_a_m"], cols["semi_b_m"] = a, b
    cols["height_m"], cols["facet_slope"] = height, slope


def _radius(cols: dict[str, np.ndarray], idx: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return sh.radius_along(cols["shape"][idx], cols["semi_a_m"][idx], cols["semi_b_m"][idx],
                           cols["sides"][idx], cols["orientation_rad"][idx], theta)


def _grow_clusters(rng: np.random.Generator, cols: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                   starts: np.ndarray, sizes: np.ndarray, reach_m: float) -> np.ndarray:
    """Place cluster members (seeds already in x, y); returns the mask of placed particles."""
    alive = np.ones(len(x), bool)
    for k in range(1, int(sizes.max(initial=1))):
        cl = np.flatnonzero(sizes > k)
        new = starts[cl] + k
        m = len(cl)
        parent = starts[cl][:, None] + (rng.random((m, TRIES)) * k).astype(np.int64)
        theta = rng.uniform(0.0, 2.0 * math.pi, (m, TRIES))
        f = rng.uniform(*TOUCH_RANGE, (m, TRIES))
        newb = np.broadcast_to(new[:, None], (m, TRIES))
        dist = f * (_radius(cols, parent, theta) + _radius(cols, newb, theta + math.pi))
        cx = x[parent] + dist * np.cos(theta)
        cy = y[parent] + dist * np.sin(theta)
        # Every earlier member must stay at least MIN_GAP_FACTOR · (r_j + r_new) away.
        mem = starts[cl][:, None] + np.arange(k)[None, :]                      # (m, k)
        dx = cx[:, :, None] - x[mem][:, None, :]
        dy = cy[:, :, None] - y[mem][:, None, :]
        phi = np.arctan2(dy, dx)
        memb = np.broadcast_to(mem[:, None, :], phi.shape)
        newb3 = np.broadcast_to(new[:, None, None], phi.shape)
        need = MIN_GAP_FACTOR * (_radius(cols, memb, phi) + _radius(cols, newb3, phi + math.pi))
        clear = (np.hypot(dx, dy) >= need) | ~alive[memb]
        ok = clear.all(axis=2) & alive[parent]
        ok &= np.hypot(cx - x[starts[cl]][:, None], cy - y[starts[cl]][:, None]) <= reach_m
        first = np.argmax(ok, axis=1)
        placed = ok[np.arange(m), first]
        x[new] = np.where(placed, cx[np.arange(m), first], np.nan)
        y[new] = np.where(placed, cy[np.arange(m), first], np.nan)
        alive[new] = placed
    return alive


def generate_tile(cfg: SpecimenConfig, seed: int, i: int, j: int, capacity: int,
                  populated: Callable[[np.ndarray, np.ndarray], np.ndarray],
                  height: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """Columns of the particles generated by tile (i, j) (ids 1 + (i·ny + j)·capacity + k)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1, int(i), int(j)]))
    ex, ey = cfg.extent_m
    x0, y0 = -0.5 * ex + i * cfg.tile_m, -0.5 * ey + j * cfg.tile_m
    n_exp = cfg.expected_per_tile()
    n_single = int(rng.poisson(n_exp * (1.0 - cfg.cluster_fraction)))
    n_cl = int(rng.poisson(n_exp * cfg.cluster_fraction / cfg.cluster_size_mean))
    sizes = np.minimum(2 + rng.poisson(cfg.cluster_size_mean - 2.0, n_cl), MAX_CLUSTER_SIZE)
    starts = n_single + np.cumsum(sizes) - sizes
    n = n_single + int(sizes.sum())
    fr = np.array([p.fraction for p in cfg.populations], float)
    fr /= fr.sum()
    pop = np.concatenate([rng.choice(len(fr), n_single, p=fr),
                          np.repeat(rng.choice(len(fr), n_cl, p=fr), sizes)]).astype(np.int16)
    cols = _attributes(rng, cfg.populations, pop)
    _geometry(cols, rng)
    x = np.full(n, np.nan)
    y = np.full(n, np.nan)
    lone = np.r_[np.arange(n_single), starts].astype(np.int64)
    x[lone] = x0 + rng.random(len(lone)) * cfg.tile_m
    y[lone] = y0 + rng.random(len(lone)) * cfg.tile_m
    alive = _grow_clusters(rng, cols, x, y, starts, sizes, 0.25 * cfg.tile_m)
    k = np.arange(n, dtype=np.int64)
    cluster = np.zeros(n, np.int64)
    base = 1 + (i * cfg.tiles_shape()[1] + j) * capacity
    cluster[n_single:] = base + np.repeat(starts, sizes)
    keep = alive & (k < capacity)
    keep[keep] = (np.abs(x[keep]) <= 0.5 * ex) & (np.abs(y[keep]) <= 0.5 * ey)
    keep[keep] = populated(x[keep], y[keep])
    out = {name: v[keep] for name, v in cols.items() if name not in ("aspect", "plateau", "rise")}
    out["population"] = pop[keep]
    out["x_m"], out["y_m"] = x[keep], y[keep]
    out["id"] = base + k[keep]
    out["cluster"] = cluster[keep]
    out["z_m"] = np.asarray(height(out["x_m"], out["y_m"]), float) + 0.5 * out["height_m"]
    return out
