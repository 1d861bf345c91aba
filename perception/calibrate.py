"""Sizing calibration of a segmenter: the diameter offset of its outlines, by particle size.

The network's outlines sit a fraction of a pixel outside the true edge (about +0.5 px on the
diameter of 8-22 px particles on the twin). Like sizing against a certified reference
material, the offset is measured once on labelled frames that no benchmark uses (the
shipped scenarios' train seeds), tabulated against the predicted diameter in pixels, and
subtracted from every diameter the segmenter reports. `emtwin train calibrate` writes the
table into the model's JSON record; `Segmenter(calibrated=False)` ignores it.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from .metrics import matched_diameters

DEFAULT_EDGES_PX = (0.0, 6.0, 9.0, 12.0, 16.0, 22.0, 30.0, 45.0, 70.0)


def fit_size_calibration(pred_px: np.ndarray, true_px: np.ndarray, edges: Iterable[float] = DEFAULT_EDGES_PX,
                         min_pairs: int = 20) -> dict:
    """Mean diameter offset (pred - true, px) per bin of predicted diameter, bins with >= min_pairs."""
    pred_px, true_px = np.asarray(pred_px, float), np.asarray(true_px, float)
    if pred_px.shape != true_px.shape or pred_px.ndim != 1:
        raise ValueError(f"pred_px {pred_px.shape} and true_px {true_px.shape}: must be 1-D of equal length")
    centres, offsets, counts = [], [], []
    e = list(edges)
    for lo, hi in zip(e[:-1], e[1:]):
        k = (pred_px >= lo) & (pred_px < hi)
        if k.sum() >= min_pairs:
            centres.append(float(pred_px[k].mean()))
            offsets.append(float((pred_px[k] - true_px[k]).mean()))
            counts.append(int(k.sum()))
    if not centres:
        raise ValueError(f"{pred_px.size} matched pairs: no size bin has {min_pairs} or more")
    return {"model": "d_true_px = d_pred_px - interp(d_pred_px, d_px, offset_px)", "d_px": centres,
            "offset_px": offsets, "pairs": counts}


def apply_size_calibration(d_px: np.ndarray, cal: dict | None) -> np.ndarray:
    """Corrected diameters (px); unchanged without a calibration. Never below half the input."""
    d = np.asarray(d_px, float)
    if not cal:
        return d
    off = np.interp(d, cal["d_px"], cal["offset_px"])
    return np.maximum(d - off, 0.5 * d)


def calibrate_model(model: str | None = None, n_frames: int = 120, seed: int = 12345,
                    shape: tuple[int, int] = (512, 512), progress: bool = True) -> dict:
    """Fit the sizing calibration of an ONNX segmenter on train-seed scenario frames and store it
    in the model's JSON record (key `size_calibration`). Returns the calibration."""
    import json
    import time
    from pathlib import Path

    from ._common import resolve_model
    from .segment import Segmenter
    from .train.twin_data import ScenarioFrameGenerator

    if not isinstance(n_frames, int) or n_frames < 10:
        raise ValueError(f"n_frames = {n_frames!r}: must be an integer >= 10")
    t0 = time.time()
    path = Path(resolve_model(model, "segmenter"))
    seg = Segmenter(path, calibrated=False)
    gen = ScenarioFrameGenerator(seed=seed, shape_px=shape, split="train")
    pred, true = [], []
    for i in range(n_frames):
        img, gt = gen.labelled_frame()
        p, t = matched_diameters(gt, seg.segment(img, 1e-9)[0])
        pred.append(p)
        true.append(t)
        if progress and (i + 1) % 20 == 0:
            print(f"[calibrate] {i + 1}/{n_frames} frames", flush=True)
    cal = fit_size_calibration(np.concatenate(pred), np.concatenate(true))
    cal.update(frames=n_frames, seed=seed, shape_px=list(shape), split="train seeds of the shipped SEM scenarios",
               time_s=round(time.time() - t0, 1))
    rec_path = path.with_name(path.stem.replace("_int8", "") + ".json")
    rec = json.loads(rec_path.read_text()) if rec_path.exists() else {}
    rec["size_calibration"] = cal
    rec_path.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    return cal
