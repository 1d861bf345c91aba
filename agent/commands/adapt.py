"""`emtwin adapt DIR`: adapt the segmenter to your microscope without drawing a mask.

1. continue self-supervised training on the unlabelled images in DIR (plus some twin scenes,
   so it does not forget them). --method fcmae (default): FCMAE of the shipped segmenter's
   encoder. --method unet: masked-image modelling of the whole shipped segmenter (encoder and
   decoder; the method that gained most in the SSL ablation, docs/perception.md);
2. re-run the fine-tuning of encoder + decoder on twin labels (fcmae: the shipped segmenter with
   the adapted encoder swapped in; unet: the adapted U-Net);
3. write `<name>.onnx` (+ int8, weights, JSON record) into --out; use it with
   `emtwin segment --model OUT/<name>.onnx` or score it with
   `emtwin bench perception --model adapted=OUT/<name>.onnx`.
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("adapt", help="self-supervised adaptation of the segmenter to a folder of your images",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="DIR", help="folder of unlabelled images (PNG/TIFF/JPEG) from your instrument")
    p.add_argument("--out", default="runs/adapted", help="output folder (default runs/adapted)")
    p.add_argument("--name", default="segmenter_adapted", help="artefact stem (default segmenter_adapted)")
    p.add_argument("--crop-bottom-px", type=int, default=0, help="rows to drop at the bottom of each image (data bar)")
    p.add_argument("--method", choices=("fcmae", "unet"), default="fcmae",
                   help="self-supervised step: FCMAE of the encoder, or MIM of the whole U-Net (default fcmae)")
    p.add_argument("--encoder", default=None,
                   help="--method fcmae: starting encoder .npz (default: the encoder of the shipped segmenter, "
                        "else fcmae_encoder.npz)")
    p.add_argument("--data", choices=("twin", "synth", "mix", "scenarios"), default="mix",
                   help="labelled scene source for fine-tuning")
    p.add_argument("--scenario-fraction", type=float, default=0.0,
                   help="share of 'mix' scenes from the shipped scenarios' train seeds (default 0)")
    p.add_argument("--n-scenes", type=int, default=300, help="labelled generated scenes for fine-tuning")
    p.add_argument("--n-unlabelled-scenes", type=int, default=100,
                   help="generated scenes mixed into the continued pretraining (0 = only DIR)")
    p.add_argument("--scene-px", type=int, default=256)
    p.add_argument("--pretrain-steps", type=int, default=800)
    p.add_argument("--pretrain-budget-s", type=float, default=None, help="wall-time cap of step 1")
    p.add_argument("--pretrain-lr", type=float, default=5e-4)
    p.add_argument("--finetune-steps", type=int, default=1500)
    p.add_argument("--finetune-budget-s", type=float, default=None, help="wall-time cap of step 2")
    p.add_argument("--finetune-lr", type=float, default=5e-4)
    p.add_argument("--init-weights", default=None,
                   help="segmenter weights (NAME_weights.npz) to warm-start from: step 2 with fcmae, step 1 "
                        "with unet (default: the shipped segmenter_weights.npz)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default="runs/train_cache")
    p.add_argument("--no-int8", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from perception.train import commands

    if not Path(args.folder).is_dir():
        raise FileNotFoundError(f"DIR = {args.folder}: not a folder")
    if args.crop % 32:
        raise ValueError(f"--crop = {args.crop}: must be a multiple of 32")
    for opt in ("init_weights", "encoder"):
        path = getattr(args, opt)
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"--{opt.replace('_', '-')} {path}: no such file")
    if args.method == "unet":
        if args.encoder is not None:
            raise ValueError("--encoder applies to --method fcmae; --method unet starts from --init-weights")
    else:
        if args.encoder is None:
            args.encoder = commands.shipped_segmenter_encoder(Path(args.out) / f"{args.name}_start_encoder.npz")
        args.encoder = commands.resolve_encoder_default(args.encoder)
        if args.encoder is None:
            raise FileNotFoundError("no starting encoder: train one with `emtwin train pretrain` or pass --encoder")
    rec = commands.cmd_adapt(args)
    print(f"wrote {', '.join(rec['files'])} to {args.out} in {rec['total_time_s']} s")
    return 0
