"""Classical segmentation baseline: Gaussian smoothing, Otsu threshold, distance-map watershed.

The floor the learned segmenter must beat, and a dependency-light fallback. Particles are
assumed brighter than the substrate (SE/BSE of particles on a light substrate) unless
`bright=False`. Otsu splits any histogram in two, also that of an empty frame (pure noise),
so the threshold is held at least `noise_k` smoothed-noise sigmas above the background
class, and instances failing the Rose contrast test (`perception.significance`) are dropped.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from ._common import check_image, check_in_range, check_positive
from .instances import particle_table
from .segment import Segmentation
from .significance import MAX_CONTRAST_SNR, ROSE_K, drop_insignificant, noise_sigma


class ClassicalSegmenter:
    """Otsu (1979) threshold on a smoothed image, then a watershed on the distance transform."""

    def __init__(self, sigma_px: float = 1.0, bright: bool = True, min_area_px: int = 8,
                 noise_k: float = 3.0, min_contrast_snr: float = ROSE_K):
        self.sigma_px = check_positive(sigma_px, "sigma_px", 0.0, 100.0)
        self.bright, self.min_area_px = bool(bright), int(min_area_px)
        self.noise_k = check_in_range(noise_k, "noise_k", 0.0, 100.0)
        self.min_contrast_snr = check_in_range(min_contrast_snr, "min_contrast_snr", 0.0, MAX_CONTRAST_SNR)

    def threshold(self, smoothed: np.ndarray, raw: np.ndarray) -> float:
        """Otsu's threshold, raised to `noise_k` smoothed-noise sigmas above the mean of the
        class below it. Gaussian smoothing (sigma s px) of white noise divides its sigma by
        2 s sqrt(pi) (variance 1/(4 pi s^2))."""
        t = float(threshold_otsu(smoothed))  # >= the minimum, so the class below is never empty
        sigma_s = noise_sigma(raw) / (2.0 * self.sigma_px * np.sqrt(np.pi))
        return max(t, float(smoothed[smoothed <= t].mean()) + self.noise_k * sigma_s)

    def labels(self, image: np.ndarray) -> np.ndarray:
        raw = check_image(image).astype(np.float32)
        if not self.bright:
            raw = -raw
        img = ndimage.gaussian_filter(raw, self.sigma_px)
        fg = ndimage.binary_opening(img > self.threshold(img, raw), iterations=1)
        dist = ndimage.distance_transform_edt(fg)
        peaks = (dist > 2) & (dist >= 0.6 * ndimage.maximum_filter(dist, size=7))
        markers, _ = ndimage.label(peaks)
        lab = watershed(-dist, markers, mask=fg).astype(np.int32)
        sizes = np.bincount(lab.ravel())
        small = sizes < self.min_area_px
        small[0] = False
        lab[small[lab]] = 0
        return drop_insignificant(raw, lab, self.min_contrast_snr)[0]

    def segment(self, image: np.ndarray, pixel_size_m: float) -> Segmentation:
        px = check_positive(pixel_size_m, "pixel_size_m", 0.0, 1e-2)
        lab = self.labels(image)
        return Segmentation(lab, particle_table(lab, px))
