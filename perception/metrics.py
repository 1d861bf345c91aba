"""Instance-segmentation metrics on integer label images (0 = background).

- AJI+ : aggregated Jaccard index with unique (Hungarian, maximum-IoU) pairing, Graham et al.,
  "HoVer-Net", Medical Image Analysis 58 (2019) 101563, sec. 4.2.
- PQ   : panoptic quality = SQ x DQ with matches at IoU > 0.5, Kirillov et al., CVPR 2019.
- F1 at IoU 0.5 : 2 TP / (2 TP + FP + FN) with the same matches (equals DQ).
- Size-distribution Wasserstein-1 distance between equivalent diameters (same unit as input).
- Matched-diameter bias: mean predicted / mean true equivalent diameter over IoU > 0.5 matches
  (the sizing error of particles that were found, apart from missed and spurious ones).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import wasserstein_distance

from ._common import PerceptionInputError


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    for name, a in (("gt", gt), ("pred", pred)):
        if not isinstance(a, np.ndarray) or not np.issubdtype(a.dtype, np.integer):
            raise PerceptionInputError(f"{name} = {type(a).__name__}/{getattr(a, 'dtype', None)}: must be an integer label array")
        if a.ndim != 2 or a.size == 0:
            raise PerceptionInputError(f"{name} shape = {a.shape}: must be a non-empty 2-D label image")
        if a.min() < 0:
            raise PerceptionInputError(f"{name} min = {a.min()}: labels must be >= 0")
    if gt.shape != pred.shape:
        raise PerceptionInputError(f"pred shape = {pred.shape}: must equal gt shape {gt.shape}")
    return gt, pred


def _relabel(a: np.ndarray) -> tuple[np.ndarray, int]:
    """Consecutive labels 1..n (0 stays background)."""
    ids, inv = np.unique(a, return_inverse=True)
    inv = inv.reshape(a.shape)
    if ids[0] != 0:
        return inv + 1, len(ids)
    return inv, len(ids) - 1


def overlap_matrices(gt: np.ndarray, pred: np.ndarray):
    """Intersections (n_gt, n_pred), gt areas, pred areas (after consecutive relabelling)."""
    g, ng = _relabel(gt)
    p, np_ = _relabel(pred)
    joint = np.bincount((g.astype(np.int64) * (np_ + 1) + p).ravel(), minlength=(ng + 1) * (np_ + 1))
    joint = joint.reshape(ng + 1, np_ + 1)
    area_g = joint.sum(1)[1:]
    area_p = joint.sum(0)[1:]
    return joint[1:, 1:].astype(np.float64), area_g.astype(np.float64), area_p.astype(np.float64)


def _iou(inter, area_g, area_p):
    union = area_g[:, None] + area_p[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0), union


def aji_plus(gt: np.ndarray, pred: np.ndarray) -> float:
    """AJI+: sum of paired intersections / (sum of paired unions + unpaired gt and pred areas).

    Pairs: one-to-one assignment maximising total IoU, pairs with IoU = 0 dropped.
    Both empty -> 1.0; exactly one empty -> 0.0.
    """
    gt, pred = _check_pair(gt, pred)
    inter, ag, ap = overlap_matrices(gt, pred)
    if len(ag) == 0 and len(ap) == 0:
        return 1.0
    if len(ag) == 0 or len(ap) == 0:
        return 0.0
    iou, union = _iou(inter, ag, ap)
    r, c = linear_sum_assignment(-iou)
    ok = iou[r, c] > 0
    r, c = r[ok], c[ok]
    num = inter[r, c].sum()
    den = union[r, c].sum()
    den += ag[np.setdiff1d(np.arange(len(ag)), r)].sum()
    den += ap[np.setdiff1d(np.arange(len(ap)), c)].sum()
    return float(num / den)


def match_at_iou(gt: np.ndarray, pred: np.ndarray, thr: float = 0.5) -> tuple[int, int, int, float]:
    """(TP, FP, FN, sum of matched IoU) with one-to-one matches at IoU > thr (thr >= 0.5 => unique)."""
    gt, pred = _check_pair(gt, pred)
    inter, ag, ap = overlap_matrices(gt, pred)
    if len(ag) == 0 or len(ap) == 0:
        return 0, len(ap), len(ag), 0.0
    iou, _ = _iou(inter, ag, ap)
    r, c = linear_sum_assignment(-iou)
    ok = iou[r, c] > thr
    tp = int(ok.sum())
    return tp, len(ap) - tp, len(ag) - tp, float(iou[r, c][ok].sum())


def matched_pairs(gt: np.ndarray, pred: np.ndarray, thr: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(gt index, pred index) of one-to-one matches at IoU > thr; an index counts the image's
    nonzero labels in ascending order (0 = the smallest label)."""
    gt, pred = _check_pair(gt, pred)
    inter, ag, ap = overlap_matrices(gt, pred)
    if len(ag) == 0 or len(ap) == 0:
        return np.empty(0, int), np.empty(0, int)
    iou, _ = _iou(inter, ag, ap)
    r, c = linear_sum_assignment(-iou)
    ok = iou[r, c] > thr
    return r[ok], c[ok]


