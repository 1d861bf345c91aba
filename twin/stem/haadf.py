"""Fast incoherent annular-dark-field (and mass-thickness bright-field) STEM renderer.

Incoherent imaging model (e.g. Nellist & Pennycook, Adv. Imaging Electron Phys. 113 (2000)
147): the fraction of the probe scattered into an annular detector at probe position r is
``f(r) = (P ⊗ O)(r)`` with P the probe intensity (sums to 1) and O the object: the
scattering cross-section into the detector per unit area, ``O = Σ_atoms σ(Z)·δ(r − r_i)``.

* σ(Z): screened (Wentzel) Rutherford cross-section between the detector angles θ1..θ2,
  ``σ = Z²γ²λ⁴/(4π³a0²)·[1/(θ1²+θ0²) − 1/(θ2²+θ0²)]`` with ``θ0 = λ/(2π·a_TF)``,
  ``a_TF = 0.885·a0·Z^(-1/3)`` (Reimer & Kohl, *Transmission Electron Microscopy*, 5th ed.,
  2008, §5.1), evaluated for Au and scaled as ``(Z/79)^z_exponent`` (HAADF: Z^~1.7).
* Object at two levels of detail. Pixel ≤ ``atomic_pixel_m``: every atom is a point
  (bilinearly splatted), and the atom's own width ``atom_sigma_m`` joins the probe as a
  Gaussian. Coarser pixels: each particle is its projected thickness × number density × σ,
  normalised to the particle's exact atom count. The support film is ``n·σ·t(x, y)`` with a
  granular texture whose relative rms is the Poisson scatter of the atoms in one texture cell.
* Bright field ("bf"): the unscattered fraction ``exp(−P ⊗ O_out)``, ``O_out`` built from the
  cross-section for scattering outside the BF disc (mass-thickness contrast only).

The object is rendered on a regular grid aligned with the scan (the frame plus a margin),
convolved by FFT with the probe (``twin.stem.optics.otf``), and read at the positions the
beam actually visited (drift, jitter, vibration, beam shift: ``twin.scan.SampleGrid``) by
bilinear interpolation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.ndimage import map_coordinates

from ..optics import ELECTRON_MASS_KG, ELEMENTARY_CHARGE_C, SPEED_OF_LIGHT_M_S, electron_wavelength_m
from ..scan import SampleGrid
from .config import METAL_NAMES, StemDetectorConfig
from .specimen import METALS, StemParticleTable, StemSpecimen, fcc_number_density, support_number_densities, \
    truncated_sphere_volume

BOHR_RADIUS_M = 5.29177210903e-11  # CODATA 2018
_REF_Z = 79


# ---- cross-sections -----------------------------------------------------------------------------
def _wentzel(z: float, hv_v: float, theta1: float, theta2: float) -> float:
    lam = electron_wavelength_m(hv_v)
    gamma = 1.0 + ELEMENTARY_CHARGE_C * hv_v / (ELECTRON_MASS_KG * SPEED_OF_LIGHT_M_S**2)
    a_tf = 0.885 * BOHR_RADIUS_M * z ** (-1.0 / 3.0)
    t0 = lam / (2.0 * math.pi * a_tf)
    pref = z * z * gamma * gamma * lam**4 / (4.0 * math.pi**3 * BOHR_RADIUS_M**2)
    return pref * (1.0 / (theta1**2 + t0**2) - 1.0 / (theta2**2 + t0**2))


def cross_section_m2(z: float, hv_v: float, det: StemDetectorConfig) -> float:
    """Cross-section (m²) of one atom of atomic number ``z`` for the detector's signal:
    scattering into the annulus ("annular"), or out of the BF disc ("bf")."""
    if det.kind == "annular":
        ref = _wentzel(_REF_Z, hv_v, det.inner_rad, det.outer_rad)
    else:
        ref = _wentzel(_REF_Z, hv_v, det.outer_rad, math.pi)
    return ref * (z / _REF_Z) ** det.z_exponent


def support_sigma_density(material: str, hv_v: float, det: StemDetectorConfig) -> tuple[float, float]:
    """(Σ nσ in 1/m — optical depth per metre of film, atoms per m³) of a support material."""
    dens = support_number_densities(material)
    return (sum(n * cross_section_m2(z, hv_v, det) for z, n in dens), sum(n for _, n in dens))


# ---- the render grid -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RenderGrid:
    """Regular grid aligned with the scan: pixel (r, c) centre at ``origin + c·col_step + r·row_step``
    (stage m). The frame's pixel (0, 0) sits nominally at render pixel ``(margin, margin)``."""

    origin_m: tuple[float, float]
    col_step_m: tuple[float, float]
    row_step_m: tuple[float, float]
    pixel_m: float
    shape: tuple[int, int]
    margin: int

    @staticmethod
    def around(origin_m: tuple[float, float], col_step_m: tuple[float, float], row_step_m: tuple[float, float],
               pixel_m: float, frame_shape: tuple[int, int], margin: int) -> "RenderGrid":
        ny = scipy.fft.next_fast_len(frame_shape[0] + 2 * margin, real=True)
        nx = scipy.fft.next_fast_len(frame_shape[1] + 2 * margin, real=True)
        o = (origin_m[0] - margin * (col_step_m[0] + row_step_m[0]),
             origin_m[1] - margin * (col_step_m[1] + row_step_m[1]))
        return RenderGrid(o, col_step_m, row_step_m, pixel_m, (ny, nx), margin)

    @staticmethod
    def for_frame(grid: SampleGrid, margin: int) -> "RenderGrid":
        """Render grid for a frame: the nominal scan moved by the frame-constant shift."""
        o = (grid.origin_m[0] + grid.shift_m[0], grid.origin_m[1] + grid.shift_m[1])
        return RenderGrid.around(o, grid.col_step_m, grid.row_step_m, grid.pixel_size_m, grid.shape_px, margin)

    def to_px(self, x_m: np.ndarray, y_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) float coordinates of stage points on this grid."""
        p2 = self.pixel_m**2
        dx = np.asarray(x_m, dtype=np.float64) - self.origin_m[0]
        dy = np.asarray(y_m, dtype=np.float64) - self.origin_m[1]
        col = (dx * self.col_step_m[0] + dy * self.col_step_m[1]) / p2
        row = (dx * self.row_step_m[0] + dy * self.row_step_m[1]) / p2
        return row, col

    def centres_m(self, step: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Stage (x, y) of every ``step``-th pixel centre, and their (row, col) indices."""
        rr = np.arange(0, self.shape[0] + step, step, dtype=np.float64)
        cc = np.arange(0, self.shape[1] + step, step, dtype=np.float64)
        x = self.origin_m[0] + cc[None, :] * self.col_step_m[0] + rr[:, None] * self.row_step_m[0]
        y = self.origin_m[1] + cc[None, :] * self.col_step_m[1] + rr[:, None] * self.row_step_m[1]
        return x, y, rr, cc

    def bbox_m(self, pad_m: float = 0.0) -> tuple[float, float, float, float]:
        ny, nx = self.shape
        xs, ys = [], []
        for r in (0, ny - 1):
            for c in (0, nx - 1):
                xs.append(self.origin_m[0] + c * self.col_step_m[0] + r * self.row_step_m[0])
                ys.append(self.origin_m[1] + c * self.col_step_m[1] + r * self.row_step_m[1])
        return min(xs) - pad_m, max(xs) + pad_m, min(ys) - pad_m, max(ys) + pad_m


