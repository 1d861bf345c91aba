"""Rasterise particles onto a frame's sample points: SE, BSE, label, height, insulator maps.

Every value is computed at the actual sample point of each pixel (``grid.x_m``, ``grid.y_m``),
so drift, jitter and scan rotation act identically on signal and label. A particle is only
evaluated on its pixel bounding box, found by inverting the nominal scan map
(origin, column step, row step) and widening by the distortion bound.

Coverage (anti-aliasing): for particles >= ``SPLAT_BELOW_PX`` across, a linear ramp of the
signed distance over one pixel, shifted inwards by π p²/(12 P) (P: perimeter), which makes the
summed coverage equal the analytic area (Steiner: the ramp alone adds π p²/12 for any convex
outline). Smaller particles are splatted as their equal-area square (box-filter overlap), which
conserves area exactly. A pixel is labelled with a particle when its sample point lies inside
the outline, or its box coverage is >= 1/2, or it is the pixel nearest the particle centre.

Overlaps: at each pixel the fragment with an inside sample point and the highest surface
(z-buffer on substrate height + surface height) wins the label; signals blend the top two
fragments and the substrate by coverage.

Physics:
* SE yield δ = δ_material · min(1/cos θ, cap) · (1 + g·exp(−d/λ)): the secant law of the tilt θ
  of the local surface (L. Reimer, "Scanning Electron Microscopy", 2nd ed., Springer 1998) plus
  edge brightening within λ of the outline (d: distance inside the outline). Particles under
  2 px use the particle means: mean of min(sec θ, cap) over a sphere = 2 − 1/cap, and the
  disk mean of the edge term.
* BSE η = η(Z̄) · ((1 + cos θ)/2)^(−9/√Z̄): the tilt law η(θ) = (1 + cos θ)^(−9/√Z) of Arnal,
  Verdier and Vincensini (1969) as quoted by Reimer (1998), normalised to Reuter's η at θ = 0;
  mixed with the substrate's η by the material thickness t along the beam:
  f = 1 − exp(−t / (0.3 R_KO)), R_KO the Kanaya–Okayama range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import shapes as sh

SPLAT_BELOW_PX = 2.0
MAX_PAIRS = 3_000_000            # pixel evaluations per batch
BSE_DEPTH_FRACTION = 0.3         # BSE information depth / Kanaya–Okayama range


@dataclass(frozen=True, eq=False)
class SignalMaps:
    """Per-pixel specimen signals, arrays of shape (ny, nx).

    se: SE yield per primary electron (float32); bse: backscatter coefficient (float32);
    label: particle id of the topmost particle, 0 = substrate (int32); height_m: height of the
    visible surface above the substrate (m, float32, 0 on substrate); insulator: 1 where the
    visible surface is an insulator (float32, coverage-weighted at edges).
    """

    se: np.ndarray
    bse: np.ndarray
    label: np.ndarray
    height_m: np.ndarray
    insulator: np.ndarray


@dataclass(frozen=True)
class MaterialArrays:
    """Per-material constants indexed by material code (float32), plus the substrate's."""

    se: np.ndarray
    eta: np.ndarray
    tilt_exp: np.ndarray       # 9/√Z̄
    insulator: np.ndarray
    bse_depth_m: np.ndarray
    sub_se: float
    sub_eta: float
    sub_insulator: float


@dataclass(frozen=True)
class ScanFrame:
    """Nominal affine map of a grid: stage = origin + col·c + row·r; its inverse; the bound."""

    ny: int
    nx: int
    origin: np.ndarray
    inv: np.ndarray            # 2×2: stage offset -> (col, row)
    expand_m: float
    pixel_m: float

    @classmethod
    def of(cls, grid) -> "ScanFrame":
        x = grid.x_m
        if x.ndim != 2 or grid.y_m.shape != x.shape:
            raise ValueError(f"grid.x_m/y_m shapes {x.shape}/{grid.y_m.shape}: must be equal 2-D shapes")
        origin = np.array(grid.origin_m, float)
        expand = float(grid.slack_m)
        if hasattr(grid, "shift_m") and hasattr(grid, "residual_m"):
            origin = origin + np.array(grid.shift_m, float)
            expand = float(grid.residual_m)
        m = np.array([[grid.col_step_m[0], grid.row_step_m[0]], [grid.col_step_m[1], grid.row_step_m[1]]], float)
        if not (np.all(np.isfinite(m)) and abs(np.linalg.det(m)) > 0):
            raise ValueError(f"grid steps {grid.col_step_m}, {grid.row_step_m}: must be finite and independent")
        if not (math.isfinite(expand) and expand >= 0):
            raise ValueError(f"grid.slack_m = {expand}: must be a finite number >= 0")
        return cls(x.shape[0], x.shape[1], origin, np.linalg.inv(m), expand, float(grid.pixel_size_m))

    def corners_bbox(self) -> tuple[float, float, float, float]:
        """Stage bounding box (x0, y0, x1, y1) of all sample points, including the bound."""
        m = np.linalg.inv(self.inv)
        pts = np.array([[0, 0], [self.nx - 1, 0], [0, self.ny - 1], [self.nx - 1, self.ny - 1]], float)
        xy = self.origin[None, :] + pts @ m.T
        e = self.expand_m + self.pixel_m
        return (xy[:, 0].min() - e, xy[:, 1].min() - e, xy[:, 0].max() + e, xy[:, 1].max() + e)


