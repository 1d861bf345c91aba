"""Dose bookkeeping, charging and contamination (twin.exposure)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from twin import exposure as ex
from twin import scan as sc

D = 1.6e20          # areal dose of one typical frame (e/m²)


def _grid(center=(0.0, 0.0), fov=4e-6, shape=(64, 64), rot=0.0):
    quiet = sc.ScanConfig(line_jitter_m=0.0, vibration_amplitude_m=0.0)
    drift = sc.DriftModel(sc.DriftConfig(velocity_m_per_s=(0.0, 0.0), settle_amplitude_m=0.0))
    return sc.sample_grid(center, fov, shape, rot, 0.0, 1e-6, 1, quiet, drift,
                          np.random.default_rng(0))


def test_dose_accumulates_inside_the_scanned_rectangle_only():
    h = ex.ExposureHistory()
    for k in range(3):
        h.record_rect((0.0, 0.0), (2e-6, 1e-6), 0.0, D, t_s=float(k))
    assert len(h) == 1                                         # identical fields merge
    x = np.array([0.0, 0.9e-6, 0.0, 1.1e-6, 0.0])
    y = np.array([0.0, 0.0, 0.45e-6, 0.0, 0.6e-6])
    charge, contam = h.dose_at(x, y, t_s=2.0)
    np.testing.assert_allclose(contam, [3 * D, 3 * D, 3 * D, 0.0, 0.0])
    assert charge[0] == pytest.approx(D * (1 + math.exp(-1 / 60) + math.exp(-2 / 60)))
    # Records made after the query time do not count.
    assert h.dose_at(np.zeros(1), np.zeros(1), t_s=-1.0)[1][0] == 0.0
    with pytest.raises(ValueError, match="t_s"):
        h.record_rect((0.0, 0.0), (1e-6, 1e-6), 0.0, D, t_s=1.0)


def test_rotated_rectangle_membership():
    h = ex.ExposureHistory()
    h.record_rect((1e-6, 0.0), (4e-6, 0.4e-6), math.pi / 4, D, 0.0)
    u = np.array([1.5e-6, -1.5e-6, 0.0])       # along the long axis, then across it
    x = 1e-6 + np.array([u[0], u[1], -0.3e-6]) / math.sqrt(2)
    y = np.array([u[0], u[1], 0.3e-6]) / math.sqrt(2)
    _, contam = h.dose_at(x, y, 0.0)
    np.testing.assert_allclose(contam, [D, D, 0.0])


def test_contamination_darkens_exposed_area_monotonically_and_not_next_to_it():
    h = ex.ExposureHistory()
    cfg = h.contamination
    inside, outside = [], []
    for k in range(40):
        h.record_rect((0.0, 0.0), (2e-6, 2e-6), 0.0, D, float(k))
        _, contam = h.dose_at(np.array([0.0, 3e-6]), np.array([0.0, 0.0]), float(k))
        f = ex.contamination_factor(contam, cfg)
        inside.append(float(f[0]))
        outside.append(float(f[1]))
    assert all(a > b for a, b in zip(inside, inside[1:]))
    assert outside == [1.0] * 40
    assert 0.9 < inside[4] < 0.99              # noticeable after ~ten frames, not one
    assert inside[-1] < 0.85 and inside[-1] > 1 - cfg.darkening
    off = ex.contamination_factor(np.array([1e23]), ex.ContaminationConfig(enabled=False))
    assert off[0] == 1.0


def test_charging_only_on_insulators_and_decays():
    cfg = ex.ChargingConfig(decay_s=60.0)
    h = ex.ExposureHistory(charging=cfg)
    for k in range(3):
        h.record_rect((0.0, 0.0), (2e-6, 2e-6), 0.0, D, float(k))
    charge, _ = h.dose_at(np.zeros(2), np.zeros(2), 2.0)
    gain = ex.charging_gain(charge, np.array([0.0, 1.0]), cfg)
    assert gain[0] == 1.0
    assert 1.2 < gain[1] <= 1.0 + cfg.brightening          # clear after a few frames
    later, _ = h.dose_at(np.zeros(1), np.zeros(1), 2.0 + 60.0)
    assert later[0] == pytest.approx(charge[0] * math.exp(-1.0))
    assert ex.charging_gain(later, 1.0, cfg)[0] < gain[1]
    assert ex.charging_gain(charge, 1.0, ex.ChargingConfig(enabled=False))[0] == 1.0


def test_dose_on_grid_matches_point_evaluation_away_from_edges():
    h = ex.ExposureHistory()
    g = _grid(shape=(200, 300), fov=6e-6)
    h.record_rect((0.5e-6, -0.2e-6), (2e-6, 1.5e-6), 0.3, D, 0.0)
    charge, contam = h.dose_on_grid(g, 0.0, coarse_px=64)
    assert contam.shape == (200, 300) and contam.dtype == np.float32
    exact = h.dose_at(g.x_m, g.y_m, 0.0)[1]
    step = 6e-6 / 300 * (299 / 63)                 # coarse spacing (m)
    # Points farther than two coarse cells from every edge agree exactly.
    dist_in = _distance_to_edges(g, (0.5e-6, -0.2e-6), (2e-6, 1.5e-6), 0.3)
    far = np.abs(dist_in) > 2 * step
    np.testing.assert_allclose(contam[far], exact[far], rtol=1e-6)
    assert np.abs(contam - exact).max() <= D * (1 + 1e-6)
    assert contam.sum() == pytest.approx(exact.sum(), rel=0.05)       # area preserved
    empty = ex.ExposureHistory().dose_on_grid(g, 0.0)
    assert not empty[0].any() and not empty[1].any()
    assert charge.max() == pytest.approx(D, rel=1e-6)


def _distance_to_edges(g, c, size, rot):
    dx, dy = g.x_m - c[0], g.y_m - c[1]
    u = dx * math.cos(rot) + dy * math.sin(rot)
    v = -dx * math.sin(rot) + dy * math.cos(rot)
    return np.minimum(np.abs(np.abs(u) - size[0] / 2), np.abs(np.abs(v) - size[1] / 2))


def test_upsample_is_exact_for_linear_fields():
    rows = np.linspace(0, 99, 10)
    cols = np.linspace(0, 49, 7)
    coarse = 2.0 * rows[:, None] - 3.0 * cols[None, :]
    full = ex.upsample(coarse, rows, cols, (100, 50))
    r, c = np.mgrid[0:100, 0:50]
    np.testing.assert_allclose(full, 2.0 * r - 3.0 * c, atol=1e-3)


@pytest.mark.parametrize("rot", [0.0, 1.0])
def test_deflection_pushes_the_beam_away_from_charge(rot):
    cfg = ex.ChargingConfig(deflection_m=5e-9, field_range_m=0.3e-6)
    g = _grid(shape=(256, 256), fov=8e-6, rot=rot)
    rows, cols, xc, yc = ex.coarse_points(g, 64)
    charged = np.hypot(xc - 1e-6, yc + 0.5e-6) < 1.5e-6          # disk of charge
    dx, dy = ex.deflection(charged.astype(np.float64), g, cfg)
    mag = np.hypot(dx, dy)
    assert mag.max() <= cfg.deflection_m * 1.05
    assert mag.max() > 0.5 * cfg.deflection_m
    # At the rim the displacement points radially outward.
    rx, ry = xc - 1e-6, yc + 0.5e-6
    rim = (np.abs(np.hypot(rx, ry) - 1.5e-6) < 0.2e-6)
    radial = (dx * rx + dy * ry) / np.hypot(rx, ry)
    assert (radial[rim] > 0.8 * mag[rim]).all()
    zero = ex.deflection(charged.astype(float), g, ex.ChargingConfig(enabled=False))
    assert not zero[0].any()


def test_config_validation():
    with pytest.raises(ValueError, match="ChargingConfig.decay_s"):
        ex.ChargingConfig(decay_s=0.0)
    with pytest.raises(ValueError, match="ContaminationConfig.darkening"):
        ex.ContaminationConfig(darkening=1.0)


def test_record_grid_and_modulate_darken_and_brighten_the_scanned_field_only():
    h = ex.ExposureHistory()
    small = _grid(fov=1e-6, shape=(32, 32))
    for k in range(10):
        h.record(small, 5 * D, float(k))
    big = _grid(fov=4e-6, shape=(128, 128))
    sig = np.ones((128, 128), np.float32)
    ins = np.zeros((128, 128), np.float32)
    ins[:, 64:] = 1.0                                     # right half insulating
    se = h.modulate(sig, ins, big, 10.0, "se")
    bse = h.modulate(sig, ins, big, 10.0, "bse")
    inside = (np.abs(big.x_m) < 0.4e-6) & (np.abs(big.y_m) < 0.4e-6)
    outside = (np.abs(big.x_m) > 0.7e-6) | (np.abs(big.y_m) > 0.7e-6)
    assert np.allclose(se[outside], 1.0) and np.allclose(bse[outside], 1.0)
    left, right = inside & (ins == 0), inside & (ins == 1)
    assert se[left].max() < 0.95                          # contamination on the conductor
    assert se[right].min() > se[left].max()               # charging brightens the insulator
    assert 1.0 > bse[inside].max() and bse[inside].min() > se[left].max()
    assert h.modulate(sig, ins, _grid(center=(1e-4, 0.0)), 10.0) is sig   # untouched field


def test_deflect_moves_points_only_when_insulator_is_charged():
    h = ex.ExposureHistory(charging=ex.ChargingConfig(deflection_m=5e-9, field_range_m=0.3e-6))
    small = _grid(fov=1e-6, shape=(32, 32))
    for k in range(5):
        h.record(small, 5 * D, float(k))
    g = _grid(fov=4e-6, shape=(128, 128))
    assert h.deflect(g, 5.0) is g                          # no insulator info: conductive
    assert h.deflect(g, 5.0, insulator=lambda c: np.zeros(c.x_m.shape)) is g
    calls = []

    def insulating(c):
        calls.append(c.shape_px)
        return np.ones(c.x_m.shape)

    moved = h.deflect(g, 5.0, insulator=insulating)
    assert calls == [(64, 64)]
    d = np.hypot(moved.x_m - g.x_m, moved.y_m - g.y_m)
    assert 1e-9 < d.max() <= 5.5e-9
    assert moved.slack_m >= g.slack_m + d.max() - 1e-15
    # Points right of the charged square are pushed further right (+x).
    right = (g.x_m > 0.6e-6) & (g.x_m < 0.8e-6) & (np.abs(g.y_m) < 0.2e-6)
    assert (moved.x_m[right] - g.x_m[right]).min() > 0
