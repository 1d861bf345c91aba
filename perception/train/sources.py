"""Labelled and unlabelled training scenes: procedural ('synth'), the twin ('twin'), or both ('mix').

Generated scenes are cached as .npz under `cache_dir` keyed by (source, n, size, seed), because
rendering twin frames costs seconds each on this machine.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from .synth import synth_scene

DEFAULT_CACHE = Path("runs") / "train_cache"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def synth_scenes(n: int, seed: int, shape: tuple[int, int] = (256, 256)) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = [synth_scene(rng, shape) for _ in range(n)]
    return [o[0] for o in out], [o[1] for o in out]


def twin_scenes(n: int, seed: int, shape: tuple[int, int] = (256, 256)) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`n` domain-randomised twin frames with their ground-truth instance labels."""
    from .twin_data import TwinSceneGenerator

    gen = TwinSceneGenerator(seed=seed, shape_px=shape)
    ims, labs = [], []
    t0 = time.time()
    for i in range(n):
        img, lab = gen.labelled_frame()
        ims.append(img)
        labs.append(lab)
        if (i + 1) % 25 == 0:
            _log(f"[twin data] {i + 1}/{n} frames ({time.time() - t0:.0f} s)")
    return ims, labs


def labelled_scenes(source: str, n: int, seed: int, shape: tuple[int, int] = (256, 256),
                    cache_dir: str | Path | None = DEFAULT_CACHE, synth_fraction: float = 0.3):
    """(images, labels) from `source` in {'synth', 'twin', 'mix'}; 'mix' = twin + synth_fraction synth."""
    if source not in ("synth", "twin", "mix"):
        raise ValueError(f"source = {source!r}: must be 'synth', 'twin' or 'mix'")
    key = f"{source}_n{n}_{shape[0]}x{shape[1]}_s{seed}_f{synth_fraction:g}.npz"
    if cache_dir is not None:
        path = Path(cache_dir) / key
        if path.exists():
            with np.load(path) as z:
                k = int(z["n"])
                return [z[f"i{j}"] for j in range(k)], [z[f"l{j}"] for j in range(k)]
    if source == "synth":
        ims, labs = synth_scenes(n, seed, shape)
    elif source == "twin":
        ims, labs = twin_scenes(n, seed, shape)
    else:
        n_s = int(round(n * synth_fraction))
        a, b = twin_scenes(n - n_s, seed, shape)
        c, d = synth_scenes(n_s, seed + 7919, shape)
        ims, labs = a + c, b + d
    if cache_dir is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"i{j}": im.astype(np.float32) for j, im in enumerate(ims)}
        arrays.update({f"l{j}": lb.astype(np.int32) for j, lb in enumerate(labs)})
        np.savez_compressed(path, n=len(ims), **arrays)
    return ims, labs
