"""Plots of the perception benchmark (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path

ERR_GOAL = 0.30  # the goal for the SSL error reduction rate


def plot_ablation(rows: dict[str, dict], path: str | Path) -> Path:
    """One PNG: ERR of each pretraining on each test set, one dot per label set, the mean with
    its standard error as a bar, and lines at 0 and at the 30 % goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k, v in rows.items() if isinstance(v, dict) and "err_aji" in v]
    fig, ax = plt.subplots(figsize=(2.0 + 1.3 * len(names), 3.8))
    for i, name in enumerate(names):
        r = rows[name]
        per_set = list(r.get("err_aji_per_set", {}).values())
        ax.scatter([i] * len(per_set), [100 * e for e in per_set], s=18, color="#7f7f7f", zorder=2)
        se = r["err_aji_se"] if r["err_aji_se"] == r["err_aji_se"] else 0.0  # nan: one label set
        ax.errorbar(i + 0.15, 100 * r["err_aji"], yerr=100 * se, fmt="o", color="#1f77b4", capsize=4, zorder=3)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.axhline(100 * ERR_GOAL, color="#d62728", ls="--", lw=1, label=f"goal {100 * ERR_GOAL:.0f} %")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.replace(" on ", "\non ") for n in names], fontsize=8)
    ax.set_ylabel("ERR of 1 - AJI+ (%)")
    ax.set_title("SSL ablation: grey = label sets, blue = mean +/- SE", fontsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
