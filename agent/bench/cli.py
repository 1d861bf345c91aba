"""Command-line pieces for `emtwin bench`: the `agent` kind, sweep options and `--check`.

`agent/commands/bench.py` calls `add_agent_parser(kinds)` to add `emtwin bench agent`, and
`add_check_option(parser)` + `apply_check(result, args, bench)` to give the other kinds a
`--check FILE` against the same thresholds file. Exit status: 0 all bounds hold, 1 a bound
regressed (every one is printed), 2 bad arguments (raised as ValueError, printed by the CLI).
"""
from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

#: exit status when a threshold regressed
EXIT_REGRESSION = 1


def _split(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out or None


def sem_scenarios() -> list[str]:
    """Every shipped SEM scenario (STEM ones, `mode = "stem"`, are not agent benchmarks yet)."""
    from twin.config import scenario_names, scenarios_dir

    names = []
    for name in scenario_names():
        data = tomllib.loads((scenarios_dir() / f"{name}.toml").read_text(encoding="utf-8"))
        if data.get("mode", "sem") == "sem":
            names.append(name)
    return names


def shipped_segmenter_exists() -> bool:
    """True when the shipped ONNX segmenter (perception/models/segmenter.onnx) is installed."""
    import importlib.util

    spec = importlib.util.find_spec("perception")
    roots = list(spec.submodule_search_locations or []) if spec else []
    return any((Path(r) / "models" / "segmenter.onnx").is_file() for r in roots)


def default_segmenter() -> str:
    """'onnx' when the shipped model exists, else 'classical' (with a notice on stderr)."""
    if shipped_segmenter_exists():
        return "onnx"
    print("emtwin bench: perception/models/segmenter.onnx not found; using --segmenter classical", file=sys.stderr)
    return "classical"


def add_sweep_options(p: argparse.ArgumentParser) -> None:
    """Selection, executor and run options shared by sweep benchmarks."""
    p.add_argument("--scenarios", nargs="+", metavar="S", default=None,
                   help="shipped names or TOML paths, space- or comma-separated [every shipped SEM scenario]")
    p.add_argument("--policies", nargs="+", metavar="P", default=None,
                   help="bayes, expert, spiral, raster, oracle [all five]")
    p.add_argument("--seeds", type=int, default=3, metavar="N",
                   help="episodes per scenario and policy, on the scenario's first N test seeds [3]")
    p.add_argument("--split", choices=["test", "train"], default="test",
                   help="seeds: test (benchmarks) or train (calibration runs, e.g. `emtwin train calibrate "
                        "--agent-episodes`) [test]")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write results.json, results.md, episodes.jsonl and one PNG per scenario here")
    add_check_option(p)
    p.add_argument("--executor", choices=["local", "dask"], default="local",
                   help="local: process pool; dask: Dask distributed (LocalCluster on 127.0.0.1 or --scheduler) "
                        "[local]")
    p.add_argument("--scheduler", default=None, metavar="ADDR",
                   help="existing Dask scheduler, e.g. tcp://host:8786 (with --executor dask)")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="parallel episodes [2]")
    p.add_argument("--segmenter", choices=["onnx", "lite", "classical"], default=None,
                   help="particle segmenter: onnx (the shipped standard model), lite (its ~2x faster "
                        "distilled variant) or classical (Otsu + watershed) [onnx if shipped, else classical]")
    p.add_argument("--fast", action="store_true", help="smaller frames (384×512) for smoke runs")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="cap frames per episode")
    p.add_argument("--max-instrument-s", type=float, default=None, metavar="S",
                   help="cap instrument seconds per episode")
    p.add_argument("--target-rel-precision", type=float, default=None, metavar="R",
                   help="override every scenario's target (e.g. 0.05)")
    p.add_argument("--policy-option", action="append", default=None, metavar="NAME=VALUE",
                   help="option for the policies that take it, e.g. field_choice=size_blind (bayes); repeatable")
    p.add_argument("--no-plots", action="store_true", help="do not write PNGs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_check_option(p: argparse.ArgumentParser) -> None:
    """`--check FILE`: compare the figures with a thresholds file; exit 1 naming each regression."""
    p.add_argument("--check", default=None, metavar="FILE",
                   help="thresholds TOML (e.g. scenarios/thresholds.toml); exit 1 naming every figure that regressed")


def add_agent_parser(kinds: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `emtwin bench agent` to the `bench` kinds."""
    a = kinds.add_parser(
        "agent", help="policies on scenarios over seeds: instrument time, dose, success, focus figures",
        description="Run each policy on each scenario for several seeds (episodes in parallel) and print, per "
                    "scenario and policy, mean instrument seconds and electrons, success rate, focus frames per "
                    "refocus, focus error p95 in depths of field, and ratios to oracle and to bayes.")
    add_sweep_options(a)
    a.set_defaults(func=run_agent_command)
    return a


def _policy_options(policies: list[str], items: list[str] | None) -> dict[str, Any]:
    """`--policy-option` values, each checked against a selected policy that takes it."""
    from ..policies import POLICIES, parse_policy_options

    out: dict[str, Any] = {}
    for item in items or []:
        name = item.partition("=")[0].strip()
        takers = [p for p in policies if p in POLICIES and name in POLICIES[p].option_names]
        if not takers:
            raise ValueError(f"--policy-option {item!r}: taken by none of the policies {policies}")
        out.update(parse_policy_options(takers[0], [item]))
    return out


def run_agent_command(args: argparse.Namespace) -> int:
    """`emtwin bench agent`: run, print the table (and the check), write --out; 1 on a regression."""
    from ..policies import POLICIES
    from .agent_bench import run_agent_benchmark

    if args.workers < 1:
        raise ValueError(f"--workers = {args.workers}: must be >= 1")
    if args.scheduler and args.executor != "dask":
        raise ValueError(f"--scheduler = {args.scheduler!r}: only with --executor dask")
    scenarios = _split(args.scenarios) or sem_scenarios()
    policies = _split(args.policies) or list(POLICIES)
    result = run_agent_benchmark(
        scenarios, policies, args.seeds, out=args.out, thresholds=args.check, executor=args.executor,
        workers=args.workers, scheduler=args.scheduler, segmenter=args.segmenter or default_segmenter(),
        fast=args.fast, max_frames=args.max_frames, max_instrument_s=args.max_instrument_s,
        target_rel_precision=args.target_rel_precision, progress=not args.no_progress, plots=not args.no_plots,
        split=args.split, policy_options=_policy_options(policies, args.policy_option))
    print(result["table"])
    failed = [e for e in result["episodes"] if e.get("error")]
    for e in failed:
        print(f"failed episode: {e['scenario']}/{e['policy']} seed {e['seed']}: {e['error']}")
    if args.out:
        print(f"wrote {Path(args.out) / 'results.json'}")
    if "check_text" in result:
        print(result["check_text"])
    return 0 if result["ok"] else EXIT_REGRESSION


def apply_check(result: dict[str, Any], args: argparse.Namespace, bench: str) -> int:
    """For render/remote/perception: check `result` against `args.check` (if given); print; 0 or 1.

    With `args.out`, the outcomes are also written to `<out>/check.json`.
    """
    path = getattr(args, "check", None)
    if not path:
        return 0
    from .thresholds import check_results

    report = check_results(result, path, bench)
    print(report.format())
    out = getattr(args, "out", None)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "check.json").write_text(json.dumps(report.to_json(), indent=2))
    return 0 if report.ok else EXIT_REGRESSION


def main(argv: list[str] | None = None) -> int:
    """`python -m agent.bench.cli agent …`: the same as `emtwin bench agent …`."""
    parser = argparse.ArgumentParser(prog="python -m agent.bench.cli")
    add_agent_parser(parser.add_subparsers(dest="kind", metavar="KIND", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"emtwin bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
