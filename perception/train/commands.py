"""Implementations behind `emtwin train {pretrain,segment,restore,focus}` and `emtwin adapt`.

Each writes its artefacts into `--out` (default perception/models/) with a JSON record next to
them: the full config, the seed, the command line and the wall time it took.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .._common import MODELS_DIR, check_in_range


def _command_line() -> str:
    return "emtwin " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""


def _unlabelled_sampler(args, rng: np.random.Generator, crop: int):
    """FCMAE crops: generated scenes (twin/synth/mix) and --images folders, half from each when both."""
    from .._common import normalise
    from .data import MixedSampler, UnlabelledSampler, load_folder
    from .sources import labelled_scenes

    gen: list[np.ndarray] = []
    real: list[np.ndarray] = []
    if args.n_scenes > 0:
        ims, _ = labelled_scenes(args.data, args.n_scenes, args.seed, (args.scene_px, args.scene_px), args.cache,
                                 scenario_fraction=args.scenario_fraction)
        gen = [normalise(i) for i in ims]
    for folder in getattr(args, "images", None) or []:
        real += load_folder(folder, crop_bottom_px=getattr(args, "crop_bottom_px", 0))
    if not gen and not real:
        raise ValueError("pretrain: no images (use --n-scenes > 0 or --images DIR)")
    samplers = [UnlabelledSampler(x, crop, rng, invert_p=0.2 if x is gen else 0.0) for x in (gen, real) if x]
    if len(samplers) == 1:
        return samplers[0], len(gen) + len(real)
    return MixedSampler(samplers, [0.5, 0.5], rng), len(gen) + len(real)


PRETRAIN_NAMES = {"fcmae": "fcmae_encoder", "unet": "mim"}  # default artefact stem per --method


def cmd_pretrain(args: argparse.Namespace) -> dict:
    from .export import write_record
    from .pretrain import PretrainConfig, pretrain_encoder, save_encoder, save_unet

    if not args.name:  # a MIM run must not overwrite the shipped FCMAE encoder's files
        args.name = PRETRAIN_NAMES[getattr(args, "method", "fcmae")]
    t0 = time.time()
    rng = np.random.default_rng(args.seed)
    sampler, n_images = _unlabelled_sampler(args, rng, args.crop)
    t_data = time.time() - t0
    cfg = PretrainConfig(steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr, seed=args.seed,
                         time_budget_s=args.time_budget_s,
                         target_sigma_px=getattr(args, "target_sigma_px", PretrainConfig.target_sigma_px),
                         method=getattr(args, "method", "fcmae"))
    net = (_record_net(args.init) if cfg.method == "unet" and args.init else None) or _arch(args)
    model, rec = pretrain_encoder(sampler, cfg, net=net, encoder_init=args.init)
    rec["arch"] = getattr(args, "arch", "standard")
    rec.update(_cumulative(args.init, rec))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_encoder(model, out / f"{args.name}.npz")
    files = [f"{args.name}.npz"]
    if cfg.method == "unet":  # the whole U-Net, loadable by `train segment --init-weights`
        save_unet(model, out / f"{args.name}_weights.npz")
        files.append(f"{args.name}_weights.npz")
    rec.update(command=_command_line(), data=args.data, n_scenes=args.n_scenes, scene_px=args.scene_px,
               image_folders=[str(p) for p in (args.images or [])], n_images=n_images,
               data_time_s=round(t_data, 1), total_time_s=round(time.time() - t0, 1),
               files=files)
    write_record(out / f"{args.name}.json", rec)
    return rec


def cmd_segment(args: argparse.Namespace) -> dict:
    from .data import LabelledSampler
    from .seg import SegTrainConfig, calibration_batches, check_lr_scale, export_segmenter, train_segmenter
    from .sources import labelled_scenes, visible_labels

    # shares of crops, checked before the minutes of data generation
    figure_p = check_in_range(getattr(args, "figure_aug", 0.0) or 0.0, "--figure-aug", 0.0, 1.0)
    noise_p = check_in_range(getattr(args, "noise_aug", 0.0) or 0.0, "--noise-aug", 0.0, 1.0)
    scale = getattr(args, "encoder_lr_scale", None)
    if scale is not None:
        check_lr_scale("--encoder-lr-scale", scale)
    teacher_path, alpha = _teacher_options(args)
    t0 = time.time()
    rng = np.random.default_rng(args.seed + 1)
    ims, labs = labelled_scenes(args.data, args.n_scenes, args.seed, (args.scene_px, args.scene_px), args.cache,
                                scenario_fraction=args.scenario_fraction)
    if args.max_labelled:
        ims, labs = ims[: args.max_labelled], labs[: args.max_labelled]
    k = float(getattr(args, "label_min_snr", 0.0) or 0.0)
    if k:
        labs, n_drop = visible_labels(ims, labs, k)
        print(f"[segment] --label-min-snr {k:g}: {n_drop} invisible labelled particles set to background", flush=True)
    t_data = time.time() - t0
    sampler = LabelledSampler(ims, labs, args.crop, rng, figure_p=figure_p, noise_p=noise_p)
    cfg = SegTrainConfig(steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr, seed=args.seed,
                         time_budget_s=args.time_budget_s, int8=not args.no_int8, encoder_lr_scale=scale)
    enc = None if args.encoder in (None, "none") else args.encoder
    model = _warm_start(getattr(args, "init_weights", None), enc)
    if model is not None and model.cfg != _arch(args):
        raise ValueError(f"--init-weights {args.init_weights}: its network is not --arch {getattr(args, 'arch', 'standard')}")
    teacher = _warm_start(teacher_path, None)
    model, rec = train_segmenter(sampler, cfg, net=_arch(args), encoder_init=enc, model=model,
                                 teacher=teacher, distil_weight=alpha)
    rec["arch"] = getattr(args, "arch", "standard")
    rec["teacher"] = teacher_path
    rec["teacher_sha256"] = file_sha256(teacher_path) if teacher_path else None
    rec["distil_weight"] = alpha if teacher_path else None
    rec["init_weights"] = getattr(args, "init_weights", None)
    rec["init_weights_sha256"] = file_sha256(rec["init_weights"]) if rec["init_weights"] else None
    rec.update(command=_command_line(), data=args.data, scenario_fraction=args.scenario_fraction,
               label_min_snr=k, figure_aug=figure_p, noise_aug=noise_p, n_scenes=len(ims), scene_px=args.scene_px,
               data_time_s=round(t_data, 1))
    rec = export_segmenter(model, args.out, rec, calibration_batches(sampler, 8, 256), stem=args.name,
                           int8=cfg.int8)
    rec["total_time_s"] = round(time.time() - t0, 1)
    from .export import write_record

    write_record(Path(args.out) / f"{args.name}.json", rec)
    return rec


def _teacher_options(args: argparse.Namespace) -> tuple[str | None, float]:
    """(--teacher path or None, --distil-weight), checked before any data is generated."""
    import math

    path = getattr(args, "teacher", None)
    alpha = getattr(args, "distil_weight", 0.5)
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"--distil-weight {alpha!r}: must be in [0, 1]")
    if path is not None:
        if not Path(path).is_file():
            raise ValueError(f"--teacher {path}: no such file (U-Net weights NAME_weights.npz)")
        if not path.endswith("_weights.npz"):
            raise ValueError(f"--teacher {path}: must be U-Net weights NAME_weights.npz (next to NAME.json)")
        if not _weights_record(path).get("net"):
            raise ValueError(f"--teacher {path}: no NAME.json with its network next to it")
    return path, float(alpha)


def _arch(args: argparse.Namespace):
    """The network config set by `adapt` (`args.net`: that of its starting weights), else the one
    named by --arch (default "standard")."""
    from .convnext import arch_config

    net = getattr(args, "net", None)
    return net if net is not None else arch_config(getattr(args, "arch", "standard"))


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (weights that are updated in place keep their path)."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _cumulative(init: str | Path | None, rec: dict) -> dict:
    """Totals over a chain of pretraining runs, each continuing the last (`--init`): steps and
    training time (s), from this run's record and the starting weights' record (NAME.json next
    to NAME.npz or NAME_weights.npz), if it has one."""
    prev = _weights_record(init) if init else {}
    return {"steps_total": int(prev.get("steps_total", prev.get("steps_done", 0))) + int(rec["steps_done"]),
            "train_time_total_s": round(float(prev.get("train_time_total_s", prev.get("train_time_s", 0.0)))
                                        + float(rec["train_time_s"]), 1)}


def _weights_record(weights: str | Path) -> dict:
    """The JSON record written next to weights NAME.npz or NAME_weights.npz ({} if none)."""
    import json

    name = Path(weights).name
    stem = name[:-len("_weights.npz")] if name.endswith("_weights.npz") else Path(weights).stem
    path = Path(weights).with_name(stem + ".json")
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: the record of {name} is not valid JSON ({exc.msg})") from None


def _record_net(weights: str | Path):
    """The `NetConfig` in the JSON record of U-Net weights (NAME_weights.npz -> NAME.json), or
    None when there is no such record (then the weights are an encoder or of the default net)."""
    from .convnext import NetConfig

    net = _weights_record(weights).get("net") if str(weights).endswith("_weights.npz") else None
    return NetConfig.from_dict(net) if net else None


def _warm_start(weights: str | None, encoder: str | None):
    """A U-Net with all weights from `weights` (.npz, config from its JSON), encoder from `encoder`."""
    if not weights:
        return None
    from .convnext import NetConfig, UNet
    from .weights import load_state

    model = load_state(UNet(_record_net(weights) or NetConfig()), weights)
    if encoder:
        load_state(model.encoder, encoder)
    return model


def cmd_restore(args: argparse.Namespace) -> dict:
    from .restore_train import run_restore_training

    return run_restore_training(args, _command_line())


def cmd_focus(args: argparse.Namespace) -> dict:
    from .focus_train import run_focus_training

    return run_focus_training(args, _command_line())


def cmd_adapt(args: argparse.Namespace) -> dict:
    """Continue self-supervised training on the user's folder, then fine-tune on twin labels;
    write `<name>.onnx`. `args.method` "fcmae": FCMAE of the encoder (`args.encoder`), whose
    result is swapped into the warm-start segmenter; "unet": masked-image modelling of the whole
    warm-start segmenter, which the fine-tuning then continues from."""
    from .export import write_record

    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    method = getattr(args, "method", "fcmae")
    shipped = MODELS_DIR / "segmenter_weights.npz"
    start = args.init_weights or (str(shipped) if shipped.exists() else None)
    if method == "unet" and not start:
        raise FileNotFoundError("adapt --method unet: no segmenter weights to start from (pass --init-weights)")
    stem = f"{args.name}_encoder" if method == "fcmae" else f"{args.name}_mim"
    if start:
        from .convnext import NetConfig

        args.net = _record_net(start) or NetConfig()
    pre = argparse.Namespace(**vars(args))
    pre.images = [args.folder]
    pre.n_scenes = args.n_unlabelled_scenes
    pre.steps, pre.time_budget_s, pre.name, pre.lr = args.pretrain_steps, args.pretrain_budget_s, stem, args.pretrain_lr
    pre.init = args.encoder if method == "fcmae" else start
    pre.method = method
    pre.batch = 16
    rec_pre = cmd_pretrain(pre)
    seg = argparse.Namespace(**vars(args))
    seg.steps, seg.time_budget_s, seg.lr = args.finetune_steps, args.finetune_budget_s, args.finetune_lr
    seg.max_labelled = 0
    if method == "fcmae":
        seg.encoder, seg.init_weights = str(out / f"{stem}.npz"), start
    else:
        seg.encoder, seg.init_weights = None, str(out / f"{stem}_weights.npz")
    rec_seg = cmd_segment(seg)
    rec = {"kind": "adapted_segmenter", "method": method, "command": _command_line(), "folder": str(args.folder),
           "pretrain": rec_pre, "finetune": rec_seg, "total_time_s": round(time.time() - t0, 1),
           "files": rec_seg["files"] + rec_pre["files"]}
    write_record(out / f"{args.name}.json", rec)
    return rec


def add_common(p: argparse.ArgumentParser, steps: int, batch: int, crop: int, lr: float, name: str | None) -> None:
    p.add_argument("--data", choices=("twin", "synth", "mix", "scenarios"), default="mix",
                   help="labelled scene source (default mix: randomised twin + 30%% procedural "
                        "+ --scenario-fraction frames of the shipped scenarios)")
    p.add_argument("--scenario-fraction", type=float, default=0.0,
                   help="share of 'mix' scenes taken from the shipped scenarios' train seeds (default 0)")
    p.add_argument("--n-scenes", type=int, default=300, help="number of generated scenes (default 300)")
    p.add_argument("--scene-px", type=int, default=256, help="side of each generated scene in px")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch", type=int, default=batch)
    p.add_argument("--crop", type=int, default=crop, help="training crop side in px (multiple of 32)")
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-budget-s", type=float, default=None, help="stop early after this wall time")
    p.add_argument("--out", default=str(MODELS_DIR), help="output folder (default perception/models)")
    p.add_argument("--name", default=name, help=f"artefact stem (default {name or 'see --method'})")
    p.add_argument("--cache", default="runs/train_cache", help="cache folder for generated scenes")


def shipped_segmenter_encoder(dst: str | Path) -> str | None:
    """The encoder part of the shipped segmenter's weights, written to `dst` (None if absent)."""
    from .weights import extract_prefix

    src = MODELS_DIR / "segmenter_weights.npz"
    return str(extract_prefix(src, "encoder.", dst)) if src.exists() else None


def resolve_encoder_default(value: str | None, arch: str = "standard") -> str | None:
    """`value`, or the shipped FCMAE encoder of `arch` (fcmae_encoder.npz, fcmae_<arch>.npz) if present."""
    if value is None:
        p = MODELS_DIR / ("fcmae_encoder.npz" if arch == "standard" else f"fcmae_{arch}.npz")
        return str(p) if p.exists() else None
    return value


__all__ = ["cmd_pretrain", "cmd_segment", "cmd_restore", "cmd_focus", "cmd_adapt", "add_common", "replace"]
