"""Thresholds: file format, checks on agent aggregates and on other benchmarks' results, CLI exit status."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agent.bench import agent_bench
from agent.bench.agent_bench import FIGURES, aggregate, check_agent
from agent.bench.cli import add_agent_parser, apply_check, sem_scenarios
from agent.bench.thresholds import ThresholdError, check_results, load_thresholds
from agent.policies import POLICIES
from twin.config import scenarios_dir

SHIPPED = scenarios_dir() / "thresholds.toml"


def episode(scenario: str, policy: str, seed: int, t: float, e: float, success: bool = True, **kw) -> dict:
    return {"scenario": scenario, "policy": policy, "seed": seed, "instrument_s": t, "electrons": e,
            "success": success, "target_reached": success, "focus_calls": 2, "focus_frames_per_refocus": 3.0,
            "focus_error_dof_p95": 0.4, "rel_error": 0.01, "particle_count": 100, "fields": 10, **kw}


EPISODES = [
    episode("default", "bayes", 100, 10.0, 1e9), episode("default", "bayes", 101, 14.0, 1e9),
    episode("default", "raster", 100, 40.0, 4e9), episode("default", "raster", 101, 56.0, 4e9, success=False),
    episode("default", "oracle", 100, 6.0, 5e8), episode("default", "oracle", 101, 6.0, 5e8),
]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "t.toml"
    p.write_text(text)
    return p


def test_shipped_thresholds_file_is_valid():
    ts = load_thresholds(SHIPPED)
    assert ts and any(t.enforce for t in ts)
    names = set(sem_scenarios()) | {"*", "all"}
    for t in ts:
        assert t.bench != "agent" or t.figure in FIGURES
        assert t.scenario in names, t.scenario
        for pol in t.policy.split("/"):
            assert pol in POLICIES or pol == "*"


def test_deliberately_failing_threshold_is_reported(tmp_path):
    agg = aggregate(EPISODES)
    path = write(tmp_path, """
[[threshold]]
scenario = "default"
policy = "raster/bayes"
figure = "instrument_s"
min = 5.0
[[threshold]]
policy = "bayes/oracle"
figure = "instrument_s"
max = 3.0
[[threshold]]
policy = "*"
figure = "success_rate"
min = 0.9
""")
    report = check_agent(agg, path)
    failed = {o.label: o.value for o in report.regressions}
    assert failed == {"default: raster/bayes instrument_s": pytest.approx(4.0),
                      "default: raster success_rate": pytest.approx(0.5)}
    text = report.format()
    assert "REGRESSED    default: raster/bayes instrument_s = 4 [min 5] (< min 5)" in text
    assert "2 regressions" in text and not report.ok


def test_goals_skips_and_missing_values(tmp_path):
    eps = EPISODES + [{"scenario": "sparse", "policy": "bayes", "seed": 110, "error": "RuntimeError: boom",
                       "success": False}]
    agg = aggregate(eps)
    path = write(tmp_path, """
[[threshold]]
policy = "raster/bayes"
figure = "instrument_s"
min = 5.0
enforce = false
[[threshold]]
scenario = "dense"
figure = "success_rate"
min = 0.5
[[threshold]]
scenario = "sparse"
figure = "instrument_s"
max = 100
[[threshold]]
scenario = "all"
policy = "raster/bayes"
figure = "instrument_s"
min = 3.5
""")
    report = check_agent(agg, path)
    status = {o.label: o.status for o in report.outcomes}
    assert status["default: raster/bayes instrument_s"] == "goal-missed"  # reported, never failing
    assert status["dense: bayes success_rate"] == "skipped"  # not in this run
    assert status["sparse: bayes instrument_s"] == "fail"  # ran, but every episode failed
    assert status["all: raster/bayes instrument_s"] == "pass"  # geometric mean over scenarios (one here: 4)
    assert [o.label for o in report.regressions] == ["sparse: bayes instrument_s"]


@pytest.mark.parametrize("body, match", [
    ('figure = "wall_s"\nmax = 10', "wall-clock"),
    ('figure = "frames_per_s"\nmin = 10', "wall-clock"),
    ('figure = "success_rate"', "needs min or max"),
    ('figure = "success_rate"\nmin = 0.5\ncolour = "red"', "colour"),
    ('figure = "success_rate"\nmin = "high"', "min"),
    ('figure = "success_rate"\nmin = 0.5\nbench = "gpu"', "bench"),
])
def test_bad_threshold_entries_are_rejected(tmp_path, body, match):
    with pytest.raises(ThresholdError, match=match):
        load_thresholds(write(tmp_path, "[[threshold]]\n" + body + "\n"))


def test_other_benchmarks_check_dotted_figures(tmp_path):
    result = {"segmentation": {"f1": 0.62, "ap50": 0.9}, "frames": [{"mae": 0.1}]}
    path = write(tmp_path, """
[[threshold]]
bench = "perception"
figure = "segmentation.f1"
min = 0.7
[[threshold]]
bench = "perception"
figure = "frames.0.mae"
max = 0.2
[[threshold]]
figure = "success_rate"
min = 0.9
""")
    report = check_results(result, path, "perception")
    assert [o.label for o in report.regressions] == ["segmentation.f1"]
    assert len(report.outcomes) == 2  # the agent entry is not this benchmark's
    args = argparse.Namespace(check=str(path), out=str(tmp_path / "o"))
    assert apply_check(result, args, "perception") == 1
    assert (tmp_path / "o" / "check.json").is_file()
    assert apply_check(result, argparse.Namespace(check=None), "perception") == 0


def test_cli_exits_1_and_names_every_regression(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(agent_bench, "run_sweep", lambda specs, **kw: EPISODES)
    path = write(tmp_path, """
[[threshold]]
policy = "raster/bayes"
figure = "instrument_s"
min = 5.0
[[threshold]]
policy = "bayes"
figure = "success_rate"
min = 0.9
""")
    parser = argparse.ArgumentParser()
    add_agent_parser(parser.add_subparsers(dest="kind"))
    out = tmp_path / "out"
    args = parser.parse_args(["agent", "--scenarios", "default", "--policies", "bayes,raster", "oracle",
                              "--seeds", "2", "--segmenter", "classical", "--out", str(out), "--check", str(path),
                              "--no-progress"])
    assert args.func(args) == 1
    text = capsys.readouterr().out
    assert "REGRESSED    default: raster/bayes instrument_s = 4" in text
    assert "1 regression in 2 enforced figures" in text
    assert {"results.json", "results.md", "default.png", "all.png"} <= {p.name for p in out.iterdir()}
    args.check = None
    assert args.func(args) == 0
