"""Export a torch model to ONNX (dynamic batch and spatial axes) and quantise it to QDQ int8."""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn


def export_onnx(model: nn.Module, path: str | Path, in_chans: int = 1, size: int = 128,
                output_names: tuple[str, ...] = ("out",), spatial_dynamic: bool = True) -> Path:
    """Write `model` as ONNX to `path` using the dynamo exporter with an example batch of 2.

    Input name is ``image`` (N, in_chans, H, W float32). Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.randn(2, in_chans, size, size)
    batch = torch.export.Dim("batch", min=1, max=64)
    dims: dict = {0: batch}
    if spatial_dynamic:
        # H and W must stay multiples of 32 (the encoder's total stride)
        dims[2] = 32 * torch.export.Dim("h32", min=1, max=256)
        dims[3] = 32 * torch.export.Dim("w32", min=1, max=256)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(model, (example,), dynamo=True, input_names=["image"],
                                 output_names=list(output_names),
                                 dynamic_shapes={"img": dims} if _arg_name(model) == "img" else (dims,),
                                 verbose=False)
        prog.optimize()
        prog.save(str(path))
    _inline_external(path)
    return path


def _arg_name(model: nn.Module) -> str:
    import inspect

    params = list(inspect.signature(model.forward).parameters)
    return params[0] if params else "x"


def _inline_external(path: Path) -> None:
    """Re-save with all weights inside the .onnx file (no .data side file)."""
    import onnx

    data = Path(str(path) + ".data")
    m = onnx.load(str(path), load_external_data=True)
    onnx.save_model(m, str(path), save_as_external_data=False)
    if data.exists():
        data.unlink()


class _Reader:
    """Calibration data reader for onnxruntime static quantisation."""

    def __init__(self, arrays: Iterable[np.ndarray], name: str = "image"):
        self._it = iter([{name: a.astype(np.float32)} for a in arrays])

    def get_next(self):
        return next(self._it, None)


def quantize_qdq(fp32_path: str | Path, int8_path: str | Path, calib: list[np.ndarray]) -> Path:
    """Static QDQ int8 quantisation (per-channel weights, uint8 activations, MinMax calibration)."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        try:
            quant_pre_process(str(fp32_path), pre, skip_symbolic_shape=True)
        except Exception:  # pre-processing is an optimisation only
            pre = str(fp32_path)
        quantize_static(pre, str(int8_path), _Reader(calib), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        op_types_to_quantize=["Conv", "MatMul"])
    return Path(int8_path)


def write_record(path: str | Path, record: dict) -> None:
    """Write the reproducibility record (config, seed, command, timings) as pretty JSON."""
    Path(path).write_text(json.dumps(record, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(type(o))


Factory = Callable[[], nn.Module]
