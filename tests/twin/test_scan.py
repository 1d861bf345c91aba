"""Scan timing, pixel geometry, drift, jitter and vibration of twin.scan."""
from __future__ import annotations

import math

import numpy as np
import pytest

from twin import scan as s

QUIET = s.ScanConfig(line_jitter_m=0.0, vibration_amplitude_m=0.0)
STILL = s.DriftConfig(velocity_m_per_s=(0.0, 0.0), settle_amplitude_m=0.0)


def _grid(scan_cfg=QUIET, drift=None, seed=0, t0=0.0, shape=(48, 64), rot=0.0,
          center=(1e-3, -2e-3), fov=640e-9, dwell=1e-6, lint=1, shift=(0.0, 0.0)):
    drift = drift if drift is not None else s.DriftModel(STILL)
    return s.sample_grid(center, fov, shape, rot, t0, dwell, lint, scan_cfg, drift,
                         np.random.default_rng(seed), shift)


def _nominal(g: s.SampleGrid) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.mgrid[0:g.shape_px[0], 0:g.shape_px[1]]
    return (g.origin_m[0] + j * g.col_step_m[0] + i * g.row_step_m[0],
            g.origin_m[1] + j * g.col_step_m[1] + i * g.row_step_m[1])


def test_frame_time_and_line_starts():
    assert s.frame_time_s((768, 1024), 1e-6, 2, 100e-6) == pytest.approx(768 * (1024 * 2e-6 + 100e-6))
    t = s.line_start_times_s((4, 10), 1e-6, 3, 5e-6)
    np.testing.assert_allclose(t, np.arange(4) * (10 * 3e-6 + 5e-6))
    with pytest.raises(ValueError, match="dwell_s"):
        s.frame_time_s((8, 8), -1e-6, 1, 0.0)


