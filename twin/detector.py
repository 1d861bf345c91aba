"""Electron detector: shot noise, gain, offset, read noise, brightness/contrast, ADC.

Signal chain for one pixel (SI units, counts = ADC units):

1. Mean detected electrons ``N = I·dwell·L/e · yield · efficiency`` (e exact, SI 2019).
2. Detected electrons ``n ~ Poisson(N)``: exact (numpy) Poisson where
   ``N < POISSON_EXACT_BELOW`` (10). Above it, shot and read noise are drawn together as one
   normal with a Cornish–Fisher skewness term (see ``_signal``): exact mean and variance,
   Poisson skewness to first order (total-variation distance to Poisson < 0.003 at N = 10,
   measured), but no electron discreteness (hidden by read noise and gain spread anyway).
   Why: on this machine numpy draws 1 Mi Poisson variates in 40–60 ms and 1 Mi float32
   normals in ~12 ms; the 1024² budget is ~40 ms.
3. The video amplifier and ADC average the signal over the pixel time, so the output level
   follows the electron *rate*: ``raw = gain·n·(reference_dwell_s / (dwell·L))``, i.e.
   ``gain`` is counts per detected electron at the reference pixel time. A longer dwell
   therefore lowers the noise, not the brightness (as on real SEMs). Gaussian read noise
   (rms ``read_noise`` at the reference pixel time) averages down the same way.
4. Brightness/contrast: ``out = offset + k(contrast)·raw + (brightness − 0.5)·full_scale``
   with ``k(c) = 2**(10·(c − 0.5))`` (×1/32 … ×32; ×1 at 0.5). Contrast scales the signal
   above the black level ``offset``; brightness shifts it.
5. Saturation to ``[0, 2**bit_depth − 1]`` and rounding to integers (uint16).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from drivers.validate import integer, real

ELEMENTARY_CHARGE_C = 1.602176634e-19  # exact (SI 2019)
POISSON_EXACT_BELOW = 10.0


@dataclass(frozen=True)
class DetectorConfig:
    """One detector. ``signal`` is "se" (secondary) or "bse" (backscattered electrons)."""

    name: str = "InLens"
    signal: str = "se"
    efficiency: float = 0.3
    gain: float = 40.0
    offset: float = 1000.0
    read_noise: float = 30.0
    bit_depth: int = 16
    reference_dwell_s: float = 1e-6
    smoothing_px: float = 0.0  # Gaussian σ (px) of the video chain's low-pass (amplifier bandwidth, pixel averaging)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("DetectorConfig.name = '': must be a non-empty string")
        if self.signal not in ("se", "bse"):
            raise ValueError(f"DetectorConfig.signal = {self.signal!r}: must be 'se' or 'bse'")
        if not (math.isfinite(self.efficiency) and 0.0 < self.efficiency <= 1.0):
            raise ValueError(f"DetectorConfig.efficiency = {self.efficiency}: must be in (0, 1]")
        for name in ("gain", "reference_dwell_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"DetectorConfig.{name} = {v}: must be a finite number > 0")
        for name in ("offset", "read_noise"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"DetectorConfig.{name} = {v}: must be a finite number >= 0")
        if not 0.0 <= self.smoothing_px <= 5.0:
            raise ValueError(f"DetectorConfig.smoothing_px = {self.smoothing_px}: must be in [0, 5]")
        if not 8 <= self.bit_depth <= 16:
            raise ValueError(f"DetectorConfig.bit_depth = {self.bit_depth}: must be in [8, 16]")


def contrast_factor(contrast: float) -> float:
    """Multiplicative gain of the contrast control (0..1 -> 1/32..32, 1 at 0.5)."""
    return 2.0 ** (10.0 * (real("contrast", contrast, (0.0, 1.0)) - 0.5))


def mean_electrons(yield_map: np.ndarray | float, current_a: float, dwell_s: float,
                   line_integration: int, cfg: DetectorConfig) -> np.ndarray | float:
    """Mean detected electrons per pixel N = I·dwell·L/e · yield · efficiency."""
    i = real("current_a", current_a, (0.0, 1.0))
    d = real("dwell_s", dwell_s, (1e-15, 1e3))
    lint = integer("line_integration", line_integration, (1, 1 << 16))
    return yield_map * (i * d * lint / ELEMENTARY_CHARGE_C * cfg.efficiency)


def _normal_branch(flat: np.ndarray, g: float, sigma: float,
                   rng: np.random.Generator) -> np.ndarray:
    """``g·N + s·z + c·(z² − 1)``, ``s² = g²N + sigma²``, ``c = g³N / (6 s²)``: first-order
    Cornish–Fisher expansion with the exact mean and variance of ``g·Poisson(N) + read noise``
    and its third cumulant ``g³N``. ``flat`` (float32, 1-D) must be > 0."""
    z = rng.standard_normal(flat.size, dtype=np.float32)
    # In-place arithmetic on three buffers: fresh 4 MB arrays cost page faults.
    var = np.multiply(flat, np.float32(g * g))
    var += np.float32(sigma * sigma)
    out = np.multiply(flat, np.float32(g**3 / 6.0))
    out /= var
    np.sqrt(var, out=var)
    var *= z                      # s·z
    z *= z
    z -= 1.0
    z *= out                      # c·(z² − 1)
    np.multiply(flat, np.float32(g), out=out)
    out += var
    out += z
    return out


def _poisson_branch(flat: np.ndarray, g: float, sigma: float,
                    rng: np.random.Generator) -> np.ndarray:
    """``g·Poisson(N) + sigma·z`` with exact Poisson draws (float32, 1-D)."""
    out = rng.poisson(flat).astype(np.float32)
    out *= np.float32(g)
    if sigma > 0:
        out += rng.standard_normal(flat.size, dtype=np.float32) * np.float32(sigma)
    return out


def _signal(mean: np.ndarray, g: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Amplified signal ``g·n + read noise`` (float32 counts above the black level) for the
    mean detected electrons ``mean`` (float32), with ``n ~ Poisson(mean)``.

    Pixels with ``mean >= POISSON_EXACT_BELOW`` use ``_normal_branch`` (drawn first, raster
    order), the others ``_poisson_branch``.
    """
    flat = mean.ravel()
    small = flat < POISSON_EXACT_BELOW
    n_small = int(np.count_nonzero(small))
    if n_small == 0:
        out = _normal_branch(flat, g, sigma, rng)
    elif n_small == flat.size:
        out = _poisson_branch(flat, g, sigma, rng)
    else:
        out = np.empty_like(flat)
        big = np.flatnonzero(~small)
        out[big] = _normal_branch(flat[big], g, sigma, rng)
        low = np.flatnonzero(small)
        out[low] = _poisson_branch(flat[low], g, sigma, rng)
    return out.reshape(mean.shape)


