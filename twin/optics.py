"""Electron optics of the SEM probe: probe size, depth of field, defocus and astigmatism blur.

Conventions (SI units throughout):

* Defocus ``defocus_m`` = working-distance setting − distance from the pole piece to the
  specimen surface. Positive defocus: the focal plane lies *beyond* (below) the surface,
  i.e. the lens is too weak (often called "underfocus" in SEM practice); negative: the focal
  plane lies above the surface (lens too strong, "overfocus"). Without astigmatism the blur
  depends only on ``|defocus_m|``.
* Astigmatism is a 2-vector ``(ax, ay)`` in metres of focal difference, expressed in stage
  coordinates. Magnitude ``A = hypot(ax, ay)``, orientation ``phi = atan2(ay, ax) / 2``. The two
  line foci sit at ``defocus ± A/2``; the geometric blur is a uniform ellipse with semi-axes
  ``alpha·|defocus + A/2|`` along ``phi`` and ``alpha·|defocus − A/2|`` perpendicular to it.
  At ``defocus = 0`` (circle of least confusion) it is a disk; the long axis turns by 90°
  when the defocus changes sign, as on a real instrument.
* Image axes (see ``twin.scan``): +column = stage +x and +row = stage −y when the scan
  rotation is 0; a scan rotation ``theta`` rotates the scan axes by ``theta`` (counter-clockwise
  seen with +x right, +y up).
* ``blur`` is a circular convolution (FFT); render a margin of ``blur_radius_m`` around the
  field if wrap-around at the edges matters.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
import scipy.special

from drivers.validate import real

# CODATA 2018 exact / recommended values.
PLANCK_J_S = 6.62607015e-34
ELEMENTARY_CHARGE_C = 1.602176634e-19
ELECTRON_MASS_KG = 9.1093837015e-31
SPEED_OF_LIGHT_M_S = 299792458.0

# For a 2-D Gaussian the diameter holding 50 % of the current equals the FWHM, so the FW50
# probe-size formulae below can be used directly as the Gaussian FWHM.
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def _check_pair(cls: str, name: str, v: tuple[float, float], positive: bool = True) -> None:
    if len(v) != 2 or not all(math.isfinite(x) for x in v) or (positive and not 0 < v[0] < v[1]):
        raise ValueError(f"{cls}.{name} = {v}: must be (low, high) with 0 < low < high")


@dataclass(frozen=True)
class OpticsConfig:
    """Column parameters of a field-emission SEM (defaults: Schottky FEG, ~5 kV, 100 pA).

    Typical values: Cs and Cc of a few mm for an SEM objective at a few mm working distance
    (Reimer, *Scanning Electron Microscopy*, 2nd ed., 1998, §2.3); Schottky emitter reduced
    brightness ~1e8 A m⁻² sr⁻¹ V⁻¹ and energy spread 0.3–0.8 eV (Bronsgeest et al., J. Vac.
    Sci. Technol. B 25 (2007) 2049). Cs and Cc are quoted at ``reference_wd_m`` and scaled
    linearly with the working distance (aberrations grow with the focal length).
    """

    aperture_diameter_m: float = 30e-6
    cs_m: float = 1.0e-3
    cc_m: float = 1.5e-3
    energy_spread_ev: float = 0.5
    reduced_brightness: float = 1e8
    intrinsic_astigmatism_m: tuple[float, float] = (0.0, 0.0)
    stigmator_gain_m: float = 2e-6
    stigmator_limit: float = 1.0
    reference_wd_m: float = 5e-3
    wd_range_m: tuple[float, float] = (1e-3, 30e-3)
    hv_range_v: tuple[float, float] = (200.0, 30e3)
    current_range_a: tuple[float, float] = (1e-12, 20e-9)

    def __post_init__(self) -> None:
        for name in ("aperture_diameter_m", "cs_m", "cc_m", "energy_spread_ev",
                     "reduced_brightness", "stigmator_gain_m", "stigmator_limit",
                     "reference_wd_m"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"OpticsConfig.{name} = {v}: must be a finite number > 0")
        _check_pair("OpticsConfig", "intrinsic_astigmatism_m", self.intrinsic_astigmatism_m,
                    positive=False)
        for name in ("wd_range_m", "hv_range_v", "current_range_a"):
            _check_pair("OpticsConfig", name, getattr(self, name))


@dataclass(frozen=True)
class Probe:
    """Focused probe: convergence semi-angle (rad) and in-focus diameter (FWHM, m).

    ``depth_of_field_m`` is for the pixel size given to ``probe`` (NaN when none was given);
    use ``depth_of_field_m(alpha_rad, pixel_size_m)`` for another pixel size.
    """

    alpha_rad: float
    diameter_m: float
    depth_of_field_m: float = math.nan


def electron_wavelength_m(hv_v: float) -> float:
    """Relativistic de Broglie wavelength (m) of electrons accelerated through ``hv_v`` volts."""
    v = real("hv_v", hv_v, (1e-3, 1e7))
    e_j = ELEMENTARY_CHARGE_C * v
    m0c2 = ELECTRON_MASS_KG * SPEED_OF_LIGHT_M_S**2
    return PLANCK_J_S / math.sqrt(2.0 * ELECTRON_MASS_KG * e_j * (1.0 + e_j / (2.0 * m0c2)))


def alpha_rad(cfg: OpticsConfig, wd_m: float) -> float:
    """Convergence semi-angle (rad): aperture radius / working distance."""
    wd = real("wd_m", wd_m, cfg.wd_range_m)
    return 0.5 * cfg.aperture_diameter_m / wd


def probe_contributions_m(cfg: OpticsConfig, hv_v: float, current_a: float,
                          wd_m: float) -> dict[str, float]:
    """The four FW50 probe-size contributions (m) and alpha (rad).

    Coefficients from Barth & Kruit, Optik 101 (1996) 101: source image
    ``(2/pi)·sqrt(I/(Br·V))/alpha``, diffraction ``0.54·lambda/alpha``, spherical
    ``0.18·Cs·alpha³``, chromatic ``0.34·Cc·(dE/E)·alpha``.
    """
    hv = real("hv_v", hv_v, cfg.hv_range_v)
    current = real("current_a", current_a, cfg.current_range_a)
    alpha = alpha_rad(cfg, wd_m)
    scale = wd_m / cfg.reference_wd_m
    return {
        "alpha_rad": alpha,
        "source_m": (2.0 / math.pi) * math.sqrt(current / (cfg.reduced_brightness * hv)) / alpha,
        "diffraction_m": 0.54 * electron_wavelength_m(hv) / alpha,
        "spherical_m": 0.18 * cfg.cs_m * scale * alpha**3,
        "chromatic_m": 0.34 * cfg.cc_m * scale * (cfg.energy_spread_ev / hv) * alpha,
    }


def probe(cfg: OpticsConfig, hv_v: float, current_a: float, wd_m: float,
          pixel_size_m: float | None = None) -> Probe:
    """Probe at high voltage ``hv_v`` (V), current ``current_a`` (A), working distance ``wd_m``.

    The diameter is the quadrature sum of the source, diffraction, spherical and chromatic
    contributions (Goldstein et al., *Scanning Electron Microscopy and X-ray Microanalysis*,
    3rd ed., 2003, §2.3; coefficients from Barth & Kruit 1996).
    """
    c = probe_contributions_m(cfg, hv_v, current_a, wd_m)
    d = math.sqrt(c["source_m"]**2 + c["diffraction_m"]**2 + c["spherical_m"]**2
                  + c["chromatic_m"]**2)
    dof = math.nan if pixel_size_m is None else depth_of_field_m(c["alpha_rad"], pixel_size_m)
    return Probe(alpha_rad=c["alpha_rad"], diameter_m=d, depth_of_field_m=dof)


def depth_of_field_m(alpha_rad: float, pixel_size_m: float) -> float:
    """Depth of field (m) = pixel / alpha: the focus range (±pixel/(2·alpha)) over which the
    defocus blur diameter ``2·alpha·|defocus|`` stays below one pixel (Goldstein 2003, §4.4)."""
    a = real("alpha_rad", alpha_rad, (1e-9, 1.0))
    p = real("pixel_size_m", pixel_size_m, (1e-15, 1.0))
    return p / a


def astigmatism_m(cfg: OpticsConfig, stigmator: tuple[float, float]) -> tuple[float, float]:
    """Residual astigmatism vector (m) = intrinsic − gain·stigmator.

    ``stigmator = intrinsic / gain`` corrects it exactly. Each stigmator axis must lie in
    ``[-stigmator_limit, stigmator_limit]``.
    """
    lim = (-cfg.stigmator_limit, cfg.stigmator_limit)
    if isinstance(stigmator, (str, bytes)) or len(stigmator) != 2:
        raise ValueError(f"stigmator = {stigmator!r}: must be a pair (x, y) in {lim}")
    sx = real("stigmator[x]", stigmator[0], lim)
    sy = real("stigmator[y]", stigmator[1], lim)
    ix, iy = cfg.intrinsic_astigmatism_m
    return (ix - cfg.stigmator_gain_m * sx, iy - cfg.stigmator_gain_m * sy)


def blur_ellipse_m(probe_: Probe, defocus_m: float,
                   astig_m: tuple[float, float]) -> tuple[float, float, float]:
    """Geometric blur ellipse in stage coordinates: (semi-axis along phi, semi-axis across, phi)."""
    dz = real("defocus_m", defocus_m)
    ax = real("astig_m[x]", astig_m[0])
    ay = real("astig_m[y]", astig_m[1])
    amp = math.hypot(ax, ay)
    phi = 0.5 * math.atan2(ay, ax)
    return (probe_.alpha_rad * abs(dz + 0.5 * amp), probe_.alpha_rad * abs(dz - 0.5 * amp), phi)


def blur_radius_m(probe_: Probe, defocus_m: float, astig_m: tuple[float, float]) -> float:
    """Radius (m) outside which the blur kernel is negligible: the long semi-axis plus 3 sigma
    of the Gaussian probe. Use it as the rendering margin to avoid FFT wrap-around."""
    a, b, _ = blur_ellipse_m(probe_, defocus_m, astig_m)
    return max(a, b) + 3.0 * _FWHM_TO_SIGMA * probe_.diameter_m


def otf(shape_px: tuple[int, int], pixel_size_m: float, probe_: Probe, defocus_m: float,
        astig_m: tuple[float, float], scan_rotation_rad: float = 0.0) -> np.ndarray:
    """Real OTF (float32, shape ``(ny, nx//2 + 1)``, read-only) on the ``rfft2`` grid.

    Gaussian probe OTF × Fourier transform of the uniform defocus ellipse
    (``2·J1(2·pi·r)/(2·pi·r)`` with ``r`` the anisotropically scaled spatial frequency).
    Parameters are quantised (0.01 px for lengths, 1 mrad for the angle) and the result is
    cached, so equal inputs give bit-identical arrays.
    """
    ny, nx = (int(shape_px[0]), int(shape_px[1]))
    if ny < 1 or nx < 1:
        raise ValueError(f"shape_px = {shape_px}: must be two positive integers")
    p = real("pixel_size_m", pixel_size_m, (1e-15, 1.0))
    rot = real("scan_rotation_rad", scan_rotation_rad)
    a_m, b_m, phi = blur_ellipse_m(probe_, defocus_m, astig_m)
    sigma_px = _FWHM_TO_SIGMA * probe_.diameter_m / p
    # Direction of the long axis in image (column, row-down) coordinates: angle -(phi - theta).
    ang = (phi - rot) % math.pi
    a_q, b_q, s_q = (round(a_m / p, 2), round(b_m / p, 2), round(sigma_px, 2))
    ang_q = 0.0 if a_q == b_q else round(ang, 3)
    return _otf_cached(ny, nx, s_q, a_q, b_q, ang_q)


@lru_cache(maxsize=6)
def _otf_cached(ny: int, nx: int, sigma_px: float, a_px: float, b_px: float,
                ang: float) -> np.ndarray:
    kr = scipy.fft.fftfreq(ny).astype(np.float32)[:, None]       # cycles / px, rows
    kc = scipy.fft.rfftfreq(nx).astype(np.float32)[None, :]      # cycles / px, columns
    c, s = np.float32(math.cos(ang)), np.float32(math.sin(ang))
    # Image unit vector of the long axis: (cos, -sin) in (column, row) coordinates.
    ku = kc * c - kr * s
    kv = kc * s + kr * c
    out = np.exp(np.float32(-2.0 * math.pi**2 * sigma_px**2) * (kc * kc + kr * kr))
    if a_px > 0.0 or b_px > 0.0:
        x = np.float32(2.0 * math.pi) * np.sqrt((np.float32(a_px) * ku) ** 2
                                                + (np.float32(b_px) * kv) ** 2)
        # 2·J1(x)/x -> 1 - x²/8 as x -> 0; clamping x at 1e-6 is exact to float32 precision.
        np.maximum(x, np.float32(1e-6), out=x)
        out *= np.float32(2.0) * scipy.special.j1(x) / x
    out = out.astype(np.float32, copy=False)
    out.setflags(write=False)
    return out


def blur(image: np.ndarray, otf_: np.ndarray) -> np.ndarray:
    """Circular convolution of a 2-D image with the OTF from ``otf`` (float32 in and out)."""
    if image.ndim != 2 or otf_.shape != (image.shape[0], image.shape[1] // 2 + 1):
        raise ValueError(f"image shape {image.shape} does not match otf shape {otf_.shape}")
    spec = scipy.fft.rfft2(np.asarray(image, dtype=np.float32), workers=2)
    spec *= otf_
    return scipy.fft.irfft2(spec, s=image.shape, workers=2).astype(np.float32, copy=False)
