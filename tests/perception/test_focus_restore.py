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


def _pair(e, ax=0.0, ay=0.0, d=2.0, seed=8, n=256):
    rng = np.random.default_rng(seed)
    scene = ndi.gaussian_filter(rng.random((n, n)), 0.7) + 0.5
    return tuple(_ellipse_blur(scene, e + s * d, ax, ay) + rng.normal(0, 1e-3, scene.shape) for s in (-1, 1))


def test_focus_features_gain_invariant_and_swap_is_a_group_element():
    a, b = _pair(1.5, 1.0, -0.5)
    x = focus.focus_features(a, b)
    lay = focus.feature_layout()
    assert x.shape == (int(lay["n_features"]),) and x.dtype == np.float32 and np.isfinite(x).all()
    np.testing.assert_allclose(focus.focus_features(7.0 * a, 7.0 * b), x, rtol=1e-4, atol=1e-4)
    perm, s_in, s_out = focus.symmetry_group(lay)
    swap = [g for g in range(len(perm)) if s_out[g].tolist() == [-1.0, -1.0, -1.0]][0]
    np.testing.assert_allclose(focus.focus_features(b, a), x[perm[swap]] * s_in[swap], rtol=1e-4, atol=1e-4)
    assert x[lay["spectral"][0]] == pytest.approx(1.5, abs=0.6)  # the classical fit is one of the inputs


def test_focus_features_bad_input():
    a, b = _pair(1.0, n=128)
    for bad, msg in [((a, b[:100]), "must equal"), ((a[:40, :40], b[:40, :40]), ">= 64 px"),
                     ((np.where(a > 0.9, np.nan, a), b), "NaN")]:
        with pytest.raises(PerceptionInputError, match=msg):
            focus.focus_features(*bad)
    with pytest.raises(PerceptionInputError, match="win"):
        focus.focus_features(a, b, win=32)


@pytest.fixture(scope="module")
def tiny_focus_model(tmp_path_factory):
    """A 30-step model on 8 twin pairs, exported and recorded as `emtwin train focus` does."""
    pytest.importorskip("torch")
    from types import SimpleNamespace

    from perception.train import focus_train

    out = tmp_path_factory.mktemp("focus")
    args = SimpleNamespace(n_scenes=8, seed=3, scene_px=128, cache=None, steps=30, batch=4, lr=1e-3, delta_dof=2.0,
                           win=64, no_spectral_input=False, swap_only=False, hidden=16, time_budget_s=None,
                           out=str(out), name="focus")
    rec = focus_train.run_focus_training(args, "test")
    return out / "focus.onnx", rec


def test_tiny_focus_training_exports_a_loadable_equivariant_model(tiny_focus_model):
    from perception import FocusEstimator

    path, rec = tiny_focus_model
    assert rec["steps_done"] == 30 and rec["features"]["n_features"] == int(focus.feature_layout()["n_features"])
    est = FocusEstimator(path)
    a, b = _pair(2.0, 1.0, 0.0)
    r = est.estimate(a, b, depth_of_field_m=1e-6)
    assert np.isfinite([r.wd_error_dof, r.wd_correction_m, *r.astig_dof, *r.stigmator_correction]).all()
    assert r.wd_correction_m == pytest.approx(-r.wd_error_dof * 1e-6)
    # swapping the frames flips every output (exact by construction)
    np.testing.assert_allclose(est.predict_raw(b, a), -est.predict_raw(a, b), rtol=1e-4, atol=1e-5)
    # mirror symmetries hold exactly at the feature level
    x = est.features(a, b)
    perm, s_in, s_out = focus.symmetry_group(focus.feature_layout())
    run = lambda v: est.session.run(None, {"features": v[None].astype(np.float32)})[0][0]  # noqa: E731
    for g in range(len(perm)):
        np.testing.assert_allclose(run(x[perm[g]] * s_in[g]), s_out[g] * run(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(PerceptionInputError, match="must equal"):
        est.estimate(a, b[:200], 1e-6)
    with pytest.raises(PerceptionInputError):
        est.estimate(a, b, -1.0)


def test_focus_estimator_rejects_a_model_without_feature_record(tmp_path):
    from perception import FocusEstimator

    (tmp_path / "focus.onnx").write_bytes(b"")
    (tmp_path / "focus.json").write_text('{"crop": 128}')
    with pytest.raises(PerceptionInputError, match="features"):
        FocusEstimator(tmp_path / "focus.onnx")


@pytest.mark.skipif(not (MODELS_DIR / "focus.onnx").exists(), reason="no shipped focus.onnx")
@pytest.mark.parametrize("e,ax,ay", [(3.0, 0.0, 0.0), (-2.5, 0.0, 0.0), (0.5, 0.0, 0.0), (1.5, 1.5, 0.0)])
def test_shipped_focus_estimator_recovers_defocus(e, ax, ay):
    from perception import FocusEstimator

    a, b = _pair(e, ax, ay)
    a, b = ((v * 1000).astype(np.uint16) for v in (a, b))
    r = FocusEstimator().estimate(a, b, depth_of_field_m=1e-6)
    assert r.wd_error_dof == pytest.approx(e, abs=0.6)
    assert r.astig_dof[0] == pytest.approx(ax, abs=0.8) and r.astig_dof[1] == pytest.approx(ay, abs=0.8)