def matched_diameters(gt: np.ndarray, pred: np.ndarray, thr: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, true) area-equivalent diameters (px) of one-to-one matches at IoU > thr."""
    r, c = matched_pairs(gt, pred, thr)
    ag = np.bincount(_relabel(gt)[0].ravel())[1:]
    ap = np.bincount(_relabel(pred)[0].ravel())[1:]
    return 2 * np.sqrt(ap[c] / np.pi), 2 * np.sqrt(ag[r] / np.pi)


def matched_diameter_bias(gt: np.ndarray, pred: np.ndarray, thr: float = 0.5) -> tuple[float, int]:
    """(sum pred d / sum gt d - 1, number of matches) over one-to-one matches at IoU > thr.

    Diameters are area-equivalent; NaN when nothing matches.
    """
    dp, dt = matched_diameters(gt, pred, thr)
    if dt.size == 0:
        return float("nan"), 0
    return float(dp.sum() / dt.sum() - 1.0), int(dt.size)


def f1_at_iou(gt: np.ndarray, pred: np.ndarray, thr: float = 0.5) -> float:
    """Detection F1 with matches at IoU > thr. Both empty -> 1.0."""
    tp, fp, fn, _ = match_at_iou(gt, pred, thr)
    if tp + fp + fn == 0:
        return 1.0
    return 2 * tp / (2 * tp + fp + fn)


def panoptic_quality(gt: np.ndarray, pred: np.ndarray) -> dict:
    """{'pq', 'sq', 'dq'} for one class (particles). Both empty -> all 1.0."""
    tp, fp, fn, iou_sum = match_at_iou(gt, pred, 0.5)
    if tp + fp + fn == 0:
        return {"pq": 1.0, "sq": 1.0, "dq": 1.0}
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = iou_sum / tp if tp else 0.0
    return {"pq": sq * dq, "sq": sq, "dq": dq}


def equivalent_diameters(labels: np.ndarray, pixel_size: float = 1.0) -> np.ndarray:
    """Diameter of the disk with each instance's area, in units of `pixel_size`."""
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    return np.sqrt(4.0 * areas / np.pi) * pixel_size


def size_wasserstein(d_a, d_b) -> float:
    """Wasserstein-1 (earth mover's) distance between two samples of diameters (same unit)."""
    a, b = np.asarray(d_a, float).ravel(), np.asarray(d_b, float).ravel()
    if a.size == 0 or b.size == 0:
        raise PerceptionInputError(f"diameter samples sizes = ({a.size}, {b.size}): both must be non-empty")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise PerceptionInputError("diameters: must be finite")
    return float(wasserstein_distance(a, b))


def summarize(gt: np.ndarray, pred: np.ndarray, pixel_size: float = 1.0) -> dict:
    """All metrics for one image pair, plus mean-diameter relative error (NaN if undefined)."""
    dg, dp = equivalent_diameters(gt, pixel_size), equivalent_diameters(pred, pixel_size)
    out = {"aji_plus": aji_plus(gt, pred), "f1_50": f1_at_iou(gt, pred), **panoptic_quality(gt, pred),
           "n_gt": int(dg.size), "n_pred": int(dp.size)}
    out["mean_diam_rel_err"] = float(abs(dp.mean() - dg.mean()) / dg.mean()) if dg.size and dp.size else float("nan")
    out["size_w1"] = size_wasserstein(dg, dp) if dg.size and dp.size else float("nan")
    return out
