"""Perception benchmark (`emtwin bench perception`): prints figures, it is not a test.

Sections (each can be skipped; each records its own wall time):
1. twin     : segmentation on held-out twin scenes (seeds disjoint from training); AJI+ also by
              the scenes' median particle diameter (5-10, 10-30, 30-70 px).
1b. scenarios: segmentation on frames of the shipped SEM scenarios' test specimens in the
              agent's measurement regime (7-28 px particles, near focus), with the sizing
              bias of matched particles (raw outlines, and after the model's size calibration)
              and of the agent's rule (no border, confidence >= 0.8, calibrated diameters).
2. real     : segmentation on the labelled EMPS test split (sim-to-real), for each given model
              (e.g. shipped vs adapted), next to the classical Otsu + watershed floor; AJI+ and
              F1 also split by particle polarity (SEM-like bright vs TEM bright-field dark);
              with scale "auto" also with automatic polarity (`Segmenter(invert="auto")`).
2b. autoscale: twin frames with 7-160 px particles at scale 1, "auto", and "auto" with
              automatic polarity (what the rules for images of unknown scale and polarity cost
              where the network already resolves the particles).
3. ablation : SSL (FCMAE encoder, or the whole U-Net by masked-image modelling) vs no-SSL
              fine-tuning with 8 labelled scenes, over every label set that
              `emtwin train ablation` wrote -> error reduction rate
              ERR = (eps_b - eps_m) / eps_b with eps = 1 - AJI+ (and 1 - F1) per label set, on
              the randomised twin test scenes and on the scenario test frames; mean and
              standard error over label sets.
4. speed    : ms per image of 512^2, 1024^2 and 1200x1920 px noise and a 1200x1920 twin frame
              on 2 threads (fp32, int8), with the default 256-px tiles and in one pass; also
              every --model, the variants taking turns on each image.
5. restore  : PSNR/SSIM gain over the degraded input on held-out twin pairs (unknown PSF),
              learned vs Wiener vs Richardson-Lucy, and the downstream AJI+.
6. focus    : focus-estimator error (DoF) after one and two iterations on the twin.

Twin-dependent sections need `twin` (training extras are not needed: inference only).
"""
from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from ._common import MODELS_DIR, shipped_segmenters

