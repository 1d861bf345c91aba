"""Defocus / astigmatism restoration: a learned ONNX restorer and classical baselines.

Classical baselines with a PSF estimated from the image itself (blind):
- `estimate_psf`: fits the Welch-averaged 2-D power spectrum with
  P(f) = A |f|^-beta exp(-4 pi^2 f^T S f) + N, i.e. a power-law scene spectrum (natural and
  SEM images fall off roughly as |f|^-2; van der Schaaf & van Hateren, Vision Res. 36 (1996)
  2759) seen through an elliptical Gaussian PSF of covariance S (px^2), plus white noise N.
  The fit gives the PSF and, for free, the signal and noise spectra needed by Wiener.
- `wiener_deconvolve`: frequency-domain Wiener filter H* / (|H|^2 + N / S_signal(f)).
- `richardson_lucy`: multiplicative RL iterations (Richardson, JOSA 62 (1972) 55; Lucy, AJ 79
  (1974) 745) with the estimated PSF.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from ._common import PerceptionInputError, check_image, load_record, normalise, onnx_session, resolve_model
from .tiling import predict_tiled


@dataclass(frozen=True)
class PSFEstimate:
    """Elliptical Gaussian PSF: standard deviations (px) along the major/minor axis, the major
    axis angle (rad, from the column axis), and the fitted spectrum terms for Wiener."""

    sigma_major_px: float
    sigma_minor_px: float
    angle_rad: float
    amplitude: float
    beta: float
    noise: float

    def covariance(self) -> np.ndarray:
        c, s = np.cos(self.angle_rad), np.sin(self.angle_rad)
        r = np.array([[c, -s], [s, c]])
        return r @ np.diag([self.sigma_major_px ** 2, self.sigma_minor_px ** 2]) @ r.T


def gaussian_otf(shape: tuple[int, int], cov: np.ndarray) -> np.ndarray:
    """OTF (real, rfft layout) of a Gaussian PSF with covariance `cov` [[sxx, sxy],[sxy, syy]] px^2 (x = cols)."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    q = cov[0, 0] * fx ** 2 + 2 * cov[0, 1] * fx * fy + cov[1, 1] * fy ** 2
    return np.exp(-2.0 * np.pi ** 2 * q)


def gaussian_psf(cov: np.ndarray, size: int | None = None) -> np.ndarray:
    """Normalised PSF kernel (odd size, ~4 sigma half-width) for covariance `cov` in px^2."""
    sig = float(np.sqrt(max(cov[0, 0], cov[1, 1], 1e-6)))
    half = size // 2 if size else max(2, int(np.ceil(4 * sig)))
    y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(float)
    inv = np.linalg.inv(cov + 1e-6 * np.eye(2))
    k = np.exp(-0.5 * (inv[0, 0] * x * x + 2 * inv[0, 1] * x * y + inv[1, 1] * y * y))
    return k / k.sum()


def _welch_spectrum(img: np.ndarray, win: int = 128) -> np.ndarray:
    """Average power spectrum (rfft layout) of Hann-windowed, mean-removed win x win patches."""
    win = min(win, *img.shape)
    win -= win % 2
    hann = np.outer(np.hanning(win), np.hanning(win))
    acc, n = 0.0, 0
    step = win // 2
    for y in range(0, img.shape[0] - win + 1, step):
        for x in range(0, img.shape[1] - win + 1, step):
            p = img[y:y + win, x:x + win]
            acc = acc + np.abs(np.fft.rfft2((p - p.mean()) * hann)) ** 2
            n += 1
    return acc / max(n, 1) / (hann ** 2).sum()


def estimate_psf(image: np.ndarray, win: int = 128) -> PSFEstimate:
    """Blind elliptical-Gaussian PSF estimate from the image's power spectrum (see module doc)."""
    img = normalise(check_image(image, min_size=16)).astype(np.float64)
    p = _welch_spectrum(img, win)
    h, w2 = p.shape
    fy = np.fft.fftfreq(h)[:, None] * np.ones((1, w2))
    fx = np.fft.rfftfreq(h)[None, :] * np.ones((h, 1))
    f = np.hypot(fx, fy)
    sel = (f > 2.0 / h) & (f < 0.5)
    fx, fy, f, logp = fx[sel], fy[sel], f[sel], np.log(p[sel] + 1e-20)

    def model(th):
        log_a, beta, a, b, c, log_n = th  # S = L L^T with L = [[e^a, 0], [c, e^b]] keeps S >= 0
        l11, l22 = np.exp(a), np.exp(b)
        sxx, sxy, syy = l11 ** 2, l11 * c, c ** 2 + l22 ** 2
        q = sxx * fx ** 2 + 2 * sxy * fx * fy + syy * fy ** 2
        sig = np.exp(log_a) * f ** (-beta) * np.exp(-4 * np.pi ** 2 * q)
        return np.log(sig + np.exp(log_n))

    noise0 = np.log(np.median(p[np.hypot(np.fft.rfftfreq(h)[None, :], np.fft.fftfreq(h)[:, None]) > 0.4]) + 1e-20)
    best = None
    for s0 in (0.5, 1.5, 4.0):
        th0 = np.array([np.log(p[1:4, 1:4].mean() * (2.0 / h) ** 2 + 1e-20), 2.0, np.log(s0), np.log(s0), 0.0, noise0])
        res = least_squares(lambda t: model(t) - logp, th0, loss="soft_l1", f_scale=0.5,
                            bounds=([-60, 0.0, -4, -4, -20, -80], [20, 4.0, 3.5, 3.5, 20, 20]))
        if best is None or res.cost < best.cost:
            best = res
    log_a, beta, a, b, c, log_n = best.x
    l11, l22 = np.exp(a), np.exp(b)
    cov = np.array([[l11 ** 2, l11 * c], [l11 * c, c ** 2 + l22 ** 2]])
    ev, evec = np.linalg.eigh(cov)
    major = evec[:, 1]
    return PSFEstimate(sigma_major_px=float(np.sqrt(max(ev[1], 0))), sigma_minor_px=float(np.sqrt(max(ev[0], 0))),
                       angle_rad=float(np.arctan2(major[1], major[0])), amplitude=float(np.exp(log_a)),
                       beta=float(beta), noise=float(np.exp(log_n)))