# ---- splatting ------------------------------------------------------------------------------------
def splat_points(rg: RenderGrid, row: np.ndarray, col: np.ndarray, weights: np.ndarray | float) -> np.ndarray:
    """Bilinear splat of point weights at float (row, col) onto the grid (float64, clipped)."""
    ny, nx = rg.shape
    r0, c0 = np.floor(row), np.floor(col)
    fr, fc = row - r0, col - c0
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), row.shape)
    idx, wts = [], []
    for dr, dc, f in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        rr, cc = r0 + dr, c0 + dc
        ok = (rr >= 0) & (rr < ny) & (cc >= 0) & (cc < nx)
        idx.append((rr * nx + cc)[ok])
        wts.append((w * f)[ok])
    out = np.bincount(np.concatenate(idx), weights=np.concatenate(wts), minlength=ny * nx)
    return out.astype(np.float64, copy=False).reshape(ny, nx)


def particle_sigma_per_atom(table: StemParticleTable, hv_v: float, det: StemDetectorConfig) -> np.ndarray:
    """σ (m²) of one atom of each particle's element."""
    per_elem = np.array([cross_section_m2(METALS[e][0], hv_v, det) for e in METAL_NAMES])
    return per_elem[table.element.astype(np.int64)]


def particle_atom_counts(table: StemParticleTable) -> np.ndarray:
    """Expected atom count of each particle (volume × fcc number density)."""
    dens = np.array([fcc_number_density(e) for e in METAL_NAMES])[table.element.astype(np.int64)]
    return dens * truncated_sphere_volume(table.diameter_m, table.truncation)


