"""Benchmark plots (matplotlib, Agg): per scenario, instrument time and dose per policy.

Each bar is the mean over the scenario's episodes; the number above it is the ratio to the
`oracle` policy (when oracle ran) and the bar is hatched when fewer than all episodes
succeeded, with the success rate under the policy name.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

PANELS = (("instrument_s", "instrument time (s)"), ("electrons", "dose (electrons)"))
COLOURS = {"bayes": "#1f77b4", "expert": "#ff7f0e", "spiral": "#2ca02c", "raster": "#d62728", "oracle": "#7f7f7f"}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "scenario"


def plot_scenario(name: str, pols: dict[str, dict[str, Any]], path: Path) -> Path:
    """One PNG: two bar panels (instrument s, electrons) with ratios to oracle annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(pols)
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.2 * len(names), 3.6))
    for ax, (fig_key, label) in zip(axes, PANELS):
        values = [pols[p].get(fig_key) or 0.0 for p in names]
        oracle = pols.get("oracle", {}).get(fig_key)
        bars = ax.bar(range(len(names)), values, color=[COLOURS.get(p, "#9467bd") for p in names])
        for bar, p, v in zip(bars, names, values):
            if (pols[p].get("success_rate") or 0.0) < 1.0:
                bar.set_hatch("//")
            if oracle and v:
                ax.annotate(f"{v / oracle:.2g}×", (bar.get_x() + bar.get_width() / 2, v), ha="center",
                            va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([f"{p}\n{(pols[p].get('success_rate') or 0.0):.0%} ok" for p in names], fontsize=8)
        ax.set_ylabel(label)
        ax.margins(y=0.15)
    fig.suptitle(f"{name}: mean per episode (× = ratio to oracle; hatched = not all succeeded)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_scenarios(agg: dict[str, dict[str, dict[str, Any]]], out: str | Path) -> list[Path]:
    """One `<scenario>.png` per scenario of an aggregate (plus `all.png` pooling them)."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    return [plot_scenario(sc, pols, root / f"{_safe(sc)}.png") for sc, pols in agg.items() if pols]
