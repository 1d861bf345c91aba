"""Sizing calibration of a segmenter: the diameter offset of its outlines, by particle size.

The network's outlines sit a fraction of a pixel outside the true edge (about +0.5 px on the
diameter of 8-22 px particles on the twin). Like sizing against a certified reference
material, the offset is measured once on labelled frames that no benchmark uses (the
shipped scenarios' train seeds), tabulated against the predicted diameter in pixels, and
subtracted from every diameter the segmenter reports (`emtwin train calibrate` writes the
table into the model's JSON record; `Segmenter(calibrated=False)` ignores it). The reference is each particle's
projected-area-equivalent diameter from the specimen (whole also where a neighbour hides
part of it), in the measurement regime of the agent: frames within a fraction of a depth of
field of focus (`focus_sigma_dof`), since the offset grows with defocus blur. Only particles
that touch no other and are not cut by the frame edge are used: the outline offset is a
property of an edge against the substrate, while the area hidden in clusters is restored by `perception.occlusion`.
That restoration overshoots (the ellipse fitted to a free edge bulges into the neighbour), so the
same frames also give `occluded_gain`: the share of the fitted hidden area that makes the
touching particles' calibrated diameters sum to their true ones.

What matched pairs cannot see is selection: small or crowded particles that are missed or
merged shift the mean of what is measured. `system_factor` closes that loop end to end, as a
laboratory checks its sizing against a reference sample of known mean size: agent runs on the
scenarios' *train* seeds (`emtwin bench agent --split train`) give the ratio of the measured to
the true mean diameter, and `fit_system_factor` stores its inverse (geometric mean over runs).
"""
from __future__ import annotations

import sys
from typing import Iterable

import numpy as np

from .instances import border_labels, touching_labels
from .metrics import matched_pairs

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


def _touching_ratio(gain: float, area_px: np.ndarray, hidden_px: np.ndarray, true_px: np.ndarray,
                    cal: dict) -> float:
    """Sum of calibrated diameters over sum of true ones, with `gain` x the hidden area added."""
    d = np.sqrt(4.0 * (area_px + gain * hidden_px) / np.pi)
    return float(apply_size_calibration(d, cal).sum() / true_px.sum())


def fit_occluded_gain(area_px: np.ndarray, hidden_px: np.ndarray, true_px: np.ndarray, cal: dict,
                      max_gain: float = 2.0, min_pairs: int = 20) -> float:
    """Gain on the hidden area (`perception.occlusion`) of touching particles that makes the sum of
    their calibrated diameters equal the true sum (bisection; clipped to [0, max_gain]).

    area_px: visible area (px); hidden_px: hidden area the fill added (px); true_px: true
    diameters (px). Needs `min_pairs` particles with a hidden area."""
    a, h, t = (np.asarray(x, float) for x in (area_px, hidden_px, true_px))
    if not (a.shape == h.shape == t.shape) or a.ndim != 1:
        raise ValueError(f"area_px {a.shape}, hidden_px {h.shape}, true_px {t.shape}: must be 1-D of equal length")
    if int((h > 0).sum()) < min_pairs:
        raise ValueError(f"{int((h > 0).sum())} touching particles with a hidden area: need {min_pairs} or more")
    lo, hi = 0.0, float(max_gain)
    if _touching_ratio(lo, a, h, t, cal) >= 1.0:
        return lo
    if _touching_ratio(hi, a, h, t, cal) <= 1.0:
        return hi
    for _ in range(40):  # the ratio grows monotonically with the gain
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _touching_ratio(mid, a, h, t, cal) < 1.0 else (lo, mid)
    return 0.5 * (lo + hi)


