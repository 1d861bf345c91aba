"""Counting statistics and signal chain of twin.detector."""
from __future__ import annotations

import math

import numpy as np
import pytest

from twin import detector as d

NOISELESS = d.DetectorConfig(read_noise=0.0)
SHAPE = (256, 256)
E = 1.602176634e-19


def _flat(y=1.0):
    return np.full(SHAPE, y, np.float32)


def _current_for(n_electrons, cfg=NOISELESS, dwell=1e-6, y=1.0):
    """Beam current giving ``n_electrons`` mean detected electrons per pixel."""
    return n_electrons * E / (dwell * y * cfg.efficiency)


def _snr(img, cfg=NOISELESS):
    x = img.astype(np.float64)
    return (x.mean() - cfg.offset) / x.std()


def test_mean_electrons_formula():
    n = d.mean_electrons(0.5, 100e-12, 1e-6, 2, d.DetectorConfig(efficiency=0.3))
    assert n == pytest.approx(100e-12 * 2e-6 / E * 0.5 * 0.3)


def test_output_is_uint16_and_deterministic():
    y = np.random.default_rng(3).random(SHAPE).astype(np.float32)
    a = d.detect(y, 100e-12, 1e-6, 1, d.DetectorConfig(), np.random.default_rng(7))
    b = d.detect(y, 100e-12, 1e-6, 1, d.DetectorConfig(), np.random.default_rng(7))
    c = d.detect(y, 100e-12, 1e-6, 1, d.DetectorConfig(), np.random.default_rng(8))
    assert a.dtype == np.uint16 and a.shape == SHAPE
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("n0", [2.0, 6.0, 50.0])   # Poisson branch, and normal branch
def test_snr_grows_as_sqrt_of_dose(n0):
    cur = _current_for(n0)
    rng = np.random.default_rng(0)
    base = _snr(d.detect(_flat(), cur, 1e-6, 1, NOISELESS, rng))
    more_current = _snr(d.detect(_flat(), 4 * cur, 1e-6, 1, NOISELESS, rng))
    more_dwell = _snr(d.detect(_flat(), cur, 4e-6, 1, NOISELESS, rng))
    more_lines = _snr(d.detect(_flat(), cur, 1e-6, 4, NOISELESS, rng))
    assert base == pytest.approx(math.sqrt(n0), rel=0.05)
    for s in (more_current, more_dwell, more_lines):
        assert s / base == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("n0", [0.7, 4.0, 12.0, 200.0])
def test_counts_have_poisson_mean_and_variance(n0):
    img = d.detect(_flat(), _current_for(n0), 1e-6, 1, NOISELESS, np.random.default_rng(1))
    el = (img.astype(np.float64) - NOISELESS.offset) / NOISELESS.gain
    assert el.mean() == pytest.approx(n0, rel=0.02)
    assert el.var() == pytest.approx(n0, rel=0.05)
    if n0 < d.POISSON_EXACT_BELOW:      # exact Poisson: integer electrons, P(0) = exp(-N)
        assert np.allclose(el, np.round(el))
        assert np.mean(el == 0) == pytest.approx(math.exp(-n0), abs=0.01)


def test_read_noise_adds_in_quadrature():
    cfg = d.DetectorConfig(read_noise=30.0)
    for n0 in (3.0, 80.0):
        img = d.detect(_flat(), _current_for(n0, cfg), 1e-6, 1, cfg, np.random.default_rng(2))
        want = math.sqrt(cfg.gain**2 * n0 + 30.0**2)
        assert img.astype(np.float64).std() == pytest.approx(want, rel=0.03)
        assert d.snr(1.0, _current_for(n0, cfg), 1e-6, 1, cfg) == pytest.approx(
            cfg.gain * n0 / want)


def test_level_follows_electron_rate_not_dwell():
    cur = _current_for(40.0)
    a = d.detect(_flat(), cur, 1e-6, 1, NOISELESS, np.random.default_rng(0)).mean()
    b = d.detect(_flat(), cur, 10e-6, 1, NOISELESS, np.random.default_rng(0)).mean()
    c = d.detect(_flat(), 2 * cur, 1e-6, 1, NOISELESS, np.random.default_rng(0)).mean()
    assert b == pytest.approx(a, rel=0.01)
    assert c - NOISELESS.offset == pytest.approx(2 * (a - NOISELESS.offset), rel=0.01)


def test_contrast_scales_and_brightness_shifts():
    cur = _current_for(50.0)
    ref = d.detect(_flat(), cur, 1e-6, 1, NOISELESS, np.random.default_rng(0)).mean()
    hi = d.detect(_flat(), cur, 1e-6, 1, NOISELESS, np.random.default_rng(0), contrast=0.6).mean()
    br = d.detect(_flat(), cur, 1e-6, 1, NOISELESS, np.random.default_rng(0), brightness=0.6).mean()
    assert hi - NOISELESS.offset == pytest.approx(2.0 * (ref - NOISELESS.offset), rel=0.01)
    assert br - ref == pytest.approx(0.1 * 65535, abs=1.0)


def test_saturation_clips_to_adc_range():
    img = d.detect(_flat(50.0), 10e-9, 1e-5, 1, d.DetectorConfig(), np.random.default_rng(0))
    assert (img == 65535).all()
    dark = d.detect(_flat(0.0), 1e-12, 1e-6, 1, d.DetectorConfig(), np.random.default_rng(0),
                    brightness=0.0)
    assert (dark == 0).all()
    eight = d.detect(_flat(50.0), 10e-9, 1e-5, 1, d.DetectorConfig(bit_depth=8),
                     np.random.default_rng(0))
    assert eight.max() == 255


@pytest.mark.parametrize("kw", [dict(yield_map=np.full((8, 8), np.nan, np.float32)),
                                dict(yield_map=np.full((8, 8), -1.0, np.float32)),
                                dict(brightness=1.5), dict(contrast=-0.1), dict(dwell_s=0.0),
                                dict(current_a=math.inf), dict(yield_map=np.ones(8))])
def test_bad_input_raises(kw):
    args = dict(yield_map=np.ones((8, 8), np.float32), current_a=1e-10, dwell_s=1e-6,
                line_integration=1, cfg=d.DetectorConfig(), rng=np.random.default_rng(0)) | kw
    with pytest.raises(ValueError):
        d.detect(**args)


def test_config_validation():
    with pytest.raises(ValueError, match="DetectorConfig.signal"):
        d.DetectorConfig(signal="xray")
    with pytest.raises(ValueError, match="DetectorConfig.efficiency"):
        d.DetectorConfig(efficiency=1.5)
