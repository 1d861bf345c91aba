"""Classical segmentation baseline: Gaussian smoothing, Otsu threshold, distance-map watershed.

The floor the learned segmenter must beat, and a dependency-light fallback. Particles are
assumed brighter than the substrate (SE/BSE of particles on a light substrate) unless
`bright=False`.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from ._common import check_image, check_positive
from .instances import particle_table
from .segment import Segmentation


class ClassicalSegmenter:
    """Otsu (1979) threshold on a smoothed image, then a watershed on the distance transform."""

    def __init__(self, sigma_px: float = 1.0, bright: bool = True, min_area_px: int = 8):
        self.sigma_px, self.bright, self.min_area_px = float(sigma_px), bool(bright), int(min_area_px)

    def labels(self, image: np.ndarray) -> np.ndarray:
        img = ndimage.gaussian_filter(check_image(image).astype(np.float32), self.sigma_px)
        if not self.bright:
            img = -img
        fg = ndimage.binary_opening(img > threshold_otsu(img), iterations=1)
        dist = ndimage.distance_transform_edt(fg)
        peaks = (dist > 2) & (dist >= 0.6 * ndimage.maximum_filter(dist, size=7))
        markers, _ = ndimage.label(peaks)
        lab = watershed(-dist, markers, mask=fg).astype(np.int32)
        sizes = np.bincount(lab.ravel())
        small = sizes < self.min_area_px
        small[0] = False
        lab[small[lab]] = 0
        return lab

    def segment(self, image: np.ndarray, pixel_size_m: float) -> Segmentation:
        px = check_positive(pixel_size_m, "pixel_size_m", 0.0, 1e-2)
        lab = self.labels(image)
        return Segmentation(lab, particle_table(lab, px))
