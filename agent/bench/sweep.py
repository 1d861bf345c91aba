"""Benchmark sweeps: scenarios × policies × seeds, run by a local process pool or by Dask.

`expand` turns a selection into `EpisodeSpec`s; `run_sweep` runs them and returns one result
per spec, in spec order, whichever executor ran them. An episode is `run_episode(**spec)`, a
pure function of its arguments, so the results are identical under every executor (wall
times aside). A failing episode is reported (scenario, policy, seed, error) and the sweep goes
on. Executors:

- ``local``: `concurrent.futures.ProcessPoolExecutor` with spawned workers (one BLAS/OpenMP
  thread each); ``workers=1`` runs the episodes in this process, one after the other.
- ``dask``: a Dask distributed `Client` on a `LocalCluster` bound to 127.0.0.1 (no dashboard),
  or on an existing cluster given by its scheduler address (``tcp://host:8786``).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

EXECUTORS = ("local", "dask")
SEGMENTERS = ("onnx", "lite", "classical")
#: environment of every worker: one thread per library, so N workers use N cores
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
#: wall-clock fields dropped by `comparable` (everything else is deterministic)
WALL_KEYS = ("wall_s", "traceback")


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode: scenario (shipped name or TOML path), policy, twin seed and run options."""

    scenario: str
    policy: str
    seed: int
    segmenter: str = "classical"
    fast: bool = False
    max_frames: int | None = None
    max_instrument_s: float | None = None
    target_rel_precision: float | None = None
    policy_options: tuple[tuple[str, Any], ...] = ()  # (name, value) pairs the policy takes
    label: str = ""  # the scenario's name (results are grouped by it)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `run_episode`."""
        d = asdict(self)
        d.pop("label")
        return d

    def describe(self) -> str:
        return f"{self.label or self.scenario}/{self.policy} seed {self.seed}"


def benchmark_seeds(train_seeds: Sequence[int], test_seeds: Sequence[int], n: int) -> list[int]:
    """The first `n` test seeds; past the end of the list, the next integers not used for training."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"seeds = {n!r}: must be an integer >= 1")
    seeds = list(test_seeds)[:n]
    cand = max(list(test_seeds) + list(train_seeds) + [0]) + 1
    while len(seeds) < n:
        if cand not in train_seeds and cand not in seeds:
            seeds.append(cand)
        cand += 1
    return seeds


def expand(scenarios: Sequence[str], policies: Sequence[str], n_seeds: int, *, segmenter: str = "classical",
           fast: bool = False, max_frames: int | None = None, max_instrument_s: float | None = None,
           target_rel_precision: float | None = None, split: str = "test",
           policy_options: dict[str, Any] | None = None) -> list[EpisodeSpec]:
    """Every (scenario, policy, seed) episode, scenarios validated; seeds from their test lists, or
    with split="train" the first N train seeds (for calibration runs that no benchmark may score).
    policy_options: {name: value} given to each policy that takes that option (`option_names`);
    an option that no selected policy takes is an error."""
    from twin import load_scenario
    from twin.config import scenario_path, scenarios_dir

    from ..policies import POLICIES

    if not scenarios or not policies:
        raise ValueError("scenarios and policies: must each name at least one")
    if split not in ("test", "train"):
        raise ValueError(f"split = {split!r}: must be 'test' or 'train'")
    for p in policies:
        if p not in POLICIES:
            raise ValueError(f"policy = {p!r}: must be one of {', '.join(POLICIES)}")
    if segmenter not in SEGMENTERS:
        raise ValueError(f"segmenter = {segmenter!r}: must be one of {', '.join(SEGMENTERS)}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames = {max_frames}: must be >= 1")
    if max_instrument_s is not None and not max_instrument_s > 0:
        raise ValueError(f"max_instrument_s = {max_instrument_s}: must be > 0")
    if target_rel_precision is not None and not 0 < target_rel_precision < 1:
        raise ValueError(f"target_rel_precision = {target_rel_precision}: must be in (0, 1)")
    opts = dict(policy_options or {})
    unused = [k for k in opts if not any(k in POLICIES[p].option_names for p in policies)]
    if unused:
        raise ValueError(f"policy options {unused}: taken by none of the policies {list(policies)}")
    specs, labels = [], {}
    for name in dict.fromkeys(scenarios):  # in order, each once
        sc = load_scenario(name)  # raises on unknown names and invalid files
        path = scenario_path(name)
        ref = name if path == scenarios_dir() / f"{name}.toml" else str(path.resolve())
        if labels.setdefault(sc.name, ref) != ref:
            raise ValueError(f"scenarios = {labels[sc.name]!r} and {ref!r}: both are named {sc.name!r}; "
                             "results are grouped by name, so names must differ")
        for policy in dict.fromkeys(policies):
            seeds = (benchmark_seeds(sc.train_seeds, sc.test_seeds, n_seeds) if split == "test"
                     else list(sc.train_seeds)[:n_seeds])
            mine = tuple(sorted((k, v) for k, v in opts.items() if k in POLICIES[policy].option_names))
            for seed in seeds:
                specs.append(EpisodeSpec(ref, policy, seed, segmenter, fast, max_frames, max_instrument_s,
                                         target_rel_precision, mine, label=sc.name))
    return specs


def run_one(spec: EpisodeSpec) -> dict[str, Any]:
    """Run one episode (in a worker); never raises: errors come back in the result."""
    try:
        from .episode import run_episode

        result = run_episode(**spec.kwargs())
    except Exception as exc:  # noqa: BLE001 - e.g. an import failure in a worker
        result = {"scenario": spec.scenario, "policy": spec.policy, "seed": spec.seed, "success": False,
                  "error": f"{type(exc).__name__}: {exc}"}
    return _label(result, spec)


def _label(result: dict[str, Any], spec: EpisodeSpec) -> dict[str, Any]:
    result = dict(result)
    result["scenario_file"] = spec.scenario
    result["scenario"] = spec.label or spec.scenario
    result["options"] = {k: v for k, v in spec.kwargs().items() if k not in ("scenario", "policy", "seed")}
    return result


def _failed(spec: EpisodeSpec, exc: BaseException) -> dict[str, Any]:
    return _label({"scenario": spec.scenario, "policy": spec.policy, "seed": spec.seed, "success": False,
                   "error": f"{type(exc).__name__}: {exc}"}, spec)


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """`result` without wall-clock fields: what must be identical across executors."""
    return {k: v for k, v in result.items() if k not in WALL_KEYS}


def _init_worker() -> None:
    os.environ.update(WORKER_ENV)


class _Progress:
    """A tqdm bar over episodes; failures are printed above it with their seed and error."""

    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="episodes", unit="ep", disable=not enabled, dynamic_ncols=True)
        self.failed = 0
        self.enabled = enabled

    def done(self, spec: EpisodeSpec, result: dict[str, Any]) -> None:
        if result.get("error"):
            self.failed += 1
            msg = f"episode {spec.describe()} failed: {result['error']}"
            if self.enabled:
                self.bar.write(msg, file=sys.stderr)
            else:
                print(msg, file=sys.stderr, flush=True)
        self.bar.set_postfix_str(f"failed {self.failed}")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_sweep(specs: Sequence[EpisodeSpec], executor: str = "local", workers: int = 2, scheduler: str | None = None,
              progress: bool = True, on_result: Callable[[dict[str, Any]], None] | None = None,
              dask_processes: bool = True) -> list[dict[str, Any]]:
    """Run every spec; return their results in spec order (errors reported, never raised).

    `on_result` is called with each result as it completes (e.g. to append it to a file).
    `scheduler` (dask only) is the address of an existing cluster; without it a LocalCluster
    of `workers` processes (threads if `dask_processes` is False) on 127.0.0.1 runs them.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor = {executor!r}: must be one of {', '.join(EXECUTORS)}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers = {workers!r}: must be an integer >= 1")
    if scheduler is not None and executor != "dask":
        raise ValueError(f"scheduler = {scheduler!r}: only with executor 'dask'")
    results: list[dict[str, Any] | None] = [None] * len(specs)
    bar = _Progress(len(specs), progress)

    def finish(i: int, result: dict[str, Any]) -> None:
        results[i] = result
        bar.done(specs[i], result)
        if on_result is not None:
            on_result(result)

    try:
        if executor == "dask":
            _run_dask(specs, workers, scheduler, dask_processes, finish)
        elif workers == 1 or len(specs) == 1:
            for i, spec in enumerate(specs):
                finish(i, run_one(spec))
        else:
            _run_pool(specs, workers, finish)
    finally:
        bar.close()
    return [r for r in results if r is not None]


