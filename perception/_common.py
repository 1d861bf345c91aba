"""Shared helpers for inference: input validation, intensity normalisation, ONNX sessions.

numpy + onnxruntime only (no torch at inference).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

MODELS_DIR = Path(__file__).resolve().parent / "models"


class PerceptionInputError(ValueError):
    """Bad input to a perception function (empty, not 2-D, non-finite, wrong type or range)."""


def check_image(image: Any, name: str = "image", min_size: int = 4) -> np.ndarray:
    """Return `image` as a 2-D numpy array; raise PerceptionInputError if it is unusable."""
    if not isinstance(image, np.ndarray):
        raise PerceptionInputError(f"{name} = {type(image).__name__}: must be a 2-D numpy array")
    if image.size == 0:
        raise PerceptionInputError(f"{name} shape = {image.shape}: must be non-empty")
    if image.ndim == 3 and image.shape[-1] in (3, 4) and image.dtype == np.uint8:
        raise PerceptionInputError(f"{name} shape = {image.shape}: must be 2-D grey (convert RGB first)")
    if image.ndim != 2:
        raise PerceptionInputError(f"{name} ndim = {image.ndim}: must be 2 (rows, cols)")
    if image.dtype == bool or not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise PerceptionInputError(f"{name} dtype = {image.dtype}: must be an integer or float type")
    if min(image.shape) < min_size:
        raise PerceptionInputError(f"{name} shape = {image.shape}: each side must be >= {min_size} px")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise PerceptionInputError(f"{name}: contains NaN or inf; must be finite everywhere")
    return image


def check_positive(value: Any, name: str, low: float = 0.0, high: float = math.inf) -> float:
    """Return `value` as float if low < value <= high and finite, else raise."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PerceptionInputError(f"{name} = {value!r}: must be a number in ({low:g}, {high:g}]") from None
    if not math.isfinite(v) or not (low < v <= high):
        raise PerceptionInputError(f"{name} = {value!r}: must be a finite number in ({low:g}, {high:g}]")
    return v


def check_in_range(value: Any, name: str, low: float, high: float) -> float:
    """Return `value` as float if it is a real number (not bool) with low <= value <= high, else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise PerceptionInputError(f"{name} = {value!r}: must be a number in [{low:g}, {high:g}]")
    return float(value)


def normalise(image: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5) -> np.ndarray:
    """Percentile normalisation to float32, low percentile -> 0, high -> 1 (not clipped beyond [-0.5, 1.5]).

    Works the same for 8-bit, 16-bit and float input: only the order statistics matter.
    """
    img = image.astype(np.float32, copy=False)
    step = max(1, int(math.sqrt(img.size / 262144)))  # percentiles from <= ~256k samples
    sample = img[::step, ::step]
    lo, hi = np.percentile(sample, [lo_pct, hi_pct])
    if hi - lo < 1e-12:
        hi = lo + 1.0
    out = (img - lo) / (hi - lo)
    return np.clip(out, -0.5, 1.5).astype(np.float32)


def onnx_session(path: str | Path, threads: int = 2, spin: bool | None = None):
    """An onnxruntime CPU session with `threads` intra-op threads.

    spin: let idle worker threads busy-wait (onnxruntime's default). Off by default here
    ($EMTWIN_ORT_SPIN=1 turns it on): on a machine shared with other busy processes spinning
    threads slow everything down (1.5 s -> 1.1 s per 1200x1920 frame measured at load 6).
    """
    import onnxruntime as ort

    if spin is None:
        spin = os.environ.get("EMTWIN_ORT_SPIN", "0") == "1"
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def load_record(onnx_path: str | Path) -> dict:
    """The JSON record written next to an ONNX model (same stem, .json), or {} if absent."""
    p = Path(onnx_path)
    for cand in (p.with_suffix(".json"), p.with_name(p.stem.replace("_int8", "") + ".json")):
        if cand.exists():
            return json.loads(cand.read_text())
    return {}


def shipped_variants(default_stem: str) -> list[str]:
    """Names of the shipped variants of a model: "standard" (`<default_stem>.onnx`) and NAME for
    every `<default_stem>_NAME.onnx` in perception/models (int8 copies aside)."""
    names = ["standard"] if (MODELS_DIR / f"{default_stem}.onnx").exists() else []
    for p in sorted(MODELS_DIR.glob(f"{default_stem}_*.onnx")):
        name = p.stem[len(default_stem) + 1:]
        if name != "int8" and not name.endswith("_int8"):
            names.append(name)
    return names


def shipped_segmenters() -> dict[str, Path]:
    """{name: path} of every shipped segmenter variant ("standard" first)."""
    return {name: resolve_model(name, "segmenter") for name in shipped_variants("segmenter")}


def resolve_model(name_or_path: str | os.PathLike | None, default_stem: str, int8: bool = False) -> Path:
    """Path of a model: an explicit file; a shipped variant by name ("standard", or "lite" for
    `<default_stem>_lite.onnx`, see `shipped_variants`); or, for None, the shipped
    `<default_stem>[_int8].onnx`. `int8` picks a shipped int8 copy where there is one."""
    stem = _shipped_stem(name_or_path, default_stem)
    if stem is None:
        p = Path(name_or_path)
    else:
        p = MODELS_DIR / f"{stem}{'_int8' if int8 else ''}.onnx"
        if not p.exists() and int8:
            p = MODELS_DIR / f"{stem}.onnx"
    if not p.exists():
        raise FileNotFoundError(f"model file {p} does not exist (train it with `emtwin train`)")
    return p


def _shipped_stem(name_or_path: str | os.PathLike | None, default_stem: str) -> str | None:
    """File stem in perception/models of a shipped model named by `name_or_path`, or None when
    it names a file instead (a bare name that is no file must be a shipped variant)."""
    if name_or_path is None or name_or_path == "standard":
        return default_stem
    if not (isinstance(name_or_path, str) and name_or_path.isidentifier()) or Path(name_or_path).exists():
        return None
    variants = shipped_variants(default_stem)
    if name_or_path not in variants:
        raise FileNotFoundError(f"model {name_or_path!r}: no such file and no shipped {default_stem} of that name "
                                f"(shipped: {', '.join(variants) or 'none'})")
    return f"{default_stem}_{name_or_path}"


def pad_to_multiple(image: np.ndarray, multiple: int, mode: str = "reflect") -> tuple[np.ndarray, tuple[int, int]]:
    """Pad the bottom/right of a 2-D array up to a multiple of `multiple`; return it and the original shape."""
    h, w = image.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return image, (h, w)
    m = mode if (ph < h and pw < w) else "symmetric"
    return np.pad(image, ((0, ph), (0, pw)), mode=m), (h, w)
