"""Metrics against small hand-computed cases."""
import numpy as np
import pytest

from perception import PerceptionInputError, metrics


def _img(rows):
    return np.array(rows, dtype=np.int32)


def test_identical_labels_score_one():
    gt = _img([[0, 1, 1], [0, 2, 2], [3, 0, 0]])
    assert metrics.aji_plus(gt, gt) == 1.0
    assert metrics.f1_at_iou(gt, gt) == 1.0
    assert metrics.panoptic_quality(gt, gt) == {"pq": 1.0, "sq": 1.0, "dq": 1.0}


def test_label_values_do_not_matter():
    gt = _img([[0, 1, 1], [0, 2, 2]])
    pred = _img([[0, 7, 7], [0, 3, 3]])
    assert metrics.aji_plus(gt, pred) == 1.0


def test_aji_plus_hand_case():
    # gt: one object of 4 px (row 0, cols 0-3). pred: object A = cols 0-1 (2 px), B = cols 2-5 (4 px).
    # IoU(gt,A) = 2/4, IoU(gt,B) = 2/6 -> unique pair (gt,A): C = 2, U = 4; B unpaired adds 4.
    gt = _img([[1, 1, 1, 1, 0, 0]])
    pred = _img([[1, 1, 2, 2, 2, 2]])
    assert metrics.aji_plus(gt, pred) == pytest.approx(2 / 8)


def test_aji_plus_unique_pairing_differs_from_aji():
    # two gt objects both best-matched by one big prediction; AJI+ pairs it with one of them only.
    gt = _img([[1, 1, 0, 2, 2]])
    pred = _img([[1, 1, 1, 1, 1]])
    # IoU(g1,p) = 2/5 = IoU(g2,p); pair one: C = 2, U = 5 + 2 (unpaired g2) = 7
    assert metrics.aji_plus(gt, pred) == pytest.approx(2 / 7)


def test_f1_and_pq_hand_case():
    # gt: a (3 px), b (2 px). pred: a' = a exactly, c = 1 px overlapping b (IoU 0.5, not > 0.5), d spurious.
    gt = _img([[1, 1, 1, 0, 2, 2, 0, 0]])
    pred = _img([[1, 1, 1, 0, 2, 0, 0, 3]])
    # TP = 1 (a), FP = 2 (c, d), FN = 1 (b) -> F1 = 2/(2+2+1) = 0.4
    assert metrics.f1_at_iou(gt, pred) == pytest.approx(0.4)
    pq = metrics.panoptic_quality(gt, pred)
    assert pq["sq"] == pytest.approx(1.0)
    assert pq["dq"] == pytest.approx(1 / (1 + 1.0 + 0.5))
    assert pq["pq"] == pytest.approx(pq["sq"] * pq["dq"])


def test_pq_sq_is_mean_matched_iou():
    gt = _img([[1, 1, 1, 1, 0, 2, 2, 2]])
    pred = _img([[1, 1, 1, 0, 0, 2, 2, 2]])  # IoU 3/4 and 1
    assert metrics.panoptic_quality(gt, pred)["sq"] == pytest.approx((0.75 + 1.0) / 2)


def test_empty_cases():
    z = np.zeros((3, 3), np.int32)
    one = z.copy()
    one[1, 1] = 1
    assert metrics.aji_plus(z, z) == 1.0
    assert metrics.aji_plus(one, z) == 0.0
    assert metrics.aji_plus(z, one) == 0.0
    assert metrics.f1_at_iou(one, z) == 0.0
    assert metrics.f1_at_iou(z, z) == 1.0


def test_size_wasserstein_hand_case():
    assert metrics.size_wasserstein([1.0, 2.0], [2.0, 3.0]) == pytest.approx(1.0)
    assert metrics.size_wasserstein([1.0, 1.0], [1.0]) == pytest.approx(0.0)
    assert metrics.size_wasserstein([0.0], [1.0, 3.0]) == pytest.approx(2.0)


def test_equivalent_diameter():
    lab = np.zeros((10, 10), np.int32)
    lab[:2, :2] = 1  # area 4 -> d = sqrt(16/pi)
    assert metrics.equivalent_diameters(lab, 2.0) == pytest.approx([2 * np.sqrt(16 / np.pi)])


def test_bad_input_raises():
    with pytest.raises(PerceptionInputError):
        metrics.aji_plus(np.zeros((2, 2), np.int32), np.zeros((3, 3), np.int32))
    with pytest.raises(PerceptionInputError):
        metrics.aji_plus(np.zeros((2, 2), float), np.zeros((2, 2), np.int32))
    with pytest.raises(PerceptionInputError):
        metrics.size_wasserstein([], [1.0])
    with pytest.raises(PerceptionInputError):
        metrics.size_wasserstein([np.nan], [1.0])


def test_matched_diameter_bias_hand_case():
    gt = np.zeros((20, 20), np.int32)
    gt[0:4, 0:4] = 1   # 16 px
    gt[10:14, 10:14] = 2
    pred = np.zeros_like(gt)
    pred[0:4, 0:5] = 7  # 20 px, IoU 0.8 with gt 1
    pred[18:20, 18:20] = 3  # spurious: not matched
    bias, n = metrics.matched_diameter_bias(gt, pred)
    assert n == 1
    assert bias == pytest.approx(np.sqrt(20 / 16) - 1)
    assert np.isnan(metrics.matched_diameter_bias(gt, np.zeros_like(gt))[0])
