"""Physics invariants of twin.optics: wavelength, probe size, defocus/astigmatism blur."""
from __future__ import annotations

import math

import numpy as np
import pytest

from twin import optics as o

CFG = o.OpticsConfig()
FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _probe(alpha=3e-3, diameter=3e-9):
    return o.Probe(alpha_rad=alpha, diameter_m=diameter)


def _moments(img: np.ndarray, rot: float) -> tuple[float, float, float]:
    """(var along major axis, var along minor axis, major-axis angle) in stage coordinates
    (pixel units), for image row = −y, column = +x rotated by ``rot``."""
    ny, nx = img.shape
    r, c = np.mgrid[0:ny, 0:nx].astype(np.float64)
    x = c * math.cos(rot) + r * math.sin(rot)
    y = c * math.sin(rot) - r * math.cos(rot)
    w = img / img.sum()
    mx, my = (w * x).sum(), (w * y).sum()
    cxx = (w * (x - mx) ** 2).sum()
    cyy = (w * (y - my) ** 2).sum()
    cxy = (w * (x - mx) * (y - my)).sum()
    ang = 0.5 * math.atan2(2 * cxy, cxx - cyy)
    ev = np.linalg.eigvalsh([[cxx, cxy], [cxy, cyy]])
    return float(ev[1]), float(ev[0]), ang


def _angle_diff(a: float, b: float) -> float:
    """Difference of two axis orientations modulo pi, in [0, pi/2]."""
    d = (a - b) % math.pi
    return min(d, math.pi - d)


def _sharpness(img: np.ndarray) -> float:
    gy, gx = np.gradient(img.astype(np.float64))
    return float((gx**2 + gy**2).sum() / (img.astype(np.float64) ** 2).sum())


@pytest.mark.parametrize("hv, pm", [(5e3, 17.30), (100e3, 3.701), (200e3, 2.508)])
def test_relativistic_wavelength_matches_tables(hv, pm):
    assert o.electron_wavelength_m(hv) == pytest.approx(pm * 1e-12, rel=1e-3)


def test_probe_is_quadrature_sum_and_grows_with_current():
    parts = o.probe_contributions_m(CFG, 5e3, 100e-12, 5e-3)
    p = o.probe(CFG, 5e3, 100e-12, 5e-3)
    assert p.alpha_rad == pytest.approx(15e-6 / 5e-3)
    quad = math.sqrt(sum(parts[k] ** 2 for k in ("source_m", "diffraction_m", "spherical_m",
                                                 "chromatic_m")))
    assert p.diameter_m == pytest.approx(quad)
    assert 1e-9 < p.diameter_m < 20e-9          # nm-scale FEG probe
    sizes = [o.probe(CFG, 5e3, i, 5e-3).diameter_m for i in (10e-12, 100e-12, 1e-9, 10e-9)]
    assert all(a < b for a, b in zip(sizes, sizes[1:]))
    # Lower voltage: longer wavelength, lower brightness -> larger probe.
    assert o.probe(CFG, 1e3, 100e-12, 5e-3).diameter_m > p.diameter_m


def test_depth_of_field_is_pixel_over_alpha():
    p = o.probe(CFG, 5e3, 100e-12, 10e-3, pixel_size_m=5e-9)
    assert p.depth_of_field_m == pytest.approx(5e-9 / p.alpha_rad)
    assert o.depth_of_field_m(2e-3, 1e-9) == pytest.approx(0.5e-6)


def test_stigmator_at_intrinsic_over_gain_cancels_astigmatism():
    cfg = o.OpticsConfig(intrinsic_astigmatism_m=(0.6e-6, -0.4e-6))
    stig = (0.6e-6 / cfg.stigmator_gain_m, -0.4e-6 / cfg.stigmator_gain_m)
    ax, ay = o.astigmatism_m(cfg, stig)
    assert abs(ax) < 1e-18 and abs(ay) < 1e-18
    assert o.astigmatism_m(cfg, (0.0, 0.0)) == (0.6e-6, -0.4e-6)
    with pytest.raises(ValueError, match="stigmator"):
        o.astigmatism_m(cfg, (1.5, 0.0))


@pytest.mark.parametrize("bad", [dict(wd_m=0.5e-3), dict(hv_v=math.nan), dict(current_a=1.0)])
def test_bad_probe_arguments_raise(bad):
    args = dict(hv_v=5e3, current_a=100e-12, wd_m=5e-3) | bad
    with pytest.raises(ValueError):
        o.probe(CFG, **args)


def test_otf_dc_is_one_and_blur_preserves_total_intensity():
    rng = np.random.default_rng(0)
    img = rng.random((96, 130)).astype(np.float32)
    otf = o.otf(img.shape, 2e-9, _probe(), 2e-6, (1e-6, 0.5e-6), 0.4)
    assert otf.shape == (96, 66) and otf.dtype == np.float32
    assert otf[0, 0] == 1.0
    out = o.blur(img, otf)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert out.sum(dtype=np.float64) == pytest.approx(img.sum(dtype=np.float64), rel=1e-5)


