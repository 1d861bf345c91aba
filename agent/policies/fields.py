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


def field_cells(sites: Sites, origin: tuple[float, float], w_m: float, h_m: float, margin: float = 0.9) -> Candidates:
    """Counts of sites per cell on a grid of w×h cells anchored at `origin`.

    Sites within the outer (1 − margin)/2 band of a cell are not counted for it, since
    particles there are likely cut by the frame edge.
    """
    if len(sites) == 0:
        return Candidates(np.empty(0), np.empty(0), np.empty(0, dtype=int))
    ci = np.floor((sites.x_m - origin[0]) / w_m + 0.5).astype(np.int64)
    ri = np.floor((sites.y_m - origin[1]) / h_m + 0.5).astype(np.int64)
    fx = (sites.x_m - origin[0]) / w_m + 0.5 - ci
    fy = (sites.y_m - origin[1]) / h_m + 0.5 - ri
    lo, hi = (1 - margin) / 2, 1 - (1 - margin) / 2
    ok = (fx > lo) & (fx < hi) & (fy > lo) & (fy < hi)
    keys, counts = np.unique(np.stack([ci[ok], ri[ok]], axis=1), axis=0, return_counts=True)
    if keys.size == 0:
        return Candidates(np.empty(0), np.empty(0), np.empty(0, dtype=int))
    return Candidates(origin[0] + keys[:, 0] * w_m, origin[1] + keys[:, 1] * h_m, counts)
