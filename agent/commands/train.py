"""`emtwin train {pretrain,segment,ablation,restore,focus,calibrate}`: train perception models and export ONNX.

Artefacts go to perception/models/ by default, each with a JSON record (config, seed,
command, time taken) so that the shipped models can be reproduced.
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train perception models (needs torch) and export ONNX",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    _pretrain(sub)
    _ablation(sub, _segment(sub))
    _restore(sub)
    _focus(sub)
    _calibrate(sub)


def _common(p, **kw):
    from perception.train.commands import add_common

    add_common(p, **kw)


def _arch_option(p) -> None:
    p.add_argument("--arch", choices=("standard", "fast", "lite"), default="standard",
                   help="network size: standard (the shipped segmenter); fast (~3x less compute, no GRN, "
                        "so one pass per frame; far less accurate; not shipped); lite (as cheap as fast, with "
                        "GRN and a depthwise-separable decoder; the shipped segmenter_lite was distilled at "
                        "this size with --teacher). See docs/perception.md [standard]")


def _pretrain(sub) -> None:
    p = sub.add_parser("pretrain", help="self-supervised pretraining: FCMAE of the ConvNeXt-V2 encoder, or MIM of the whole U-Net")
    _common(p, steps=2000, batch=16, crop=128, lr=1.5e-3, name=None)
    _arch_option(p)
    p.add_argument("--images", action="append", metavar="DIR", help="also pretrain on this folder (repeatable)")
    p.add_argument("--crop-bottom-px", type=int, default=0, help="rows to drop at the bottom of --images (data bar)")
    p.add_argument("--init", default=None,
                   help="continue from these encoder weights (.npz); with --method unet also from the "
                        "NAME_weights.npz of an earlier unet run (the whole U-Net)")
    p.add_argument("--method", choices=("fcmae", "unet"), default="fcmae",
                   help="fcmae: the encoder alone (sparse-conv emulation, 32-px patches); unet: the whole "
                        "U-Net reconstructs hidden 16-px patches and also writes NAME_weights.npz for "
                        "`train segment --init-weights` [fcmae]. Default --name: fcmae_encoder, or mim "
                        "for unet")
    p.add_argument("--target-sigma-px", type=float, default=1.5,
                   help="Gaussian smoothing (px) of the reconstruction target; 0 = raw pixels [1.5]")
    p.set_defaults(func=_run("cmd_pretrain"))


def _segment(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("segment", help="fine-tune encoder + U-Net decoder on labelled scenes")
    _common(p, steps=3000, batch=8, crop=128, lr=2e-3, name="segmenter")
    _arch_option(p)
    p.add_argument("--encoder", default=None,
                   help="pretrained encoder .npz (default: perception/models/fcmae_encoder.npz if present; 'none' = random init)")
    p.add_argument("--max-labelled", type=int, default=0, help="use only the first N labelled scenes (ablation)")
    p.add_argument("--init-weights", default=None, help="warm-start the whole U-Net from these weights (.npz)")
    p.add_argument("--encoder-lr-scale", type=float, default=None, metavar="F",
                   help="encoder learning rate = F x --lr, F in (0, 1] [0.5 with a pretrained --encoder, else 1]")
    p.add_argument("--no-int8", action="store_true", help="skip the QDQ int8 export")
    p.add_argument("--teacher", default=None, metavar="NPZ",
                   help="distil from these U-Net weights (NAME_weights.npz with its NAME.json, e.g. "
                        "perception/models/segmenter_weights.npz): the teacher's maps on each training crop "
                        "become soft targets next to the labels [none]")
    p.add_argument("--distil-weight", type=float, default=0.5, metavar="A",
                   help="with --teacher, loss = (1 - A) x label loss + A x loss against the teacher's maps, "
                        "A in [0, 1] [0.5]")
    p.add_argument("--label-min-snr", type=float, default=0.0,
                   help="drop labelled particles whose contrast SNR in their own frame is below this "
                        "(Rose criterion; 5 = only particles a person could see) [0 = keep all]")
    p.add_argument("--figure-aug", type=float, default=0.0, metavar="P",
                   help="share of crops given the look of exported micrographs: saturated contrast, "
                        "smoothing (see perception.train.data.augment_figure) [0]")
    p.add_argument("--noise-aug", type=float, default=0.0, metavar="P",
                   help="share of crops replaced by pure noise (uniform, Gaussian or Poisson) with no "
                        "particles, so the network learns to find none there [0]")
    p.set_defaults(func=_run("cmd_segment"))
    return p


def _ablation(sub, segment: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ablation", help="the SSL ablation's fine-tunings: per label set, 8 labelled twin "
                                        "scenes fine-tuned from random init and from each pretraining",
                       description="For each --seeds label set (8 randomised twin scenes), `train segment` "
                                   "from random init (nossl8), from the FCMAE encoder (ssl8) and from whole-U-Net "
                                   "masked-image-modelling weights (mim8; --mim-weights, by default the shipped ones), "
                                   "into OUT/seedK/. Models already there are kept. Score them with "
                                   "`emtwin bench perception --sections ablation --ablation-dir OUT`.")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], metavar="K",
                   help="label sets (the --seed of `train segment`) [0 1 2 3 4]")
    p.add_argument("--steps", type=int, default=600, help="fine-tuning steps per model [600]")
    p.add_argument("--encoder", default=None, help="FCMAE encoder .npz [the shipped one]")
    p.add_argument("--mim-weights", default=None, metavar="NPZ",
                   help="U-Net weights of `train pretrain --method unet` (NAME_weights.npz), or 'none' for no "
                        "mim arm [the shipped perception/models/mim_weights.npz if present]")
    p.add_argument("--pretrained-encoder-lr-scale", type=float, default=0.5, metavar="F",
                   help="encoder learning rate of both pretrained arms as a share of the decoder's; random "
                        "init keeps 1 [0.5]")
    p.add_argument("--out", default="runs/ablation", help="output folder [runs/ablation]")
    p.set_defaults(func=lambda args: _run_ablation(args, segment))


def _ablation_runs(args: argparse.Namespace) -> list[tuple[int, str, list[str]]]:
    """(seed, model name, extra `train segment` arguments) of every fine-tuning to run."""
    import os

    if args.steps <= 0:
        raise ValueError(f"--steps {args.steps}: must be > 0")
    if min(args.seeds) < 0:
        raise ValueError(f"--seeds {min(args.seeds)}: must be >= 0")
    mim = _mim_weights(args.mim_weights)
    for name, path in (("--encoder", args.encoder), ("--mim-weights", mim)):
        if path and not os.path.isfile(path):
            raise ValueError(f"{name} {path}: no such file")
    from perception.train.seg import check_lr_scale

    scale = ["--encoder-lr-scale", repr(check_lr_scale("--pretrained-encoder-lr-scale", args.pretrained_encoder_lr_scale))]
    arms = [("nossl8", ["--encoder", "none"]), ("ssl8", (["--encoder", args.encoder] if args.encoder else []) + scale)]
    if mim:
        arms.append(("mim8", ["--encoder", "none", "--init-weights", mim, *scale]))
    return [(k, name, extra) for k in args.seeds for name, extra in arms]


def _mim_weights(option: str | None) -> str | None:
    """The MIM arm's starting weights: `option`, None for 'none', or by default the shipped
    checkpoint (perception/models/mim_weights.npz) when there is one."""
    if option is not None:
        return None if option.lower() == "none" else option
    from perception._common import MODELS_DIR

    shipped = MODELS_DIR / "mim_weights.npz"
    return str(shipped) if shipped.exists() else None


def _check_kept(record, steps: int, encoder_lr_factor: float = 1.0, init_weights: str | None = None) -> None:
    """Refuse to mix a kept fine-tuning of another length, encoder learning rate or starting
    weights (by content: the shipped MIM checkpoint is updated in place) into the ablation.
    Records written before the factor was recorded had 0.5 with an FCMAE encoder
    (`encoder_init`), else 1; those without a weights hash are not checked for it."""
    import json

    rec = json.loads(record.read_text()) if record.exists() else {}
    done = rec.get("train", {}).get("steps")
    if done is not None and done != steps:
        raise ValueError(f"{record}: fine-tuned for {done} steps, not --steps {steps}; use another --out")
    if not rec:
        return
    kept = rec.get("encoder_lr_factor", 0.5 if rec.get("encoder_init") else 1.0)
    if abs(kept - encoder_lr_factor) > 1e-9:
        raise ValueError(f"{record}: encoder learning-rate factor {kept:g}, not {encoder_lr_factor:g}; use another --out")
    sha = rec.get("init_weights_sha256")
    if init_weights and sha:
        from perception.train.commands import file_sha256

        if sha != file_sha256(init_weights):
            raise ValueError(f"{record}: fine-tuned from other weights than {init_weights}; use another --out")


def _arm_factor(extra: list[str]) -> float:
    """The encoder learning-rate factor a fine-tuning's `train segment` arguments set."""
    return float(extra[extra.index("--encoder-lr-scale") + 1]) if "--encoder-lr-scale" in extra else 1.0