def test_sharpness_falls_with_defocus_and_is_symmetric_without_astigmatism():
    rng = np.random.default_rng(1)
    img = (rng.random((128, 128)) > 0.7).astype(np.float32)
    p, px = _probe(alpha=2e-3, diameter=1e-9), 1e-9
    steps_px = [0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0]        # defocus disk radius in pixels
    s_plus, s_minus = [], []
    for r in steps_px:
        dz = r * px / p.alpha_rad
        s_plus.append(_sharpness(o.blur(img, o.otf(img.shape, px, p, dz, (0.0, 0.0)))))
        s_minus.append(_sharpness(o.blur(img, o.otf(img.shape, px, p, -dz, (0.0, 0.0)))))
    assert all(a > b for a, b in zip(s_plus, s_plus[1:]))
    assert s_plus == pytest.approx(s_minus, rel=1e-6)


def test_in_focus_point_spread_is_the_gaussian_probe():
    img = np.zeros((64, 64), np.float32)
    img[32, 32] = 1.0
    px, d = 1e-9, 4e-9
    out = o.blur(img, o.otf(img.shape, px, _probe(diameter=d), 0.0, (0.0, 0.0)))
    major, minor, _ = _moments(out, 0.0)
    sigma_px = d / px / FWHM
    assert major == pytest.approx(sigma_px**2, rel=0.02)
    assert minor == pytest.approx(sigma_px**2, rel=0.02)


@pytest.mark.parametrize("phi", [0.0, 0.5, 1.2, 2.0, -0.7])
@pytest.mark.parametrize("rot", [0.0, 0.6])
def test_astigmatic_blur_ellipse_follows_stigmator_direction(phi, rot):
    cfg = o.OpticsConfig(intrinsic_astigmatism_m=(0.0, 0.0), stigmator_gain_m=1e-5)
    amp = 8e-6                                         # |astig| in metres of focus
    # Stigmator that produces a residual astigmatism of amplitude amp along phi.
    stig = (-amp * math.cos(2 * phi) / cfg.stigmator_gain_m,
            -amp * math.sin(2 * phi) / cfg.stigmator_gain_m)
    astig = o.astigmatism_m(cfg, stig)
    p, px = _probe(alpha=2e-3, diameter=3e-9), 1e-9
    img = np.zeros((160, 160), np.float32)
    img[80, 80] = 1.0
    dz = amp / 4                                       # semi-axes alpha*3A/4 and alpha*A/4
    major, minor, ang = _moments(o.blur(img, o.otf(img.shape, px, p, dz, astig, rot)), rot)
    a_px, b_px = p.alpha_rad * 0.75 * amp / px, p.alpha_rad * 0.25 * amp / px
    s2 = (3.0 / FWHM) ** 2
    assert _angle_diff(ang, phi) < 0.02
    # Uniform ellipse: variance along a semi-axis s is s²/4; plus the Gaussian probe.
    assert major == pytest.approx(a_px**2 / 4 + s2, rel=0.05)
    assert minor == pytest.approx(b_px**2 / 4 + s2, rel=0.05)
    # Through focus the streak turns by 90 degrees.
    _, _, ang2 = _moments(o.blur(img, o.otf(img.shape, px, p, -dz, astig, rot)), rot)
    assert _angle_diff(ang2, phi + math.pi / 2) < 0.02


def test_otf_is_cached_and_read_only():
    p = _probe()
    a = o.otf((64, 64), 1e-9, p, 1e-6, (0.0, 0.0))
    b = o.otf((64, 64), 1e-9, p, 1e-6, (0.0, 0.0))
    assert a is b
    with pytest.raises(ValueError):
        a[0, 0] = 2.0


def test_blur_radius_bounds_the_kernel():
    p, px = _probe(alpha=2e-3, diameter=2e-9), 1e-9
    img = np.zeros((128, 128), np.float32)
    img[64, 64] = 1.0
    astig = (4e-6, 3e-6)
    out = o.blur(img, o.otf(img.shape, px, p, 3e-6, astig, 0.3))
    rr, cc = np.mgrid[0:128, 0:128]
    outside = np.hypot(rr - 64, cc - 64) > o.blur_radius_m(p, 3e-6, astig) / px + 1
    assert np.abs(out[outside]).sum() < 0.02


def test_config_validation():
    with pytest.raises(ValueError, match="OpticsConfig.cs_m"):
        o.OpticsConfig(cs_m=-1.0)
    with pytest.raises(ValueError, match="OpticsConfig.wd_range_m"):
        o.OpticsConfig(wd_range_m=(5e-3, 1e-3))
