"""Contrast significance (Rose criterion): noise estimate, per-instance SNR, dropping noise detections."""
import numpy as np
import pytest

from perception import PerceptionInputError, Segmenter
from perception.significance import contrast_snr, drop_insignificant, noise_sigma


def _disk(shape, r0, c0, radius):
    rr, cc = np.mgrid[:shape[0], :shape[1]]
    return (rr - r0) ** 2 + (cc - c0) ** 2 <= radius ** 2


def test_noise_sigma_of_white_noise_ignores_a_few_particles():
    rng = np.random.default_rng(0)
    img = rng.normal(100.0, 7.0, (300, 400))
    assert noise_sigma(img) == pytest.approx(7.0, rel=0.03)
    for r, c in [(50, 60), (150, 200), (250, 300)]:
        img[_disk(img.shape, r, c, 12)] += 300.0  # bright particles are edges in few pixels
    assert noise_sigma(img) == pytest.approx(7.0, rel=0.05)


def test_snr_matches_the_rose_formula_for_a_disk():
    rng = np.random.default_rng(1)
    sigma, delta = 5.0, 4.0
    img = rng.normal(50.0, sigma, (120, 120))
    disk = _disk(img.shape, 60, 60, 8)
    img[disk] += delta
    lab = disk.astype(np.int32)
    snr = contrast_snr(img, lab)
    # ring: background 2..5 px (chessboard) from the disk
    from scipy import ndimage as ndi
    ring = ndi.maximum_filter(disk, size=11) & ~ndi.maximum_filter(disk, size=3)
    expected = delta / (sigma * np.sqrt(1 / disk.sum() + 1 / ring.sum()))
    assert snr.shape == (1,)
    assert snr[0] == pytest.approx(expected, rel=0.25)


def test_noise_patches_are_dropped_and_particles_of_either_polarity_kept():
    rng = np.random.default_rng(2)
    img = rng.normal(100.0, 10.0, (200, 300))
    lab = np.zeros(img.shape, np.int32)
    lab[_disk(img.shape, 40, 40, 6)] = 1          # noise only
    bright = _disk(img.shape, 100, 150, 6)
    img[bright] += 30.0
    lab[bright] = 2
    dark = _disk(img.shape, 150, 250, 6)
    img[dark] -= 30.0
    lab[dark] = 3
    lab[_disk(img.shape, 160, 60, 5)] = 4          # noise only
    kept, snr = drop_insignificant(img, lab, k=5.0)
    assert kept.max() == 2 and len(snr) == 2 and np.all(snr >= 5.0)
    assert np.all(kept[bright] == 1) and np.all(kept[dark] == 2)   # renumbered in order
    assert not kept[lab == 1].any() and not kept[lab == 4].any()
    same, _ = drop_insignificant(img, lab, k=0.0)
    assert np.array_equal(same, lab)


def test_enclosed_instances_cannot_be_judged_and_are_kept():
    img = np.random.default_rng(3).normal(0.0, 1.0, (40, 40))
    lab = np.ones((40, 40), np.int32)     # one instance filling the frame: no ring at all
    assert np.isinf(contrast_snr(img, lab)[0])
    assert drop_insignificant(img, lab)[0].max() == 1


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "5", None, True])
def test_segmenter_rejects_a_bad_contrast_threshold(tiny_model, bad):
    with pytest.raises(PerceptionInputError, match="min_contrast_snr"):
        Segmenter(tiny_model[0], min_contrast_snr=bad)


def test_contrast_snr_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        contrast_snr(np.zeros((10, 10)), np.zeros((10, 11), np.int32))
    with pytest.raises(ValueError, match="k = "):
        drop_insignificant(np.zeros((10, 10)), np.zeros((10, 10), np.int32), k=-1)
