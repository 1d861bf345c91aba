"""Sweep executors: local process pool and Dask give identical results; failures are reported."""
from __future__ import annotations

import psutil
import pytest

from agent.bench.sweep import (EpisodeSpec, benchmark_seeds, comparable, expand, local_dask_cluster, run_one,
                               run_sweep)

LOOPBACK = ("127.0.0.1", "::1")


@pytest.fixture(scope="module")
def specs() -> list[EpisodeSpec]:
    """A tiny sweep: two short episodes and one that fails (unknown segmenter)."""
    good = expand(["default"], ["bayes", "raster"], 1, segmenter="classical", fast=True, max_frames=6)
    bad = EpisodeSpec("default", "bayes", 100, segmenter="no-such-segmenter", fast=True, max_frames=6,
                      label="default")
    return good + [bad]


@pytest.fixture(scope="module")
def local_results(specs) -> list[dict]:
    return run_sweep(specs, executor="local", workers=2, progress=False)


def _listening_addresses() -> list[str]:
    """Local addresses of every listening socket of this process and its children."""
    me = psutil.Process()
    addrs = []
    for proc in [me] + me.children(recursive=True):
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        addrs += [c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN]
    return addrs


def test_failing_episode_is_reported_and_the_others_run(specs, local_results):
    assert [(r["policy"], r["seed"]) for r in local_results] == [(s.policy, s.seed) for s in specs]
    good, bad = local_results[:2], local_results[2]
    assert all(not r.get("error") for r in good)
    assert all(r["frames_by_type"] for r in good)
    assert "no-such-segmenter" in bad["error"] and bad["success"] is False and bad["seed"] == 100


def test_local_and_dask_executors_give_identical_results(specs, local_results):
    seen: list[list[str]] = []

    def probe(_result: dict) -> None:  # called while the cluster is up
        seen.append(_listening_addresses())

    dask_results = run_sweep(specs, executor="dask", workers=2, progress=False, on_result=probe)
    assert [comparable(r) for r in dask_results] == [comparable(r) for r in local_results]
    assert seen and any(seen), "the Dask cluster should listen somewhere"
    assert all(ip in LOOPBACK for addrs in seen for ip in addrs), seen  # nothing binds a non-loopback address


def test_existing_scheduler_and_serial_run_agree(specs, local_results):
    with local_dask_cluster(workers=1, processes=False) as cluster:
        via_scheduler = run_sweep(specs[:1], executor="dask", scheduler=cluster.scheduler_address, progress=False)
    serial = [run_one(specs[1])]
    assert comparable(via_scheduler[0]) == comparable(local_results[0])
    assert comparable(serial[0]) == comparable(local_results[1])


def test_train_split_uses_the_scenarios_train_seeds():
    from twin import load_scenario

    specs = expand(["default"], ["bayes"], 3, split="train")
    assert [s.seed for s in specs] == list(load_scenario("default").train_seeds)[:3]
    with pytest.raises(ValueError, match="split"):
        expand(["default"], ["bayes"], 1, split="validation")


def test_seeds_come_from_the_test_list_then_avoid_training_seeds():
    assert benchmark_seeds([0, 1], [100, 101, 102], 2) == [100, 101]
    assert benchmark_seeds([103, 104], [100, 101, 102], 5) == [100, 101, 102, 105, 106]
    with pytest.raises(ValueError, match="seeds"):
        benchmark_seeds([0], [100], 0)


def test_expand_validates_its_selection(tmp_path):
    specs = expand(["default", "sparse"], ["bayes", "oracle"], 2)
    assert len(specs) == 8 and {s.label for s in specs} == {"default", "sparse"}
    assert [s.seed for s in specs if s.label == "sparse" and s.policy == "bayes"] == [110, 111]
    own = tmp_path / "mine.toml"
    own.write_text('name = "mine"\ntest_seeds = [7]\ntrain_seeds = [1]\n')
    (spec,) = expand([str(own)], ["bayes"], 1)
    assert spec.label == "mine" and spec.scenario == str(own.resolve()) and spec.seed == 7
    assert len(expand(["default", "default"], ["bayes", "bayes"], 1)) == 1
    twin_file = tmp_path / "other.toml"
    twin_file.write_text('name = "default"\n')
    with pytest.raises(ValueError, match="both are named 'default'"):
        expand(["default", str(twin_file)], ["bayes"], 1)
    with pytest.raises(ValueError, match="policy = 'nope'"):
        expand(["default"], ["nope"], 1)
    with pytest.raises(FileNotFoundError):
        expand(["no-such-scenario"], ["bayes"], 1)
    with pytest.raises(ValueError, match="executor"):
        run_sweep(specs, executor="ray")
    with pytest.raises(ValueError, match="scheduler"):
        run_sweep(specs, executor="local", scheduler="tcp://127.0.0.1:8786")
