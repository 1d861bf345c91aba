"""`emtwin bench agent`: policies on scenarios over several seeds, figures per scenario and policy.

Per (scenario, policy), over the episodes of the sweep (an episode that raised counts as a
failure and is left out of the means):

- ``instrument_s``, ``electrons``: mean instrument seconds and electrons the episode used. An
  episode stops at its target, so for a successful one this is the cost of reaching it; an
  episode that ran out of budget counts its whole budget (``target_reached_rate`` says how often).
- ``success_rate``: target reached and the truth within the target (errors count as failures);
  ``target_reached_rate``: the stopping rule fired; ``error_rate``: episodes that raised;
  ``coverage``: share of episodes whose credible interval contains the true mean (calibration:
  should be near the credibility, 95 %, when sizing is unbiased).
- ``focus_frames_per_refocus``: mean focus frames per autofocus call.
- ``focus_error_dof_p95``: mean over episodes of the 95th percentile of |working distance −
  in-focus| at the measured fields, in depths of field.
- ``rel_error_abs``: median |estimate − truth| / truth (robust to one wild estimate);
  ``particles``, ``fields``: means.

Ratios "A/B" divide policy A's figure by policy B's in the same scenario (e.g. raster/bayes
instrument_s = how many times less instrument time bayes needs). Scenario "all" pools the
episodes of every scenario; its ratios are geometric means of the per-scenario ratios.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .sweep import append_jsonl, expand, run_sweep
from .thresholds import CheckReport, Lookup, Threshold, check, load_thresholds

FIGURES = ("success_rate", "target_reached_rate", "coverage", "error_rate", "instrument_s", "electrons",
           "focus_frames_per_refocus", "focus_error_dof_p95", "rel_error_abs", "particles", "fields", "episodes")
#: ratios shown in the table when both policies ran: (numerator, denominator)
TABLE_RATIOS = (("raster", "bayes"), ("expert", "bayes"), ("spiral", "bayes"), ("bayes", "oracle"))


def _mean(values: list[float]) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


def figures(episodes: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """The FIGURES of one group of episodes (see the module docstring)."""
    n = len(episodes)
    ok = [e for e in episodes if not e.get("error")]
    refocus = [e for e in ok if e.get("focus_calls")]
    rel = [abs(e["rel_error"]) for e in ok if e.get("rel_error") is not None]
    return {
        "episodes": float(n),
        "success_rate": sum(bool(e.get("success")) for e in episodes) / n if n else None,
        "target_reached_rate": sum(bool(e.get("target_reached")) for e in episodes) / n if n else None,
        "coverage": (sum(bool(e.get("truth_in_interval")) for e in ok) / len(ok)) if ok else None,
        "error_rate": (n - len(ok)) / n if n else None,
        "instrument_s": _mean([e.get("instrument_s") for e in ok]),
        "electrons": _mean([e.get("electrons") for e in ok]),
        "focus_frames_per_refocus": _mean([e.get("focus_frames_per_refocus") for e in refocus]),
        "focus_error_dof_p95": _mean([e.get("focus_error_dof_p95") for e in ok]),
        "rel_error_abs": float(np.median(rel)) if rel else None,
        "particles": _mean([e.get("particle_count") for e in ok]),
        "fields": _mean([e.get("fields") for e in ok]),
    }


def aggregate(episodes: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """{scenario: {policy: figures}} in first-seen order, plus scenario "all" pooling every episode."""
    groups: dict[str, dict[str, list[dict]]] = {}
    for e in episodes:
        groups.setdefault(e["scenario"], {}).setdefault(e["policy"], []).append(e)
    out = {sc: {pol: figures(eps) for pol, eps in pols.items()} for sc, pols in groups.items()}
    pooled: dict[str, list[dict]] = {}
    for e in episodes:
        pooled.setdefault(e["policy"], []).append(e)
    out["all"] = {pol: figures(eps) for pol, eps in pooled.items()}
    return out


def ratio(agg: dict, scenario: str, num: str, den: str, figure: str) -> float | None:
    """Policy `num`'s figure over policy `den`'s in `scenario`; for "all", the geometric mean."""
    if scenario == "all":
        rs = [ratio(agg, sc, num, den, figure) for sc in agg if sc != "all"]
        rs = [r for r in rs if r is not None and r > 0]
        return float(np.exp(np.mean(np.log(rs)))) if rs else None
    pols = agg.get(scenario, {})
    a, b = pols.get(num, {}).get(figure), pols.get(den, {}).get(figure)
    if a is None or b is None or b == 0 or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return float(a / b)


def agent_lookup(agg: dict) -> Lookup:
    """Thresholds → figures of an aggregate: expands scenario "*" and policy "*"."""

    def find(t: Threshold) -> list[tuple[str, float | None]]:
        if t.figure not in FIGURES:
            raise ValueError(f"threshold figure = {t.figure!r}: must be one of {', '.join(FIGURES)}")
        scenarios = [s for s in agg if s != "all"] if t.scenario == "*" else [t.scenario]
        found = []
        for sc in scenarios:
            pols = agg.get(sc)
            if not pols:
                continue
            if "/" in t.policy:
                num, den = t.policy.split("/")
                if num in pols and den in pols:
                    found.append((f"{sc}: {t.policy} {t.figure}", ratio(agg, sc, num, den, t.figure)))
                continue
            for pol in (list(pols) if t.policy == "*" else [t.policy]):
                if pol in pols:
                    found.append((f"{sc}: {pol} {t.figure}", pols[pol].get(t.figure)))
        return found

    return find


def check_agent(agg: dict, path: str | Path) -> CheckReport:
    """Check an aggregate against the agent entries of a thresholds file."""
    return check(load_thresholds(path), agent_lookup(agg), bench="agent")


def _fmt(v: float | None, spec: str = ".3g") -> str:
    return "–" if v is None else format(v, spec)


def format_table(agg: dict) -> str:
    """Markdown: one row per scenario and policy, then the ratio table."""
    head = ("| scenario | policy | episodes | success | target reached | CI coverage | instrument s | electrons | "
            "focus frames / refocus | focus error p95 (DoF) | abs rel error (median) | time / oracle | dose / oracle | failed |")
    lines = [head, "|" + "|".join(["---"] * 14) + "|"]
    for sc, pols in agg.items():
        for pol, f in pols.items():
            lines.append("| " + " | ".join([
                sc, pol, f"{f['episodes']:.0f}", _fmt(f["success_rate"], ".0%"), _fmt(f["target_reached_rate"], ".0%"),
                _fmt(f["coverage"], ".0%"), _fmt(f["instrument_s"], ".1f"), _fmt(f["electrons"], ".2e"), _fmt(f["focus_frames_per_refocus"], ".2f"),
                _fmt(f["focus_error_dof_p95"], ".2f"), _fmt(f["rel_error_abs"], ".1%"),
                _fmt(ratio(agg, sc, pol, "oracle", "instrument_s"), ".2f"),
                _fmt(ratio(agg, sc, pol, "oracle", "electrons"), ".2f"),
                f"{f['error_rate'] * f['episodes']:.0f}" if f["error_rate"] is not None else "–"]) + " |")
    pairs = [(a, b) for a, b in TABLE_RATIOS if any(a in p and b in p for p in agg.values())]
    if pairs:
        lines += ["", "| scenario | " + " | ".join(f"{a}/{b} time | {a}/{b} dose" for a, b in pairs) + " |",
                  "|" + "|".join(["---"] * (1 + 2 * len(pairs))) + "|"]
        for sc in agg:
            cells = []
            for a, b in pairs:
                cells += [_fmt(ratio(agg, sc, a, b, "instrument_s"), ".2f"), _fmt(ratio(agg, sc, a, b, "electrons"), ".2f")]
            lines.append(f"| {sc} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_agent_benchmark(scenarios: Sequence[str], policies: Sequence[str], seeds: int, *, out: str | Path | None = None,
                        thresholds: str | Path | None = None, executor: str = "local", workers: int = 2,
                        scheduler: str | None = None, segmenter: str = "classical", fast: bool = False,
                        max_frames: int | None = None, max_instrument_s: float | None = None,
                        target_rel_precision: float | None = None, progress: bool = True,
                        plots: bool = True, split: str = "test",
                        policy_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the sweep, aggregate, write `out` (results.json, results.md, episodes.jsonl, PNGs), check.
    policy_options: {name: value} for the policies that take them (see `sweep.expand`).

    Returns the result dict: options, aggregate, table, episodes and (with `thresholds`) the
    check outcomes under "check" and `ok` False if a bound regressed.
    """
    if thresholds is not None:
        load_thresholds(thresholds)  # fail on a bad file before hours of episodes
    specs = expand(scenarios, policies, seeds, segmenter=segmenter, fast=fast, max_frames=max_frames,
                   max_instrument_s=max_instrument_s, target_rel_precision=target_rel_precision, split=split,
                   policy_options=policy_options)
    on_result = None
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "episodes.jsonl").write_text("")
        on_result = append_jsonl(Path(out) / "episodes.jsonl")
    episodes = run_sweep(specs, executor=executor, workers=workers, scheduler=scheduler, progress=progress,
                         on_result=on_result)
    agg = aggregate(episodes)
    result: dict[str, Any] = {
        "kind": "agent",
        "options": {"scenarios": list(scenarios), "policies": list(policies), "seeds": seeds, "executor": executor,
                    "workers": workers, "segmenter": segmenter, "fast": fast, "max_frames": max_frames,
                    "max_instrument_s": max_instrument_s, "target_rel_precision": target_rel_precision,
                    "split": split, "policy_options": dict(policy_options or {})},
        "aggregate": agg,
        "ratios": {sc: {f"{a}/{b}": {fig: ratio(agg, sc, a, b, fig) for fig in ("instrument_s", "electrons")}
                        for a, b in TABLE_RATIOS + tuple((p, "oracle") for p in policies if p != "oracle")
                        if a in pols and b in pols} for sc, pols in agg.items()},
        "table": format_table(agg),
        "episodes": list(episodes),
        "ok": True,
    }
    if thresholds is not None:
        report = check_agent(agg, thresholds)
        result["check"] = report.to_json()
        result["check_text"] = report.format()
        result["ok"] = report.ok
    if out is not None:
        write_outputs(result, out, plots=plots)
    return result


def write_outputs(result: dict[str, Any], out: str | Path, plots: bool = True) -> list[Path]:
    """results.json, results.md (tables and check) and, with `plots`, one PNG per scenario."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.json").write_text(json.dumps(result, indent=2, default=str))
    md = ["# emtwin bench agent", "", "```", json.dumps(result["options"]), "```", "", result["table"]]
    if "check_text" in result:
        md += ["", "## Check", "", "```", result["check_text"], "```"]
    (root / "results.md").write_text("\n".join(md) + "\n")
    written = [root / "results.json", root / "results.md"]
    if plots:
        from .plots import plot_scenarios

        written += plot_scenarios(result["aggregate"], root)
    return written