def _run_ablation(args: argparse.Namespace, segment: argparse.ArgumentParser) -> int:
    from pathlib import Path

    runs = _ablation_runs(args)
    for i, (k, name, extra) in enumerate(runs, 1):
        out = Path(args.out) / f"seed{k}"
        if (out / f"{name}.onnx").exists():
            init = extra[extra.index("--init-weights") + 1] if "--init-weights" in extra else None
            _check_kept(out / f"{name}.json", args.steps, _arm_factor(extra), init)
            print(f"[ablation {i}/{len(runs)}] {out / name}.onnx exists, kept", flush=True)
            continue
        print(f"[ablation {i}/{len(runs)}] label set {k}: {name}", flush=True)
        argv = ["--data", "twin", "--n-scenes", "8", "--steps", str(args.steps), "--seed", str(k), "--no-int8",
                "--name", name, "--out", str(out), *extra]
        sub = segment.parse_args(argv)
        sub.func(sub)
    print(f"score with: emtwin bench perception --sections ablation --ablation-dir {args.out}")
    return 0


def _restore(sub) -> None:
    p = sub.add_parser("restore", help="train the defocus/astigmatism restorer on twin frame pairs")
    _common(p, steps=2000, batch=8, crop=128, lr=2e-3, name="restorer")
    p.set_defaults(func=_run("cmd_restore"))


