"""`emtwin segment IMAGE... --pixel-size-m P --out DIR`: particle segmentation of image files.

Writes, per image, `<stem>_labels.tif` (instance labels with the pixel size), `<stem>_overlay.png`
and `<stem>_particles.csv` (one row per particle, lengths in metres).
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("segment", help="segment particles in image files (label TIFF, overlay PNG, CSV)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/TIFF/JPEG files (8- or 16-bit grey)")
    p.add_argument("--pixel-size-m", type=float, default=None,
                   help="pixel size in metres (default: read from the TIFF; required otherwise)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--model", default=None,
                   help="ONNX model file, or a shipped segmenter by name: standard (default), lite (~2x "
                        "faster, slightly less accurate; see docs/perception.md)")
    p.add_argument("--int8", action="store_true", help="use the int8-quantised shipped model")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads (default 2)")
    p.add_argument("--crop-bottom-px", type=int, default=0, help="drop this many rows at the bottom (data bar)")
    p.add_argument("--min-contrast-snr", type=float, default=5.0,
                   help="drop detections whose contrast against their surroundings is below this many "
                        "noise sigmas (Rose criterion; 0 keeps all) [5]")
    p.add_argument("--white-pct", type=float, default=99.9,
                   help="intensity percentile mapped to white before the network (see docs/perception.md) [99.9]")
    p.add_argument("--scale", default="1", type=_scale,
                   help="inference resolution relative to the image (0 < S <= 4), or 'auto' for particles "
                        "of unknown size, e.g. larger than ~70 px (see docs/perception.md) [1]")
    pol = p.add_mutually_exclusive_group()
    pol.add_argument("--invert", dest="invert", action="store_true", default=None,
                     help="particles are darker than the background (TEM-like): invert first")
    pol.add_argument("--no-invert", dest="invert", action="store_false")
    pol.add_argument("--auto-polarity", dest="invert", action="store_const", const="auto",
                     help="segment both polarities, keep the one the network is more confident of "
                          "(images of unknown polarity; twice the time)")
    p.set_defaults(func=run)


def _scale(text: str) -> float | str:
    """--scale: 'auto' or a number in (0, 4]."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 'auto' or a number in (0, 4]") from None
    if not 0.0 < v <= 4.0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 'auto' or a number in (0, 4]")
    return v


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from perception import Segmenter
    from perception.io import read_image, write_label_tiff, write_overlay_png

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.crop_bottom_px < 0:
        raise ValueError(f"--crop-bottom-px = {args.crop_bottom_px}: must be >= 0")
    seg = Segmenter(args.model, int8=args.int8, threads=args.threads, invert=args.invert,
                    min_contrast_snr=args.min_contrast_snr, white_pct=args.white_pct)
    for name in args.images:
        img, px_file = read_image(name)
        px = args.pixel_size_m if args.pixel_size_m is not None else px_file
        if px is None:
            raise ValueError(f"--pixel-size-m: not given and {name} carries no pixel size")
        if args.crop_bottom_px:
            img = img[: max(1, img.shape[0] - args.crop_bottom_px)]
        labels, table = seg.segment(img, px, scale=args.scale)
        stem = Path(name).stem
        write_label_tiff(out / f"{stem}_labels.tif", labels, px)
        write_overlay_png(out / f"{stem}_overlay.png", img, labels)
        table.to_csv(out / f"{stem}_particles.csv")
        d = table["equivalent_diameter_m"]
        mean_nm = f"{d.mean() * 1e9:.1f} nm" if len(d) else "n/a"
        print(f"{name}: {len(table)} particles, mean equivalent diameter {mean_nm}")
    return 0
