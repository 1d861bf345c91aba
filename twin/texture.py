"""Smooth seeded random fields of stage coordinates (persistent: a function of (x, y) only).

* `PlaneWaves`: a sum of a few random plane waves, for slowly varying fields (empty-region
  mask, height warp). Cheap at a few points, exact anywhere.
* `ValueNoise`: hashed lattice value noise with smoothstep interpolation, two rotated
  lattices summed, normalised to unit spatial rms. Lattice values come from a hash of
  (key, node index), so no state depends on which region was evaluated first.
* `on_grid`: evaluate a field on a strided subset of a frame's sample points and
  interpolate linearly in pixel space (cheap when the field is smooth on the pixel scale).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)
_M3 = np.uint64(0xBF58476D1CE4E5B9)
_M4 = np.uint64(0x94D049BB133111EB)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (Steele, Lea, Flood 2014), in place on a uint64 array."""
    h ^= h >> np.uint64(30)
    h *= _M3
    h ^= h >> np.uint64(27)
    h *= _M4
    h ^= h >> np.uint64(31)
    return h


def hash_uniform(ix: np.ndarray, iy: np.ndarray, key: int) -> np.ndarray:
    """Uniform values in [−1, 1) (float32), a deterministic function of (ix, iy, key)."""
    h = ix.astype(np.int64).astype(np.uint64) * _M1
    h ^= _mix(iy.astype(np.int64).astype(np.uint64) * _M2 + np.uint64(key & 0xFFFFFFFFFFFFFFFF))
    _mix(h)
    return ((h >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-23)) - np.float32(1.0)


class PlaneWaves:
    """f(x, y) = Σ √(2/n) cos(k·r + φ): n waves with |k| = 2π/scale · U(0.6, 1.4), random directions.

    Spatial rms is 1 (each wave contributes variance 1/n over a large area).
    """

    def __init__(self, rng: np.random.Generator, n_modes: int, scale_m: float):
        k = 2.0 * math.pi / scale_m * rng.uniform(0.6, 1.4, n_modes)
        th = rng.uniform(0.0, 2.0 * math.pi, n_modes)
        self.kx, self.ky = k * np.cos(th), k * np.sin(th)
        self.phase = rng.uniform(0.0, 2.0 * math.pi, n_modes)
        self.amp = math.sqrt(2.0 / n_modes)

    def __call__(self, x_m, y_m) -> np.ndarray:
        x = np.asarray(x_m, dtype=np.float64)
        y = np.asarray(y_m, dtype=np.float64)
        out = np.zeros(np.broadcast_shapes(x.shape, y.shape))
        for kx, ky, ph in zip(self.kx, self.ky, self.phase):
            out += np.cos(kx * x + ky * y + ph)
        return out * self.amp


# Variance of smoothstep-interpolated value noise with node values U(−1, 1):
# Var = (1/3) · (E[(1 − f)² + f²])², f = 3t² − 2t³, E[...] = 26/35 per axis.
_VALUE_NOISE_VAR = (1.0 / 3.0) * (26.0 / 35.0) ** 2


