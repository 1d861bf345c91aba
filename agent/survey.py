"""Low-magnification survey: where are the particles? Blob detection on a survey frame.

Particles at survey scale are a few pixels across. The frame is smoothed (σ = 1 px), the
background level and noise are estimated robustly (median, MAD), and connected regions
brighter than background + k·noise become candidate particle sites, reported in stage
metres with their area.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from drivers import Frame


@dataclass(frozen=True)
class Sites:
    """Candidate particle sites found in survey frames (stage metres, area m²)."""

    x_m: np.ndarray
    y_m: np.ndarray
    area_m2: np.ndarray

    def __len__(self) -> int:
        return int(self.x_m.size)

    @staticmethod
    def empty() -> "Sites":
        return Sites(np.empty(0), np.empty(0), np.empty(0))

    def concat(self, other: "Sites") -> "Sites":
        return Sites(np.concatenate([self.x_m, other.x_m]), np.concatenate([self.y_m, other.y_m]),
                     np.concatenate([self.area_m2, other.area_m2]))


def detect_sites(frame: Frame, k_sigma: float = 5.0, bright: bool = True, min_area_px: int = 2) -> Sites:
    """Candidate sites in one survey frame: regions k_sigma noise levels above background."""
    img = ndimage.gaussian_filter(np.asarray(frame.image, dtype=np.float32), 1.0)
    if not bright:
        img = -img
    bg = ndimage.median_filter(img[::4, ::4], size=9)
    bg = ndimage.zoom(bg, (img.shape[0] / bg.shape[0], img.shape[1] / bg.shape[1]), order=1)[: img.shape[0], : img.shape[1]]
    resid = img - bg
    mad = float(np.median(np.abs(resid - np.median(resid)))) * 1.4826 + 1e-6
    mask = resid > k_sigma * mad
    labels, n = ndimage.label(mask)
    if n == 0:
        return Sites.empty()
    idx = np.arange(1, n + 1)
    area = ndimage.sum_labels(np.ones_like(labels), labels, idx)
    keep = area >= min_area_px
    if not np.any(keep):
        return Sites.empty()
    rc = np.array(ndimage.center_of_mass(mask, labels, idx[keep])).reshape(-1, 2)
    x, y = frame.meta.pixel_to_stage(rc[:, 0], rc[:, 1])
    return Sites(np.asarray(x), np.asarray(y), area[keep] * frame.meta.pixel_size_m**2)


def density_grid(sites: Sites, x0: float, y0: float, x1: float, y1: float, cell_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of sites on a regular grid of square cells; returns (counts, cell centres x, y)."""
    nx = max(1, int(round((x1 - x0) / cell_m)))
    ny = max(1, int(round((y1 - y0) / cell_m)))
    counts, _, _ = np.histogram2d(sites.y_m, sites.x_m, bins=(ny, nx), range=((y0, y0 + ny * cell_m), (x0, x0 + nx * cell_m)))
    cx = x0 + (np.arange(nx) + 0.5) * cell_m
    cy = y0 + (np.arange(ny) + 0.5) * cell_m
    return counts, cx, cy