def test_undistorted_geometry_convention():
    g = _grid(rot=0.0)
    ny, nx = g.shape_px
    p = 640e-9 / 64
    assert g.pixel_size_m == pytest.approx(p)
    assert g.col_step_m == pytest.approx((p, 0.0))          # +column = +x
    assert g.row_step_m == pytest.approx((0.0, -p))         # +row = -y (image up = +y)
    np.testing.assert_allclose(g.x_m, _nominal(g)[0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(g.y_m, _nominal(g)[1], rtol=0, atol=1e-15)
    assert g.x_m.mean() == pytest.approx(1e-3, abs=1e-15)
    assert g.y_m.mean() == pytest.approx(-2e-3, abs=1e-15)
    assert g.y_m[0, 0] > g.y_m[-1, 0] and g.x_m[0, -1] > g.x_m[0, 0]
    assert g.area_m2 == pytest.approx(ny * nx * p * p)


def test_scan_rotation_rotates_the_fast_axis_counter_clockwise():
    g = _grid(rot=math.pi / 2)
    p = g.pixel_size_m
    assert g.col_step_m == pytest.approx((0.0, p), abs=1e-20)   # fast axis now along +y
    assert g.row_step_m == pytest.approx((p, 0.0), abs=1e-20)
    assert g.x_m[0, 0] < g.x_m[-1, 0]


def test_steady_drift_displaces_features_by_velocity_times_elapsed_time():
    v = (0.3e-9, -0.2e-9)
    drift = s.DriftModel(s.DriftConfig(velocity_m_per_s=v, settle_amplitude_m=0.0))
    a = _grid(drift=drift, t0=10.0)
    b = _grid(drift=drift, t0=70.0)
    # The specimen moved by v*60 s: the same pixel now samples the point v*60 s behind.
    np.testing.assert_allclose(b.x_m - a.x_m, -v[0] * 60.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(b.y_m - a.y_m, -v[1] * 60.0, rtol=0, atol=1e-15)
    # Within one frame: the last line is sampled later than the first.
    dt = s.line_start_times_s(a.shape_px, 1e-6, 1, QUIET.flyback_s)[-1]
    nomx, _ = _nominal(a)
    assert (a.x_m - nomx)[-1, 0] - (a.x_m - nomx)[0, 0] == pytest.approx(-v[0] * dt, rel=1e-6)


def test_settle_creep_continues_along_the_move_and_decays():
    cfg = s.DriftConfig(velocity_m_per_s=(0.0, 0.0), settle_amplitude_m=20e-9, settle_tau_s=30.0,
                        settle_length_m=100e-6)
    d = s.DriftModel(cfg)
    d.on_stage_move(100.0, 50e-6, 0.0)
    ox, oy = d.offset_m(np.array([50.0, 100.0, 130.0, 1000.0]))
    total = 20e-9 * (1 - math.exp(-0.5))
    np.testing.assert_allclose(ox, [0.0, 0.0, -total * (1 - math.exp(-1.0)), -total], atol=1e-20)
    np.testing.assert_allclose(oy, 0.0, atol=1e-25)
    # Sampled point = nominal - offset: it keeps advancing along the move direction (+x).
    g1 = _grid(drift=d, t0=101.0)
    g2 = _grid(drift=d, t0=140.0)
    assert (g2.x_m - g1.x_m).min() > 0
    # A huge move is capped at the settle amplitude.
    big = s.DriftModel(cfg)
    big.on_stage_move(0.0, 0.0, -5e-3)
    assert big.offset_m(1e4)[1] == pytest.approx(20e-9, rel=1e-9)
    with pytest.raises(ValueError, match="t_s"):
        big.on_stage_move(-1.0, 1e-6, 0.0)


def test_line_jitter_is_per_line_along_fast_axis():
    cfg = s.ScanConfig(line_jitter_m=1e-9, vibration_amplitude_m=0.0)
    g = _grid(scan_cfg=cfg, shape=(400, 32), fov=320e-9)
    dx = g.x_m - _nominal(g)[0]
    dy = g.y_m - _nominal(g)[1]
    np.testing.assert_allclose(dy, 0.0, atol=1e-18)
    np.testing.assert_allclose(dx, dx[:, :1] + 0 * dx, atol=1e-18)   # constant along a line
    assert np.std(dx[:, 0]) == pytest.approx(1e-9, rel=0.15)


def test_vibration_is_a_mains_sinusoid_of_pixel_time():
    cfg = s.ScanConfig(line_jitter_m=0.0, vibration_amplitude_m=2e-9, vibration_frequency_hz=50.0,
                       vibration_angle_rad=0.4, flyback_s=50e-6)
    t0, dwell = 3.21, 2e-6
    g = _grid(scan_cfg=cfg, t0=t0, dwell=dwell, lint=2, shape=(64, 128), fov=1.28e-6)
    t = (t0 + s.line_start_times_s(g.shape_px, dwell, 2, 50e-6)[:, None]
         + np.arange(128)[None, :] * dwell * 2)
    want = 2e-9 * np.sin(2 * math.pi * 50.0 * t)
    np.testing.assert_allclose(g.x_m - _nominal(g)[0], want * math.cos(0.4), atol=1e-17)
    np.testing.assert_allclose(g.y_m - _nominal(g)[1], want * math.sin(0.4), atol=1e-17)


def test_beam_shift_moves_the_sampled_points():
    g = _grid(shift=(5e-9, -3e-9))
    np.testing.assert_allclose(g.x_m - _nominal(g)[0], 5e-9, atol=1e-17)
    np.testing.assert_allclose(g.y_m - _nominal(g)[1], -3e-9, atol=1e-17)
    assert g.shift_m == pytest.approx((5e-9, -3e-9))


def test_same_seed_identical_grid_and_slack_bounds_deviation():
    d = s.DriftModel(s.DriftConfig())
    d.on_stage_move(1.0, 20e-6, 10e-6)
    kw = dict(scan_cfg=s.ScanConfig(), drift=d, t0=2.0, rot=0.7, shift=(2e-9, 1e-9))
    a, b, c = _grid(seed=5, **kw), _grid(seed=5, **kw), _grid(seed=6, **kw)
    assert np.array_equal(a.x_m, b.x_m) and np.array_equal(a.y_m, b.y_m)
    assert not np.array_equal(a.x_m, c.x_m)
    nomx, nomy = _nominal(a)
    dev = np.hypot(a.x_m - nomx, a.y_m - nomy)
    assert dev.max() <= a.slack_m
    res = np.hypot(a.x_m - nomx - a.shift_m[0], a.y_m - nomy - a.shift_m[1])
    assert res.max() <= a.residual_m
    x0, x1, y0, y1 = a.bbox_m()
    assert x0 <= a.x_m.min() and a.x_m.max() <= x1 and y0 <= a.y_m.min() and a.y_m.max() <= y1


@pytest.mark.parametrize("kw", [dict(fov=math.nan), dict(shape=(0, 8)), dict(dwell=0.0),
                                dict(lint=0), dict(t0=math.inf)])
def test_bad_arguments_raise(kw):
    with pytest.raises(ValueError):
        _grid(**kw)


def test_config_validation():
    with pytest.raises(ValueError, match="ScanConfig.flyback_s"):
        s.ScanConfig(flyback_s=-1.0)
    with pytest.raises(ValueError, match="DriftConfig.settle_tau_s"):
        s.DriftConfig(settle_tau_s=0.0)