def _focus(sub) -> None:
    p = sub.add_parser("focus", help="train the two-frame focus/stigmator estimator on the twin "
                                     "(spectral features + MLP; --n-scenes = frame pairs, --crop unused)")
    _common(p, steps=4000, batch=128, crop=128, lr=2e-3, name="focus")
    p.set_defaults(n_scenes=6000)
    for a in p._actions:  # the shared option means frame pairs here
        if a.dest == "n_scenes":
            a.help = "number of generated frame pairs (default 6000)"
    p.add_argument("--delta-dof", type=float, default=2.0, help="+/- working-distance step in depths of field")
    p.add_argument("--win", type=int, default=64, help="Welch window of the spectral features in px, >= 64 [64]")
    p.add_argument("--hidden", type=int, default=128, help="MLP hidden width [128]")
    p.add_argument("--no-spectral-input", action="store_true",
                   help="do not feed the classical spectral fit to the MLP (ablation)")
    p.add_argument("--swap-only", action="store_true",
                   help="enforce only the frame-swap symmetry, not the mirror symmetries (ablation)")
    p.set_defaults(func=_run("cmd_focus"))


def _calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="fit a segmenter's sizing calibration on train-seed twin frames "
                                         "and store it in the model's JSON record",
                       description="Fit the diameter offset of the segmenter's outlines (particles touching no "
                                   "other) and the gain on the hidden area its occlusion fill adds to touching "
                                   "particles, on labelled train-seed scenario frames, and store both in the "
                                   "model's JSON record (this drops an earlier end-to-end factor: refit it with "
                                   "--agent-episodes). See docs/perception.md.")
    p.add_argument("--model", default=None,
                   help="segmenter .onnx, or a shipped one by name (standard, lite); the fit is written into "
                        "the JSON record next to it [standard]")
    p.add_argument("--n-frames", type=int, default=120, help="labelled 512x512 scenario frames [120]")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--agent-episodes", default=None, metavar="JSONL",
                   help="instead of refitting the outline offset, set the end-to-end size factor from the "
                        "episodes.jsonl of `emtwin bench agent --split train --policies bayes`")
    p.add_argument("--focus-sigma-dof", type=float, default=0.25,
                   help="focus error of the frames, standard deviation in depths of field [0.25: the agent's regime]")

    def func(args: argparse.Namespace) -> int:
        from perception.calibrate import calibrate_model

        if args.agent_episodes:
            return _system_factor(args.model, args.agent_episodes)
        cal = calibrate_model(args.model, n_frames=args.n_frames, seed=args.seed, focus_sigma_dof=args.focus_sigma_dof)
        rows = ", ".join(f"{d:.1f} px: {o:+.2f} px" for d, o in zip(cal["d_px"], cal["offset_px"]))
        print(f"diameter offset by predicted size: {rows} ({sum(cal['pairs'])} matched particles, {cal['time_s']} s)")
        if "occluded_gain" in cal:
            print(f"hidden-area gain of touching particles: {cal['occluded_gain']:.3f} ({cal['touching_pairs']} "
                  f"matched; their size bias {cal['touching_bias_gain1']:+.2%} with the whole fitted hidden area, "
                  f"{cal['touching_bias']:+.2%} with the gain)")
        return 0

    p.set_defaults(func=func)


