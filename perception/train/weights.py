"""Save and load torch state dicts as compressed .npz (float16 to keep the repository small)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def save_state(module: nn.Module, path: str | Path, half: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for k, v in module.state_dict().items():
        a = v.detach().cpu().numpy()
        if half and a.dtype == np.float32 and np.abs(a).max(initial=0.0) < 6e4:  # fp16 max is 65504
            a = a.astype(np.float16)
        arrays[k] = a
    np.savez_compressed(path, **arrays)
    return path


def load_state(module: nn.Module, path: str | Path, strict: bool = True) -> nn.Module:
    """Load a state dict saved by `save_state`. Non-finite BatchNorm running variances (files
    written before fp16 overflow was guarded against) are reset to 6e4; fine-tuning in train
    mode re-estimates them."""
    with np.load(path) as z:
        state = {}
        for k in z.files:
            a = z[k].astype(np.float32) if z[k].dtype == np.float16 else z[k]
            if k.endswith("running_var") and not np.isfinite(a).all():
                a = np.where(np.isfinite(a), a, np.float32(6e4))
            state[k] = torch.from_numpy(a)
    module.load_state_dict(state, strict=strict)
    return module


def extract_prefix(src: str | Path, prefix: str, dst: str | Path) -> Path:
    """Write the arrays of `src` whose key starts with `prefix` (prefix removed) to `dst`."""
    with np.load(src) as z:
        arrays = {k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix)}
    if not arrays:
        raise ValueError(f"weights {src}: no key starts with {prefix!r}")
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(dst, **arrays)
    return Path(dst)
