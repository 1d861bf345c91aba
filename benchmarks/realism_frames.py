"""Render twin frames for the realism check against the real BAM TiO2 images.

usage: python benchmarks/realism_frames.py OUT_DIR [--scenario bam-tio2] [--n 20] [--seed 0]

Frames are 1024x704 at 7.34 nm/px, at random populated stage positions, in focus with
small random focus and stigmator errors (as a microscopist leaves them), written as 8-bit
PNG. Then run: python ../shared/tools/realism.py ../shared/data/bam-tio2-sem/images OUT_DIR --crop-rows 704
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from twin import TwinMicroscope, truth


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--scenario", default="bam-tio2")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    tm = TwinMicroscope(args.scenario, seed=args.seed)
    tm.set_scan(shape_px=(704, 1024))
    tm.set_fov_m(1024 * 7.34e-9)
    sx, sy = truth.stigmator_correction(tm)
    k = 0
    while k < args.n:
        x, y = rng.uniform(-1e-3, 1e-3, 2)
        if len(truth.particles_in(tm, x - 3e-6, y - 2e-6, x + 3e-6, y + 2e-6)) < 5:
            continue
        tm.move_stage(x_m=x, y_m=y)
        dof = 7.34e-9 / 0.005
        tm.set_working_distance_m(truth.focus_wd_m(tm) + rng.normal(0, 0.3 * dof))
        tm.set_stigmator(sx + rng.normal(0, 0.02), sy + rng.normal(0, 0.02))
        img = tm.acquire().image.astype(np.float64)
        lo, hi = np.percentile(img, [0.1, 99.95])
        Image.fromarray((np.clip((img - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)).save(out / f"twin_{k:03d}.png")
        k += 1
    print(f"wrote {k} frames to {out}")


if __name__ == "__main__":
    main()