def calibrate_model(model: str | None = None, n_frames: int = 120, seed: int = 12345,
                    shape: tuple[int, int] = (512, 512), progress: bool = True,
                    focus_sigma_dof: float = 0.25) -> dict:
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
    gen = ScenarioFrameGenerator(seed=seed, shape_px=shape, split="train", focus_sigma_dof=focus_sigma_dof)
    pred, true, touch = [], [], []
    for i in range(n_frames):
        img, gt, d_true = gen.labelled_frame_sizes()
        res = seg.segment(img, 1e-9)
        gi, pi = matched_pairs(gt, res.labels)
        # gt is relabelled 1..n: index i is label i + 1; isolated = clear of others and of the frame edge
        inside = ~np.isin(gi + 1, border_labels(gt))
        touching = np.isin(gi + 1, touching_labels(gt))
        free, crowded = inside & ~touching, inside & touching
        pred.append(res.particles["equivalent_diameter_m"][pi[free]] / 1e-9)
        true.append(d_true[gi[free]])
        touch.append(np.stack([res.particles["area_px"][pi[crowded]], res.particles["occluded_px"][pi[crowded]],
                               d_true[gi[crowded]]]))
        if progress and (i + 1) % 20 == 0:
            print(f"[calibrate] {i + 1}/{n_frames} frames", flush=True)
    cal = fit_size_calibration(np.concatenate(pred), np.concatenate(true))
    if seg.fill_occluded:
        cal.update(_gain_fit(np.concatenate(touch, axis=1), cal))
    cal.update(frames=n_frames, seed=seed, shape_px=list(shape), split="train seeds of the shipped SEM scenarios",
               reference="specimen projected-area-equivalent diameter: offsets from particles touching no other, "
                         "occluded_gain from touching ones", focus_sigma_dof=focus_sigma_dof,
               fill_occluded=seg.fill_occluded,
               time_s=round(time.time() - t0, 1))
    rec_path = path.with_name(path.stem.replace("_int8", "") + ".json")
    rec = json.loads(rec_path.read_text()) if rec_path.exists() else {}
    rec["size_calibration"] = cal
    rec_path.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    return cal


def _gain_fit(touch: np.ndarray, cal: dict) -> dict:
    """`occluded_gain` and the touching particles' size bias before and after it (rows of
    `touch`: visible area px, hidden area px, true diameter px)."""
    area, hidden, true = touch
    try:
        gain = fit_occluded_gain(area, hidden, true, cal)
    except ValueError as err:  # too few touching particles on these frames: keep the whole fill
        print(f"[calibrate] no hidden-area gain fitted ({err}); the fill stays at 1", file=sys.stderr)
        return {}
    return {"occluded_gain": gain, "touching_pairs": int(true.size),
            "touching_bias_gain1": _touching_ratio(1.0, area, hidden, true, cal) - 1.0,
            "touching_bias": _touching_ratio(gain, area, hidden, true, cal) - 1.0}


def fit_system_factor(episodes: list[dict], current: float = 1.0) -> dict:
    """End-to-end size factor from agent episodes on train seeds: `current` / geometric mean of
    (1 + rel_error). Refuses episodes on a scenario's test seeds (those score the benchmark) and
    episodes run with different policy settings (e.g. field_choice), which sample differently;
    records the settings as `system_policy_settings`."""
    from twin.config import load_scenario

    ratios, used, settings = [], [], []
    for e in episodes:
        if e.get("rel_error") is None or e.get("error"):
            continue
        # every option in effect (runs since the twentieth session), else the options given
        mine = e.get("policy_settings", dict((e.get("options") or {}).get("policy_options") or {}))
        if settings and mine != settings[0]:
            raise ValueError(f"episode {e['scenario']} seed {e['seed']}: policy settings {mine} differ from "
                             f"{settings[0]}; fit from episodes of one setting")
        settings.append(mine)
        sc = load_scenario(e.get("scenario_file") or e["scenario"])
        if int(e["seed"]) not in set(sc.train_seeds):
            raise ValueError(f"episode {e['scenario']} seed {e['seed']}: not a train seed of the scenario "
                             f"({list(sc.train_seeds)}); run `emtwin bench agent --split train`")
        ratios.append(1.0 + float(e["rel_error"]))
        used.append(f"{e['scenario']}:{e['seed']}")
    if len(ratios) < 3:
        raise ValueError(f"{len(ratios)} usable episodes: need at least 3 with a rel_error")
    gm = float(np.exp(np.mean(np.log(ratios))))
    spread = float(np.std(np.log(ratios), ddof=1))
    return {"system_factor": current / gm, "system_episodes": used, "system_rel_error_sd": spread,
            "system_policy_settings": settings[0]}
