"""Particles seen in overlapping fields are merged by stage position."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


class ParticleCatalog:
    """Unique particles in stage coordinates (m); a new detection closer to a known particle
    than `match_fraction` × the larger diameter (or `min_match_m`) is the same particle."""

    def __init__(self, match_fraction: float = 0.5, min_match_m: float = 5e-9):
        self.match_fraction = float(match_fraction)
        self.min_match_m = float(min_match_m)
        self.x = np.empty(0)
        self.y = np.empty(0)
        self.d = np.empty(0)
        self.frame = np.empty(0, dtype=np.int64)
        self.rows: list[dict] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, x_m: np.ndarray, y_m: np.ndarray, diameter_m: np.ndarray, frame_id: int,
            extra: list[dict] | None = None) -> np.ndarray:
        """Add detections of one frame; returns a boolean mask of those that were new."""
        x_m, y_m, diameter_m = (np.asarray(a, dtype=float).ravel() for a in (x_m, y_m, diameter_m))
        new = np.ones(x_m.size, dtype=bool)
        if len(self) and x_m.size:
            tree = cKDTree(np.column_stack([self.x, self.y]))
            radius = max(self.min_match_m, self.match_fraction * float(max(self.d.max(), diameter_m.max())))
            for i, hits in enumerate(tree.query_ball_point(np.column_stack([x_m, y_m]), radius)):
                for j in hits:
                    tol = max(self.min_match_m, self.match_fraction * max(self.d[j], diameter_m[i]))
                    if np.hypot(self.x[j] - x_m[i], self.y[j] - y_m[i]) <= tol:
                        new[i] = False
                        break
        idx = np.flatnonzero(new)
        self.x = np.concatenate([self.x, x_m[idx]])
        self.y = np.concatenate([self.y, y_m[idx]])
        self.d = np.concatenate([self.d, diameter_m[idx]])
        self.frame = np.concatenate([self.frame, np.full(idx.size, frame_id, dtype=np.int64)])
        for i in idx:
            row = {"particle": len(self.rows) + 1, "x_m": float(x_m[i]), "y_m": float(y_m[i]),
                   "diameter_m": float(diameter_m[i]), "frame_id": int(frame_id)}
            if extra is not None:
                row.update(extra[i])
            self.rows.append(row)
        return new

    def covered(self, x_m: float, y_m: float, radius_m: float) -> int:
        """How many catalogued particles lie within `radius_m` of a stage point."""
        if not len(self):
            return 0
        return int(np.count_nonzero(np.hypot(self.x - x_m, self.y - y_m) <= radius_m))