def _pixel_boxes(p, frame: ScanFrame, area: np.ndarray):
    """Inclusive pixel boxes (r0, r1, c0, c1) and the nominal centre pixel (row, col).

    A box holds every pixel whose sample point can lie within half a pixel of the outline
    (the reach of the coverage ramp and of the splat), given the distortion bound.
    """
    rel = np.stack([p.x_m - frame.origin[0], p.y_m - frame.origin[1]])
    cc, rr = frame.inv @ rel
    boxes = []
    for k, centre, n in ((0, cc, frame.nx), (1, rr, frame.ny)):
        wx, wy = frame.inv[k]
        wn = math.hypot(wx, wy)
        half = np.maximum(sh.support(p.shape, p.semi_a_m, p.semi_b_m, p.sides, p.orientation_rad, wx, wy),
                          0.5 * np.sqrt(area) * wn) + frame.expand_m * wn + 0.5
        lo = np.clip(np.ceil(centre - half), 0, n).astype(np.int64)
        hi = np.clip(np.floor(centre + half), -1, n - 1).astype(np.int64)
        boxes.append((lo, hi))
    (c0, c1), (r0, r1) = boxes
    return r0, r1, c0, c1, np.rint(rr), np.rint(cc)


def _pairs(r0, r1, c0, c1):
    """Flattened (box index, pixel row, pixel col) of every pixel in every box."""
    w = c1 - c0 + 1
    cnt = (r1 - r0 + 1) * w
    j = np.repeat(np.arange(len(cnt)), cnt)
    start = np.cumsum(cnt) - cnt
    k = np.arange(int(cnt.sum()), dtype=np.int64) - np.repeat(start, cnt)
    wk = w[j]
    dr = k // wk
    return j, r0[j] + dr, c0[j] + (k - dr * wk)


def _edge_mean(r: np.ndarray, lam: float) -> np.ndarray:
    """Mean of exp(−(r − ρ)/λ) over a disk of radius r: (2/r²)(rλ − λ² + λ² e^(−r/λ))."""
    r = np.maximum(r, 1e-30)
    return 2.0 / r**2 * (r * lam - lam**2 + lam**2 * np.exp(-r / lam))


class _PerParticle:
    """Per-particle constants of one render, float32 where they feed per-pixel arithmetic."""

    def __init__(self, p, frame: ScanFrame, mats: MaterialArrays, cfg, area: np.ndarray):
        f32 = np.float32
        mat = p.material
        self.cos = np.cos(p.orientation_rad).astype(f32)
        self.sin = np.sin(p.orientation_rad).astype(f32)
        self.a = p.semi_a_m.astype(f32)
        self.b = p.semi_b_m.astype(f32)
        self.slope = p.facet_slope.astype(f32)
        self.height = p.height_m.astype(f32)
        perim = sh.perimeter(p.shape, p.semi_a_m, p.semi_b_m, p.sides)
        self.shift = (math.pi * frame.pixel_m**2 / (12.0 * perim)).astype(f32)
        self.se = mats.se[mat]
        self.eta = mats.eta[mat]
        self.tilt_exp = -mats.tilt_exp[mat]
        self.inv_depth = (1.0 / mats.bse_depth_m[mat]).astype(f32)
        self.insulator = mats.insulator[mat]
        self.base_z = p.z_m - 0.5 * p.height_m
        # Splat (sub-2-pixel) signals: means over the particle.
        sec = 2.0 - 1.0 / cfg.secant_cap                     # mean of min(sec θ, cap) over a sphere
        edge = _edge_mean(0.5 * p.diameter_m, cfg.edge_length_m)
        self.splat_se = (self.se * sec * (1.0 + cfg.edge_gain * edge)).astype(f32)
        tilt = ((1.0 + 1.0 / sec) / 2.0) ** self.tilt_exp
        fb = 1.0 - np.exp(-0.67 * p.height_m * self.inv_depth)
        self.splat_bse = (fb * self.eta * tilt + (1.0 - fb) * mats.sub_eta).astype(f32)
        self.half_side = (0.5 * np.sqrt(area * abs(np.linalg.det(frame.inv)))).astype(f32)