def detect(yield_map: np.ndarray, current_a: float, dwell_s: float, line_integration: int,
           cfg: DetectorConfig, rng: np.random.Generator, brightness: float = 0.5,
           contrast: float = 0.5) -> np.ndarray:
    """Detector image (uint16) for a map of signal-electron yield per incident electron.

    ``yield_map`` must be finite and >= 0. Random draws: one standard normal for each pixel
    with at least ``POISSON_EXACT_BELOW`` mean electrons, then for the other pixels one Poisson
    and (if ``read_noise > 0``) one standard normal each.
    """
    y = np.asarray(yield_map, dtype=np.float32)
    if y.ndim != 2:
        raise ValueError(f"yield_map shape {y.shape}: must be 2-D")
    b = real("brightness", brightness, (0.0, 1.0))
    k = contrast_factor(contrast)
    mean = mean_electrons(y, current_a, dwell_s, line_integration, cfg)
    if not (float(mean.min(initial=0.0)) >= 0.0 and math.isfinite(float(mean.max(initial=0.0)))):
        raise ValueError("yield_map: must be finite and >= 0 everywhere")
    rate_scale = cfg.reference_dwell_s / (dwell_s * line_integration)
    out = _signal(mean.astype(np.float32, copy=False), k * cfg.gain * rate_scale,
                  k * cfg.read_noise * math.sqrt(rate_scale), rng)
    full = float(2**cfg.bit_depth - 1)
    out += np.float32(cfg.offset + (b - 0.5) * full)
    np.clip(out, 0.0, full, out=out)
    np.rint(out, out=out)
    return out.astype(np.uint16)


def snr(yield_: float, current_a: float, dwell_s: float, line_integration: int,
        cfg: DetectorConfig) -> float:
    """Expected signal-to-noise ratio of a uniform area (signal above offset / noise rms),
    ignoring saturation and quantisation: ``g·N / sqrt(g²·N + read²·ref/(dwell·L))``."""
    n = float(mean_electrons(float(yield_), current_a, dwell_s, line_integration, cfg))
    scale = cfg.reference_dwell_s / (dwell_s * line_integration)
    sig = cfg.gain * scale * n
    var = (cfg.gain * scale) ** 2 * n + cfg.read_noise**2 * scale
    return sig / math.sqrt(var) if var > 0 else math.inf


def smooth(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Low-pass of the video chain: Gaussian σ in pixels, then requantised to the input dtype.

    Real SEM images have spatially correlated noise (e.g. lag-1 correlation ≈ 0.7 in the BAM
    TiO2 set) from amplifier bandwidth and pixel averaging; shot noise alone is white.
    """
    if sigma_px <= 0:
        return image
    from scipy import ndimage

    out = ndimage.gaussian_filter(image.astype(np.float32), sigma_px)
    return np.rint(out).astype(image.dtype)
