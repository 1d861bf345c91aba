"""The persistent STEM specimen: tiles, thinning, sizes, atoms, support fields."""
from __future__ import annotations

import math

import numpy as np
import pytest

from twin.stem.config import ParticlePopulation, StemSpecimenConfig, SupportConfig
from twin.stem.specimen import (
    METALS,
    DoseMap,
    StemSpecimen,
    cluster_atoms,
    fcc_number_density,
    random_rotation,
    truncated_sphere_volume,
    value_noise,
    zone_axis_rotation,
)

CFG = StemSpecimenConfig(density_per_m2=5e15, cluster_fraction=0.3, empty_fraction=0.2)


def test_same_region_is_identical_whatever_was_visited_before() -> None:
    a = StemSpecimen(CFG, seed=5)
    b = StemSpecimen(CFG, seed=5)
    b.particles_in(3e-6, 3e-6, 4e-6, 4e-6)  # visit elsewhere first, different cache state
    ta = a.particles_in(-0.3e-6, -0.2e-6, 0.25e-6, 0.3e-6)
    tb = b.particles_in(-0.3e-6, -0.2e-6, 0.25e-6, 0.3e-6)
    assert len(ta) > 100
    order_a, order_b = np.argsort(ta.id), np.argsort(tb.id)
    for f in ("id", "x_m", "y_m", "diameter_m", "element", "orient_seed"):
        assert np.array_equal(getattr(ta, f)[order_a], getattr(tb, f)[order_b]), f
    other = StemSpecimen(CFG, seed=6).particles_in(-0.3e-6, -0.2e-6, 0.25e-6, 0.3e-6)
    assert not np.array_equal(np.sort(other.x_m)[:10], np.sort(ta.x_m)[:10])


def test_sub_region_query_is_a_subset_across_tile_borders() -> None:
    s = StemSpecimen(CFG, seed=1)
    big = s.particles_in(-0.5e-6, -0.5e-6, 0.5e-6, 0.5e-6)
    small = s.particles_in(-0.1e-6, -0.1e-6, 0.1e-6, 0.1e-6)  # straddles the tile corner at 0
    inside = (big.x_m >= -0.1e-6) & (big.x_m <= 0.1e-6) & (big.y_m >= -0.1e-6) & (big.y_m <= 0.1e-6)
    assert set(small.id.tolist()) == set(big.id[inside].tolist())


def test_hard_core_holds_across_tiles() -> None:
    s = StemSpecimen(CFG, seed=2)
    t = s.particles_in(-0.4e-6, -0.4e-6, 0.4e-6, 0.4e-6)
    xy = np.column_stack([t.x_m, t.y_m])
    r = 0.5 * t.diameter_m
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    limit = r[:, None] + r[None, :] - CFG.overlap * np.minimum(r[:, None], r[None, :])
    np.fill_diagonal(d, np.inf)
    assert np.all(d >= limit - 1e-15)


def test_size_distribution_follows_the_population() -> None:
    cfg = StemSpecimenConfig(density_per_m2=5e15, cluster_fraction=0.0, empty_fraction=0.0, overlap=1.0,
                             populations=(ParticlePopulation(element="Au", median_diameter_m=3e-9, sigma_log=0.25,
                                                             min_diameter_m=1e-9, max_diameter_m=20e-9),))
    t = StemSpecimen(cfg, seed=3).particles_in(-1e-6, -1e-6, 1e-6, 1e-6)
    logd = np.log(t.diameter_m)
    assert math.exp(np.median(logd)) == pytest.approx(3e-9, rel=0.05)
    assert np.std(logd) == pytest.approx(0.25, rel=0.08)
    assert len(t) == pytest.approx(5e15 * 4e-12, rel=0.1)
    assert set(t.element_names) == {"Au"}


def test_empty_fraction_leaves_empty_area() -> None:
    cfg = StemSpecimenConfig(density_per_m2=5e15, empty_fraction=0.5, empty_length_m=100e-9, cluster_fraction=0.0)
    full = StemSpecimenConfig(density_per_m2=5e15, empty_fraction=0.0, cluster_fraction=0.0)
    n_empty = len(StemSpecimen(cfg, seed=4).particles_in(-1e-6, -1e-6, 1e-6, 1e-6))
    n_full = len(StemSpecimen(full, seed=4).particles_in(-1e-6, -1e-6, 1e-6, 1e-6))
    assert n_empty / n_full == pytest.approx(0.5, abs=0.12)


