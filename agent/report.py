"""`report.html`: a self-contained page with the run's figures (PNG embedded) and summary."""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def size_histogram(diam_m: np.ndarray, summary: dict[str, Any], true_diam_m: np.ndarray | None) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    d_nm = np.asarray(diam_m) * 1e9
    if d_nm.size:
        bins = np.linspace(0, np.percentile(d_nm, 99.5) * 1.3, 50)
        ax.hist(d_nm, bins=bins, density=True, alpha=0.6, label=f"measured (n={d_nm.size})")
        if d_nm.size > 2:
            mu, sd = np.log(d_nm).mean(), np.log(d_nm).std()
            x = np.linspace(max(bins[1], 1e-3), bins[-1], 300)
            ax.plot(x, np.exp(-0.5 * ((np.log(x) - mu) / sd) ** 2) / (x * sd * math.sqrt(2 * math.pi)), "C0-",
                    label="lognormal (posterior mean)")
        if true_diam_m is not None and len(true_diam_m):
            ax.hist(np.asarray(true_diam_m) * 1e9, bins=bins, density=True, histtype="step", color="k",
                    label=f"ground truth (n={len(true_diam_m)})")
    if summary.get("mean_diameter_m"):
        lo, hi = summary["credible_interval_m"]
        ax.axvspan(lo * 1e9, hi * 1e9, color="C1", alpha=0.3, label=f"{100 * summary['credibility']:.0f} % CI of mean")
        ax.axvline(summary["mean_diameter_m"] * 1e9, color="C1")
    if summary.get("true_mean_diameter_m"):
        ax.axvline(summary["true_mean_diameter_m"] * 1e9, color="k", ls="--", label="true mean")
    ax.set_xlabel("equivalent diameter (nm)")
    ax.set_ylabel("density (1/nm)")
    ax.legend(fontsize=8)
    return _png(fig)


def stage_map(state: Any) -> str:
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    for x, y, w, h in state.survey_fields:
        ax.add_patch(Rectangle(((x - w / 2) * 1e6, (y - h / 2) * 1e6), w * 1e6, h * 1e6, fill=False, ec="0.7", lw=0.8))
    if len(state.sites):
        ax.plot(state.sites.x_m * 1e6, state.sites.y_m * 1e6, ".", ms=1, color="0.6", label="survey sites")
    for f in state.fields:
        ax.add_patch(Rectangle(((f.x_m - f.fov_m / 2) * 1e6, (f.y_m - f.height_m / 2) * 1e6), f.fov_m * 1e6,
                               f.height_m * 1e6, fill=False, ec="C0", lw=1.0))
    if state.fields:
        ax.plot([f.x_m * 1e6 for f in state.fields], [f.y_m * 1e6 for f in state.fields], "C0-", lw=0.6, alpha=0.6,
                label="path")
    cat = state.catalog
    if len(cat):
        ax.scatter(cat.x * 1e6, cat.y * 1e6, s=2, c="C3", label="particles measured")
    focus = state.focus_results
    if focus:
        ax.plot([r["x_m"] * 1e6 for r in focus], [r["y_m"] * 1e6 for r in focus], "k+", ms=7, label="focus sites")
    ax.set_aspect("equal")
    ax.autoscale()
    ax.set_xlabel("stage x (µm)")
    ax.set_ylabel("stage y (µm)")
    ax.legend(fontsize=7, loc="best")
    return _png(fig)


def focus_trace(state: Any) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    if state.focus_trace:
        t, _, wd = np.array(state.focus_trace).T
        ax.plot(t, wd * 1e3, ".-", lw=0.8, ms=3, label="working distance used")
    focus = state.focus_results
    if focus:
        ax.plot([r["t_s"] for r in focus], [r["wd_m"] * 1e3 for r in focus], "k+", ms=8, label="autofocus result")
    ax.set_xlabel("instrument time (s)")
    ax.set_ylabel("working distance (mm)")
    ax.legend(fontsize=8)
    return _png(fig)


def write_report(path: str | Path, summary: dict[str, Any], state: Any, true_diam_m: np.ndarray | None = None) -> Path:
    """Write report.html with the size histogram, stage map, focus trace and summary table."""
    import matplotlib

    matplotlib.use("Agg")
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in summary.items())
    figs = [("Size distribution", size_histogram(state.catalog.d, summary, true_diam_m)),
            ("Stage map", stage_map(state)), ("Focus over time", focus_trace(state))]
    body = "".join(f"<h2>{t}</h2><img src='data:image/png;base64,{b}'/>" for t, b in figs)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>emtwin run report</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:auto}td,th{text-align:left;padding:2px 8px}"
            "img{max-width:100%}</style></head><body><h1>emtwin run report</h1>"
            f"<table>{rows}</table>{body}</body></html>")
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)
