"""Candidate measurement fields from survey sites: a grid of field-sized cells with counts."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..survey import Sites


@dataclass(frozen=True)
class Candidates:
    """Cell centres (m) and the number of survey sites in each."""

    x_m: np.ndarray
    y_m: np.ndarray
    count: np.ndarray

    def __len__(self) -> int:
        return int(self.x_m.size)


def field_cells(sites: Sites, origin: tuple[float, float], w_m: float, h_m: float, margin: float = 0.9,
                gap_m: float = 0.0) -> Candidates:
    """Counts of sites per field on a grid of w×h fields at pitch (w + gap, h + gap) from `origin`.

    The gap keeps neighbouring fields from overlapping when the stage misses its target
    (backlash, repeatability): particles in the gaps are never measured, which does not
    bias sizes, while overlaps would count particles twice. Sites within the outer
    (1 − margin)/2 band of a field are not counted for it (likely cut by the frame edge).
    """
    if len(sites) == 0:
        return Candidates(np.empty(0), np.empty(0), np.empty(0, dtype=int))
    px, py = w_m + gap_m, h_m + gap_m
    ci = np.floor((sites.x_m - origin[0]) / px + 0.5).astype(np.int64)
    ri = np.floor((sites.y_m - origin[1]) / py + 0.5).astype(np.int64)
    ox = sites.x_m - origin[0] - ci * px
    oy = sites.y_m - origin[1] - ri * py
    ok = (np.abs(ox) < margin * w_m / 2) & (np.abs(oy) < margin * h_m / 2)
    keys, counts = np.unique(np.stack([ci[ok], ri[ok]], axis=1), axis=0, return_counts=True)
    if keys.size == 0:
        return Candidates(np.empty(0), np.empty(0), np.empty(0, dtype=int))
    return Candidates(origin[0] + keys[:, 0] * px, origin[1] + keys[:, 1] * py, counts)