SECTIONS = ("twin", "scenarios", "real", "autoscale", "ablation", "speed", "restore", "focus")
DATA_DIR = Path(os.environ.get("EMTWIN_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TEST_SEED = 900_001  # held-out twin generator seed (training uses small seeds)
DEV_SEED = TEST_SEED + 1000  # development split: for choosing hyper-parameters without the test sets
DEV_SECTIONS = ("twin", "scenarios", "ablation")  # the sections that have a development split


def _mean(xs) -> float:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(xs)) if xs else float("nan")


def _seg_rows(pairs, segmenter, pixel_size=1.0, scale: float | str = 1.0) -> tuple[list[dict], float]:
    """Per-image `metrics.summarize` rows of `segmenter` on (image, labels) pairs, and seconds per image."""
    rows = []
    t = 0.0
    for img, gt in pairs:
        t0 = time.perf_counter()
        lab, _ = segmenter.segment(img, pixel_size * 1e-9, scale=scale)
        t += time.perf_counter() - t0
        rows.append(metrics.summarize(gt, lab))
    return rows, t / max(1, len(rows))


def _aggregate(rows: list[dict]) -> dict:
    return {"aji_plus": _mean(r["aji_plus"] for r in rows), "f1_50": _mean(r["f1_50"] for r in rows),
            "pq": _mean(r["pq"] for r in rows), "mean_diam_rel_err": _mean(r["mean_diam_rel_err"] for r in rows),
            "n_images": len(rows), "n_gt": int(sum(r["n_gt"] for r in rows)),
            "n_pred": int(sum(r["n_pred"] for r in rows))}


def _seg_scores(pairs, segmenter, pixel_size=1.0, scale: float | str = 1.0) -> dict:
    rows, t = _seg_rows(pairs, segmenter, pixel_size, scale)
    return {**_aggregate(rows), "s_per_image": t}


def _by_polarity(rows: list[dict], dark: list[bool]) -> dict:
    """AJI+ and F1 over images whose particles are brighter (SEM-like) or darker (TEM
    bright-field) than their background."""
    out = {}
    for name, want in (("bright", False), ("dark", True)):
        sub = [r for r, d in zip(rows, dark) if d == want]
        out.update({f"aji_plus_{name}": _mean(r["aji_plus"] for r in sub), f"f1_50_{name}": _mean(r["f1_50"] for r in sub)})
    return out


SIZE_BANDS_PX = ((5.0, 10.0), (10.0, 30.0), (30.0, 70.0))  # median particle diameter bands of the twin section


def _by_size(rows: list[dict], d_med_px: list[float], bands=SIZE_BANDS_PX) -> dict:
    """AJI+ over the images whose median true particle diameter (px) lies in each band, and
    how many images that is (images without particles count in no band)."""
    out = {}
    for lo, hi in bands:
        sub = [r for r, d in zip(rows, d_med_px) if lo <= d < hi]
        out.update({f"aji_plus_d{lo:g}-{hi:g}px": _mean(r["aji_plus"] for r in sub), f"n_d{lo:g}-{hi:g}px": len(sub)})
    return out


def median_diameter_px(labels: np.ndarray) -> float:
    """Median equivalent-circle diameter (px) of the instances of `labels`; NaN without any."""
    area = np.bincount(np.asarray(labels).ravel())[1:]
    area = area[area > 0]
    return float(np.median(np.sqrt(4.0 * area / np.pi))) if area.size else float("nan")


def twin_test_scenes(n: int = 24, shape=(512, 512), seed: int = TEST_SEED):
    from .train.twin_data import TwinSceneGenerator

    gen = TwinSceneGenerator(seed=seed, shape_px=shape, frames_per_scenario=2)
    return [gen.labelled_frame() for _ in range(n)]


def bench_twin(models: dict[str, Any], n: int = 24, scenes=None) -> dict:
    from . import Segmenter

    scenes = scenes if scenes is not None else twin_test_scenes(n)
    d_med = [median_diameter_px(gt) for _, gt in scenes]
    out = {}
    for name, path in models.items():
        rows, t = _seg_rows(scenes, Segmenter(path))
        out[name] = {**_aggregate(rows), **_by_size(rows, d_med), "s_per_image": t}
    return out


def scenario_test_frames(n: int = 36, shape=(512, 512), seed: int = TEST_SEED + 3, specimens: str = "test"):
    """(image, labels, true diameter px per label) of scenario frames on the scenarios' test
    seeds (`specimens` "test"), or on their train seeds ("train": the development split)."""
    from .train.twin_data import ScenarioFrameGenerator

    gen = ScenarioFrameGenerator(seed=seed, shape_px=shape, split=specimens)
    return [gen.labelled_frame_sizes() for _ in range(n)]


def bench_scenarios(models: dict[str, Any], n: int = 36, frames=None, min_confidence: float = 0.8) -> dict:
    """Scores on scenario test frames, plus sizing biases against the specimen's projected-area-
    equivalent diameters: matched pairs (raw network outline, then as reported) and the agent's
    rule (every detection not cut by the border with confidence >= min_confidence, against every
    particle not cut by the border)."""
    from . import Segmenter
    from .instances import border_labels
    from .metrics import matched_pairs

    frames = frames if frames is not None else scenario_test_frames(n)
    out = {}
    for name, path in models.items():
        seg = Segmenter(path)
        rows, mp, mr, mt, d_pred, d_true = [], [], [], [], [], []
        for img, gt, dt_px in frames:
            lab, tab = seg.segment(img, 1e-9)
            rows.append(metrics.summarize(gt, lab))
            gi, pi = matched_pairs(gt, lab)
            d = np.asarray(tab["equivalent_diameter_m"]) / 1e-9 if len(tab) else np.empty(0)
            mp.append(d[pi])
            mr.append(2 * np.sqrt(np.asarray(tab["area_px"], float)[pi] / np.pi) if len(tab) else np.empty(0))
            mt.append(dt_px[gi])
            if len(tab):
                ok = ~np.asarray(tab["touches_border"], bool) & (np.asarray(tab["confidence"]) >= min_confidence)
                d_pred.append(d[ok])
            d_true.append(dt_px[~np.isin(np.arange(1, dt_px.size + 1), border_labels(gt))])
        mp, mr, mt = (np.concatenate(a) for a in (mp, mr, mt))
        dp = np.concatenate(d_pred) if d_pred else np.empty(0)
        dt = np.concatenate(d_true)
        out[name] = {**_aggregate(rows),
                     "matched_diam_bias_raw": float(mr.sum() / mt.sum() - 1) if mt.size else float("nan"),
                     "matched_diam_bias": float(mp.sum() / mt.sum() - 1) if mt.size else float("nan"),
                     "agent_rule_mean_diam_bias": float(dp.mean() / dt.mean() - 1) if dp.size and dt.size else float("nan")}
    return out


def emps_pairs(limit: int | None = None):
    """(image uint8, labels int32) of the EMPS test split, or [] when the folder is absent."""
    from skimage import io

    root = DATA_DIR / "emps-test"
    if not (root / "manifest.csv").exists():
        return []
    ids = [r["id"] for r in csv.DictReader(open(root / "manifest.csv"))]
    if limit:
        ids = ids[:limit]
    return [(io.imread(root / "images" / f"{i}.png"), io.imread(root / "segmaps" / f"{i}.png").astype(np.int32))
            for i in ids]


def classical_floor(image: np.ndarray, gt: np.ndarray | None = None, min_distance: int = 5,
                    sigma_px: float = 2.0) -> np.ndarray:
    """Otsu threshold of the Gaussian-smoothed image (`sigma_px`) + EDT watershed; polarity
    picked with the ground truth (an oracle) if given. With sigma 2 px it reproduces the floor
    quoted in shared/data/emps-test/SOURCE.md (13,721 vs 13,651 detections, F1 0.247 vs 0.236;
    without smoothing 58,936 detections and F1 0.151)."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    img = ndi.gaussian_filter(image.astype(float), sigma_px) if sigma_px > 0 else image.astype(float)
    fg = img > threshold_otsu(img)
    if gt is not None and (fg & (gt > 0)).sum() < (~fg & (gt > 0)).sum():
        fg = ~fg
    dist = ndi.distance_transform_edt(fg)
    pk = peak_local_max(dist, min_distance=min_distance, labels=fg.astype(int), exclude_border=False)
    markers = np.zeros(img.shape, np.int32)
    markers[tuple(pk.T)] = np.arange(1, len(pk) + 1)
    return watershed(-dist, markers, mask=fg).astype(np.int32)


def dark_particles(image: np.ndarray, labels: np.ndarray) -> bool:
    """True if the labelled particles are on average darker than the background (ground truth)."""
    fg = labels > 0
    return bool(fg.any() and (~fg).any() and image[fg].mean() < image[~fg].mean())


def bench_real(models: dict[str, Any], limit: int | None = None, scales=(1.0, "auto")) -> dict:
    """Scores on the EMPS test split: the classical floor (polarity from the labels), then each
    model at each scale; every row also splits AJI+ and F1 by particle polarity (from the
    labels; the segmenters are not told), since EMPS mixes SEM and TEM bright-field panels."""
    from . import Segmenter

    pairs = emps_pairs(limit)
    if not pairs:
        return {"skipped": f"no EMPS data at {DATA_DIR / 'emps-test'}"}
    dark = [dark_particles(img, gt) for img, gt in pairs]
    out = {"images with dark particles": {"n_dark": sum(dark), "n_bright": len(dark) - sum(dark)}}
    rows = [metrics.summarize(gt, classical_floor(img, gt)) for img, gt in pairs]
    out["otsu_watershed (oracle polarity)"] = {**_aggregate(rows), **_by_polarity(rows, dark)}
    for name, path in models.items():
        for scale, invert in _variants(scales):
            rows, t = _seg_rows(pairs, Segmenter(path, invert=invert), scale=scale)
            out[_row_label(name, scale, invert)] = {**_aggregate(rows), **_by_polarity(rows, dark), "s_per_image": t}
    return out


def _variants(scales) -> list[tuple[float | str, str | None]]:
    """(scale, invert) pairs to score: each scale as is, and "auto" also with automatic polarity."""
    return [(sc, None) for sc in scales] + ([("auto", "auto")] if "auto" in scales else [])


def _row_label(name: str, scale: float | str, invert: str | None) -> str:
    return f"{name} scale={scale}" + (" polarity=auto" if invert == "auto" else "")


def autoscale_frames(n: int = 40, shape=(512, 512), seed: int = TEST_SEED + 5, d_px_range=(7.0, 160.0)):
    """(image, labels) of scenario frames on test seeds with particles of 7-160 px: large
    particles that the twin renders cleanly, where `scale="auto"` should keep scale 1."""
    from .train.twin_data import ScenarioFrameGenerator

    gen = ScenarioFrameGenerator(seed=seed, shape_px=shape, d_px_range=d_px_range, split="test")
    return [gen.labelled_frame() for _ in range(n)]


def bench_autoscale(models: dict[str, Any], n: int = 40, frames=None) -> dict:
    """Twin frames with 7-160 px particles at scale 1, "auto", and "auto" with automatic
    polarity, side by side: what the rules that help on real images of unknown scale and
    polarity (section `real`) cost on the twin."""
    from . import Segmenter

    frames = frames if frames is not None else autoscale_frames(n)
    return {_row_label(name, sc, inv): _seg_scores(frames, Segmenter(path, invert=inv), scale=sc)
            for name, path in models.items() for sc, inv in _variants((1.0, "auto"))}


def err_rate(eps_b: float, eps_m: float) -> float:
    """Error reduction rate (eps_b - eps_m) / eps_b of a model (error eps_m) over a baseline."""
    return (eps_b - eps_m) / eps_b if eps_b > 0 else float("nan")


def bench_ablation(with_ssl: str | Path, without_ssl: str | Path, n: int = 24, scenes=None) -> dict:
    """One pair of fine-tunings scored side by side on the same scenes."""
    from . import Segmenter

    scenes = scenes if scenes is not None else twin_test_scenes(n)
    a = _seg_scores(scenes, Segmenter(with_ssl))
    b = _seg_scores(scenes, Segmenter(without_ssl))
    return {"with_ssl": a, "without_ssl": b, "err_aji": err_rate(1 - b["aji_plus"], 1 - a["aji_plus"]),
            "err_f1": err_rate(1 - b["f1_50"], 1 - a["f1_50"])}


ABLATION_BASE = "nossl8"  # fine-tuned from random init
ABLATION_ARMS = {"fcmae": "ssl8", "unet-mim": "mim8"}  # arm: file stem of its fine-tuning


def ablation_sets(root: str | Path) -> dict[str, dict[str, Path]]:
    """{label set: {"none" | arm: .onnx}} under `root`: one folder per label set (``seed*``, as
    `emtwin train ablation` writes them), or the models directly in `root`. A label set
    counts only with its random-init baseline (nossl8.onnx)."""
    root = Path(root)
    dirs = sorted(p for p in root.glob("seed*") if p.is_dir()) or [root]
    out = {}
    for d in dirs:
        if (d / f"{ABLATION_BASE}.onnx").exists():
            found = {arm: d / f"{stem}.onnx" for arm, stem in ABLATION_ARMS.items() if (d / f"{stem}.onnx").exists()}
            out[d.name] = {"none": d / f"{ABLATION_BASE}.onnx", **found}
    return out


def _mean_se(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, float)
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se


def bench_ablation_sets(sets: dict[str, dict[str, Path]], test_sets: dict[str, list]) -> dict:
    """ERR of every pretraining arm over random init, per label set and as mean +/- standard
    error over label sets, on each named test set ({name: [(image, labels), ...]})."""
    from . import Segmenter

    scores = {(ls, arm, ts): _seg_scores(pairs, Segmenter(path))
              for ls, arms in sets.items() for arm, path in arms.items() for ts, pairs in test_sets.items()}
    out = {}
    for arm in ABLATION_ARMS:
        for ts in test_sets:
            have = [ls for ls in sets if arm in sets[ls]]
            if not have:
                continue
            m = [scores[ls, arm, ts] for ls in have]
            b = [scores[ls, "none", ts] for ls in have]
            e_aji = [err_rate(1 - y["aji_plus"], 1 - x["aji_plus"]) for x, y in zip(m, b)]
            e_f1 = [err_rate(1 - y["f1_50"], 1 - x["f1_50"]) for x, y in zip(m, b)]
            (ma, sa), (mf, sf) = _mean_se(e_aji), _mean_se(e_f1)
            out[f"{arm} on {ts}"] = {
                "err_aji": ma, "err_aji_se": sa, "err_f1": mf, "err_f1_se": sf, "n_label_sets": len(have),
                "aji_pretrained": _mean(x["aji_plus"] for x in m), "aji_random_init": _mean(y["aji_plus"] for y in b),
                "err_aji_per_set": dict(zip(have, e_aji))}
    return out


def speed_variants(tile: int = 256, models: dict[str, str | Path] | None = None) -> list[tuple[str, dict]]:
    """(label, Segmenter kwargs) to time: each segmenter of `models` (default the shipped one),
    fp32 and its int8 sibling NAME_int8.onnx where there is one, each in `tile`-px tiles and
    in one pass. Labels of models other than "standard" start with their name."""
    from .segment import ONE_PASS_TILE

    models = models or shipped_segmenters()
    out = []
    for name, path in models.items():
        path = Path(path)
        prefix = "" if name == "standard" else f"{name} "
        for prec, p in (("fp32", path), ("int8", path.with_name(f"{path.stem}_int8.onnx"))):
            if p.exists():
                out += [(f"{prefix}{prec} {'one pass' if t == ONE_PASS_TILE else f'tile{t}'}", {"model": p, "tile": t})
                        for t in sorted({tile, ONE_PASS_TILE})]
    return out


def bench_speed(repeats: int = 3, threads: int = 2, tile: int = 256,
                models: dict[str, str | Path] | None = None) -> dict:
    """Median ms of `Segmenter.segment` (network and post-processing) per image, side by side
    (the variants of `speed_variants` take turns on each image): noise images of three sizes
    and a 1200x1920 twin frame with particles."""
    from . import Segmenter

    rng = np.random.default_rng(0)
    images = {f"{h}x{w}": (rng.random((h, w)) * 255).astype(np.uint8) for h, w in ((512, 512), (1024, 1024), (1200, 1920))}
    twin = _twin_speed_frame()
    if twin is not None:
        images["1200x1920 twin frame"] = twin
    segs = {label: Segmenter(kw["model"], threads=threads, tile=kw["tile"]) for label, kw in speed_variants(tile, models)}
    times: dict[str, list[float]] = {}
    for name, img in images.items():
        for seg in segs.values():
            seg.predict_maps(img)  # warm-up
        for _ in range(repeats):
            for label, seg in segs.items():
                t0 = time.perf_counter()
                seg.segment(img, 4e-9)
                times.setdefault(f"{label} {name}", []).append(time.perf_counter() - t0)
    keys = [f"{label} {name}" for label in segs for name in images]
    return {k: 1000 * float(np.median(times[k])) for k in keys}


def _twin_speed_frame() -> np.ndarray | None:
    """A 1200x1920 frame of the default scenario at 4 nm/px in focus (None without the twin):
    noise images have no particles, so they time the network but hardly the post-processing."""
    try:
        from twin import TwinMicroscope, truth
        from twin.config import load_scenario
    except ImportError:
        return None
    m = TwinMicroscope(load_scenario("default"), seed=900_005)
    m.set_fov_m(4e-9 * 1920)
    m.set_scan(shape_px=(1200, 1920), dwell_s=1e-6)
    m.set_working_distance_m(truth.focus_wd_m(m))
    return m.acquire().image


def _psnr(x, ref, rng_):
    return float(10 * np.log10(rng_ ** 2 / max(np.mean((x - ref) ** 2), 1e-20)))


def bench_restore(n: int = 12, model: str | Path | None = None) -> dict:
    from skimage.metrics import structural_similarity

    from . import Restorer, Segmenter
    from .restore import estimate_psf, richardson_lucy, wiener_deconvolve
    from .train.restore_train import twin_pairs

    pairs = twin_pairs(n, seed=TEST_SEED + 7, shape=(256, 256), with_labels=True)
    restorer = Restorer(model)
    seg_path = MODELS_DIR / "segmenter.onnx"
    seg = Segmenter(seg_path) if seg_path.exists() else None
    res: dict[str, list] = {k: [] for k in ("input", "wiener", "richardson_lucy", "learned")}
    ssim: dict[str, list] = {k: [] for k in res}
    aji: dict[str, list] = {k: [] for k in res}
    for deg, clean, info in pairs:
        r = float(np.percentile(clean, 99.5) - np.percentile(clean, 0.5))
        psf = estimate_psf(deg)
        outs = {"input": deg, "wiener": wiener_deconvolve(deg, psf), "richardson_lucy": richardson_lucy(deg, psf),
                "learned": restorer.restore(deg)}
        for k, v in outs.items():
            res[k].append(_psnr(v, clean, r))
            ssim[k].append(float(structural_similarity(v.astype(float), clean.astype(float), data_range=r)))
            if seg is not None and "labels" in info:
                aji[k].append(metrics.aji_plus(info["labels"], seg.segment(v.astype(np.float32), 1e-9).labels))
    out = {k: {"psnr_db": _mean(res[k]), "ssim": _mean(ssim[k]), "aji_plus": _mean(aji[k]) if aji[k] else float("nan")}
           for k in res}
    best_classical = max(out["wiener"]["psnr_db"], out["richardson_lucy"]["psnr_db"])
    out["learned_gain_over_input_db"] = out["learned"]["psnr_db"] - out["input"]["psnr_db"]
    out["learned_gain_over_best_classical_db"] = out["learned"]["psnr_db"] - best_classical
    out["n_pairs"] = len(pairs)
    return out


def bench_focus(n: int = 30, model: str | Path | None = None, shape=(256, 256), method: str = "learned") -> dict:
    """method: 'learned' (FocusEstimator) or 'spectral' (focus.spectral_focus_estimate)."""
    from twin import truth

    from .focus import FocusEstimator, spectral_focus_estimate
    from .train.twin_data import TwinSceneGenerator

    est = FocusEstimator(model)
    gen = TwinSceneGenerator(seed=TEST_SEED + 11, shape_px=shape, frames_per_scenario=1)
    rng = gen.rng
    errs: dict[int, list] = {0: [], 1: [], 2: []}
    astig: dict[int, list] = {0: [], 1: [], 2: []}
    def trial():
        m = gen.twin()
        dof = gen.setup(m, d_px_range=(5.0, 40.0))
        e0 = float(rng.uniform(-6, 6))
        a0 = rng.normal(0, 1.0, 2)
        gen.set_focus(m, dof, e0, (float(a0[0]), float(a0[1])))
        gain = m.scenario.optics.stigmator_gain_m
        lim = m.scenario.optics.stigmator_limit
        e_hist, a_hist, valid = [], [], True
        for it in range(3):
            wd = m.get_working_distance_m()
            s = m.get_stigmator()
            s0 = truth.stigmator_correction(m)
            e_hist.append(abs((wd - truth.focus_wd_m(m)) / dof))
            a_hist.append(float(np.hypot(s[0] - s0[0], s[1] - s0[1]) * gain / dof))
            if it == 2:
                break
            d = est.delta_m(dof)
            frames = []
            for sgn in (-1, 1):
                m.set_working_distance_m(wd + sgn * d)
                frames.append(m.acquire().image)
            e_hat, ax, ay = spectral_focus_estimate(frames[0], frames[1], est.delta_dof)
            if it == 0:
                valid = bool(np.isfinite(e_hat))  # the field shows structure at all
            if method == "spectral":
                if not np.isfinite(e_hat):
                    e_hat, ax, ay = 0.0, 0.0, 0.0
                m.set_working_distance_m(wd - e_hat * dof)
                dsx, dsy = ax * dof / gain, ay * dof / gain
            else:
                r = est.estimate(frames[0], frames[1], dof)
                m.set_working_distance_m(wd + r.wd_correction_m)
                dsx, dsy = r.stigmator_correction
            m.set_stigmator(float(np.clip(s[0] + dsx, -lim, lim)), float(np.clip(s[1] + dsy, -lim, lim)))
        return e_hist, a_hist, valid

    flags = []
    for _ in range(n):
        e_hist, a_hist, valid = gen.attempt(trial)
        flags.append(valid)
        for it in range(3):
            errs[it].append(e_hist[it])
            astig[it].append(a_hist[it])
    out = {}
    ok = np.array(flags)
    for it in (0, 1, 2):
        e = np.array(errs[it])
        a = np.array(astig[it])
        out[f"iter{it}"] = {"wd_err_p50_dof": float(np.median(e)), "wd_err_p95_dof": float(np.percentile(e, 95)),
                            "astig_p50_dof": float(np.median(a)), "astig_p95_dof": float(np.percentile(a, 95)),
                            "structured_wd_p95_dof": float(np.percentile(e[ok], 95)) if ok.any() else float("nan"),
                            "structured_astig_p95_dof": float(np.percentile(a[ok], 95)) if ok.any() else float("nan")}
    out["n_trials"] = n
    out["structured_fraction"] = float(ok.mean())
    return out


def run_perception_benchmark(sections: tuple[str, ...] | None = None, n_twin: int = 24, real_limit: int | None = None,
                             models: dict[str, Any] | None = None, real_models: dict[str, Any] | None = None,
                             ablation_dir: str | Path = "runs/ablation", n_restore: int = 12, n_focus: int = 200,
                             n_scen: int = 36, quick: bool = False, split: str = "test") -> dict:
    """Run the chosen sections (default: all); return a nested dict of figures.

    split: "test" (held-out seeds), or "dev" for sections twin, scenarios and ablation: twin
    scenes of generator seed DEV_SEED and scenario frames of the scenarios' train seeds, to
    choose hyper-parameters on without looking at the test sets (the shipped segmenter was
    trained on frames of those train seeds, so its dev scenario figures are optimistic).

    models / real_models: {name: onnx path} of segmenters to score (default: the shipped one;
    real_models also picks up runs/adapted/segmenter_adapted.onnx when present). ablation_dir:
    the fine-tunings of `emtwin train ablation`. quick: small sample sizes (a smoke run of a
    few minutes).
    """
    if quick:
        n_twin, real_limit, n_restore, n_focus, n_scen = 6, 15, 4, 8, 6
    if split not in ("test", "dev"):
        raise ValueError(f"split = {split!r}: must be 'test' or 'dev'")
    sections = tuple(sections or (SECTIONS if split == "test" else DEV_SECTIONS))
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ValueError(f"sections = {bad}: must be among {', '.join(SECTIONS)}")
    if split == "dev" and (bad := [s for s in sections if s not in DEV_SECTIONS]):
        raise ValueError(f"sections = {bad}: split 'dev' exists only for {', '.join(DEV_SECTIONS)}")
    seed = TEST_SEED if split == "test" else DEV_SEED
    specimens = "test" if split == "test" else "train"
    models = models or shipped_segmenters()
    models = {k: v for k, v in models.items() if Path(v).exists()}
    out: dict[str, Any] = {"split": split}
    scenes = None
    for s in sections:
        t0 = time.time()
        try:
            if s == "twin":
                scenes = scenes or twin_test_scenes(n_twin, seed=seed)
                out[s] = bench_twin(models, scenes=scenes)
            elif s == "scenarios":
                out[s] = bench_scenarios(models, frames=scenario_test_frames(n_scen, seed=seed + 3, specimens=specimens))
            elif s == "real":
                if real_models is None:
                    real_models = dict(models)
                    adapted = Path("runs") / "adapted" / "segmenter_adapted.onnx"
                    if adapted.exists() and all(Path(v).resolve() != adapted.resolve() for v in models.values()):
                        real_models["adapted (TiO2 folder)"] = adapted
                out[s] = bench_real(real_models, real_limit)
            elif s == "autoscale":
                out[s] = bench_autoscale(models, n=10 if quick else 40)
            elif s == "ablation":
                sets = ablation_sets(ablation_dir)
                if not sets:
                    out[s] = {"skipped": f"no ablation models in {ablation_dir} (run `emtwin train ablation`)"}
                else:
                    scenes = scenes or twin_test_scenes(n_twin, seed=seed)
                    frames = [f[:2] for f in scenario_test_frames(n_scen, seed=seed + 3, specimens=specimens)]
                    out[s] = bench_ablation_sets(sets, {"twin": scenes, "scenarios": frames})
            elif s == "speed":
                out[s] = bench_speed(models=models)
            elif s == "restore":
                out[s] = bench_restore(n_restore) if (MODELS_DIR / "restorer.onnx").exists() else {"skipped": "no restorer.onnx"}
            elif s == "focus":
                if (MODELS_DIR / "focus.onnx").exists():
                    out[s] = {f"learned {k}": v for k, v in bench_focus(n_focus).items()}
                    out[s].update({f"spectral {k}": v for k, v in bench_focus(n_focus, method="spectral").items()})
                else:
                    out[s] = {"skipped": "no focus.onnx"}
        except ImportError as exc:
            out[s] = {"skipped": f"needs {exc.name}"}
        out.setdefault("wall_time_s", {})[s] = round(time.time() - t0, 1)
    return out


def _fmt(v) -> str:
    if isinstance(v, dict):
        return " ".join(f"{k}:{_fmt(x)}" for k, x in v.items())
    if isinstance(v, float):
        return "nan" if math.isnan(v) else (f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}")
    return str(v)


def format_table(d: dict) -> str:
    """Plain-text table: one line per (section, item), metrics as columns `key=value`."""
    lines = []
    for section, body in d.items():
        if section == "wall_time_s":
            continue
        if section == "split":
            lines.append(f"(split: {body})")
            continue
        lines.append(f"== {section} ({d.get('wall_time_s', {}).get(section, '?')} s)")
        if not isinstance(body, dict):
            lines.append(f"  {_fmt(body)}")
            continue
        for k, v in body.items():
            if isinstance(v, dict):
                lines.append(f"  {k:<36} " + "  ".join(f"{kk}={_fmt(vv)}" for kk, vv in v.items()))
            else:
                lines.append(f"  {k:<36} {_fmt(v)}")
    return "\n".join(lines)