def _thickness_patches(r_px: np.ndarray, trunc: np.ndarray, dr2: np.ndarray) -> np.ndarray:
    """Projected thickness (px units) of truncated spheres at squared distances ``dr2``."""
    h = np.sqrt(np.maximum(r_px[:, None, None] ** 2 - dr2, 0.0))
    z_cut = (-1.0 + 2.0 * trunc[:, None, None]) * r_px[:, None, None]
    return np.maximum(h - np.maximum(-h, z_cut), 0.0)


def splat_particles(rg: RenderGrid, table: StemParticleTable, weight: np.ndarray) -> np.ndarray:
    """Projected-thickness rendering: particle k adds total ``weight[k]`` spread over its
    projected thickness profile (sub-pixel particles as bilinear points)."""
    ny, nx = rg.shape
    out = np.zeros(ny * nx)
    if len(table) == 0:
        return out.reshape(ny, nx)
    row, col = rg.to_px(table.x_m, table.y_m)
    r_px = 0.5 * table.diameter_m / rg.pixel_m
    small = r_px < 0.75
    if small.any():
        out += splat_points(rg, row[small], col[small], weight[small]).ravel()
    half = np.ceil(r_px).astype(np.int64)
    for h in np.unique(half[~small]):
        sel = np.flatnonzero((~small) & (half == h))
        off = np.arange(-h, h + 1, dtype=np.float64)
        ri, ci = np.rint(row[sel]), np.rint(col[sel])
        dr = (ri[:, None] - row[sel][:, None]) + off[None, :]            # (n, K)
        dc = (ci[:, None] - col[sel][:, None]) + off[None, :]
        dr2 = dr[:, :, None] ** 2 + dc[:, None, :] ** 2                  # (n, K, K)
        t = _thickness_patches(r_px[sel], table.truncation[sel], dr2)
        norm = t.sum(axis=(1, 2))
        t *= (weight[sel] / np.where(norm > 0, norm, 1.0))[:, None, None]
        rr = (ri[:, None] + off[None, :]).astype(np.int64)[:, :, None]
        cc = (ci[:, None] + off[None, :]).astype(np.int64)[:, None, :]
        ok = (rr >= 0) & (rr < ny) & (cc >= 0) & (cc < nx) & (t > 0)
        flat = np.broadcast_to(rr * nx + cc, t.shape)
        out += np.bincount(flat[ok], weights=t[ok], minlength=ny * nx)
    return out.reshape(ny, nx)


