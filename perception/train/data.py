"""Training data: targets from instance labels, random-crop samplers with augmentation,
folders of real unlabelled images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from .._common import check_in_range, normalise

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def make_targets(labels: np.ndarray) -> np.ndarray:
    """(3, H, W) float32: foreground, boundary (inner rim, 1 px; 2 px where instances touch),
    centre (distance to the instance edge / the instance's maximum distance)."""
    lab = labels.astype(np.int32)
    fg = lab > 0
    bd = find_boundaries(lab, connectivity=1, mode="inner") & fg
    touch = find_boundaries(lab, connectivity=1, mode="thick") & fg
    touch &= ndi.maximum_filter(lab, 3) != ndi.minimum_filter(np.where(fg, lab, lab.max() + 1), 3)
    bd = bd | touch
    centre = np.zeros(lab.shape, np.float32)
    if fg.any():
        # distance to the nearest pixel of another label or background, per instance
        edge = find_boundaries(lab, connectivity=1, mode="thick") | ~fg
        dist = ndi.distance_transform_edt(~edge | ~fg).astype(np.float32) * fg
        dmax = ndi.maximum(dist, lab, index=np.arange(lab.max() + 1))
        dmax = np.asarray(dmax, np.float32)
        dmax[dmax <= 0] = 1.0
        centre = np.where(fg, dist / dmax[lab], 0.0).astype(np.float32)
    return np.stack([fg.astype(np.float32), bd.astype(np.float32), centre])


def read_grey(path: str | Path, crop_bottom_px: int = 0) -> np.ndarray:
    """Read an image file as a 2-D float32 array (RGB -> mean of channels)."""
    from skimage import io

    a = io.imread(str(path))
    if a.ndim == 3:
        a = a[..., :3].mean(-1)
    a = a.astype(np.float32)
    if crop_bottom_px > 0:
        a = a[: a.shape[0] - crop_bottom_px]
    return a


def load_folder(folder: str | Path, crop_bottom_px: int = 0, limit: int | None = None) -> list[np.ndarray]:
    """All images of a folder (sorted by name), percentile-normalised float32."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if limit:
        files = files[:limit]
    if not files:
        raise FileNotFoundError(f"image folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} files")
    return [normalise(read_grey(p, crop_bottom_px)) for p in files]


def _augment_geom(rng: np.random.Generator, *arrays: np.ndarray) -> list[np.ndarray]:
    k = int(rng.integers(4))
    flip = rng.random() < 0.5
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(-2, -1))
        if flip:
            a = a[..., ::-1]
        out.append(np.ascontiguousarray(a))
    return out


def augment_figure(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """The look of exported and published micrographs, on an image in [0, 1]: contrast
    stretched until up to 40 % of the pixels saturate white (up to 15 % black), so that
    particles or substrate become flat plateaus; and smoothing (sigma 0.5-1.5 px) from
    denoising or resampling. The twin never renders either; on twin frames stretched until
    10 % of the pixels saturate the shipped segmenter fell from AJI+ 0.86 to 0.23."""
    if rng.random() < 0.75:
        lo = float(np.quantile(img, rng.uniform(0.0, 0.15)))
        hi = float(np.quantile(img, rng.uniform(0.6, 0.99)))
        img = np.clip((img - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    if rng.random() < 0.4:
        img = ndi.gaussian_filter(img, rng.uniform(0.5, 1.5))
    return img


def _augment_intensity(rng: np.random.Generator, img: np.ndarray, invert_p: float, figure_p: float = 0.0) -> np.ndarray:
    img = np.clip(img, 0.0, 1.0)
    if figure_p > 0 and rng.random() < figure_p:
        img = augment_figure(rng, img)
    if rng.random() < invert_p:
        img = 1.0 - img
    img = img ** float(np.exp(rng.normal(0, 0.25)))
    img = img * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
    if rng.random() < 0.3:
        img = img + rng.normal(0, rng.uniform(0.01, 0.08), img.shape)
    return img.astype(np.float32)


def noise_crop(rng: np.random.Generator, c: int) -> np.ndarray:
    """A (c, c) frame of pure noise, percentile-normalised like a scene: uniform, Gaussian, or
    Poisson counts of mean 0.3-30 (a blank substrate at low to moderate dose). No particles."""
    kind = int(rng.integers(3))
    if kind == 0:
        img = rng.random((c, c))
    elif kind == 1:
        img = rng.normal(size=(c, c))
    else:
        img = rng.poisson(float(np.exp(rng.uniform(np.log(0.3), np.log(30.0)))), (c, c)).astype(np.float64)
    return normalise(img)


class LabelledSampler:
    """Random crops of (normalised image, labels) pairs with scale, geometry and intensity
    augmentation. `batch(n)` -> (x (n,1,c,c) float32, targets (n,3,c,c) float32).
    `noise_p`: share of crops replaced by pure noise (`noise_crop`) with empty targets."""

    def __init__(self, images: list[np.ndarray], labels: list[np.ndarray], crop: int, rng: np.random.Generator,
                 scale_range: tuple[float, float] = (0.6, 1.6), invert_p: float = 0.2, figure_p: float = 0.0,
                 noise_p: float = 0.0):
        if not images or len(images) != len(labels):
            raise ValueError(f"images/labels = {len(images)}/{len(labels)}: need equal, non-zero counts")
        self.images = [normalise(i) for i in images]
        self.labels = labels
        self.crop, self.rng, self.scale_range, self.invert_p = crop, rng, scale_range, invert_p
        self.figure_p = check_in_range(figure_p, "figure_p", 0.0, 1.0)
        self.noise_p = check_in_range(noise_p, "noise_p", 0.0, 1.0)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        rng, c = self.rng, self.crop
        if self.noise_p and rng.random() < self.noise_p:
            img = noise_crop(rng, c)
            return _augment_intensity(rng, img, self.invert_p), make_targets(np.zeros((c, c), np.int32))
        i = int(rng.integers(len(self.images)))
        img, lab = self.images[i], self.labels[i]
        s = float(np.exp(rng.uniform(*np.log(self.scale_range))))
        src = int(np.ceil(c / s))
        src = min(src, *img.shape)
        y = int(rng.integers(img.shape[0] - src + 1))
        x = int(rng.integers(img.shape[1] - src + 1))
        ci, cl = img[y:y + src, x:x + src], lab[y:y + src, x:x + src]
        if src != c:
            z = c / src
            ci = ndi.zoom(ci, z, order=1)[:c, :c]
            cl = ndi.zoom(cl, z, order=0)[:c, :c]
            if ci.shape != (c, c):
                ci = np.pad(ci, ((0, c - ci.shape[0]), (0, c - ci.shape[1])), mode="reflect")
                cl = np.pad(cl, ((0, c - cl.shape[0]), (0, c - cl.shape[1])), mode="constant")
        ci, cl = _augment_geom(rng, ci, cl)
        return _augment_intensity(rng, ci, self.invert_p, self.figure_p), make_targets(cl)

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        xs, ts = zip(*(self.sample() for _ in range(n)))
        return np.stack(xs)[:, None], np.stack(ts)


class UnlabelledSampler:
    """Random crops (with geometry/intensity augmentation) of unlabelled normalised images."""

    def __init__(self, images: list[np.ndarray], crop: int, rng: np.random.Generator, invert_p: float = 0.0):
        self.images = [i for i in images if min(i.shape) >= crop]
        if not self.images:
            raise ValueError(f"crop = {crop}: no image is that large")
        self.crop, self.rng, self.invert_p = crop, rng, invert_p

    def sample(self) -> np.ndarray:
        rng, c = self.rng, self.crop
        img = self.images[int(rng.integers(len(self.images)))]
        y = int(rng.integers(img.shape[0] - c + 1))
        x = int(rng.integers(img.shape[1] - c + 1))
        (ci,) = _augment_geom(rng, img[y:y + c, x:x + c])
        return _augment_intensity(rng, ci, self.invert_p)

    def batch(self, n: int) -> np.ndarray:
        return np.stack([self.sample() for _ in range(n)])[:, None]


class MixedSampler:
    """Draw each sample from one of several samplers with the given probabilities."""

    def __init__(self, samplers: list, probs: list[float], rng: np.random.Generator):
        self.samplers, self.rng = samplers, rng
        p = np.asarray(probs, float)
        self.p = p / p.sum()

    def sample(self):
        return self.samplers[int(self.rng.choice(len(self.samplers), p=self.p))].sample()

    def batch(self, n: int):
        items = [self.sample() for _ in range(n)]
        if isinstance(items[0], tuple):
            xs, ts = zip(*items)
            return np.stack(xs)[:, None], np.stack(ts)
        return np.stack(items)[:, None]
