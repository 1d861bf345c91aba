"""Physics invariants of the STEM probe (twin.stem.optics)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from twin.optics import electron_wavelength_m
from twin.stem import optics as so
from twin.stem.config import StemOpticsConfig

HV = 200e3
ALPHA = 25e-3


def _moments(img: np.ndarray) -> tuple[float, float, float]:
    """(variance along the major axis, along the minor axis, major-axis angle in image
    (col, −row) = stage (x, y) coordinates) of an intensity centred near index (0, 0) wrapped."""
    img = np.fft.fftshift(img)
    ny, nx = img.shape
    r, c = np.mgrid[0:ny, 0:nx].astype(float)
    x, y = c - nx // 2, -(r - ny // 2)
    w = img / img.sum()
    cxx, cyy, cxy = (w * x * x).sum(), (w * y * y).sum(), (w * x * y).sum()
    ev, vec = np.linalg.eigh(np.array([[cxx, cxy], [cxy, cyy]]))
    major = vec[:, 1]
    return ev[1], ev[0], math.atan2(major[1], major[0]) % math.pi


def test_chi_matches_the_krivanek_polynomial() -> None:
    lam = electron_wavelength_m(HV)
    ab = so.Aberrations(c10_m=-30e-9, c12_m=5e-9, phi12_rad=0.4, c30_m=1e-6)
    kx, ky = np.array([3e9, -1e9]), np.array([4e9, 2e9])
    alpha = lam * np.hypot(kx, ky)
    phi = np.arctan2(ky, kx)
    expect = 2 * math.pi / lam * (0.5 * alpha**2 * (ab.c10_m + ab.c12_m * np.cos(2 * (phi - ab.phi12_rad)))
                                  + 0.25 * alpha**4 * ab.c30_m)
    assert so.chi(kx, ky, lam, ab) == pytest.approx(expect, rel=1e-12)
    assert ab.defocus_m == pytest.approx(30e-9)
    assert ab.to_abtem() == pytest.approx({"C10": -300.0, "C12": 50.0, "phi12": 0.4, "C30": 1e4})


def test_driver_defocus_is_minus_c10_and_stigmator_cancels_c12() -> None:
    cfg = StemOpticsConfig(intrinsic_c12_m=(4e-9, -3e-9), stigmator_gain_m=10e-9)
    ab = so.aberrations(cfg, 12e-9, (0.0, 0.0))
    assert ab.c10_m == pytest.approx(-12e-9)
    assert ab.c12_m == pytest.approx(5e-9)
    assert ab.phi12_rad == pytest.approx(0.5 * math.atan2(-3e-9, 4e-9))
    fixed = so.aberrations(cfg, 0.0, (0.4, -0.3))
    assert fixed.c12_m == pytest.approx(0.0, abs=1e-18)
    with pytest.raises(ValueError, match="stigmator_x"):
        so.aberrations(cfg, 0.0, (2.0, 0.0))


@pytest.mark.parametrize("pixel_m", [0.02e-9, 0.3e-9, 2e-9])
def test_probe_image_is_normalised_and_sharpest_in_focus(pixel_m: float) -> None:
    shape = (128, 128)
    widths = []
    for df in (0.0, 20e-9, 80e-9):
        img, _ = so.probe_image(shape, pixel_m, HV, ALPHA, so.Aberrations(c10_m=-df))
        assert img.sum() == pytest.approx(1.0, rel=1e-9) and img.min() >= 0
        widths.append(sum(_moments(img)[:2]))
    assert widths[0] <= widths[1] <= widths[2]
    assert widths[2] > widths[0]


@pytest.mark.parametrize("pixel_m", [0.03e-9, 0.5e-9])
def test_defocus_sign_symmetry_without_cs(pixel_m: float) -> None:
    """With C30 = 0 (and C12 = 0) the intensity of the probe at ±C10 is identical."""
    a, _ = so.probe_image((96, 96), pixel_m, HV, ALPHA, so.Aberrations(c10_m=15e-9))
    b, _ = so.probe_image((96, 96), pixel_m, HV, ALPHA, so.Aberrations(c10_m=-15e-9))
    assert np.allclose(a, b, atol=1e-9 * a.max())


def test_cs_breaks_the_defocus_symmetry() -> None:
    a, _ = so.probe_image((128, 128), 0.03e-9, HV, ALPHA, so.Aberrations(c10_m=5e-9, c30_m=20e-6))
    b, _ = so.probe_image((128, 128), 0.03e-9, HV, ALPHA, so.Aberrations(c10_m=-5e-9, c30_m=20e-6))
    assert abs(a.max() - b.max()) > 0.05 * max(a.max(), b.max())


def test_astigmatism_elongates_along_a_direction_that_flips_with_defocus() -> None:
    phi12 = 0.3
    ab_over = so.Aberrations(c10_m=8e-9, c12_m=8e-9, phi12_rad=phi12)
    ab_under = so.Aberrations(c10_m=-8e-9, c12_m=8e-9, phi12_rad=phi12)
    big1, small1, ang1 = _moments(so.probe_image((160, 160), 0.03e-9, HV, ALPHA, ab_over)[0])
    big2, small2, ang2 = _moments(so.probe_image((160, 160), 0.03e-9, HV, ALPHA, ab_under)[0])
    assert big1 > 3 * small1 and big2 > 3 * small2
    # Rays land at C10·a + C12[(a·u)u − (a·v)v]: C10 > 0 stretches along u (angle φ12), C10 < 0 across it.
    assert math.cos(ang1 - phi12) ** 2 > 0.95
    assert math.sin(ang2 - phi12) ** 2 > 0.95


def test_scan_rotation_turns_the_astigmatic_probe_in_the_image() -> None:
    ab = so.Aberrations(c10_m=8e-9, c12_m=8e-9, phi12_rad=0.0)
    _, _, ang0 = _moments(so.probe_image((160, 160), 0.03e-9, HV, ALPHA, ab, rotation_rad=0.0)[0])
    _, _, ang1 = _moments(so.probe_image((160, 160), 0.03e-9, HV, ALPHA, ab, rotation_rad=0.5)[0])
    # Stage direction φ12 appears at image angle φ12 − θ.
    assert math.cos(ang0) ** 2 > 0.95
    assert math.cos(ang1 + 0.5) ** 2 > 0.95


def test_wave_and_ray_regimes_agree_on_the_defocused_disk() -> None:
    """At large defocus both regimes give a disk of radius α·|Δf|: rms radius α|Δf|/√2."""
    df, p = 300e-9, 0.5e-9
    ab = so.Aberrations(c10_m=-df)
    wave, regime_w = so.probe_image((128, 128), p, HV, ALPHA, ab)
    old = so.MAX_FINE_PX
    try:
        so.MAX_FINE_PX = 1
        rays, regime_r = so.probe_image((128, 128), p, HV, ALPHA, ab)
    finally:
        so.MAX_FINE_PX = old
    assert (regime_w, regime_r) == ("wave", "rays")
    expect = (ALPHA * df / p) ** 2 / 2
    for img in (wave, rays):
        assert sum(_moments(img)[:2]) == pytest.approx(expect, rel=0.1)


def test_otf_is_cached_and_deterministic() -> None:
    ab = so.Aberrations(c10_m=-10e-9, c12_m=2e-9, phi12_rad=0.2, c30_m=1e-6)
    a = so.otf((64, 80), 0.05e-9, HV, ALPHA, ab, 0.1, 0.1e-10)
    b = so.otf((64, 80), 0.05e-9, HV, ALPHA, ab, 0.1, 0.1e-10)
    assert a is b and a.shape == (64, 41) and a.dtype == np.complex64
    assert abs(a[0, 0]) == pytest.approx(1.0, rel=1e-5)
    assert not a.flags.writeable


def test_source_size_grows_with_current_and_dof_with_wavelength() -> None:
    cfg = StemOpticsConfig()
    assert so.source_sigma_m(cfg, 400e-12, HV) == pytest.approx(2 * so.source_sigma_m(cfg, 100e-12, HV))
    assert so.depth_of_field_m(80e3, ALPHA) > so.depth_of_field_m(300e3, ALPHA)
    assert 5e-9 < so.depth_of_field_m(HV, ALPHA) < 10e-9
    assert so.probe_fw50_m(cfg, 10e-12, HV) < 0.15e-9
