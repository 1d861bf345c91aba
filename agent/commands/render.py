"""`emtwin render`: one twin frame from a scenario at a stage position, written as TIFF."""
from __future__ import annotations

import argparse


def parse_shape(text: str) -> tuple[int, int]:
    """'768x1024' -> (768, 1024) as (rows, columns)."""
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r}: must be ROWSxCOLUMNS, e.g. 768x1024") from None
    return rows, cols


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="render one frame of the twin to a TIFF",
        description="Render one SEM frame of a scenario's specimen at a stage position. "
        "The working distance is set in focus (twin ground truth) plus --defocus-m.",
    )
    p.add_argument("scenario", help="shipped scenario name (e.g. default) or a TOML path")
    p.add_argument("--x-m", type=float, default=0.0, help="stage x (m) [0]")
    p.add_argument("--y-m", type=float, default=0.0, help="stage y (m) [0]")
    p.add_argument("--fov-m", type=float, default=None, help="field width (m) [scenario's]")
    p.add_argument("--shape", type=parse_shape, default=None, help="ROWSxCOLUMNS [scenario's]")
    p.add_argument("--dwell-s", type=float, default=None, help="pixel dwell (s) [scenario's]")
    p.add_argument("--defocus-m", type=float, default=0.0, help="working distance minus in-focus (m) [0]")
    p.add_argument("--detector", default=None, help="detector name [scenario's]")
    p.add_argument("--seed", type=int, default=None, help="twin seed [scenario's]")
    p.add_argument("--labels", default=None, help="also write the ground-truth label TIFF here")
    p.add_argument("--out", required=True, help="output TIFF path")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from twin import TwinMicroscope, truth

    from ..frames_io import write_frame, write_image_tiff

    tm = TwinMicroscope(args.scenario, seed=args.seed)
    tm.move_stage(x_m=args.x_m, y_m=args.y_m)
    if args.fov_m is not None:
        tm.set_fov_m(args.fov_m)
    tm.set_scan(shape_px=args.shape, dwell_s=args.dwell_s)
    if args.detector is not None:
        tm.set_detector(args.detector)
    tm.set_working_distance_m(truth.focus_wd_m(tm) + args.defocus_m)
    frame = tm.acquire()
    out = write_frame(args.out, frame)
    print(f"wrote {out} ({frame.image.shape[0]}x{frame.image.shape[1]} px, "
          f"{frame.meta.pixel_size_m * 1e9:.3g} nm/px, {frame.meta.t_end_s - frame.meta.t_start_s:.3g} s frame)")
    if args.labels:
        lab = write_image_tiff(args.labels, truth.label_image(tm, frame), frame.meta.pixel_size_m)
        print(f"wrote {lab} (ground-truth labels)")
    return 0
