"""Classical (Otsu + watershed) segmenter: empty frames stay empty, discs are found and sized."""
import numpy as np
import pytest

from perception._common import PerceptionInputError
from perception.classical import ClassicalSegmenter


def _discs(rng: np.random.Generator, shape=(128, 256), centres=((40, 60), (80, 150), (60, 220)),
           radius_px=8.0, contrast=6.0, mean=20.0) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    signal = np.full(shape, mean)
    for cy, cx in centres:
        signal += contrast * np.sqrt(mean) * (((yy - cy) ** 2 + (xx - cx) ** 2) < radius_px ** 2)
    return rng.poisson(signal).astype(float)


@pytest.mark.parametrize("mean", [5.0, 50.0, 500.0])
def test_pure_noise_frame_has_no_particles(mean):
    """Otsu alone splits a noise histogram in two and returns hundreds of noise blobs."""
    img = np.random.default_rng(1).poisson(mean, (128, 512)).astype(float)
    assert ClassicalSegmenter().labels(img).max() == 0


def test_discs_found_and_sized():
    img = _discs(np.random.default_rng(2))
    seg = ClassicalSegmenter().segment(img, pixel_size_m=5e-9)
    assert len(seg.particles) == 3
    d = np.asarray(seg.particles["equivalent_diameter_m"])
    assert np.allclose(d, 16 * 5e-9, rtol=0.1)


def test_low_contrast_discs_survive_the_noise_floor():
    """Per-pixel contrast of 1.5 sigma: invisible pixel by pixel, plain after smoothing."""
    img = _discs(np.random.default_rng(3), contrast=1.5)
    assert ClassicalSegmenter().labels(img).max() == 3


@pytest.mark.parametrize("kw", [{"noise_k": -1.0}, {"noise_k": float("nan")}, {"min_contrast_snr": "5"},
                                {"sigma_px": 0.0}])
def test_bad_parameters_rejected(kw):
    with pytest.raises(PerceptionInputError):
        ClassicalSegmenter(**kw)