def _pad(img: np.ndarray, pad: int) -> np.ndarray:
    return np.pad(img, pad, mode="reflect") if pad else img


def wiener_deconvolve(image: np.ndarray, psf: PSFEstimate | None = None, nsr: float | None = None) -> np.ndarray:
    """Wiener deconvolution (float64 output in the input's intensity scale).

    psf: None = `estimate_psf(image)`. nsr: constant noise-to-signal ratio; None uses the
    fitted frequency-dependent N / (A |f|^-beta).
    """
    img = check_image(image, min_size=16).astype(np.float64)
    psf = psf or estimate_psf(image)
    lo, hi = np.percentile(img, [0.5, 99.5])
    scale = max(hi - lo, 1e-12)
    x = (img - lo) / scale
    pad = int(min(64, max(8, 4 * psf.sigma_major_px)))
    xp = _pad(x, pad)
    mu = xp.mean()
    otf = gaussian_otf(xp.shape, psf.covariance())
    if nsr is None:
        fy = np.fft.fftfreq(xp.shape[0])[:, None]
        fx = np.fft.rfftfreq(xp.shape[1])[None, :]
        f = np.maximum(np.hypot(fx, fy), 1.0 / max(xp.shape))
        # spectrum was fitted on win x win patches with unit-power window: scale-free ratio
        k = psf.noise / (psf.amplitude * f ** (-psf.beta))
    else:
        k = float(nsr)
    g = otf / (otf ** 2 + k)
    out = np.fft.irfft2(np.fft.rfft2(xp - mu) * g, s=xp.shape) + mu
    out = out[pad:pad + img.shape[0], pad:pad + img.shape[1]]
    return out * scale + lo


def richardson_lucy(image: np.ndarray, psf: PSFEstimate | None = None, iterations: int = 15) -> np.ndarray:
    """Richardson-Lucy deconvolution with an elliptical Gaussian PSF (estimated if None)."""
    if not isinstance(iterations, int) or not 1 <= iterations <= 1000:
        raise PerceptionInputError(f"iterations = {iterations!r}: must be an int in [1, 1000]")
    img = check_image(image, min_size=16).astype(np.float64)
    psf = psf or estimate_psf(image)
    off = img.min() - 1e-3 * max(float(np.ptp(img)), 1e-12)
    x = img - off  # strictly positive
    pad = int(min(64, max(8, 4 * psf.sigma_major_px)))
    xp = _pad(x, pad)
    otf = gaussian_otf(xp.shape, psf.covariance())  # symmetric PSF: adjoint = itself

    def conv(a):
        return np.fft.irfft2(np.fft.rfft2(a) * otf, s=xp.shape)

    est = np.full_like(xp, xp.mean())
    for _ in range(iterations):
        est = est * np.maximum(conv(xp / np.maximum(conv(est), 1e-12)), 0.0)
    return est[pad:pad + img.shape[0], pad:pad + img.shape[1]] + off


class Restorer:
    """Learned defocus/astigmatism restoration (ONNX U-Net predicting a residual).

    `restore(image)` returns a float32 image in the input's intensity scale. The classical
    baselines are available as `Restorer.wiener` and `Restorer.richardson_lucy`.
    """

    wiener = staticmethod(wiener_deconvolve)
    richardson_lucy = staticmethod(richardson_lucy)

    def __init__(self, model: str | os.PathLike | None = None, threads: int = 2, tile: int = 512, overlap: int = 64):
        self.model_path = resolve_model(model, "restorer")
        self.record = load_record(self.model_path)
        self.session = onnx_session(self.model_path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.tile, self.overlap = int(tile), int(overlap)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def restore(self, image: np.ndarray) -> np.ndarray:
        """Restored frame, same shape, float32, same intensity scale as `image`."""
        img = check_image(image).astype(np.float64)
        lo, hi = np.percentile(img[::2, ::2], [0.5, 99.5])
        scale = max(hi - lo, 1e-12)
        x = ((img - lo) / scale).astype(np.float32)
        y = predict_tiled(x, self._run, 1, tile=self.tile, overlap=self.overlap)[0]
        return (y.astype(np.float64) * scale + lo).astype(np.float32)