def splat_atoms(rg: RenderGrid, specimen: StemSpecimen, table: StemParticleTable, sigma: np.ndarray) -> np.ndarray:
    """Atom-by-atom rendering: each atom adds σ/p² at its projected position."""
    if len(table) == 0:
        return np.zeros(rg.shape)
    rows, cols, wts = [], [], []
    p2 = rg.pixel_m**2
    for k in range(len(table)):
        xy, _ = specimen.atoms_xy(table, k)
        r, c = rg.to_px(table.x_m[k] + xy[:, 0], table.y_m[k] + xy[:, 1])
        rows.append(r)
        cols.append(c)
        wts.append(np.full(r.shape, sigma[k] / p2))
    return splat_points(rg, np.concatenate(rows), np.concatenate(cols), np.concatenate(wts))


# ---- support film ----------------------------------------------------------------------------------
def _upsample(coarse: np.ndarray, step: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of values at every ``step``-th pixel to the full grid."""
    if step == 1:
        return coarse[: shape[0], : shape[1]]
    rr = np.arange(shape[0], dtype=np.float64) / step
    cc = np.arange(shape[1], dtype=np.float64) / step
    r0 = np.minimum(rr.astype(np.int64), coarse.shape[0] - 2)
    c0 = np.minimum(cc.astype(np.int64), coarse.shape[1] - 2)
    fr, fc = (rr - r0)[:, None], (cc - c0)[None, :]
    a = coarse[r0][:, c0] * (1 - fc) + coarse[r0][:, c0 + 1] * fc
    b = coarse[r0 + 1][:, c0] * (1 - fc) + coarse[r0 + 1][:, c0 + 1] * fc
    return a * (1 - fr) + b * fr


def support_map(rg: RenderGrid, specimen: StemSpecimen, sigma_per_m: float, atoms_per_m3: float,
                damage=None) -> np.ndarray:
    """Optical depth of the support film on the grid: Σnσ·t(x, y)·(1 + grain)·damage(x, y).

    ``damage`` (optional) maps stage (x, y) arrays to a remaining-mass factor in [0, 1].
    """
    s = specimen.cfg.support
    p = rg.pixel_m
    if s.thickness_m == 0:
        return np.zeros(rg.shape)
    step = int(max(1, min(32, s.variation_length_m / (4 * p))))
    if damage is not None:
        step = min(step, 4)
    x, y, _, _ = rg.centres_m(step)
    t = specimen.support_thickness_m(x, y)
    if damage is not None:
        t = t * damage(x, y)
    base = _upsample(sigma_per_m * t, step, rg.shape)
    # Granular texture: lattice of cell c0·2^k >= pixel; rel. rms = 1/sqrt(atoms in a c×c column).
    level = max(0, int(math.ceil(math.log2(max(p / s.grain_cell_m, 1.0)))))
    cell = s.grain_cell_m * 2**level
    amp = 1.0 / math.sqrt(atoms_per_m3 * s.thickness_m * cell * cell)
    if amp < 3e-3:
        return base
    x0, x1, y0, y1 = rg.bbox_m(cell)
    i0, i1 = int(math.floor(x0 / cell)), int(math.ceil(x1 / cell))
    j0, j1 = int(math.floor(y0 / cell)), int(math.ceil(y1 / cell))
    nodes = specimen.grain_nodes(level, i0, i1, j0, j1)
    base *= np.maximum(1.0 + amp * _grain(rg, nodes, cell, i0, j0), 0.0)
    return base


def _grain(rg: RenderGrid, nodes: np.ndarray, cell: float, i0: int, j0: int) -> np.ndarray:
    """Bilinear interpolation of the node lattice (stage-aligned) at the render pixel centres;
    separable (two 1-D passes) when the scan is not rotated."""
    ny, nx = rg.shape
    (cx, cy), (rx, ry) = rg.col_step_m, rg.row_step_m
    if abs(cy) > 1e-9 * rg.pixel_m or abs(rx) > 1e-9 * rg.pixel_m:
        x, y, _, _ = rg.centres_m(1)
        gx = x[:ny, :nx] / cell - i0
        gy = y[:ny, :nx] / cell - j0
        out = map_coordinates(nodes, [gy.ravel(), gx.ravel()], order=1, mode="nearest", prefilter=False)
        return out.reshape(ny, nx)
    gx = np.clip((rg.origin_m[0] + np.arange(nx) * cx) / cell - i0, 0, nodes.shape[1] - 1.000001)
    gy = np.clip((rg.origin_m[1] + np.arange(ny) * ry) / cell - j0, 0, nodes.shape[0] - 1.000001)
    ix, iy = gx.astype(np.int64), gy.astype(np.int64)
    fx, fy = gx - ix, (gy - iy)[:, None]
    along_x = nodes[:, ix] * (1.0 - fx) + nodes[:, ix + 1] * fx          # (node rows, nx)
    return along_x[iy] * (1.0 - fy) + along_x[iy + 1] * fy


# ---- convolution and read-out -----------------------------------------------------------------------
def convolve(obj: np.ndarray, otf_: np.ndarray) -> np.ndarray:
    """Circular convolution of the object (float) with a ``rfft2``-layout OTF; float32 out."""
    spec = scipy.fft.rfft2(np.asarray(obj, dtype=np.float32), workers=2)
    spec *= otf_
    return scipy.fft.irfft2(spec, s=obj.shape, workers=2).astype(np.float32, copy=False)


def read_out(image: np.ndarray, rg: RenderGrid, grid: SampleGrid) -> np.ndarray:
    """Bilinear read of a render-grid image at the positions the beam visited (float32)."""
    row, col = rg.to_px(grid.x_m, grid.y_m)
    out = map_coordinates(image, [row.ravel(), col.ravel()], order=1, mode="nearest", prefilter=False)
    return out.reshape(grid.shape_px).astype(np.float32, copy=False)


def crop(image: np.ndarray, rg: RenderGrid, frame_shape: tuple[int, int]) -> np.ndarray:
    """The frame's pixels of an undistorted render (no drift, jitter or shift)."""
    m = rg.margin
    return image[m: m + frame_shape[0], m: m + frame_shape[1]]


def detector_fraction(conv: np.ndarray, det: StemDetectorConfig) -> np.ndarray:
    """Fraction of incident electrons reaching the detector from the convolved optical depth."""
    if det.kind == "bf":
        return np.exp(-np.maximum(conv, 0.0)).astype(np.float32)
    return np.clip(conv, 0.0, 1.0)


def render_points(x_m: np.ndarray, y_m: np.ndarray, z: np.ndarray, center_m: tuple[float, float], fov_m: float,
                  shape_px: tuple[int, int], hv_v: float, otf_fn, det: StemDetectorConfig,
                  margin: int = 16) -> np.ndarray:
    """Noise-free detector fraction of explicit atoms (stage m, atomic numbers ``z``) on an
    undistorted scan with rotation 0; ``otf_fn(render_shape, pixel_m)`` gives the OTF."""
    ny, nx = shape_px
    p = fov_m / nx
    origin = (center_m[0] - 0.5 * (nx - 1) * p, center_m[1] + 0.5 * (ny - 1) * p)
    rg = RenderGrid.around(origin, (p, 0.0), (0.0, -p), p, shape_px, margin)
    zz = np.asarray(z)
    sig = np.array([cross_section_m2(float(v), hv_v, det) for v in np.unique(zz)])
    w = sig[np.searchsorted(np.unique(zz), zz)] / (p * p)
    row, col = rg.to_px(x_m, y_m)
    obj = splat_points(rg, row, col, w)
    conv = convolve(obj, otf_fn(rg.shape, p))
    return detector_fraction(crop(conv, rg, shape_px), det)