def _system_factor(model: str | None, path: str) -> int:
    """Fit and store the end-to-end size factor of a segmenter from agent episodes (JSONL)."""
    import json
    from pathlib import Path

    from perception._common import resolve_model
    from perception.calibrate import fit_system_factor

    lines = Path(path).read_text().splitlines()
    try:
        episodes = [json.loads(x) for x in lines if x.strip()]
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON lines ({exc})") from None
    rec_path = Path(resolve_model(model, "segmenter")).with_suffix(".json")
    rec = json.loads(rec_path.read_text())
    cal = rec.get("size_calibration")
    if not cal:
        raise ValueError(f"{rec_path}: has no size_calibration; run `emtwin train calibrate` first")
    fit = fit_system_factor(episodes, current=float(cal.get("system_factor", 1.0)))
    cal.update(fit)
    rec_path.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    print(f"system_factor {fit['system_factor']:.4f} from {len(fit['system_episodes'])} episodes "
          f"(run-to-run sd of log ratio {fit['system_rel_error_sd']:.4f}); wrote {rec_path}")
    return 0


def _run(name: str):
    def func(args: argparse.Namespace) -> int:
        from perception.train import commands

        if getattr(args, "encoder", "x") is None:
            args.encoder = commands.resolve_encoder_default(None, getattr(args, "arch", "standard"))
        if args.crop % 32:
            raise ValueError(f"--crop = {args.crop}: must be a multiple of 32")
        rec = getattr(commands, name)(args)
        files = ", ".join(rec.get("files", []))
        print(f"wrote {files} to {args.out} in {rec.get('total_time_s', rec.get('train_time_s'))} s")
        return 0

    return func
