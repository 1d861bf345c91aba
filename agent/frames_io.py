"""Frames on disk: TIFF with the pixel size in ImageJ form plus the full metadata as JSON.

Fiji/ImageJ and HyperSpy (RosettaSciIO) read the scale from the ImageJ resolution and unit;
`read_frame` restores the complete `FrameMeta` from a private TIFF tag.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile

from drivers import Frame, FrameMeta

META_TAG = 65000  # private TIFF tag holding FrameMeta as JSON


def write_image_tiff(path: str | Path, image: np.ndarray, pixel_size_m: float, meta_json: str | None = None) -> Path:
    """Write a 2-D image with its pixel size (stored in micrometres for ImageJ)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    px_um = pixel_size_m * 1e6
    extratags = [(META_TAG, "s", 0, meta_json, True)] if meta_json else []
    if image.dtype in (np.uint8, np.uint16, np.float32):
        tifffile.imwrite(path, image, imagej=True, resolution=(1.0 / px_um, 1.0 / px_um),
                         metadata={"unit": "micron"}, extratags=extratags)
    else:  # e.g. int32 labels: not an ImageJ type; the scale goes in the TIFF resolution tags (cm)
        px_cm = pixel_size_m * 100
        tifffile.imwrite(path, image, resolution=(1.0 / px_cm, 1.0 / px_cm), resolutionunit="CENTIMETER",
                         extratags=extratags)
    return path


def write_frame(path: str | Path, frame: Frame) -> Path:
    """Write `frame` as TIFF; the file opens in Fiji and HyperSpy with the right scale."""
    return write_image_tiff(path, frame.image, frame.meta.pixel_size_m, json.dumps(frame.meta.to_dict()))


def read_frame(path: str | Path) -> Frame:
    """Read a TIFF written by `write_frame` back into a `Frame`."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        tag = page.tags.get(META_TAG)
        if tag is None:
            raise ValueError(f"{path}: no emtwin frame metadata (tag {META_TAG}); not written by emtwin")
        meta = FrameMeta.from_dict(json.loads(tag.value))
        return Frame(image=page.asarray(), meta=meta)
