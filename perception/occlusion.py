"""Occlusion correction of touching particles: restore the area hidden under a neighbour.

In a cluster one particle lies over another, and the segmentation splits touching
particles along their contact line, so a touching particle shows less than its projected
area. The projected-area-equivalent diameter (the quantity the agent measures) counts the
whole outline. `occluded_area_px` fits an ellipse to the instance's free edge (the crack
points between the instance and the substrate) and counts the pixels inside that ellipse
which the segmentation gave to *other* instances: the hidden cap. The fit only fills the
cap, so its shape error (faceted particles are not ellipses) touches only a small area.

Ellipse fit: direct least squares with the constraint 4ac - b^2 = 1 (Fitzgibbon, Pilu & Fisher,
IEEE TPAMI 21, 476, 1999) in the numerically stable split form of Halir & Flusser (WSCG 1998).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

_STEPS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def fit_ellipse(x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """Conic coefficients (a, b, c, d, e, f) of a*x^2 + b*x*y + c*y^2 + d*x + e*y + f = 0, an
    ellipse with 4ac - b^2 > 0, fitted to points (x, y); None for fewer than 6 points or no ellipse."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 6:
        return None
    mx, my = x.mean(), y.mean()
    sc = max(float(np.std(x - mx) + np.std(y - my)), 1e-12)
    u, v = (x - mx) / sc, (y - my) / sc
    d1 = np.stack([u * u, u * v, v * v], axis=1)
    d2 = np.stack([u, v, np.ones_like(u)], axis=1)
    s1, s2, s3 = d1.T @ d1, d1.T @ d2, d2.T @ d2
    try:
        t = -np.linalg.solve(s3, s2.T)
    except np.linalg.LinAlgError:
        return None
    m = s1 + s2 @ t
    m = np.array([m[2] / 2.0, -m[1], m[0] / 2.0])  # C1^-1 * M with C1 = [[0,0,2],[0,-1,0],[2,0,0]]
    w, vec = np.linalg.eig(m)
    vec = np.real(vec)
    cond = 4.0 * vec[0] * vec[2] - vec[1] ** 2
    ok = np.flatnonzero((cond > 0) & np.isfinite(np.real(w)))
    if ok.size == 0:
        return None
    a1 = vec[:, ok[0]]
    a2 = t @ a1
    a, b, c = a1
    d, e, f = a2
    # undo the normalisation u = (x - mx)/sc, v = (y - my)/sc
    A, B, C = a / sc**2, b / sc**2, c / sc**2
    D = d / sc - 2 * A * mx - B * my
    E = e / sc - 2 * C * my - B * mx
    F = f + A * mx * mx + B * mx * my + C * my * my - d * mx / sc - e * my / sc
    return np.array([A, B, C, D, E, F])


def grown_box(sl: tuple[slice, slice], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(r0, c0, r1, c1) of a `find_objects` slice pair grown by 1 px, clipped to `shape`."""
    return (max(sl[0].start - 1, 0), max(sl[1].start - 1, 0),
            min(sl[0].stop + 1, shape[0]), min(sl[1].stop + 1, shape[1]))


def free_edge_points(labels: np.ndarray, label: int, bbox: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray, int]:
    """(rows, cols) of crack points between `label` and the substrate (pixel-centre coordinates
    +- 0.5 px), and the number of crack edges it shares with other instances."""
    r0, c0, r1, c1 = bbox
    h, w = labels.shape
    pr, pc = np.nonzero(labels[r0:r1, c0:c1] == label)
    pr, pc = pr + r0, pc + c0
    rows, cols, contact = [], [], 0
    for dr, dc in _STEPS:
        nr, nc = pr + dr, pc + dc
        inside = (nr >= 0) & (nr < h) & (nc >= 0) & (nc < w)
        nb = np.full(pr.shape, -1)
        nb[inside] = labels[nr[inside], nc[inside]]
        free = nb == 0
        rows.append(pr[free] + 0.5 * dr)
        cols.append(pc[free] + 0.5 * dc)
        contact += int(((nb > 0) & (nb != label)).sum())
    return np.concatenate(rows), np.concatenate(cols), contact


def occluded_area_px(labels: np.ndarray, max_contact: float = 0.7, max_gain: float = 1.0,
                     max_spill: float = 0.15) -> np.ndarray:
    """Hidden area (px) of each instance 1..N of `labels`: pixels of other instances inside the
    ellipse fitted to its free edge. 0 for instances touching none, with more than `max_contact`
    of their edge in contact, or whose fit is implausible (hidden area above `max_gain` x the
    visible area, or the ellipse covering substrate pixels above `max_spill` x the visible area)."""
    lab = np.asarray(labels)
    n = int(lab.max()) if lab.size else 0
    out = np.zeros(n, float)
    if n == 0:
        return out
    for i, sl in enumerate(ndi.find_objects(lab)):
        if sl is None:
            continue
        k = i + 1
        r0, c0, r1, c1 = grown_box(sl, lab.shape)
        win = lab[r0:r1, c0:c1]
        if not ((win > 0) & (win != k)).any():
            continue
        rr, cc, contact = free_edge_points(lab, k, (r0, c0, r1, c1))
        if contact == 0 or contact > max_contact * (contact + rr.size):
            continue
        out[k - 1] = _hidden_area(lab, k, rr, cc, max_gain, max_spill)
    return out


def _hidden_area(lab: np.ndarray, k: int, rr: np.ndarray, cc: np.ndarray, max_gain: float,
                 max_spill: float) -> float:
    """Pixels of other instances inside the ellipse fitted to (rr, cc); 0 if implausible."""
    conic = fit_ellipse(cc, rr)
    if conic is None:
        return 0.0
    h, w = lab.shape
    span = max(rr.max() - rr.min(), cc.max() - cc.min()) + 2.0
    r0, r1 = int(max(rr.min() - span, 0)), int(min(rr.max() + span, h))
    c0, c1 = int(max(cc.min() - span, 0)), int(min(cc.max() + span, w))
    yy, xx = np.mgrid[r0:r1, c0:c1]
    a, b, c, d, e, f = conic
    val = a * xx * xx + b * xx * yy + c * yy * yy + d * xx + e * yy + f
    inside = val * np.sign(a + c) < 0
    if inside[0, :].any() and r0 > 0 or inside[-1, :].any() and r1 < h \
            or inside[:, 0].any() and c0 > 0 or inside[:, -1].any() and c1 < w:
        return 0.0  # the ellipse runs out of its search window: a degenerate fit
    win = lab[r0:r1, c0:c1]
    visible = float((win == k).sum())
    hidden = float((inside & (win > 0) & (win != k)).sum())
    spill = float((inside & (win == 0)).sum())
    if hidden > max_gain * visible or spill > max_spill * visible:
        return 0.0
    return hidden
