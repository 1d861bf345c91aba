"""`emtwin bench KIND`: benchmarks that print figures (agent, render, remote, perception)."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark and print its figures",
                       description="Benchmarks print figures; they are not tests.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    from ..bench.cli import add_agent_parser, add_check_option

    add_agent_parser(kinds)

    r = kinds.add_parser("render", help="twin frames/s at 512² and 1024² with all artifacts on")
    r.add_argument("--scenario", default="default")
    r.add_argument("--frames", type=int, default=20)
    r.add_argument("--mode", choices=["sem", "stem"], default="sem", help="twin mode [sem]")
    r.add_argument("--out", default=None, help="also write results.json here (a directory)")
    add_check_option(r)
    r.set_defaults(func=_render)

    m = kinds.add_parser("remote", help="ZeroMQ round trip and frame throughput on loopback")
    m.add_argument("--calls", type=int, default=2000)
    m.add_argument("--frames", type=int, default=50)
    m.add_argument("--out", default=None)
    add_check_option(m)
    m.set_defaults(func=_remote)

    q = kinds.add_parser("perception", help="segmentation, restoration, focus and speed figures")
    q.add_argument("--quick", action="store_true", help="fewer images (smoke run)")
    q.add_argument("--sections", default=None, metavar="S,S",
                   help="comma-separated subset of twin, scenarios, real, autoscale, ablation, speed, restore, focus [all]")
    q.add_argument("--ablation-dir", default="runs/ablation", metavar="DIR",
                   help="the fine-tunings of `emtwin train ablation` scored by the ablation section [runs/ablation]")
    q.add_argument("--split", choices=("test", "dev"), default="test",
                   help="test: the held-out seeds; dev: other seeds, for choosing hyper-parameters without "
                        "the test sets (sections twin, scenarios, ablation only; their default) [test]")
    q.add_argument("--model", action="append", default=None, metavar="NAME=PATH",
                   help="also score this segmenter .onnx (e.g. one written by `emtwin adapt`) next to the "
                        "shipped one in the twin, scenarios, real, autoscale and speed sections; repeatable")
    q.add_argument("--out", default=None)
    add_check_option(q)
    q.set_defaults(func=_perception)


def parse_models(specs: list[str] | None) -> dict[str, Path] | None:
    """{name: path} of `--model NAME=PATH` options (NAME defaults to the file's stem) after the
    shipped segmenters ("standard", and "lite" when shipped); None without options. Missing or
    non-.onnx files and repeated names are refused."""
    if not specs:
        return None
    from perception._common import shipped_segmenters

    models = shipped_segmenters()
    for spec in specs:
        name, sep, path = spec.partition("=")
        name, path = (name.strip(), Path(path)) if sep else (Path(spec).stem, Path(spec))
        if not name:
            raise ValueError(f"--model {spec}: empty name; use NAME=PATH or PATH")
        if name in models:
            raise ValueError(f"--model {spec}: the name {name!r} is taken (taken: {', '.join(models)})")
        if not path.is_file():
            raise FileNotFoundError(f"--model {spec}: {path}: no such file")
        if path.suffix != ".onnx":
            raise ValueError(f"--model {spec}: {path} is not an .onnx file")
        models[name] = path
    return models


def _threads() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "2")


def _emit(result: dict, table: str, args: argparse.Namespace, bench: str) -> int:
    from ..bench.cli import apply_check

    out = args.out
    print(table)
    if out:
        path = Path(out)
        path.mkdir(parents=True, exist_ok=True)
        (path / "results.json").write_text(json.dumps(result, indent=2))
        (path / "results.md").write_text(table + "\n")
        print(f"wrote {path / 'results.json'}")
    return apply_check(result, args, bench)


def _render(args: argparse.Namespace) -> int:
    _threads()
    if args.frames < 1:
        raise ValueError(f"--frames = {args.frames}: must be >= 1")
    if args.mode == "stem":
        from ..bench.render_stem import format_table, run_stem_render_benchmark

        scenario = "stem-catalyst" if args.scenario == "default" else args.scenario
        result = run_stem_render_benchmark(scenario, frames=args.frames)
    else:
        from ..bench.render import format_table, run_render_benchmark

        result = run_render_benchmark(args.scenario, frames=args.frames)
    return _emit(result, format_table(result), args, "render")


def _remote(args: argparse.Namespace) -> int:
    _threads()
    from drivers.remote.bench import format_table, run_remote_benchmark

    result = run_remote_benchmark(n_calls=args.calls, n_frames=args.frames)
    return _emit(result, format_table(result), args, "remote")


def _perception(args: argparse.Namespace) -> int:
    _threads()
    from perception.bench import format_table, run_perception_benchmark

    sections = tuple(x.strip() for x in args.sections.split(",") if x.strip()) if args.sections else None
    if args.split == "dev" and getattr(args, "check", None):
        raise ValueError("--check with --split dev: thresholds hold for the test split only")
    models = parse_models(args.model)
    result = run_perception_benchmark(sections=sections, quick=args.quick, ablation_dir=args.ablation_dir,
                                      models=models, split=args.split)
    code = _emit(result, format_table(result), args, "perception")
    ablation = result.get("ablation", {})
    if args.out and ablation and "skipped" not in ablation:
        from perception.bench_plots import plot_ablation

        print(f"wrote {plot_ablation(ablation, Path(args.out) / 'ablation.png')}")
    return code