class _Fragments:
    """Per (particle, pixel) fragments accumulated over batches."""

    KEYS = ("flat", "pid", "cov", "inside", "h", "se", "bse")

    def __init__(self):
        self.parts: dict[str, list[np.ndarray]] = {k: [] for k in self.KEYS}

    def add(self, **cols):
        for k in self.KEYS:
            self.parts[k].append(cols[k])

    def cat(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self.parts.items()} if self.parts["flat"] else {}


def render_maps(p, grid, frame: ScanFrame, mats: MaterialArrays, cfg, substrate_se: np.ndarray) -> SignalMaps:
    """Signal maps of the frame for particles ``p`` (a ParticleTable already culled to the frame).

    ``substrate_se`` is the textured substrate SE yield at the sample points (float32, (ny, nx));
    it becomes the returned ``se`` map (modified in place).
    """
    ny, nx = frame.ny, frame.nx
    se = substrate_se
    bse = np.full((ny, nx), mats.sub_eta, np.float32)
    label = np.zeros((ny, nx), np.int32)
    height = np.zeros((ny, nx), np.float32)
    insul = np.full((ny, nx), mats.sub_insulator, np.float32)
    if len(p) == 0:
        return SignalMaps(se, bse, label, height, insul)
    area = sh.area(p.shape, p.semi_a_m, p.semi_b_m, p.sides)
    r0, r1, c0, c1, rc, cc = _pixel_boxes(p, frame, area)
    idx = np.flatnonzero((r1 >= r0) & (c1 >= c0))
    if len(idx) == 0:
        return SignalMaps(se, bse, label, height, insul)
    pp = _PerParticle(p, frame, mats, cfg, area)
    centre = np.where((rc >= 0) & (rc < ny) & (cc >= 0) & (cc < nx), rc * nx + cc, -1).astype(np.int64)
    dpx = p.diameter_m[idx] / frame.pixel_m
    group = np.where(dpx < SPLAT_BELOW_PX, 99, p.shape[idx].astype(np.int64) * 16 + p.sides[idx])
    order = np.lexsort((idx, group))
    idx, group = idx[order], group[order]
    cnt = (r1[idx] - r0[idx] + 1) * (c1[idx] - c0[idx] + 1)
    frags = _Fragments()
    xs, ys = grid.x_m.reshape(-1), grid.y_m.reshape(-1)
    for g in np.unique(group):
        sel = idx[group == g]
        csum = np.cumsum(cnt[group == g])
        # Batches of at most MAX_PAIRS pixel evaluations (one particle may exceed it alone).
        cuts = np.unique(np.searchsorted(csum, np.arange(MAX_PAIRS, csum[-1], MAX_PAIRS), side="right"))
        for part in np.split(sel, cuts):
            if len(part):
                j, row, col = _pairs(r0[part], r1[part], c0[part], c1[part])
                pid = part[j]
                flat = row * nx + col
                _raster_batch(int(g), xs, ys, flat, pid, centre, p, pp, frame, mats, cfg, frags)
    f = frags.cat()
    if f and len(f["flat"]):
        _composite(f, pp, se, bse, label, height, insul, p.id)
    return SignalMaps(se, bse, label, height, insul)


