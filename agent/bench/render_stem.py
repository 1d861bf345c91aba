"""Render speed of the STEM twin: frames per second (wall time, 2 threads), all artifacts on.

Two regimes per shape: particle level (pixel 0.2 nm: particles drawn from projected
thickness) and atom level (pixel 0.04 nm: every atom splatted). The stage steps each frame
so tiles, particles and atoms change as in a survey; the probe is refocused before timing.
"""
from __future__ import annotations

import time

from tqdm import tqdm

#: (label, pixel size in m) of the regimes timed.
REGIMES: tuple[tuple[str, float], ...] = (("particles", 0.2e-9), ("atoms", 0.04e-9))


def run_stem_render_benchmark(scenario: str = "stem-catalyst", shapes: tuple[tuple[int, int], ...] = ((512, 512),),
                              frames: int = 20, seed: int = 0,
                              regimes: tuple[tuple[str, float], ...] = REGIMES) -> dict:
    """Median seconds and frames/s per (shape, regime)."""
    from twin.stem import truth
    from twin.stem.microscope import StemTwinMicroscope

    if frames < 1:
        raise ValueError(f"frames = {frames}: must be >= 1")
    results = []
    for shape in shapes:
        for label, pixel_m in regimes:
            tm = StemTwinMicroscope(scenario, seed=seed)
            tm.set_scan(shape_px=shape, dwell_s=max(1e-6, tm.limits().dwell_s[0]))
            tm.set_fov_m(shape[1] * pixel_m)
            tm.set_defocus_m(truth.focus_defocus_m(tm))
            tm.acquire()  # warm caches (probe, tiles) like a running session
            step = 2.0 * shape[1] * pixel_m
            times = []
            rendering = None
            for i in tqdm(range(frames), desc=f"stem {label} {shape[0]}x{shape[1]}", leave=False):
                tm.move_stage(x_m=(i % 5) * step, y_m=(i // 5) * step)
                t0 = time.perf_counter()
                frame = tm.acquire()
                times.append(time.perf_counter() - t0)
                rendering = frame.meta.extra["rendering"]
            times.sort()
            median = times[len(times) // 2]
            results.append({"shape_px": list(shape), "rendering": rendering, "pixel_m": pixel_m, "frames": frames,
                            "median_s": median, "frames_per_s": 1.0 / median})
    return {"benchmark": "render", "scenario": scenario, "mode": "stem", "results": results}


def format_table(result: dict) -> str:
    lines = [f"render benchmark, scenario {result['scenario']} ({result['mode']}), all artifacts on",
             "| shape | rendering | pixel nm | frames | median ms/frame | frames/s |", "|---|---|---|---|---|---|"]
    for r in result["results"]:
        lines.append(f"| {r['shape_px'][0]}x{r['shape_px'][1]} | {r['rendering']} | {r['pixel_m'] * 1e9:.2f} | "
                     f"{r['frames']} | {r['median_s'] * 1e3:.1f} | {r['frames_per_s']:.1f} |")
    return "\n".join(lines)
