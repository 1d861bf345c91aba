"""Post-processing shortcuts give exactly what the whole-frame computations give."""
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import label, regionprops
from skimage.segmentation import watershed

import perception.instances as inst
from perception import significance


def _blobs(seed: int, shape=(120, 160), n=25, touching=True) -> np.ndarray:
    """Instance labels of random ellipses; overlapping ones split along a watershed line."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.int32)
    for k in range(1, n + 1):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        ry, rx = rng.uniform(2, 9, size=2)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        lab[inside & ((lab == 0) | touching)] = k
    return inst.remove_small(lab, 1)


@pytest.fixture(params=[True, False], ids=["crops", "whole-frame"])
def path(request, monkeypatch):
    """Force one of the two code paths chosen by `crops_pay`."""
    monkeypatch.setattr(inst, "crops_pay", lambda *a, **k: request.param)
    return request.param


@pytest.mark.parametrize("seed", range(4))
def test_seeded_watershed_equals_one_watershed_over_the_frame(seed, path):
    rng = np.random.default_rng(seed)
    surface = ndi.gaussian_filter(rng.random((90, 110)), 3)
    mask = surface > np.percentile(surface, 55)
    markers, _ = ndi.label(mask & (surface > np.percentile(surface, 85)))
    markers[markers % 3 == 0] = 0  # some components get no marker
    ref = watershed(-surface, markers, mask=mask)
    orphan, k = ndi.label(mask & (ref == 0))
    ref = np.where(orphan > 0, orphan + ref.max(), ref)
    assert k > 0
    np.testing.assert_array_equal(inst.seeded_watershed(-surface, markers, mask), ref)


def _ring_reference(img, lab, gap_px=1, ring_px=5):
    grown = ndi.maximum_filter(lab, size=2 * ring_px + 1)
    sel = (grown > 0) & (ndi.maximum_filter(lab > 0, size=2 * gap_px + 1) == 0)
    n = int(lab.max())
    return np.bincount(grown[sel], minlength=n + 1)[1:], np.bincount(grown[sel], img[sel], n + 1)[1:]


@pytest.mark.parametrize("seed", range(3))
def test_ring_sums_match_the_whole_frame_filter(seed, path):
    lab = _blobs(seed)
    img = np.random.default_rng(seed).random(lab.shape)
    n_ring, s_ring = significance._ring_sums(img, lab, int(lab.max()), 1, 5)
    ref_n, ref_s = _ring_reference(img, lab)
    np.testing.assert_array_equal(n_ring, ref_n)
    np.testing.assert_allclose(s_ring, ref_s, rtol=1e-12)


def test_touching_labels_both_paths(path):
    lab = np.zeros((12, 12), np.int32)
    lab[1:4, 1:4] = 1
    lab[4:6, 4:6] = 2  # diagonal neighbour of 1
    lab[8:11, 8:11] = 3  # alone
    lab[0:2, 10:12] = 4  # at the corner, alone
    assert inst.touching_labels(lab).tolist() == [1, 2]
    blobs = _blobs(7)
    hi = ndi.maximum_filter(blobs, size=3)
    lo = ndi.minimum_filter(np.where(blobs == 0, 2**31 - 1, blobs), size=3)
    ref = np.unique(blobs[(blobs > 0) & ((hi > blobs) | (lo < blobs))])
    np.testing.assert_array_equal(inst.touching_labels(blobs), ref)


def test_octagon_bounds_the_convex_hull_area():
    for seed in range(5):
        for p in regionprops(label(_blobs(seed, touching=False) > 0)):
            assert inst.octagon_px(p.coords) >= p.area_convex
    square = np.argwhere(np.ones((5, 5), bool))
    assert inst.octagon_px(square) == 25


def test_moments_match_regionprops():
    lab = _blobs(3)
    props = regionprops(lab)
    ids = np.array([p.label for p in props])
    area, cr, cc, ecc = inst._moments(lab, ids)
    np.testing.assert_array_equal(area, [p.area for p in props])
    np.testing.assert_allclose(cr, [p.centroid[0] for p in props], rtol=1e-12)
    np.testing.assert_allclose(cc, [p.centroid[1] for p in props], rtol=1e-12)
    np.testing.assert_allclose(ecc, [p.eccentricity for p in props], atol=1e-9)


def test_sigmoid_is_the_logistic_function_in_float32():
    from perception.instances import sigmoid

    x = np.array([[-80.0, -3.0, 0.0, 2.5, 80.0]])
    for dtype in (np.float32, np.float64):
        y = sigmoid(x.astype(dtype))
        assert y.dtype == np.float32 and y.shape == x.shape
        np.testing.assert_allclose(y, 1.0 / (1.0 + np.exp(-x)), atol=1e-6)
    assert x[0, 0] == -80.0  # the input is not modified


def test_remove_small_renumbers_or_returns_a_copy():
    lab = np.array([[0, 1, 1, 0, 3], [2, 2, 0, 3, 3], [0, 0, 0, 0, 3]], np.int64)
    kept = inst.remove_small(lab, 2)  # every instance kept: the identity, as a new int32 array
    assert kept.dtype == np.int32 and np.array_equal(kept, lab) and not np.shares_memory(kept, lab)
    assert np.array_equal(inst.remove_small(lab, 3), np.where(lab == 3, 1, 0))
    gap = np.where(lab == 2, 5, lab)  # label values 2 and 4 unused: renumbered 1..3 in order
    assert np.array_equal(inst.remove_small(gap, 1), np.where(lab == 3, 2, np.where(lab == 2, 3, lab)))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_contrast_snr_does_not_depend_on_the_image_dtype(dtype, path):
    lab = _blobs(5)
    rng = np.random.default_rng(5)
    img = (40 + 30 * (lab > 0) + rng.normal(0, 8, lab.shape)).clip(0, 255).round()
    ref = significance.contrast_snr(img.astype(np.float64), lab)
    np.testing.assert_array_equal(significance.contrast_snr(img.astype(dtype), lab), ref)
