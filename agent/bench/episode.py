"""One benchmark episode: a policy on a fresh twin of a scenario, scored against ground truth.

`run_episode` is a pure function of its arguments (scenario, policy, seed, options), so a
sweep gives identical results whichever executor runs it.
"""
from __future__ import annotations

import math
import tempfile
import time
import traceback
from dataclasses import asdict
from typing import Any

import numpy as np


def make_segmenter(kind: str = "onnx") -> Any:
    """The shipped ONNX segmenter (`onnx`), its distilled lite variant (`lite`, about twice as
    fast) or the classical Otsu + watershed floor (`classical`)."""
    if kind in ("onnx", "lite"):
        from perception import Segmenter

        return Segmenter(None if kind == "onnx" else "lite")
    if kind == "classical":
        from perception.classical import ClassicalSegmenter

        return ClassicalSegmenter()
    raise ValueError(f"segmenter = {kind!r}: must be 'onnx', 'lite' or 'classical'")


def run_episode(scenario: str, policy: str, seed: int, target_rel_precision: float | None = None,
                segmenter: str = "onnx", max_frames: int | None = None, max_instrument_s: float | None = None,
                fast: bool = False, policy_options: Any = ()) -> dict[str, Any]:
    """Run `policy` on `scenario` with twin seed `seed`; return the summary with truth scores.

    `fast` uses smaller frames (384×512) for smoke runs. Errors are returned, not raised:
    the result has `error` set and `success` False.
    """
    t0 = time.time()
    base = {"scenario": scenario, "policy": policy, "seed": int(seed)}
    try:
        return {**base, **_episode(scenario, policy, seed, target_rel_precision, segmenter, max_frames,
                                   max_instrument_s, fast, dict(policy_options or ())), "wall_s": time.time() - t0}
    except Exception as exc:  # noqa: BLE001 - a failing episode is reported, the sweep goes on
        return {**base, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6),
                "success": False, "wall_s": time.time() - t0}


def _episode(scenario: str, policy: str, seed: int, target: float | None, segmenter: str,
             max_frames: int | None, max_instrument_s: float | None, fast: bool,
             policy_options: dict[str, Any] | None = None) -> dict[str, Any]:
    from twin import TwinMicroscope, truth

    from ..groundtruth import OracleTruth, add_truth
    from ..runner import Experiment, RunConfig
    from ..session import Budget, MeasureSettings

    tm = TwinMicroscope(scenario, seed=seed)
    sc = tm.scenario
    settings = MeasureSettings()
    if fast:
        settings = MeasureSettings(shape_px=(384, 512), survey_shape_px=(512, 512), focus_shape_px=(192, 192))
    cfg = RunConfig(
        out="", policy=policy, scenario=scenario, seed=seed,
        target_rel_precision=target or sc.task.target_rel_precision, credibility=sc.task.credibility,
        per_mode=sc.task.per_mode,
        budget=Budget(max_instrument_s=max_instrument_s or sc.budget.max_instrument_s,
                      max_electrons=sc.budget.max_electrons, max_frames=max_frames or sc.budget.max_frames),
        settings=settings, save_frames=False, policy_options=dict(policy_options or {}),
    )
    with tempfile.TemporaryDirectory(prefix="emtwin-bench-") as out:
        cfg.out = out
        kwargs = {"truth": OracleTruth(tm)} if policy == "oracle" else {}
        exp = Experiment(cfg, tm, make_segmenter(segmenter), progress=False, policy_kwargs=kwargs)
        summary = exp.run()
        reads_during_run = list(truth.access_log(tm))
        add_truth(summary, tm, exp.session.state)
        focus_err = _focus_errors_dof(tm, exp.session.state)
    summary.setdefault("success", False)
    summary["truth_reads_during_run"] = len(reads_during_run) if policy != "oracle" else None
    summary["focus_error_dof_p95"] = float(np.percentile(focus_err, 95)) if focus_err.size else None
    summary["focus_error_dof_mean"] = float(np.mean(focus_err)) if focus_err.size else None
    summary["config"] = {"target_rel_precision": cfg.target_rel_precision, "budget": asdict(cfg.budget)}
    return summary


def _focus_errors_dof(tm: Any, state: Any) -> np.ndarray:
    """|working distance used − in-focus| at each measured field, in depths of field (truth)."""
    from twin import truth

    errs = []
    for f in state.fields:
        alpha = state.policy_state.get("alpha_rad", 3e-3)
        dof = f.pixel_size_m / alpha if alpha else math.nan
        wd_true = truth.focus_wd_m(tm, f.x_m, f.y_m)
        errs.append(abs(f.wd_m - wd_true) / dof)
    return np.asarray(errs, dtype=float)
