"""Labelled and unlabelled training scenes: procedural ('synth'), the randomised twin ('twin'),
frames of the shipped scenarios ('scenarios'), or a mix of them ('mix').

Generated scenes are cached as .npz under `cache_dir` keyed by (source, n, size, seed), because
rendering twin frames costs seconds each on this machine.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from .cache import load_npz, save_npz
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


def scenario_scenes(n: int, seed: int, shape: tuple[int, int] = (256, 256)) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`n` measurement-regime frames of the shipped SEM scenarios (train seeds) with labels."""
    from .twin_data import ScenarioFrameGenerator

    gen = ScenarioFrameGenerator(seed=seed, shape_px=shape)
    out = [gen.labelled_frame() for _ in range(n)]
    return [o[0] for o in out], [o[1] for o in out]


SOURCES = ("twin", "synth", "mix", "scenarios")


def labelled_scenes(source: str, n: int, seed: int, shape: tuple[int, int] = (256, 256),
                    cache_dir: str | Path | None = DEFAULT_CACHE, synth_fraction: float = 0.3,
                    scenario_fraction: float = 0.0):
    """(images, labels) from `source` in `SOURCES`.

    'mix' = randomised twin frames, plus `synth_fraction` procedural scenes and
    `scenario_fraction` frames of the shipped scenarios.
    """
    if source not in SOURCES:
        raise ValueError(f"source = {source!r}: must be one of {', '.join(SOURCES)}")
    if not (0.0 <= synth_fraction and 0.0 <= scenario_fraction and synth_fraction + scenario_fraction <= 1.0):
        raise ValueError(f"synth_fraction = {synth_fraction!r}, scenario_fraction = {scenario_fraction!r}: "
                         "each must be >= 0 and together <= 1")
    sc_key = f"_sc{scenario_fraction:g}" if source == "mix" and scenario_fraction > 0 else ""
    key = f"{source}_n{n}_{shape[0]}x{shape[1]}_s{seed}_f{synth_fraction:g}{sc_key}.npz"
    path = Path(cache_dir) / key if cache_dir is not None else None
    z = load_npz(path) if path is not None else None
    if z is not None:
        k = int(z["n"])
        return [z[f"i{j}"] for j in range(k)], [z[f"l{j}"] for j in range(k)]
    if source == "synth":
        ims, labs = synth_scenes(n, seed, shape)
    elif source == "twin":
        ims, labs = twin_scenes(n, seed, shape)
    elif source == "scenarios":
        ims, labs = scenario_scenes(n, seed, shape)
    else:
        n_s = int(round(n * synth_fraction))
        n_sc = int(round(n * scenario_fraction)) if source == "mix" else 0
        a, b = twin_scenes(n - n_s - n_sc, seed, shape)
        c, d = synth_scenes(n_s, seed + 7919, shape)
        e, f = scenario_scenes(n_sc, seed + 104729, shape)
        ims, labs = a + c + e, b + d + f
    if path is not None:
        arrays = {f"i{j}": im.astype(np.float32) for j, im in enumerate(ims)}
        arrays.update({f"l{j}": lb.astype(np.int32) for j, lb in enumerate(labs)})
        save_npz(path, n=len(ims), **arrays)
    return ims, labs


def visible_labels(images: list[np.ndarray], labels: list[np.ndarray], k: float) -> tuple[list[np.ndarray], int]:
    """Labels with the particles below the Rose contrast SNR `k` in their own frame set to
    background (`perception.significance`), and how many were dropped. Trains the network to
    report what the frame shows rather than particles hidden in noise."""
    from ..significance import drop_insignificant

    if not (np.isfinite(k) and k >= 0):
        raise ValueError(f"label_min_snr = {k!r}: must be a finite number >= 0")
    out, dropped = [], 0
    for im, lab in zip(images, labels):
        kept, _ = drop_insignificant(im, lab, k)
        dropped += int(lab.max()) - int(kept.max())
        out.append(kept)
    return out, dropped
