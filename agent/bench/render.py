"""Render speed of the twin: frames per second with every artifact on (wall time, 2 threads)."""
from __future__ import annotations

import time

from tqdm import tqdm


def run_render_benchmark(
    scenario: str = "default",
    shapes: tuple[tuple[int, int], ...] = ((512, 512), (1024, 1024)),
    frames: int = 20,
    seed: int = 0,
) -> dict:
    """Frames/s per shape. The stage steps a field each frame, so tiles and exposures change."""
    from twin import TwinMicroscope, truth

    results = []
    for shape in shapes:
        tm = TwinMicroscope(scenario, seed=seed)
        tm.set_scan(shape_px=shape, dwell_s=200e-9)
        tm.set_fov_m(shape[1] * 5e-9)
        tm.set_working_distance_m(truth.focus_wd_m(tm))
        tm.acquire()  # warm caches (OTF, tiles) like a running session
        times = []
        for i in tqdm(range(frames), desc=f"render {shape[0]}x{shape[1]}", leave=False):
            tm.move_stage(x_m=(i % 5) * 2e-6, y_m=(i // 5) * 2e-6)
            t0 = time.perf_counter()
            tm.acquire()
            times.append(time.perf_counter() - t0)
        times.sort()
        median = times[len(times) // 2]
        results.append({"shape_px": list(shape), "frames": frames, "median_s": median, "frames_per_s": 1.0 / median})
    return {"benchmark": "render", "scenario": scenario, "mode": "sem", "results": results}


def format_table(result: dict) -> str:
    lines = [f"render benchmark, scenario {result['scenario']} ({result['mode']}), all artifacts on",
             "| shape | frames | median ms/frame | frames/s |", "|---|---|---|---|"]
    for r in result["results"]:
        lines.append(f"| {r['shape_px'][0]}x{r['shape_px'][1]} | {r['frames']} | {r['median_s'] * 1e3:.1f} | {r['frames_per_s']:.1f} |")
    return "\n".join(lines)
