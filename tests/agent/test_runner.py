"""Experiments end to end on the twin: policies, run directory, resume, ground-truth isolation."""
from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from agent.groundtruth import OracleTruth, add_truth
from agent.journal import read_journal
from agent.runner import Experiment, load_checkpoint
from tests.agent.conftest import small_config
from twin import TwinMicroscope, truth


def run(tmp_path: Path, segmenter, policy: str, **kw):
    tm = TwinMicroscope("default", seed=1)
    cfg = small_config(tmp_path / policy, policy=policy, **kw)
    extra = {"truth": OracleTruth(tm)} if policy == "oracle" else {}
    exp = Experiment(cfg, tm, segmenter, progress=False, policy_kwargs=extra)
    return tm, exp, exp.run()


@pytest.mark.parametrize("policy", ["bayes", "expert", "spiral", "raster", "oracle"])
def test_policies_finish_within_budget(tmp_path, segmenter, policy):
    tm, exp, summary = run(tmp_path, segmenter, policy, max_frames=80)
    assert summary["particle_count"] > 0
    assert summary["target_reached"] or sum(summary["frames_by_type"].values()) >= 70 or policy == "raster"
    assert sum(summary["frames_by_type"].values()) <= 80 + 12  # a focus call may finish its frames
    if policy != "oracle":
        assert truth.access_log(tm) == []  # the agent never read ground truth


def test_run_directory_contents(tmp_path, segmenter):
    tm, exp, summary = run(tmp_path, segmenter, "bayes")
    d = exp.dir
    summary_file = json.loads(d.summary.read_text())
    assert summary_file["particle_count"] == summary["particle_count"]
    for key in ("mean_diameter_m", "credible_interval_m", "instrument_s", "electrons", "frames_by_type"):
        assert key in summary_file
    assert summary_file["policy_settings"] == {"frame_scale": 2.0, "focus_particles": 6.0, "field_choice": "size_blind"}
    rows = list(csv.DictReader(open(d.particles)))
    assert len(rows) == summary["particle_count"]
    assert {"x_m", "y_m", "diameter_m"} <= set(rows[0])
    frames = sorted(d.frames.glob("*.tif"))
    assert len(frames) == sum(summary["frames_by_type"].values())
    with tifffile.TiffFile(frames[-1]) as tif:
        assert tif.imagej_metadata["unit"] == "micron"
        xres = tif.pages[0].tags["XResolution"].value
    meta = json.loads(tifffile.TiffFile(frames[-1]).pages[0].tags[65000].value)
    assert xres[1] / xres[0] == pytest.approx(meta["pixel_size_m"] * 1e6, rel=1e-4)
    records = list(read_journal(d.journal))
    assert records[0]["kind"] == "start" and records[-1]["kind"] == "stop"
    acquires = [r for r in records if r.get("method") == "acquire"]
    assert len(acquires) == len(frames)
    times = [r["instrument_time_s"] for r in records if r["kind"] == "command"]
    assert times == sorted(times)


def test_truth_comparison_added_after_the_run(tmp_path, segmenter):
    tm, exp, summary = run(tmp_path, segmenter, "bayes")
    assert truth.access_log(tm) == []
    add_truth(summary, tm, exp.session.state)
    assert summary["true_mean_diameter_m"] == pytest.approx(64e-9, rel=0.25)
    assert truth.access_log(tm) == ["particles_in"]


class Crash(Exception):
    pass


def test_resume_after_crash_gives_the_same_particle_table(tmp_path, segmenter):
    tm_ref = TwinMicroscope("default", seed=1)
    ref = Experiment(small_config(tmp_path / "ref"), tm_ref, segmenter, progress=False)
    ref_summary = ref.run()

    fields = {"n": 0}

    assert len(ref.session.state.fields) >= 3

    def crash_on_third(session):
        fields["n"] += 1
        if fields["n"] == 3:
            raise Crash("killed")

    tm = TwinMicroscope("default", seed=1)
    cfg = small_config(tmp_path / "crashed")
    with pytest.raises(Crash):
        Experiment(cfg, tm, segmenter, progress=False, on_field=crash_on_third).run()
    blob = load_checkpoint(cfg.out)
    assert len(blob["state"].fields) == 2
    resumed = Experiment(blob["config"], blob["scope"], segmenter, state=blob["state"], resume=True, progress=False)
    summary = resumed.run()
    assert summary["particle_count"] == ref_summary["particle_count"]
    a = np.loadtxt(ref.dir.particles, delimiter=",", skiprows=1, usecols=(1, 2, 3))
    b = np.loadtxt(resumed.dir.particles, delimiter=",", skiprows=1, usecols=(1, 2, 3))
    assert np.array_equal(a, b)
    assert summary["instrument_s"] == pytest.approx(ref_summary["instrument_s"])


def test_policies_do_not_import_the_twin():
    """Only env, bench, CLI and groundtruth modules may import twin (DESIGN.md)."""
    root = Path(__file__).resolve().parents[2] / "agent"
    allowed = {"env.py", "groundtruth.py", "connect.py"}  # connect: CLI driver opening
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.name in allowed or rel.parts[0] in ("commands", "bench"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "twin" or n.startswith("twin.") for n in names):
                offenders.append(str(rel))
    assert offenders == []


def test_bayes_measures_with_frames_scaled_by_frame_scale(tmp_path, segmenter):
    tm, exp, summary = run(tmp_path, segmenter, "bayes")
    measured = [r for r in read_journal(exp.dir.journal)
                if r.get("method") == "set_scan" and r["result"]["shape_px"] == [512, 768]]
    assert measured, "bayes should measure on 2x the configured 256x384 frame"
    assert exp.session.settings.shape_px == (512, 768)


def test_frame_scale_is_clipped_to_the_scan_generator(tmp_path, segmenter):
    tm = TwinMicroscope("default", seed=1)
    cfg = small_config(tmp_path / "big", policy="bayes", max_frames=10)
    cfg.policy_options = {"frame_scale": 16.0}
    exp = Experiment(cfg, tm, segmenter, progress=False)
    exp.policy.choose_frame()
    rmax, cmax = tm.limits().shape_px_max
    assert exp.session.settings.shape_px == (rmax, cmax)


@pytest.mark.parametrize("bad", [0.0, float("nan"), "2", True, 17])
def test_bad_frame_scale_is_refused(tmp_path, segmenter, bad):
    cfg = small_config(tmp_path / "bad", policy="bayes", max_frames=10)
    cfg.policy_options = {"frame_scale": bad}
    exp = Experiment(cfg, TwinMicroscope("default", seed=1), segmenter, progress=False)
    with pytest.raises(ValueError, match="frame_scale"):
        exp.policy.choose_frame()