def _raster_batch(g, xs, ys, flat, pid, centre, p, pp: _PerParticle, frame, mats, cfg, frags: _Fragments) -> None:
    f32 = np.float32
    dx = (xs[flat] - p.x_m[pid]).astype(f32)
    dy = (ys[flat] - p.y_m[pid]).astype(f32)
    is_centre = flat == centre[pid]
    if g == 99:
        # Sub-2-pixel particles: box-filter overlap with the equal-area square, mean signals.
        (i00, i01), (i10, i11) = frame.inv.astype(f32)
        s = pp.half_side[pid]
        du = i00 * dx + i01 * dy
        dv = i10 * dx + i11 * dy
        ox = np.clip(np.minimum(s - du, f32(0.5)) - np.maximum(-du - s, f32(-0.5)), 0.0, 1.0)
        oy = np.clip(np.minimum(s - dv, f32(0.5)) - np.maximum(-dv - s, f32(-0.5)), 0.0, 1.0)
        cov = ox * oy
        keep = np.flatnonzero(cov > 0)
        pid, cov, flat = pid[keep], cov[keep], flat[keep]
        frags.add(flat=flat, pid=pid, cov=cov, inside=(cov >= 0.5) | is_centre[keep], h=pp.height[pid],
                  se=pp.splat_se[pid], bse=pp.splat_bse[pid])
        return
    code, sides = divmod(g, 16)
    c, s = pp.cos[pid], pp.sin[pid]
    u = c * dx + s * dy
    v = c * dy - s * dx
    a, b = pp.a[pid], pp.b[pid]
    if code == sh.SPHERE:
        sd, h, slope2, thick = sh.eval_sphere(u, v, a, b)
    elif code == sh.ROD:
        sd, h, slope2, thick = sh.eval_rod(u, v, a, b)
    elif code == sh.ELLIPSOID:
        sd, h, slope2, thick = sh.eval_ellipsoid(u, v, a, b)
    else:
        sd, h, slope2, thick = sh.eval_faceted(u, v, a, b, sides, pp.slope[pid], pp.height[pid])
    cov = np.clip(f32(0.5) + (sd - pp.shift[pid]) * f32(1.0 / frame.pixel_m), 0.0, 1.0)
    keep = np.flatnonzero((cov > 0) | is_centre)
    pid, flat, cov, sd, h, slope2, thick = (x[keep] for x in (pid, flat, cov, sd, h, slope2, thick))
    inside = (sd >= 0) | is_centre[keep]
    sec = np.minimum(np.sqrt(f32(1.0) + slope2), f32(cfg.secant_cap))
    edge = np.exp(np.maximum(sd, 0.0) * f32(-1.0 / cfg.edge_length_m))
    se = pp.se[pid] * sec * (f32(1.0) + f32(cfg.edge_gain) * edge)
    tilt = ((f32(1.0) + f32(1.0) / sec) * f32(0.5)) ** pp.tilt_exp[pid]
    fb = f32(1.0) - np.exp(-thick * pp.inv_depth[pid])
    bse = fb * (pp.eta[pid] * tilt - f32(mats.sub_eta)) + f32(mats.sub_eta)
    frags.add(flat=flat, pid=pid, cov=cov, inside=inside, h=h, se=se, bse=bse)


def _composite(f, pp: _PerParticle, se, bse, label, height, insul, ids) -> None:
    """Z-buffer the fragments per pixel and write the maps in place."""
    base = pp.base_z[f["pid"]]
    z = (base - base.min()).astype(np.float32) + f["h"]
    zq = (z * np.float32(2**30 / max(float(z.max()), 1e-30))).astype(np.int64)   # < 2**31 after rounding
    key = (f["flat"] << 32) | (f["inside"].astype(np.int64) << 31) | zq
    order = np.argsort(key)
    fs = f["flat"][order]
    last = np.ones(len(fs), bool)
    last[:-1] = fs[1:] != fs[:-1]
    tpos = np.flatnonzero(last)
    top = order[tpos]
    has2 = np.zeros(len(tpos), bool)
    has2[1:] = fs[tpos[1:] - 1] == fs[tpos[1:]]
    has2[0] = tpos[0] > 0
    sec = order[tpos[has2] - 1]
    pix = f["flat"][top]
    c1, c2 = f["cov"][top], f["cov"][sec]
    ins = pp.insulator[f["pid"]]
    maps = ((se, f["se"], True), (bse, f["bse"], True), (height, f["h"], False), (insul, ins, True))
    for out, vals, substrate in maps:
        flat_out = out.reshape(-1)
        under = flat_out[pix] if substrate else np.zeros(len(pix), np.float32)
        under[has2] = c2 * vals[sec] + (1.0 - c2) * under[has2]
        flat_out[pix] = c1 * vals[top] + (1.0 - c1) * under
    label.reshape(-1)[pix] = np.where(f["inside"][top], ids[f["pid"][top]], 0).astype(np.int32)
