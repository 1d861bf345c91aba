"""`emtwin bench agent` figures: aggregation, ratios, table, plots and CLI defaults (synthetic episodes)."""
from __future__ import annotations

import argparse

import pytest

from agent.bench.agent_bench import aggregate, format_table, ratio, write_outputs
from agent.bench.cli import add_agent_parser, default_segmenter, sem_scenarios, shipped_segmenter_exists
from tests.agent.test_bench_thresholds import EPISODES, episode


def test_figures_per_scenario_and_policy():
    agg = aggregate(EPISODES + [{"scenario": "default", "policy": "bayes", "seed": 102, "error": "X: y",
                                 "success": False}])
    b = agg["default"]["bayes"]
    assert b["episodes"] == 3 and b["error_rate"] == pytest.approx(1 / 3)
    assert b["success_rate"] == pytest.approx(2 / 3)  # an episode that raised is a failure
    assert b["instrument_s"] == pytest.approx(12.0)  # means leave out the failed episode
    assert b["focus_frames_per_refocus"] == 3.0 and b["focus_error_dof_p95"] == 0.4
    assert agg["default"]["raster"]["success_rate"] == 0.5
    assert list(agg) == ["default", "all"]


def test_coverage_counts_intervals_that_contain_the_truth():
    eps = [episode("default", "bayes", 100 + i, 10.0, 1e9, truth_in_interval=i < 3) for i in range(4)]
    assert aggregate(eps)["default"]["bayes"]["coverage"] == pytest.approx(0.75)


def test_ratios_and_pooled_geometric_mean():
    eps = EPISODES + [episode("sparse", "bayes", 110, 20.0, 1e9), episode("sparse", "raster", 110, 180.0, 1e9)]
    agg = aggregate(eps)
    assert ratio(agg, "default", "raster", "bayes", "instrument_s") == pytest.approx(4.0)
    assert ratio(agg, "sparse", "raster", "bayes", "instrument_s") == pytest.approx(9.0)
    assert ratio(agg, "all", "raster", "bayes", "instrument_s") == pytest.approx(6.0)  # sqrt(4 · 9)
    assert ratio(agg, "sparse", "bayes", "oracle", "instrument_s") is None  # oracle did not run there
    assert ratio(agg, "default", "bayes", "oracle", "electrons") == pytest.approx(2.0)


def test_table_and_outputs(tmp_path):
    agg = aggregate(EPISODES)
    table = format_table(agg)
    rows = [line for line in table.splitlines() if line.startswith("| default |")]
    assert len(rows) == 4  # three policies + the ratio row
    assert "| default | raster | 2 | 50% | 50% | 0% | 48.0 | 4.00e+09 |" in table
    assert "| default | 4.00 | 4.00 | 2.00 | 2.00 |" in table  # raster/bayes and bayes/oracle, time and dose
    result = {"options": {}, "aggregate": agg, "table": table, "episodes": EPISODES}
    written = write_outputs(result, tmp_path)
    assert {p.name for p in written} == {"results.json", "results.md", "default.png", "all.png"}
    assert all(p.stat().st_size > 0 for p in written)


def test_cli_options_and_defaults():
    parser = argparse.ArgumentParser()
    add_agent_parser(parser.add_subparsers(dest="kind"))
    args = parser.parse_args(["agent"])
    assert (args.seeds, args.executor, args.workers, args.check, args.out, args.fast) == (3, "local", 2, None, None,
                                                                                          False)
    args = parser.parse_args(["agent", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:8786", "--fast",
                              "--max-frames", "40", "--segmenter", "onnx"])
    assert (args.scheduler, args.max_frames, args.segmenter) == ("tcp://127.0.0.1:8786", 40, "onnx")
    with pytest.raises(SystemExit):
        parser.parse_args(["agent", "--executor", "ray"])
    names = sem_scenarios()
    assert "default" in names and not any(n.startswith("stem-") for n in names)
    assert default_segmenter() == ("onnx" if shipped_segmenter_exists() else "classical")


def test_make_segmenter_kinds():
    from agent.bench.episode import make_segmenter
    from perception._common import MODELS_DIR

    if (MODELS_DIR / "segmenter_lite.onnx").exists():
        assert make_segmenter("lite").model_path.name == "segmenter_lite.onnx"
    assert make_segmenter("onnx").model_path.name == "segmenter.onnx"
    with pytest.raises(ValueError, match="'onnx', 'lite' or 'classical'"):
        make_segmenter("mask-rcnn")