class ValueNoise:
    """Unit-rms smooth noise of stage coordinates with lattice spacing ``spacing_m``.

    Node values come from a hashed table of ``period``² nodes per lattice (so the pattern of one
    lattice repeats every ``period`` × spacing); the sum of two lattices (the second rotated by
    0.61 rad with spacing × 0.83) hides both the lattice axes and the period. The
    autocorrelation falls to 1/e at about 0.7 × spacing.
    """

    _LATTICES = ((0.0, 1.0, 0.0, 0.0), (0.61, 0.83, 0.37, 0.71))   # angle, spacing factor, offsets

    def __init__(self, key: int, spacing_m: float, period: int = 512):
        self.key = int(key)
        self.spacing_m = float(spacing_m)
        self.period = int(period)
        self._norm = np.float32(1.0 / math.sqrt(len(self._LATTICES) * _VALUE_NOISE_VAR))
        self._tables: list[np.ndarray] | None = None

    def _table(self, n: int) -> np.ndarray:
        if self._tables is None:
            p = self.period
            idx = np.arange(p + 1) % p                      # one wrapped row/column: no index wrap later
            gx, gy = np.meshgrid(idx, idx)
            self._tables = [hash_uniform(gx, gy, self.key * 7 + k).ravel() for k in range(len(self._LATTICES))]
        return self._tables[n]

    def __call__(self, x_m, y_m) -> np.ndarray:
        x = np.asarray(x_m, dtype=np.float64)
        y = np.asarray(y_m, dtype=np.float64)
        shape = np.broadcast_shapes(x.shape, y.shape)
        out = np.zeros(shape, dtype=np.float32)
        if out.size == 0:
            return out
        x, y = np.broadcast_to(x, shape), np.broadcast_to(y, shape)
        # Local float32 offsets from a reference point keep sub-nm precision anywhere on the stage.
        xr, yr = float(x.flat[0]), float(y.flat[0])
        dx = (x - xr).astype(np.float32)
        dy = (y - yr).astype(np.float32)
        for n, (ang, fac, ox, oy) in enumerate(self._LATTICES):
            inv = 1.0 / (fac * self.spacing_m)
            c, s = math.cos(ang) * inv, math.sin(ang) * inv
            gx0, gy0 = c * xr + s * yr + ox, -s * xr + c * yr + oy
            bx, by = math.floor(gx0), math.floor(gy0)
            gx = dx * np.float32(c) + dy * np.float32(s) + np.float32(gx0 - bx)
            gy = dy * np.float32(c) - dx * np.float32(s) + np.float32(gy0 - by)
            out += self._lattice(gx, gy, bx % self.period, by % self.period, self._table(n))
        out *= self._norm
        return out

    def _lattice(self, gx: np.ndarray, gy: np.ndarray, bx: int, by: int, table: np.ndarray) -> np.ndarray:
        p = self.period
        fx, fy = np.floor(gx), np.floor(gy)
        tx, ty = gx - fx, gy - fy
        ix = fx.astype(np.int32)
        ix += bx
        ix &= p - 1
        iy = fy.astype(np.int32)
        iy += by
        iy &= p - 1
        iy *= p + 1
        iy += ix
        flat = iy
        tx = tx * tx * (np.float32(3.0) - np.float32(2.0) * tx)
        ty = ty * ty * (np.float32(3.0) - np.float32(2.0) * ty)
        v00 = table[flat]
        flat += 1
        v10 = table[flat]
        flat += p + 1
        v11 = table[flat]
        flat -= 1
        v01 = table[flat]
        v10 -= v00
        v10 *= tx
        v10 += v00
        v11 -= v01
        v11 *= tx
        v11 += v01
        v11 -= v10
        v11 *= ty
        v11 += v10
        return v11


def _upsample_axis(a: np.ndarray, stride: int, n: int, axis: int) -> np.ndarray:
    """Linear interpolation along ``axis`` from nodes at 0, s, 2s, …, n−1 to indices 0…n−1."""
    if a.shape[axis] == n:
        return a
    a = np.moveaxis(a, axis, 0)
    m = (n - 1) // stride                          # full segments of length ``stride``
    out = np.empty((n,) + a.shape[1:], np.float32)
    w = (np.arange(stride, dtype=np.float32) / np.float32(stride)).reshape((1, stride) + (1,) * (a.ndim - 1))
    lo = a[:m, None]
    body = out[: m * stride].reshape((m, stride) + a.shape[1:])
    np.multiply(a[1:m + 1, None] - lo, w, out=body)
    body += lo
    if m * stride < n:                             # the short last segment up to the node at n − 1
        tail = np.arange(m * stride, n, dtype=np.float32)
        t = ((tail - m * stride) / np.float32(max(n - 1 - m * stride, 1))).reshape((-1,) + (1,) * (a.ndim - 1))
        out[m * stride:] = a[m] + (a[m + 1] - a[m]) * t if a.shape[0] > m + 1 else a[m]
    return np.moveaxis(out, 0, axis)


def on_grid(field: Callable[[np.ndarray, np.ndarray], np.ndarray], x_m: np.ndarray, y_m: np.ndarray,
            stride: int, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """``offset + scale · field`` at every sample point of a (ny, nx) grid (float32).

    The field is evaluated every ``stride`` pixels along both axes (always including the last
    row and column) and linearly interpolated in between.
    """
    ny, nx = x_m.shape
    if stride <= 1 or min(ny, nx) < 3:
        out = np.asarray(field(x_m, y_m), dtype=np.float32) * np.float32(scale)
        out += np.float32(offset)
        return out
    rows = np.unique(np.r_[np.arange(0, ny, stride), ny - 1])
    cols = np.unique(np.r_[np.arange(0, nx, stride), nx - 1])
    sub = np.asarray(field(x_m[np.ix_(rows, cols)], y_m[np.ix_(rows, cols)]), dtype=np.float32)
    sub = sub * np.float32(scale) + np.float32(offset)
    sub = _upsample_axis(sub, stride, nx, 1)           # small: (rows, nx)
    return _upsample_axis(sub, stride, ny, 0)          # full size, C-contiguous