def _run_pool(specs: Sequence[EpisodeSpec], workers: int, finish: Callable[[int, dict], None]) -> None:
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding threads (torch, tqdm)
    with ProcessPoolExecutor(max_workers=min(workers, len(specs)), mp_context=ctx,
                             initializer=_init_worker) as pool:
        futures = {pool.submit(run_one, spec): i for i, spec in enumerate(specs)}
        try:
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    result = fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker died (e.g. out of memory)
                    result = _failed(specs[i], exc)
                finish(i, result)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


@contextmanager
def local_dask_cluster(workers: int = 2, processes: bool = True) -> Iterator[Any]:
    """A Dask LocalCluster on 127.0.0.1 (or in-process with `processes=False`), no dashboards; closed on exit."""
    from dask.distributed import LocalCluster

    # processes: TCP on loopback only; threads: in-process transport (inproc://), nothing listens
    where = {"host": "127.0.0.1"} if processes else {}
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None,
                           worker_dashboard_address=None, **where)
    try:
        yield cluster
    finally:
        cluster.close()


def _run_dask(specs: Sequence[EpisodeSpec], workers: int, scheduler: str | None, processes: bool,
              finish: Callable[[int, dict], None]) -> None:
    from dask.distributed import as_completed as dask_completed

    with _dask_client(workers, scheduler, processes) as client:
        futures = [client.submit(run_one, spec, key=f"emtwin-episode-{i}", pure=False) for i, spec in enumerate(specs)]
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in dask_completed(futures):
            i = index[fut.key]
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker was lost
                result = _failed(specs[i], exc)
            finish(i, result)


@contextmanager
def _dask_client(workers: int, scheduler: str | None, processes: bool) -> Iterator[Any]:
    from dask.distributed import Client

    if scheduler is not None:
        client = Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    with local_dask_cluster(workers, processes) as cluster:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()


def append_jsonl(path: str | Path) -> Callable[[dict[str, Any]], None]:
    """An `on_result` callback appending each result as one JSON line to `path` (flushed)."""
    p = Path(path)

    def write(result: dict[str, Any]) -> None:
        with open(p, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(result, default=str) + "\n")

    return write