def test_cluster_atoms_count_and_shape() -> None:
    rng = np.random.default_rng(0)
    for d in (2e-9, 5e-9):
        pos = cluster_atoms("Pt", d, 0.0, random_rotation(rng))
        expect = fcc_number_density("Pt") * truncated_sphere_volume(d, 0.0)
        assert len(pos) == pytest.approx(expect, rel=0.12)  # surface: atom centres inside the sphere
        assert np.max(np.linalg.norm(pos, axis=1)) <= 0.5 * d + 1e-15
    half = cluster_atoms("Au", 5e-9, 0.5, random_rotation(rng))
    assert half[:, 2].min() >= -1e-15
    assert len(half) == pytest.approx(0.5 * fcc_number_density("Au") * truncated_sphere_volume(5e-9, 0.0), rel=0.1)
    # Nearest-neighbour distance a/sqrt(2) survives any rotation.
    d2 = np.sum((pos[:, None] - pos[None]) ** 2, axis=-1)
    np.fill_diagonal(d2, np.inf)
    assert math.sqrt(d2.min()) == pytest.approx(METALS["Pt"][1] / math.sqrt(2), rel=1e-9)


def test_zone_axis_orientation_stacks_atoms_in_columns() -> None:
    pos = cluster_atoms("Au", 4e-9, 0.0, zone_axis_rotation(np.random.default_rng(1)))
    xy = np.round(pos[:, :2] / 1e-12)  # to 1 pm
    n_cols = len(np.unique(xy, axis=0))
    assert n_cols < len(pos) / 5  # ~14 atoms per column through a 4 nm particle
    rnd = cluster_atoms("Au", 4e-9, 0.0, random_rotation(np.random.default_rng(1)))
    assert len(np.unique(np.round(rnd[:, :2] / 1e-12), axis=0)) > len(rnd) / 2


def test_support_fields_are_smooth_deterministic_and_bounded() -> None:
    cfg = StemSpecimenConfig(support=SupportConfig(thickness_m=5e-9, thickness_variation=0.2, warp_m=50e-9,
                                                   tilt=(0.01, 0.0)))
    s = StemSpecimen(cfg, seed=9)
    x = np.linspace(-1e-6, 1e-6, 101)
    h1, h2 = s.height_m(x, 0 * x), StemSpecimen(cfg, seed=9).height_m(x, 0 * x)
    assert np.array_equal(h1, h2)
    assert np.max(np.abs(np.diff(h1))) < 2e-9  # smooth at the 20 nm step
    assert s.relative_height_m(1e-6, 0.0) == pytest.approx(float(h1[-1] - s.height_m(0.0, 0.0)))
    t = s.support_thickness_m(x, 0 * x)
    assert np.all(t >= 0) and np.mean(t) == pytest.approx(5e-9, rel=0.3)
    v = value_noise(np.linspace(0, 50, 5001), np.zeros(5001), 1.0, key=7)
    assert abs(v.mean()) < 0.2 and 0.4 < v.std() < 1.1


def test_hops_move_particles_persistently() -> None:
    s = StemSpecimen(CFG, seed=1)
    t = s.particles_in(-50e-9, -50e-9, 50e-9, 50e-9)
    s.hop(t.id[:3], np.full(3, 1e-9), np.full(3, -2e-9))
    t2 = s.particles_in(-60e-9, -60e-9, 60e-9, 60e-9)
    for k in range(3):
        j = int(np.flatnonzero(t2.id == t.id[k])[0])
        assert (t2.x_m[j], t2.y_m[j]) == pytest.approx((t.x_m[k] + 1e-9, t.y_m[k] - 2e-9))


def test_dose_map_accumulates_and_merges() -> None:
    dm = DoseMap()
    dm.add((0.0, 0.0), (10e-9, 10e-9), 0.0, 1e20)
    dm.add((0.0, 0.0), (10e-9, 10e-9), 0.0, 2e20)
    dm.add((20e-9, 0.0), (10e-9, 10e-9), 0.0, 5e20)
    assert len(dm) == 2
    d = dm.dose_at(np.array([0.0, 20e-9, 40e-9]), np.zeros(3))
    assert d == pytest.approx([3e20, 5e20, 0.0])
