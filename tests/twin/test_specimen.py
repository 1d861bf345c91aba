"""Persistent specimen: tiles, statistics, shapes, rendering and ground truth."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from twin import shapes as sh
from twin.materials import MATERIALS, backscatter_coefficient, get_material
from twin.specimen import ParticleTable, Population, Specimen, SpecimenConfig
from twin.specimen_raster import ScanFrame, render_maps

ALL_SHAPES = ("sphere", "ellipsoid", "faceted", "rod")


@dataclass(frozen=True)
class Grid:
    """Duck-typed stand-in for twin.scan.SampleGrid (nominal affine grid)."""

    x_m: np.ndarray
    y_m: np.ndarray
    origin_m: tuple[float, float]
    col_step_m: tuple[float, float]
    row_step_m: tuple[float, float]
    slack_m: float
    pixel_size_m: float


def make_grid(center, pixel, shape, rot=0.0, dx=None, dy=None, slack=0.0) -> Grid:
    ny, nx = shape
    c, s = math.cos(rot), math.sin(rot)
    col, row = (pixel * c, pixel * s), (-pixel * s, pixel * c)
    jc = np.arange(nx) - 0.5 * (nx - 1)
    ic = np.arange(ny) - 0.5 * (ny - 1)
    x = center[0] + jc[None, :] * col[0] + ic[:, None] * row[0]
    y = center[1] + jc[None, :] * col[1] + ic[:, None] * row[1]
    origin = (float(x[0, 0]), float(y[0, 0]))
    if dx is not None:
        x = x + dx
    if dy is not None:
        y = y + dy
    return Grid(x, y, origin, col, row, slack, pixel)


def mixed(**kw) -> SpecimenConfig:
    pop = Population(shapes=ALL_SHAPES, shape_weights=(1, 1, 1, 1))
    return SpecimenConfig(populations=(pop,), **kw)


def isolated_cfg(**kw) -> SpecimenConfig:
    """Sparse, unclustered, no empty regions: every particle stands alone."""
    pop = Population(shapes=ALL_SHAPES, shape_weights=(1, 1, 1, 1), median_diameter_m=100e-9, sigma_log=0.2)
    base = dict(density_per_m2=1.5e12, cluster_fraction=0.0, empty_fraction=0.0, populations=(pop,))
    base.update(kw)
    return SpecimenConfig(**base)


def same_table(a: ParticleTable, b: ParticleTable) -> bool:
    return len(a) == len(b) and all(np.array_equal(getattr(a, k), getattr(b, k)) for k in a.columns())


# ---- persistence --------------------------------------------------------------------------
def test_same_particles_after_visiting_far_away_and_with_fresh_specimen():
    region = (1e-6, -3e-6, 31e-6, 17e-6)
    sp = Specimen(mixed(), seed=11, cache_tiles=4)
    first = sp.particles_in(*region)
    assert len(first) > 100
    sp.particles_in(3e-3, 3e-3, 3.05e-3, 3.05e-3)        # evicts every cached tile
    assert same_table(first, sp.particles_in(*region))
    fresh = Specimen(mixed(), seed=11)
    fresh.particles_in(-2e-3, 1e-3, -1.96e-3, 1.04e-3)   # different visit order
    fresh.particles_in(25e-6, 0.0, 60e-6, 30e-6)
    assert same_table(first, fresh.particles_in(*region))


def test_render_is_deterministic_and_persistent():
    g = make_grid((5e-6, 5e-6), 10e-9, (200, 240))
    a = Specimen(mixed(), 3).render(g)
    sp = Specimen(mixed(), 3)
    sp.render(make_grid((-1e-3, 2e-3), 10e-9, (50, 50)))
    b = sp.render(g)
    for k in ("se", "bse", "label", "height_m", "insulator"):
        assert np.array_equal(getattr(a, k), getattr(b, k)), k


def test_different_seed_gives_different_particles():
    a = Specimen(mixed(), 1).particles_in(0, 0, 20e-6, 20e-6)
    b = Specimen(mixed(), 2).particles_in(0, 0, 20e-6, 20e-6)
    assert len(a) > 50 and len(b) > 50
    assert not np.array_equal(a.x_m[:50], b.x_m[:50])


def test_ids_unique_stable_and_int32_sized():
    sp = Specimen(mixed(), 5)
    t = sp.particles_in(-30e-6, -30e-6, 30e-6, 30e-6)
    assert len(np.unique(t.id)) == len(t)
    assert t.id.min() >= 1 and t.id.max() < 2**31
    corner = Specimen(mixed(), 5).particles_in(4.97e-3, 4.97e-3, 5e-3, 5e-3)
    assert len(corner) == 0 or corner.id.max() < 2**31


def test_no_particles_outside_the_stage_extent():
    cfg = mixed(extent_m=(100e-6, 100e-6), empty_fraction=0.0)
    sp = Specimen(cfg, 4)
    assert len(sp.particles_in(50.5e-6, -40e-6, 90e-6, 40e-6)) == 0
    inside = sp.particles_in(-50e-6, -50e-6, 50e-6, 50e-6)
    assert len(inside) > 1000
    assert np.all(np.abs(inside.x_m) <= 50e-6) and np.all(np.abs(inside.y_m) <= 50e-6)
    m = sp.render(make_grid((60e-6, 0.0), 20e-9, (64, 64)))
    assert not m.label.any()


def test_particles_in_returns_exactly_centres_in_rectangle():
    sp = Specimen(mixed(), 8)
    big = sp.particles_in(0, 0, 40e-6, 40e-6)
    small = sp.particles_in(10e-6, 5e-6, 22e-6, 30e-6)
    sel = (big.x_m >= 10e-6) & (big.x_m <= 22e-6) & (big.y_m >= 5e-6) & (big.y_m <= 30e-6)
    assert np.array_equal(np.sort(big.id[sel]), small.id)


# ---- statistics ---------------------------------------------------------------------------
def test_all_shapes_and_materials_appear():
    pops = (Population(shapes=ALL_SHAPES, shape_weights=(1, 1, 1, 1), material="Au", fraction=1),
            Population(material="SiO2", fraction=1))
    t = Specimen(SpecimenConfig(populations=pops), 9).particles_in(0, 0, 30e-6, 30e-6)
    assert set(t.shape_name()) == set(ALL_SHAPES)
    assert set(t.material_name()) == {"Au", "SiO2"}
    rods = t.select(t.shape == sh.ROD)
    length_over_width = rods.semi_a_m / rods.semi_b_m
    assert length_over_width.min() >= 2.0 - 1e-9 and length_over_width.max() <= 6.0 + 1e-9


def test_diameters_are_projected_area_equivalent():
    t = Specimen(mixed(), 10).particles_in(0, 0, 20e-6, 20e-6)
    area = sh.area(t.shape, t.semi_a_m, t.semi_b_m, t.sides)
    assert np.allclose(np.sqrt(4 * area / math.pi), t.diameter_m, rtol=1e-9)


def test_lognormal_median_matches_config():
    pop = Population(median_diameter_m=80e-9, sigma_log=0.3)
    t = Specimen(SpecimenConfig(populations=(pop,)), 12).particles_in(0, 0, 40e-6, 40e-6)
    assert len(t) > 1500
    assert np.median(t.diameter_m) == pytest.approx(80e-9, rel=0.05)
    assert np.std(np.log(t.diameter_m)) == pytest.approx(0.3, rel=0.1)


def test_bimodal_has_two_modes():
    pop = Population(distribution="bimodal", median_diameter_m=40e-9, sigma_log=0.15,
                     median2_diameter_m=160e-9, sigma_log2=0.12, weight2=0.4)
    t = Specimen(SpecimenConfig(populations=(pop,)), 13).particles_in(0, 0, 40e-6, 40e-6)
    d = t.diameter_m
    low = np.mean((d > 30e-9) & (d < 53e-9))
    valley = np.mean((d > 70e-9) & (d < 93e-9))
    high = np.mean((d > 120e-9) & (d < 213e-9))
    assert low > 5 * valley and high > 5 * valley
    assert np.mean(d > 80e-9) == pytest.approx(0.4, abs=0.05)


@pytest.mark.parametrize("frac", [0.2, 0.5])
def test_empty_fraction_roughly_as_configured(frac):
    sp = Specimen(SpecimenConfig(empty_fraction=frac, empty_scale_m=30e-6), 14)
    xs = np.linspace(-2e-3, 2e-3, 300)
    xx, yy = np.meshgrid(xs, xs)
    assert 1 - sp.populated(xx, yy).mean() == pytest.approx(frac, abs=0.07)
    # Particle-free 2 µm cells over 300 µm x 300 µm agree with the mask.
    t = sp.particles_in(0, 0, 300e-6, 300e-6)
    assert np.all(sp.populated(t.x_m, t.y_m))
    h, _, _ = np.histogram2d(t.x_m, t.y_m, bins=150, range=((0, 300e-6), (0, 300e-6)))
    assert np.mean(h == 0) == pytest.approx(frac, abs=0.1)


def test_no_empty_regions_when_fraction_zero():
    sp = Specimen(SpecimenConfig(empty_fraction=0.0), 15)
    assert sp.populated(np.linspace(-4e-3, 4e-3, 1000), np.zeros(1000)).all()


def test_clusters_have_touching_particles():
    cfg = mixed(cluster_fraction=1.0, cluster_size_mean=8.0, empty_fraction=0.0)
    t = Specimen(cfg, 16).particles_in(0, 0, 20e-6, 20e-6)
    assert np.all(t.cluster > 0)
    ratios = []
    for cid in np.unique(t.cluster)[:60]:
        m = t.select(t.cluster == cid)
        if len(m) < 2:
            continue
        for k in range(1, len(m)):                        # every member touches some other member
            dx, dy = m.x_m - m.x_m[k], m.y_m - m.y_m[k]
            phi = np.arctan2(dy, dx)
            reach = (sh.radius_along(m.shape, m.semi_a_m, m.semi_b_m, m.sides, m.orientation_rad, phi + math.pi)
                     + sh.radius_along(m.shape[k:k + 1], m.semi_a_m[k:k + 1], m.semi_b_m[k:k + 1],
                                       m.sides[k:k + 1], m.orientation_rad[k:k + 1], phi))
            r = np.hypot(dx, dy) / reach
            r[k] = np.inf
            ratios.append(r.min())
    ratios = np.array(ratios)
    assert len(ratios) > 100
    assert np.all(ratios >= 0.84 - 1e-9)
    assert np.mean(ratios <= 1.0 + 1e-9) > 0.97


def test_touching_particles_share_label_borders():
    cfg = mixed(cluster_fraction=1.0, cluster_size_mean=6.0, empty_fraction=0.0)
    sp = Specimen(cfg, 17)
    m = sp.render(make_grid((4e-6, 4e-6), 4e-9, (400, 400)))
    a, b = m.label[:, :-1], m.label[:, 1:]
    contact = (a > 0) & (b > 0) & (a != b)
    assert contact.sum() > 5


# ---- substrate fields -----------------------------------------------------------------------
def test_height_field_is_tilted_plane_plus_warp():
    flat = Specimen(SpecimenConfig(height_warp_m=0.0, height_tilt_rad=(2e-4, -1e-4)), 18)
    assert flat.height_m(1e-3, 2e-3) == pytest.approx(math.tan(2e-4) * 1e-3 + math.tan(-1e-4) * 2e-3, rel=1e-12)
    sp = Specimen(SpecimenConfig(height_warp_m=2e-6), 18)
    xs = np.linspace(-4e-3, 4e-3, 50)
    z = sp.height_m(xs, np.zeros_like(xs))
    assert z.shape == xs.shape and np.ptp(z) > 1e-6
    assert sp.height_m(xs, 0 * xs)[7] == pytest.approx(sp.height_m(float(xs[7]), 0.0))
    warp = z - math.tan(2e-4) * xs
    assert 0.2e-6 < np.std(warp) < 5e-6


def test_particle_z_follows_substrate_height():
    sp = Specimen(mixed(), 19)
    t = sp.particles_in(1e-3, 1e-3, 1.02e-3, 1.02e-3)
    assert np.allclose(t.z_m, sp.height_m(t.x_m, t.y_m) + 0.5 * t.height_m)


def test_texture_is_persistent_and_has_configured_rms():
    cfg = isolated_cfg(density_per_m2=0.0, texture_rms=0.05, texture_scale_m=40e-9)
    sp = Specimen(cfg, 20)
    se_sub = get_material("Si").se_yield
    g = make_grid((0.0, 0.0), 5e-9, (256, 256))
    rel = sp.render(g).se / se_sub - 1
    assert np.std(rel) == pytest.approx(0.05, rel=0.35)
    assert np.array_equal(sp.texture(g.x_m, g.y_m), Specimen(cfg, 20).texture(g.x_m, g.y_m))
    # Any frame (shifted, rotated, other pixel size) shows the texture function of stage coordinates.
    for g2 in (g, make_grid((0.3e-6, -0.2e-6), 5e-9, (256, 256), rot=0.5),
               make_grid((-1e-3, 2e-3), 2e-9, (128, 160), rot=-1.0)):
        rel = sp.render(g2).se / se_sub - 1
        truth = 0.05 * sp.texture(g2.x_m, g2.y_m)
        assert np.sqrt(np.mean((rel - truth) ** 2)) < 0.15 * 0.05
        assert np.corrcoef(rel.ravel(), truth.ravel())[0, 1] > 0.98
    # Correlation length: neighbours 10 nm apart agree well, 200 nm apart not at all.
    xs = np.linspace(0, 1e-3, 20000)
    t0 = sp.texture(xs, 0 * xs)
    assert np.corrcoef(t0, sp.texture(xs + 10e-9, 0 * xs))[0, 1] > 0.8
    assert abs(np.corrcoef(t0, sp.texture(xs + 200e-9, 0 * xs))[0, 1]) < 0.1


# ---- rendering ------------------------------------------------------------------------------
def test_rendered_label_area_matches_analytic_area():
    sp = Specimen(isolated_cfg(), 21)
    pix = 4e-9
    g = make_grid((2e-6, -1e-6), pix, (512, 512), rot=0.3)
    m = sp.render(g)
    t = sp.particles_in(g.x_m.min(), g.y_m.min(), g.x_m.max(), g.y_m.max())
    counts = np.bincount(m.label.ravel(), minlength=1)
    checked = 0
    for k in range(len(t)):
        r = sh.bounding_radius(t.shape[k:k + 1], t.semi_a_m[k:k + 1], t.semi_b_m[k:k + 1], t.sides[k:k + 1])[0]
        d2 = (g.x_m - t.x_m[k]) ** 2 + (g.y_m - t.y_m[k]) ** 2
        i, j = np.unravel_index(np.argmin(d2), d2.shape)
        margin = r / pix + 3
        if not (margin < i < 511 - margin and margin < j < 511 - margin) or t.diameter_m[k] < 10 * pix:
            continue
        gap = np.hypot(t.x_m - t.x_m[k], t.y_m - t.y_m[k]) - 1.6 * (t.diameter_m + t.diameter_m[k])
        if np.sum(gap < 0) > 1:                            # a neighbour could overlap it
            continue
        analytic = math.pi / 4 * t.diameter_m[k] ** 2 / pix**2
        assert counts[t.id[k]] == pytest.approx(analytic, rel=0.04), t.shape_name()[k]
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("pix", [20e-9, 40e-9, 90e-9])
def test_anti_aliased_coverage_conserves_particle_area(pix):
    # SiO2 on carbon: the insulator map is the coverage of particles (ramp or splat).
    pops = (Population(material="SiO2", shapes=ALL_SHAPES, shape_weights=(1, 1, 1, 1),
                       median_diameter_m=60e-9, sigma_log=0.3),)
    sp = Specimen(isolated_cfg(populations=pops, substrate="C", density_per_m2=1e12), 30)
    n, rot = 256, 0.37
    m = sp.render(make_grid((0.0, 0.0), pix, (n, n), rot=rot))
    half = 0.5 * n * pix
    t = sp.particles_in(-2 * half, -2 * half, 2 * half, 2 * half)
    u = math.cos(rot) * t.x_m + math.sin(rot) * t.y_m
    v = -math.sin(rot) * t.x_m + math.cos(rot) * t.y_m
    inside = (np.abs(u) < half) & (np.abs(v) < half)
    assert inside.sum() >= 25
    area_px = np.sum(math.pi / 4 * t.diameter_m[inside] ** 2) / pix**2
    assert m.insulator.sum() == pytest.approx(area_px, rel=0.05)


def test_label_matches_bright_se_for_isolated_particles():
    cfg = isolated_cfg()
    sp = Specimen(cfg, 22)
    m = sp.render(make_grid((0.0, 3e-6), 4e-9, (384, 384)))
    lab = m.label > 0
    assert lab.mean() > 0.01
    sub_max = get_material(cfg.substrate).se_yield * (1 + 5 * cfg.texture_rms)
    assert np.mean(m.se[lab] > sub_max) > 0.98
    # Away from any particle (dilated label mask) the signal is substrate.
    from scipy.ndimage import binary_dilation
    far = ~binary_dilation(lab, iterations=2)
    assert np.mean(m.se[far] <= sub_max) > 0.999
    assert np.all(m.height_m[far] == 0) and np.all(m.height_m[lab] > 0)


def test_se_edge_brightening_and_bse_z_contrast():
    pops = (Population(material="Au", median_diameter_m=150e-9, sigma_log=0.05, fraction=1),
            Population(material="C", median_diameter_m=150e-9, sigma_log=0.05, fraction=1))
    sp = Specimen(isolated_cfg(populations=pops), 23)
    g = make_grid((1e-6, 1e-6), 3e-9, (512, 512))
    m = sp.render(g)
    t = sp.particles_in(g.x_m.min(), g.y_m.min(), g.x_m.max(), g.y_m.max())
    au = np.isin(m.label, t.id[t.material_name() == "Au"])
    c = np.isin(m.label, t.id[t.material_name() == "C"])
    assert au.sum() > 500 and c.sum() > 500
    eta_si = get_material("Si").bse_eta
    assert np.median(m.bse[au]) > 2 * eta_si > 2 * np.median(m.bse[c])
    # Edge brightening: SE in a particle's outer ring exceeds SE near its centre.
    k = int(np.flatnonzero(t.material_name() == "Au")[0])
    d = np.hypot(g.x_m - t.x_m[k], g.y_m - t.y_m[k])
    own = m.label == t.id[k]
    r = 0.5 * t.diameter_m[k]
    assert m.se[own & (d < 0.3 * r)].mean() * 1.5 < m.se[own & (d > 0.85 * r)].mean()


def test_insulator_map_follows_material():
    pops = (Population(material="SiO2", median_diameter_m=150e-9, sigma_log=0.05),)
    sp = Specimen(isolated_cfg(populations=pops, substrate="C"), 24)
    m = sp.render(make_grid((0.0, 0.0), 4e-9, (300, 300)))
    lab = m.label > 0
    assert np.all(m.insulator[lab] >= 0.4) and np.mean(m.insulator[lab] == 1.0) > 0.8   # edges blend by coverage
    assert np.all(m.insulator[m.height_m == 0] == 0)


def test_rotated_grid_shows_the_same_particles():
    sp = Specimen(mixed(), 25)
    c, pix, n = (3e-6, -2e-6), 8e-9, 400
    ids = []
    for rot in (0.0, 0.7, -2.1):
        m = sp.render(make_grid(c, pix, (n, n), rot=rot))
        ids.append(set(np.unique(m.label)) - {0})
    t = sp.particles_in(c[0] - 2e-6, c[1] - 2e-6, c[0] + 2e-6, c[1] + 2e-6)
    inner = set(t.id[np.hypot(t.x_m - c[0], t.y_m - c[1]) < 0.5 * n * pix - 300e-9].tolist())
    assert len(inner) > 10
    for s in ids:
        assert inner <= s
        assert s <= set(sp.particles_in(c[0] - 3e-6, c[1] - 3e-6, c[0] + 3e-6, c[1] + 3e-6).id.tolist())


def test_distorted_sample_points_move_signal_and_label_together():
    sp = Specimen(isolated_cfg(texture_rms=0.0), 26)
    pix = 5e-9
    g = make_grid((0.0, 0.0), pix, (200, 300))
    shift = np.zeros_like(g.x_m)
    shift[100:] = 3 * pix                                  # lower half jumps three pixels in x
    gj = make_grid((0.0, 0.0), pix, (200, 300), dx=shift, slack=3 * pix)
    a, b = sp.render(g), sp.render(gj)
    assert np.array_equal(a.label[:100], b.label[:100])
    assert np.array_equal(a.label[100:, 3:], b.label[100:, :-3])
    assert np.allclose(a.se[100:, 3:], b.se[100:, :-3], rtol=2e-3)


def test_z_buffer_gives_overlap_to_the_higher_surface():
    p = 1e-9
    cols = {k: np.zeros(2) for k in ParticleTable.columns()}
    cols.update(id=np.array([5, 9]), x_m=np.array([-40e-9, 30e-9]), y_m=np.zeros(2),
                diameter_m=np.array([100e-9, 60e-9]), semi_a_m=np.array([50e-9, 30e-9]),
                semi_b_m=np.array([50e-9, 30e-9]), height_m=np.array([100e-9, 60e-9]))
    cols["z_m"] = cols["height_m"] / 2
    t = ParticleTable.from_columns(cols)
    g = make_grid((0.0, 0.0), p, (40, 200))
    sp = Specimen(isolated_cfg(density_per_m2=0.0), 1)
    m = render_maps(t, g, ScanFrame.of(g), sp._mats, sp.cfg, np.full(g.x_m.shape, 0.2, np.float32))
    row = m.label[20]
    x = g.x_m[20]
    # Sphere surfaces (centres at their radii): z1 = 50 + sqrt(50² − (x+40)²), z2 = 30 + sqrt(30² − (x−30)²).
    z1 = 50 + np.sqrt(np.clip(50**2 - (x * 1e9 + 40) ** 2, 0, None))
    z2 = 30 + np.sqrt(np.clip(30**2 - (x * 1e9 - 30) ** 2, 0, None))
    both = (np.abs(x * 1e9 + 40) < 49) & (np.abs(x * 1e9 - 30) < 29)
    assert both.sum() > 5
    assert np.array_equal(row[both], np.where(z1[both] >= z2[both], 5, 9))


def test_survey_pixels_keep_sub_pixel_particles():
    cfg = mixed(empty_fraction=0.0, cluster_fraction=0.0)
    sp = Specimen(cfg, 27)
    pix = 80e-9
    g = make_grid((0.0, 0.0), pix, (256, 256), rot=0.2)
    m = sp.render(g)
    t = sp.particles_in(-8e-6, -8e-6, 8e-6, 8e-6)
    inner = t.id[np.hypot(t.x_m, t.y_m) < 0.45 * 256 * pix]
    seen = np.isin(inner, m.label)
    assert len(inner) > 300 and seen.mean() > 0.9
    # Mean SE over the frame is above the bare substrate by about the covered area fraction.
    assert m.se.mean() > get_material("Si").se_yield * 1.01


# ---- materials and validation -----------------------------------------------------------------
def test_materials_table():
    for name in ("Si", "C", "TiO2", "SiO2", "Au", "Ag", "Pt", "Fe3O4", "polystyrene"):
        m = get_material(name)
        assert 1 <= m.z_eff <= 79 and 0 < m.se_yield < 2 and 0 < m.bse_eta < 0.6
    assert get_material("Au").bse_eta > get_material("TiO2").bse_eta > get_material("C").bse_eta
    assert get_material("SiO2").insulator and not get_material("Au").insulator
    assert get_material("TiO2").z_eff == pytest.approx(16.4, abs=0.1)
    assert backscatter_coefficient(79) == pytest.approx(0.50, abs=0.02)
    assert backscatter_coefficient(6) == pytest.approx(0.06, abs=0.01)
    with pytest.raises(ValueError, match="Unobtainium.*TiO2"):
        get_material("Unobtainium")
    assert set(MATERIALS) >= {"Si", "C", "TiO2", "SiO2", "Au", "Ag", "Pt", "Fe3O4", "polystyrene"}


@pytest.mark.parametrize("cls,field,value", [
    (SpecimenConfig, "tile_m", 0.0),
    (SpecimenConfig, "density_per_m2", -1.0),
    (SpecimenConfig, "density_per_m2", float("nan")),
    (SpecimenConfig, "empty_fraction", 1.0),
    (SpecimenConfig, "cluster_fraction", 1.5),
    (SpecimenConfig, "cluster_size_mean", 1.0),
    (SpecimenConfig, "substrate", "cheese"),
    (SpecimenConfig, "texture_rms", -0.1),
    (SpecimenConfig, "extent_m", (10e-3,)),
    (SpecimenConfig, "height_tilt_rad", (0.0, float("inf"))),
    (SpecimenConfig, "populations", ()),
    (Population, "fraction", 0.0),
    (Population, "distribution", "gaussian"),
    (Population, "median_diameter_m", 0.0),
    (Population, "sigma_log", -0.1),
    (Population, "shapes", ("cube",)),
    (Population, "shape_weights", (1.0, 2.0)),
    (Population, "aspect_ratio", (3.0, 2.0)),
    (Population, "material", "cheese"),
])
def test_bad_config_raises_value_error_naming_the_field(cls, field, value):
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field}"):
        cls(**{field: value})


def test_particles_too_large_for_tile_rejected():
    with pytest.raises(ValueError, match="SpecimenConfig.tile_m"):
        SpecimenConfig(tile_m=2e-6, populations=(Population(median_diameter_m=1e-6),))


def test_bad_arguments_raise():
    sp = Specimen(mixed(), 1)
    with pytest.raises(ValueError, match="x1_m"):
        sp.particles_in(1e-6, 0, 0, 1e-6)
    with pytest.raises(ValueError, match="x0_m"):
        sp.particles_in(float("nan"), 0, 1e-6, 1e-6)
    with pytest.raises(ValueError, match="seed"):
        Specimen(mixed(), -1)
    with pytest.raises(ValueError, match="x_m"):
        sp.height_m(float("inf"), 0.0)


def test_table_records_and_label_ids():
    sp = Specimen(mixed(), 28)
    t = sp.particles_in(0, 0, 5e-6, 5e-6)
    rec = t.to_records()
    assert len(rec) == len(t) and rec[0]["shape"] in ALL_SHAPES and isinstance(rec[0]["id"], int)
    assert set(rec[0]) >= {"id", "x_m", "y_m", "z_m", "diameter_m", "shape", "material", "orientation_rad"}
    m = sp.render(make_grid((2.5e-6, 2.5e-6), 10e-9, (128, 128)))
    assert m.label.dtype == np.int32
    labels = np.unique(m.label[m.label > 0])
    ids = sp.ids_of_labels(labels)
    assert ids.dtype == np.int64 and np.array_equal(ids, labels)
    assert set(ids.tolist()) <= set(sp.particles_in(-5e-6, -5e-6, 10e-6, 10e-6).id.tolist())
