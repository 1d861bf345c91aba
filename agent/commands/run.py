"""`emtwin run`: the autonomous experiment (default: the embedded twin, policy bayes)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="measure a particle size distribution autonomously and write a run directory",
        description="Find particles, keep them in focus and measure the mean equivalent diameter to the "
        "requested precision, then stop. Writes frames/, particles.csv, journal.jsonl, summary.json, report.html.",
    )
    p.add_argument("scenario", nargs="?", default="default", help="twin scenario name or TOML path [default]")
    p.add_argument("--policy", default="bayes", help="bayes (default), expert, spiral, raster, oracle (twin only)")
    p.add_argument("--driver", default="twin", help="twin (default), null, tcp://HOST:PORT, ipc://PATH, autoscript, tescan")
    p.add_argument("--seed", type=int, default=None, help="twin seed [scenario's]")
    p.add_argument("--target-rel-precision", type=float, default=None,
                   help="half-width of the credible interval relative to the mean [scenario's, else 0.02]")
    p.add_argument("--credibility", type=float, default=None, help="credible-interval level [0.95]")
    p.add_argument("--max-instrument-s", type=float, default=None, help="instrument-time budget (s)")
    p.add_argument("--max-frames", type=int, default=None, help="frame budget")
    p.add_argument("--out", default=None, help="run directory [runs/<time>-<policy>]")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue a killed run from its directory")
    p.add_argument("--no-frames", action="store_true", help="do not write frame TIFFs")
    p.add_argument("--timeout-s", type=float, default=None, help="per-call timeout for remote drivers (s)")
    p.add_argument("--keys", default=None, help="CurveZMQ key directory for remote drivers")
    p.add_argument("--host", default=None, help="vendor driver host")
    p.add_argument("--port", type=int, default=None, help="vendor driver port")
    p.add_argument("--policy-option", action="append", default=None, metavar="NAME=VALUE",
                   help="policy option, e.g. field_choice=size_blind or frame_scale=1 (bayes); repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _driver_options(args: argparse.Namespace) -> dict:
    opts = {}
    if args.driver.startswith(("tcp://", "ipc://")):
        if args.timeout_s is not None:
            opts["timeout_s"] = args.timeout_s
        if args.keys:
            opts["client_keys"] = args.keys
    elif args.driver in ("autoscript", "tescan"):
        if args.host:
            opts["host"] = args.host
        if args.port:
            opts["port"] = args.port
    return opts


def run(args: argparse.Namespace) -> int:
    from ..policies import parse_policy_options

    options = parse_policy_options(args.policy, args.policy_option)  # validate before connecting to anything
    if args.resume:
        if options:
            raise ValueError("--policy-option with --resume: a resumed run keeps the options it started with")
        return _resume(args)
    from ..connect import open_driver
    from ..runner import RunConfig
    from ..session import Budget

    scope = open_driver(args.driver, scenario=args.scenario, seed=args.seed, **_driver_options(args))
    task, budget = _scenario_defaults(scope)
    cfg = RunConfig(
        out=args.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}-{args.policy}",
        policy=args.policy,
        driver=args.driver,
        scenario=args.scenario if args.driver == "twin" else None,
        seed=getattr(scope, "seed", args.seed),
        target_rel_precision=args.target_rel_precision or task.get("target_rel_precision", 0.02),
        credibility=args.credibility or task.get("credibility", 0.95),
        per_mode=task.get("per_mode", False),
        budget=Budget(max_instrument_s=args.max_instrument_s or budget.get("max_instrument_s", 3600.0),
                      max_electrons=budget.get("max_electrons", 1e15),
                      max_frames=args.max_frames or budget.get("max_frames", 2000)),
        save_frames=not args.no_frames, policy_options=options,
    )
    return _execute(cfg, scope, state=None, resume=False, quiet=args.quiet)


def _scenario_defaults(scope: object) -> tuple[dict, dict]:
    sc = getattr(scope, "scenario", None)
    if sc is None:
        return {}, {}
    from dataclasses import asdict

    return asdict(sc.task), asdict(sc.budget)


def _resume(args: argparse.Namespace) -> int:
    from ..connect import open_driver
    from ..runner import load_checkpoint

    blob = load_checkpoint(args.resume)
    cfg = blob["config"]
    scope = blob["scope"]
    if scope is None:
        scope = open_driver(cfg.driver, scenario=cfg.scenario, seed=cfg.seed, **_driver_options(args))
    print(f"resuming {args.resume}: {len(blob['state'].catalog)} particles, {len(blob['state'].fields)} fields so far")
    return _execute(cfg, scope, state=blob["state"], resume=True, quiet=args.quiet)


def _execute(cfg, scope, state, resume: bool, quiet: bool) -> int:
    from perception import Segmenter

    from ..groundtruth import OracleTruth, add_truth, is_twin
    from ..report import write_report
    from ..runner import Experiment

    twin = is_twin(scope)
    kwargs = {"truth": OracleTruth(scope)} if cfg.policy == "oracle" and twin else {}
    exp = Experiment(cfg, scope, Segmenter(), state=state, resume=resume, progress=not quiet, policy_kwargs=kwargs)
    if resume:
        exp.journal.write("resume", particles=len(exp.session.catalog), fields=len(exp.session.state.fields))
    summary = exp.run()
    true_d = add_truth(summary, scope, exp.session.state) if twin else None
    exp.dir.summary.write_text(json.dumps(summary, indent=2))
    write_report(exp.dir.report, summary, exp.session.state, true_d)
    _print_summary(summary, Path(cfg.out))
    scope.close()
    return 0 if summary["particle_count"] > 0 else 1


def _print_summary(s: dict, out: Path) -> None:
    mean = s.get("mean_diameter_m")
    if mean:
        lo, hi = s["credible_interval_m"]
        print(f"mean equivalent diameter {mean * 1e9:.2f} nm, {100 * s['credibility']:.0f} % CI "
              f"[{lo * 1e9:.2f}, {hi * 1e9:.2f}] nm (±{100 * s['rel_half_width']:.2f} %), {s['particle_count']} particles")
    else:
        print(f"no estimate: {s['particle_count']} particles measured")
    if "true_mean_diameter_m" in s:
        print(f"twin ground truth: {s['true_mean_diameter_m'] * 1e9:.2f} nm (error {100 * s.get('rel_error', float('nan')):+.2f} %)")
    print(f"instrument time {s['instrument_s']:.1f} s, {s['electrons']:.3g} electrons, frames {s['frames_by_type']}, "
          f"target {'reached' if s['target_reached'] else 'NOT reached'}")
    print(f"run directory: {out}")
