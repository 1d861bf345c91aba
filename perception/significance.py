"""Contrast significance of detected particles: is an instance distinguishable from noise?

Rose criterion (A. Rose, J. Opt. Soc. Am. 38 (1948) 196): an object of N pixels whose mean
differs from its surroundings by ΔS is reliably seen when ΔS / (σ·sqrt(1/N_in + 1/N_ring))
≥ k with k ≈ 5, σ the per-pixel noise. The segmentation network sometimes marks patches of
substrate noise as particles on large empty frames; they have no contrast and fail this test,
whatever their size, while real particles pass it by a wide margin.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

ROSE_K = 5.0
MAX_CONTRAST_SNR = 1e6  # upper bound accepted for a min_contrast_snr setting
_MAD_TO_SIGMA = 1.4826  # normal distribution: sigma = 1.4826 * median absolute deviation


def noise_sigma(image: np.ndarray) -> float:
    """Per-pixel white-noise sigma (image units) from the MAD of the 3x3 high-pass residual.

    The residual x - mean3x3(x) of white noise has variance sigma^2 (1 - 1/9); structure
    (edges, particles) occupies few pixels and barely moves the median.
    """
    img = np.asarray(image, np.float32)
    if img.ndim != 2 or min(img.shape) < 3:
        raise ValueError(f"image shape {img.shape}: must be 2-D and at least 3x3")
    h, w = img.shape
    # residual at every other row and column (a quarter of the pixels suffices)
    box = sum(img[dr:h - 2 + dr:2, dc:w - 2 + dc:2] for dr in range(3) for dc in range(3)) / 9.0
    r = (img[1:h - 1:2, 1:w - 1:2] - box).ravel()
    mad = float(np.median(np.abs(r - np.median(r))))
    return _MAD_TO_SIGMA * mad / np.sqrt(1.0 - 1.0 / 9.0)


def contrast_snr(image: np.ndarray, labels: np.ndarray, gap_px: int = 1, ring_px: int = 5,
                 min_ring_px: int = 4) -> np.ndarray:
    """|mean inside - mean of surrounding ring| / (sigma sqrt(1/N_in + 1/N_ring)) per instance 1..max.

    The ring is the background more than `gap_px` and at most `ring_px` from the instance
    (chessboard distance; a pixel near two instances counts for the higher label; the gap
    skips the blurred edge).
    Instances with fewer than `min_ring_px` ring pixels (enclosed by neighbours) get +inf:
    they cannot be judged, so they are never dropped.
    """
    img = np.asarray(image)
    lab = np.asarray(labels)
    if img.shape != lab.shape or img.ndim != 2:
        raise ValueError(f"image {img.shape} and labels {lab.shape}: must be 2-D of the same shape")
    n = int(lab.max())
    if n == 0:
        return np.zeros(0)
    on = np.flatnonzero(lab)  # the labelled pixels: the same sums as over the frame, a fraction of the work
    inside = lab.ravel()[on]
    n_in = np.bincount(inside, minlength=n + 1)[1:]
    m_in = np.bincount(inside, img.ravel()[on].astype(np.float64), n + 1)[1:] / np.maximum(n_in, 1)
    n_ring, s_ring = _ring_sums(img, lab, n, gap_px, ring_px)
    m_ring = s_ring / np.maximum(n_ring, 1)
    sigma = max(noise_sigma(img), 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.abs(m_in - m_ring) / (sigma * np.sqrt(1.0 / np.maximum(n_in, 1) + 1.0 / np.maximum(n_ring, 1)))
    snr[(n_ring < min_ring_px) | (n_in == 0)] = np.inf
    return snr


def _ring_sums(img: np.ndarray, lab: np.ndarray, n: int, gap_px: int, ring_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel count and intensity sum of each instance's ring. With few instances, each is done in
    its box grown by 2 ring_px (every ring pixel's filter window lies inside; at the frame edge
    the box ends where the frame does): the same figures as filtering the whole frame, faster."""
    from .instances import crops_pay

    m = 2 * ring_px
    boxes = ndi.find_objects(lab)
    if not crops_pay(boxes, lab.shape, m):
        grown = ndi.maximum_filter(lab, size=2 * ring_px + 1)
        sel = (grown > 0) & (ndi.maximum_filter(lab > 0, size=2 * gap_px + 1) == 0)
        ring = grown[sel]
        return np.bincount(ring, minlength=n + 1)[1:], np.bincount(ring, img[sel].astype(np.float64), n + 1)[1:]
    n_ring, s_ring = np.zeros(n, np.int64), np.zeros(n)
    for k, sl in enumerate(boxes, start=1):
        if sl is None:
            continue
        box = tuple(slice(max(0, s.start - m), s.stop + m) for s in sl)
        sub = lab[box]
        sel = (ndi.maximum_filter(sub, size=2 * ring_px + 1) == k) & (ndi.maximum_filter(sub > 0, size=2 * gap_px + 1) == 0)
        n_ring[k - 1] = int(sel.sum())
        s_ring[k - 1] = float(img[box][sel].astype(np.float64).sum())
    return n_ring, s_ring


def drop_insignificant(image: np.ndarray, labels: np.ndarray, k: float = ROSE_K) -> tuple[np.ndarray, np.ndarray]:
    """(labels without the instances whose contrast SNR is below `k`, renumbered 1..N in the
    original order; the contrast SNR of the kept instances)."""
    if not (isinstance(k, (int, float)) and np.isfinite(k) and k >= 0):
        raise ValueError(f"k = {k!r}: must be a finite number >= 0")
    lab = np.asarray(labels)
    snr = contrast_snr(image, lab)
    keep = np.concatenate([[False], snr >= k])
    lut = np.zeros(len(keep), np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[lab], snr[keep[1:]]
