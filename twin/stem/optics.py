"""STEM probe from the convergence semi-angle and the axial aberrations C10, C12, C30.

Sign convention (the one place it is defined; docs/stem.md repeats it):

* Aberration function in Krivanek notation, with α = λ|k| and φ the azimuth of k in stage
  axes (x right, y up)::

      χ(α, φ) = (2π/λ)·[½ α² (C10 + C12·cos 2(φ − φ12)) + ¼ α⁴ C30]

  and the probe wave is ψ(r) = FT⁻¹[A(k)·exp(−iχ)], A the (soft-edged) condenser aperture.
  This is abTEM's convention (abtem.transfer: ``complex_exponential(-chi)``, same polynomial).
* The driver's ``defocus_m`` is Δf = −C10, i.e. abTEM's ``defocus``. Δf > 0 is underfocus:
  the lens is weaker and the probe crossover lies below (beyond) the entrance surface.
* The stigmator sets C12 as a cartesian pair (C12a, C12b) = (C12 cos 2φ12, C12 sin 2φ12) =
  intrinsic − gain·(stig_x, stig_y), so ``stigmator = intrinsic / gain`` cancels it.

The probe intensity P(r) = |ψ(r)|² is what the incoherent image is convolved with. It is
computed on a window around the probe, on a grid fine enough to sample the aperture
(``dx ≤ 0.45 λ/α``), then integrated over each image pixel (exact for an object that is
constant over a pixel). When that window would exceed ``MAX_FINE_PX`` (large defocus at a
small pixel) the geometric-optics limit is used instead: the density of rays
``r(a) = ∇_a W`` (W = λχ/2π) for aperture angles a uniformly filling the aperture.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

from drivers.validate import real

from ..optics import electron_wavelength_m
from .config import StemOpticsConfig

MAX_FINE_PX = 1024
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


@dataclass(frozen=True)
class Aberrations:
    """Axial aberrations (m, rad), Krivanek notation. ``defocus_m`` = −C10."""

    c10_m: float = 0.0
    c12_m: float = 0.0
    phi12_rad: float = 0.0
    c30_m: float = 0.0

    @property
    def defocus_m(self) -> float:
        return -self.c10_m

    def to_abtem(self) -> dict[str, float]:
        """abTEM CTF keyword arguments (Å, rad)."""
        return {"C10": self.c10_m * 1e10, "C12": self.c12_m * 1e10, "phi12": self.phi12_rad,
                "C30": self.c30_m * 1e10}


def c12_from_stigmator(cfg: StemOpticsConfig, stigmator: tuple[float, float]) -> tuple[float, float]:
    """Residual two-fold astigmatism (C12a, C12b) in m for a stigmator setting (x, y)."""
    lim = (-cfg.stigmator_limit, cfg.stigmator_limit)
    sx = real("stigmator_x", stigmator[0], lim)
    sy = real("stigmator_y", stigmator[1], lim)
    ia, ib = cfg.intrinsic_c12_m
    return (ia - cfg.stigmator_gain_m * sx, ib - cfg.stigmator_gain_m * sy)


def aberrations(cfg: StemOpticsConfig, defocus_m: float, stigmator: tuple[float, float]) -> Aberrations:
    """Aberrations for an effective defocus Δf (m, = −C10) and a stigmator setting."""
    a, b = c12_from_stigmator(cfg, stigmator)
    return Aberrations(c10_m=-real("defocus_m", defocus_m), c12_m=math.hypot(a, b),
                       phi12_rad=0.5 * math.atan2(b, a), c30_m=cfg.c30_m)


def chi(kx: np.ndarray, ky: np.ndarray, wavelength_m: float, ab: Aberrations) -> np.ndarray:
    """Aberration phase χ (rad) at spatial frequencies (kx, ky) in 1/m (stage axes)."""
    lam = wavelength_m
    a2 = (lam * lam) * (kx * kx + ky * ky)
    phi = np.arctan2(ky, kx)
    w = 0.5 * a2 * (ab.c10_m + ab.c12_m * np.cos(2.0 * (phi - ab.phi12_rad))) + 0.25 * a2 * a2 * ab.c30_m
    return (2.0 * math.pi / lam) * w


def _stage_k(kc: np.ndarray, kr: np.ndarray, rotation_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """Stage-axis frequencies of image frequencies (columns along the scan's u, rows along −v)."""
    c, s = math.cos(rotation_rad), math.sin(rotation_rad)
    return kc * c + kr * s, kc * s - kr * c


def probe_wave(shape_px: tuple[int, int], sampling_m: float, hv_v: float, alpha_rad: float,
               ab: Aberrations, rotation_rad: float = 0.0) -> np.ndarray:
    """Complex probe wave on an image grid (rows, cols) centred at pixel ((n-1)//2 ...), i.e.
    at index n//2 of each axis (fftshift convention); normalised to sum |ψ|² = 1."""
    ny, nx = int(shape_px[0]), int(shape_px[1])
    lam = electron_wavelength_m(hv_v)
    kr = scipy.fft.fftfreq(ny, sampling_m)[:, None]
    kc = scipy.fft.fftfreq(nx, sampling_m)[None, :]
    kx, ky = _stage_k(kc, kr, rotation_rad)
    k = np.hypot(kx, ky)
    dk = min(1.0 / (ny * sampling_m), 1.0 / (nx * sampling_m))
    aperture = np.clip((alpha_rad / lam - k) / dk + 0.5, 0.0, 1.0)
    psi = scipy.fft.ifft2(aperture * np.exp(-1j * chi(kx, ky, lam, ab)), workers=2)
    psi = scipy.fft.fftshift(psi)
    return psi / math.sqrt(float(np.sum(np.abs(psi) ** 2)))


def probe_radius_m(hv_v: float, alpha_rad: float, ab: Aberrations) -> float:
    """Radius (m) holding nearly all of the probe: largest ray displacement + diffraction halo."""
    lam = electron_wavelength_m(hv_v)
    a = alpha_rad
    geometric = a * abs(ab.c10_m) + a * abs(ab.c12_m) + a**3 * abs(ab.c30_m)
    return geometric + 4.0 * lam / a


def source_sigma_m(cfg: StemOpticsConfig, current_a: float, hv_v: float) -> float:
    """rms of the Gaussian source image (m): FW50 = (2/π)·sqrt(I/(B_r·V))/α
    (Barth & Kruit, Optik 101 (1996) 101), with FW50 = FWHM for a Gaussian."""
    d50 = (2.0 / math.pi) * math.sqrt(current_a / (cfg.reduced_brightness * hv_v)) / cfg.convergence_semiangle_rad
    return d50 * _FWHM_TO_SIGMA


def probe_fw50_m(cfg: StemOpticsConfig, current_a: float, hv_v: float) -> float:
    """In-focus probe size (m): quadrature of diffraction 0.54λ/α, spherical 0.18·C30·α³ and
    source (Barth & Kruit 1996)."""
    a, lam = cfg.convergence_semiangle_rad, electron_wavelength_m(hv_v)
    src = source_sigma_m(cfg, current_a, hv_v) / _FWHM_TO_SIGMA
    return math.sqrt((0.54 * lam / a) ** 2 + (0.18 * cfg.c30_m * a**3) ** 2 + src**2)


def depth_of_field_m(hv_v: float, alpha_rad: float) -> float:
    """Probe depth of field 1.77·λ/α² (m) (Borisevich, Lupini & Pennycook, PNAS 103 (2006) 3044)."""
    return 1.77 * electron_wavelength_m(hv_v) / alpha_rad**2


# ---- probe intensity integrated over image pixels ----------------------------------------------
def _odd_ceil(v: float) -> int:
    n = max(1, int(math.ceil(v - 1e-9)))
    return n if n % 2 else n + 1


def _wave_kernel(pixel_m: float, hv_v: float, alpha_rad: float, ab: Aberrations, rotation_rad: float,
                 supersample: int, k_px: int) -> np.ndarray:
    s = supersample
    n = s * k_px
    psi = probe_wave((n, n), pixel_m / s, hv_v, alpha_rad, ab, rotation_rad)
    inten = (psi.real**2 + psi.imag**2).reshape(k_px, s, k_px, s).sum(axis=(1, 3))
    return inten / inten.sum()


def _ray_kernel(pixel_m: float, alpha_rad: float, ab: Aberrations, rotation_rad: float,
                shape_px: tuple[int, int], n_rays: int = 401) -> np.ndarray:
    """Geometric-optics probe on the whole (wrapped) image grid, centre at index (0, 0)."""
    g = np.linspace(-alpha_rad, alpha_rad, n_rays)
    ax, ay = np.meshgrid(g, g)
    inside = ax * ax + ay * ay <= alpha_rad * alpha_rad
    ax, ay = ax[inside], ay[inside]
    a2 = ax * ax + ay * ay
    ux, uy = math.cos(ab.phi12_rad), math.sin(ab.phi12_rad)
    pu, pv = ax * ux + ay * uy, -ax * uy + ay * ux
    # r = grad_a W, W = ½a²C10 + ½C12[(a·u)² − (a·v)²] + ¼a⁴C30 (v ⟂ u).
    rx = ab.c10_m * ax + ab.c12_m * (pu * ux + pv * uy) + ab.c30_m * a2 * ax
    ry = ab.c10_m * ay + ab.c12_m * (pu * uy - pv * ux) + ab.c30_m * a2 * ay
    c, s = math.cos(rotation_rad), math.sin(rotation_rad)
    col = (rx * c + ry * s) / pixel_m
    row = -(-rx * s + ry * c) / pixel_m
    ny, nx = shape_px
    r0, c0 = np.floor(row), np.floor(col)
    fr, fc = row - r0, col - c0
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    idx, wts = [], []
    for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        idx.append(((r0 + dr) % ny) * nx + (c0 + dc) % nx)
        wts.append(w)
    out = np.bincount(np.concatenate(idx), weights=np.concatenate(wts), minlength=ny * nx).reshape(ny, nx)
    return out / out.sum()


def probe_image(shape_px: tuple[int, int], pixel_m: float, hv_v: float, alpha_rad: float, ab: Aberrations,
                rotation_rad: float = 0.0) -> tuple[np.ndarray, str]:
    """Probe intensity integrated over pixels on a (wrapped) grid of ``shape_px``, centre at
    index (0, 0), summing to 1; and the regime used ("wave" or "rays")."""
    ny, nx = int(shape_px[0]), int(shape_px[1])
    lam = electron_wavelength_m(hv_v)
    dx_max = 0.45 * lam / alpha_rad
    s = 1 if pixel_m <= dx_max else _odd_ceil(pixel_m / dx_max)
    k_px = _odd_ceil(2.0 * probe_radius_m(hv_v, alpha_rad, ab) / pixel_m + 2.0)
    if s * k_px > MAX_FINE_PX or k_px > min(ny, nx):
        return _ray_kernel(pixel_m, alpha_rad, ab, rotation_rad, (ny, nx)), "rays"
    kern = _wave_kernel(pixel_m, hv_v, alpha_rad, ab, rotation_rad, s, k_px)
    out = np.zeros((ny, nx))
    h = k_px // 2
    idx = np.arange(-h, h + 1)
    out[np.ix_(idx % ny, idx % nx)] = kern
    return out, "wave"


def otf(shape_px: tuple[int, int], pixel_m: float, hv_v: float, alpha_rad: float, ab: Aberrations,
        rotation_rad: float = 0.0, blur_sigma_m: float = 0.0) -> np.ndarray:
    """Transfer function (complex64, ``rfft2`` layout, read-only) of the probe intensity times
    a Gaussian of rms ``blur_sigma_m`` (source size, atom width). Cached on quantised inputs
    (lengths to 1 pm, angles to 0.1 mrad), so equal inputs give bit-identical arrays."""
    p = real("pixel_m", pixel_m, (1e-14, 1.0))
    key = (int(shape_px[0]), int(shape_px[1]), round(p * 1e15), round(hv_v), round(alpha_rad * 1e5),
           round(ab.c10_m * 1e12), round(ab.c12_m * 1e12), round(ab.phi12_rad % math.pi * 1e4) if ab.c12_m else 0,
           round(ab.c30_m * 1e12), round(rotation_rad * 1e4) if ab.c12_m else 0, round(blur_sigma_m * 1e13))
    return _otf_cached(*key)


@lru_cache(maxsize=8)
def _otf_cached(ny: int, nx: int, p_fm: int, hv: int, a5: int, c10: int, c12: int, phi: int, c30: int,
                rot: int, blur: int) -> np.ndarray:
    p = p_fm * 1e-15
    ab = Aberrations(c10 * 1e-12, c12 * 1e-12, phi * 1e-4, c30 * 1e-12)
    kern, _ = probe_image((ny, nx), p, float(hv), a5 * 1e-5, ab, rot * 1e-4)
    spec = scipy.fft.rfft2(kern, workers=2)
    sigma_px = blur * 1e-13 / p
    if sigma_px > 0:
        kr = scipy.fft.fftfreq(ny)[:, None]
        kc = scipy.fft.rfftfreq(nx)[None, :]
        spec *= np.exp(-2.0 * math.pi**2 * sigma_px**2 * (kr * kr + kc * kc))
    out = spec.astype(np.complex64)
    out.setflags(write=False)
    return out
