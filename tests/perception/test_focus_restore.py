"""Sharpness metrics, classical restoration with an estimated PSF, shipped-model smoke checks."""
import numpy as np
import pytest
from scipy import ndimage as ndi

from perception import PerceptionInputError, focus
from perception._common import MODELS_DIR
from perception.restore import estimate_psf, richardson_lucy, wiener_deconvolve


def _scene(seed=0, n=192):
    """Random disks on a textured background (a crude SEM-like scene), float in ~[0.2, 1]."""
    rng = np.random.default_rng(seed)
    img = 0.2 + 0.02 * rng.standard_normal((n, n))
    yy, xx = np.mgrid[:n, :n]
    for _ in range(60):
        cy, cx, r = rng.uniform(0, n), rng.uniform(0, n), rng.uniform(3, 10)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0.6, 1.0)
    return img


@pytest.mark.parametrize("method", sorted(focus.SHARPNESS))
def test_sharpness_drops_with_blur_and_ignores_gain(method):
    img = _scene()
    s0 = focus.sharpness(img, method)
    s1 = focus.sharpness(ndi.gaussian_filter(img, 1.5), method)
    s2 = focus.sharpness(ndi.gaussian_filter(img, 3.0), method)
    assert s0 > s1 > s2
    assert focus.sharpness(img * 7.0, method) == pytest.approx(s0, rel=1e-9)


def test_sharpness_bad_input():
    with pytest.raises(PerceptionInputError):
        focus.sharpness(np.zeros((8, 8)), "nope")
    with pytest.raises(PerceptionInputError):
        focus.brenner(np.full((8, 8), np.inf))


@pytest.mark.parametrize("sigma", [1.5, 3.0])
def test_psf_estimate_recovers_gaussian_blur(sigma):
    img = ndi.gaussian_filter(_scene(1, 256), sigma)
    img += np.random.default_rng(2).normal(0, 0.003, img.shape)
    est = estimate_psf(img)
    assert est.sigma_major_px == pytest.approx(sigma, rel=0.35)
    assert est.sigma_minor_px == pytest.approx(sigma, rel=0.35)


def test_psf_estimate_sees_astigmatism():
    img = ndi.gaussian_filter(_scene(3, 256), (1.0, 3.5))  # (rows, cols): long axis along columns
    est = estimate_psf(img)
    assert est.sigma_major_px > 1.8 * est.sigma_minor_px
    assert abs(np.cos(est.angle_rad)) > 0.9  # major axis ~ column (x) axis


@pytest.mark.parametrize("fn", [wiener_deconvolve, richardson_lucy])
def test_classical_restoration_improves_psnr(fn):
    clean = _scene(4, 192)
    deg = ndi.gaussian_filter(clean, 2.0) + np.random.default_rng(5).normal(0, 0.005, clean.shape)
    out = fn(deg)
    assert out.shape == deg.shape
    mse_in = np.mean((deg - clean) ** 2)
    mse_out = np.mean((out - clean) ** 2)
    assert mse_out < 0.8 * mse_in


@pytest.mark.skipif(not (MODELS_DIR / "restorer.onnx").exists(), reason="no shipped restorer.onnx")
def test_shipped_restorer_shapes():
    from perception import Restorer

    img = (_scene(6, 100) * 4000).astype(np.uint16)
    out = Restorer().restore(img)
    assert out.shape == img.shape and out.dtype == np.float32 and np.isfinite(out).all()
    with pytest.raises(PerceptionInputError):
        Restorer().restore(np.zeros((3, 3, 3)))


@pytest.mark.skipif(not (MODELS_DIR / "focus.onnx").exists(), reason="no shipped focus.onnx")
def test_shipped_focus_estimator_outputs():
    from perception import FocusEstimator

    est = FocusEstimator()
    a = (ndi.gaussian_filter(_scene(7, 256), 2.0) * 1000).astype(np.uint16)
    b = (ndi.gaussian_filter(_scene(7, 256), 4.0) * 1000).astype(np.uint16)
    r = est.estimate(a, b, depth_of_field_m=1e-6)
    assert np.isfinite([r.wd_error_dof, r.wd_correction_m, *r.astig_dof, *r.stigmator_correction]).all()
    with pytest.raises(PerceptionInputError):
        est.estimate(a, b[:200], 1e-6)
    with pytest.raises(PerceptionInputError):
        est.estimate(a, b, -1.0)


def _ellipse_blur(img, e, ax, ay):
    """Blur with the twin's geometry: uniform ellipse with semi-axes |e +/- A/2| px (A = |(ax, ay)|),
    long axis at phi = atan2(ay, ax) / 2 from +x (x = columns, y = -rows)."""
    amp, phi = np.hypot(ax, ay), 0.5 * np.arctan2(ay, ax)
    a, b = abs(e + amp / 2), abs(e - amp / 2)
    r = int(np.ceil(max(a, b))) + 2
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(float)
    y_up = -yy
    u = xx * np.cos(phi) + y_up * np.sin(phi)
    v = -xx * np.sin(phi) + y_up * np.cos(phi)
    k = (u / max(a, 0.5)) ** 2 + (v / max(b, 0.5)) ** 2 <= 1.0
    k = k / k.sum()
    return ndi.convolve(img, k, mode="wrap")


@pytest.mark.parametrize("e,ax,ay", [(3.0, 0.0, 0.0), (-2.5, 0.0, 0.0), (1.5, 2.0, 0.0), (-1.0, 0.0, -2.0)])
def test_spectral_focus_estimate_recovers_defocus_and_astigmatism(e, ax, ay):
    rng = np.random.default_rng(8)
    scene = ndi.gaussian_filter(rng.random((256, 256)), 0.7) + 0.5
    d = 2.0
    minus = _ellipse_blur(scene, e - d, ax, ay) + rng.normal(0, 1e-3, scene.shape)
    plus = _ellipse_blur(scene, e + d, ax, ay) + rng.normal(0, 1e-3, scene.shape)
    est = focus.spectral_focus_estimate(minus, plus, d)
    assert est[0] == pytest.approx(e, abs=0.6)
    assert est[1] == pytest.approx(ax, abs=0.8) and est[2] == pytest.approx(ay, abs=0.8)


def test_spectral_focus_estimate_is_nan_without_structure():
    rng = np.random.default_rng(9)
    a, b = rng.normal(100, 1, (128, 128)), rng.normal(100, 1, (128, 128))
    assert np.isnan(focus.spectral_focus_estimate(a, b, 2.0)[0])
