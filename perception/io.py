"""Reading frames and writing segmentation outputs (label TIFF, overlay PNG, particles CSV)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage.segmentation import find_boundaries

from ._common import PerceptionInputError, normalise


def read_image(path: str | Path) -> tuple[np.ndarray, float | None]:
    """A 2-D grey image from PNG/TIFF/JPEG and, for TIFFs that carry it, the pixel size in metres."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    px = None
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(str(path)) as tf:
            page = tf.pages[0]
            img = page.asarray()
            px = _tiff_pixel_size_m(page)
    else:
        from skimage import io

        img = io.imread(str(path))
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        img = img[..., :3].mean(-1).astype(np.float32) if not _grey_rgb(img) else img[..., 0]
    if img.ndim != 2:
        raise PerceptionInputError(f"image {path} shape = {img.shape}: must be a 2-D grey image")
    return img, px


def _grey_rgb(img: np.ndarray) -> bool:
    return bool((img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all())


def _tiff_pixel_size_m(page) -> float | None:
    tags = page.tags
    try:
        xres = tags["XResolution"].value
        unit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2
        per = xres[0] / xres[1]
        if per <= 0:
            return None
        unit_m = {2: 0.0254, 3: 0.01}.get(int(unit))
        return unit_m / per if unit_m else None
    except (KeyError, ZeroDivisionError, TypeError):
        return None


def write_label_tiff(path: str | Path, labels: np.ndarray, pixel_size_m: float) -> None:
    """uint16 (or uint32 if > 65535 instances) label TIFF with the pixel size as resolution (px/cm)."""
    import tifffile

    dtype = np.uint16 if labels.max() < 65536 else np.uint32
    per_cm = 0.01 / pixel_size_m
    tifffile.imwrite(str(path), labels.astype(dtype), resolution=(per_cm, per_cm), resolutionunit="CENTIMETER",
                     metadata=None, description=f"emtwin instance labels; pixel_size_m={pixel_size_m:.6g}")


def overlay(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """RGB uint8: the normalised frame in grey with instance outlines in colour."""
    grey = (np.clip(normalise(image), 0, 1) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    edges = find_boundaries(labels, mode="inner")
    rng = np.random.default_rng(0)
    colours = rng.integers(80, 256, size=(int(labels.max()) + 1, 3)).astype(np.uint8)
    colours[:, 0] = 255
    rgb[edges] = colours[labels[edges]]
    return rgb


def write_overlay_png(path: str | Path, image: np.ndarray, labels: np.ndarray) -> None:
    from skimage import io

    io.imsave(str(path), overlay(image, labels), check_contrast=False)
