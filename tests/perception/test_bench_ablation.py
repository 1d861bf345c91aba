"""The SSL ablation section: ERR per label set, its mean and standard error, model discovery."""
import argparse
import math
import shutil

import pytest

import perception
from perception import bench
from .test_bench_real import _disks


def test_err_rate_hand_cases():
    assert bench.err_rate(0.5, 0.35) == pytest.approx(0.3)
    assert bench.err_rate(0.4, 0.5) == pytest.approx(-0.25)  # pretraining hurt
    assert math.isnan(bench.err_rate(0.0, 0.0))


def _touch(d, *stems):
    d.mkdir(parents=True, exist_ok=True)
    for s in stems:
        (d / f"{s}.onnx").write_bytes(b"")


def test_ablation_sets_needs_the_random_init_baseline(tmp_path):
    _touch(tmp_path / "seed0", "nossl8", "ssl8", "mim8")
    _touch(tmp_path / "seed1", "nossl8", "ssl8")
    _touch(tmp_path / "seed2", "ssl8")  # no baseline: not a label set
    sets = bench.ablation_sets(tmp_path)
    assert list(sets) == ["seed0", "seed1"]
    assert set(sets["seed0"]) == {"none", "fcmae", "unet-mim"} and set(sets["seed1"]) == {"none", "fcmae"}
    flat = tmp_path / "flat"
    _touch(flat, "nossl8", "ssl8")
    assert list(bench.ablation_sets(flat)) == ["flat"]
    assert bench.ablation_sets(tmp_path / "missing") == {}


def test_mean_and_standard_error_over_label_sets(monkeypatch):
    aji = {"a/none": 0.5, "a/ssl": 0.65, "b/none": 0.6, "b/ssl": 0.68, "a/mim": 0.4}
    monkeypatch.setattr(perception, "Segmenter", lambda path: path)
    monkeypatch.setattr(bench, "_seg_scores", lambda pairs, seg: {"aji_plus": aji[seg], "f1_50": aji[seg]})
    sets = {"a": {"none": "a/none", "fcmae": "a/ssl", "unet-mim": "a/mim"}, "b": {"none": "b/none", "fcmae": "b/ssl"}}
    out = bench.bench_ablation_sets(sets, {"twin": [None]})
    row = out["fcmae on twin"]
    # ERR 0.3 on set a ((0.5-0.35)/0.5) and 0.2 on set b ((0.4-0.32)/0.4)
    assert row["err_aji"] == pytest.approx(0.25) and row["err_aji_se"] == pytest.approx(0.05)
    assert row["n_label_sets"] == 2 and row["aji_random_init"] == pytest.approx(0.55)
    assert row["err_aji_per_set"] == pytest.approx({"a": 0.3, "b": 0.2})
    assert "a:0.300 b:0.200" in bench.format_table({"ablation": out})
    mim = out["unet-mim on twin"]
    assert mim["n_label_sets"] == 1 and mim["err_aji"] == pytest.approx(-0.2) and math.isnan(mim["err_aji_se"])


def test_identical_fine_tunings_reduce_no_error(tiny_model, tmp_path):
    onnx, _ = tiny_model
    (tmp_path / "seed0").mkdir()
    for stem in ("nossl8", "ssl8"):
        shutil.copy(onnx, tmp_path / "seed0" / f"{stem}.onnx")
        shutil.copy(onnx.with_suffix(".json"), tmp_path / "seed0" / f"{stem}.json")
    out = bench.bench_ablation_sets(bench.ablation_sets(tmp_path), {"disks": [_disks(False), _disks(True)]})
    assert set(out) == {"fcmae on disks"}
    row = out["fcmae on disks"]
    assert row["aji_pretrained"] == row["aji_random_init"]
    assert row["err_aji"] == 0.0 or math.isnan(row["err_aji"])
    pair = bench.bench_ablation(onnx, onnx, scenes=[_disks(False)])
    assert pair["with_ssl"]["aji_plus"] == pair["without_ssl"]["aji_plus"]


def _ablation_parser():
    from agent.commands import train

    top = argparse.ArgumentParser()
    train.register(top.add_subparsers(dest="cmd"))
    return top


def test_train_ablation_plans_every_arm_per_label_set(tmp_path):
    from agent.commands.train import _ablation_runs, _arm_factor

    w = tmp_path / "mim_weights.npz"
    w.write_bytes(b"")
    args = _ablation_parser().parse_args(["train", "ablation", "--seeds", "3", "4", "--mim-weights", str(w)])
    runs = _ablation_runs(args)
    assert [(k, name) for k, name, _ in runs] == [(3, "nossl8"), (3, "ssl8"), (3, "mim8"), (4, "nossl8"), (4, "ssl8"), (4, "mim8")]
    assert runs[0][2] == ["--encoder", "none"]  # random init: the encoder learns at the full rate
    assert runs[1][2] == ["--encoder-lr-scale", "0.5"]  # the shipped FCMAE encoder
    assert runs[2][2] == ["--encoder", "none", "--init-weights", str(w), "--encoder-lr-scale", "0.5"]
    args = _ablation_parser().parse_args(["train", "ablation", "--seeds", "0", "--mim-weights", str(w),
                                          "--pretrained-encoder-lr-scale", "0.25"])
    assert [_arm_factor(extra) for _, _, extra in _ablation_runs(args)] == [1.0, 0.25, 0.25]


@pytest.mark.parametrize("argv, msg", [(["--steps", "0"], "--steps 0"), (["--seeds", "-2"], "--seeds -2"),
                                       (["--mim-weights", "no/such.npz"], "--mim-weights no/such.npz"),
                                       (["--pretrained-encoder-lr-scale", "0"], "--pretrained-encoder-lr-scale 0"),
                                       (["--pretrained-encoder-lr-scale", "nan"], "--pretrained-encoder-lr-scale nan")])
def test_train_ablation_rejects_bad_options(argv, msg):
    from agent.commands.train import _ablation_runs

    args = _ablation_parser().parse_args(["train", "ablation", *argv])
    with pytest.raises(ValueError, match=msg):
        _ablation_runs(args)


def test_train_ablation_refuses_to_keep_a_fine_tuning_of_another_length(tmp_path):
    import json

    from agent.commands.train import _check_kept

    rec = tmp_path / "nossl8.json"
    rec.write_text(json.dumps({"train": {"steps": 1500}}))
    _check_kept(rec, 1500)
    with pytest.raises(ValueError, match="1500 steps, not --steps 600"):
        _check_kept(rec, 600)


def test_train_ablation_refuses_to_keep_a_fine_tuning_of_another_encoder_rate(tmp_path):
    import json

    from agent.commands.train import _check_kept

    rec = tmp_path / "mim8.json"
    rec.write_text(json.dumps({"train": {"steps": 600}, "encoder_lr_factor": 0.25}))
    _check_kept(rec, 600, 0.25)
    with pytest.raises(ValueError, match="factor 0.25, not 0.5"):
        _check_kept(rec, 600, 0.5)
    # older records: 0.5 from an FCMAE encoder, else 1
    rec.write_text(json.dumps({"train": {"steps": 600, "encoder_lr_scale": 0.5}, "encoder_init": None}))
    _check_kept(rec, 600, 1.0)
    with pytest.raises(ValueError, match="factor 1, not 0.5"):
        _check_kept(rec, 600, 0.5)
    rec.write_text(json.dumps({"train": {"steps": 600, "encoder_lr_scale": 0.5}, "encoder_init": "enc.npz"}))
    _check_kept(rec, 600, 0.5)


def test_ablation_plot_is_written(tmp_path):
    from perception.bench_plots import plot_ablation

    rows = {"fcmae on twin": {"err_aji": 0.25, "err_aji_se": 0.05, "err_aji_per_set": {"a": 0.3, "b": 0.2}},
            "unet-mim on twin": {"err_aji": -0.2, "err_aji_se": float("nan"), "err_aji_per_set": {"a": -0.2}}}
    path = plot_ablation(rows, tmp_path / "ablation.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_train_ablation_mim_arm_defaults_to_the_shipped_checkpoint(tmp_path, monkeypatch):
    import perception._common as common
    from agent.commands.train import _ablation_runs

    monkeypatch.setattr(common, "MODELS_DIR", tmp_path)

    def names(argv):
        return [n for _, n, _ in _ablation_runs(_ablation_parser().parse_args(["train", "ablation", "--seeds", "0", *argv]))]

    assert names([]) == ["nossl8", "ssl8"]  # nothing shipped: no mim arm
    (tmp_path / "mim_weights.npz").write_bytes(b"")
    runs = _ablation_runs(_ablation_parser().parse_args(["train", "ablation", "--seeds", "0"]))
    assert runs[-1][1] == "mim8" and str(tmp_path / "mim_weights.npz") in runs[-1][2]
    assert names(["--mim-weights", "none"]) == ["nossl8", "ssl8"]


def test_train_ablation_refuses_a_fine_tuning_from_other_weights(tmp_path):
    """The shipped MIM checkpoint keeps its path when it is continued: compare by content."""
    import json

    from agent.commands.train import _check_kept
    from perception.train.commands import file_sha256

    w = tmp_path / "mim_weights.npz"
    w.write_bytes(b"old")
    rec = tmp_path / "mim8.json"
    rec.write_text(json.dumps({"train": {"steps": 600}, "encoder_lr_factor": 0.5, "init_weights_sha256": file_sha256(w)}))
    _check_kept(rec, 600, 0.5, str(w))
    w.write_bytes(b"new")
    with pytest.raises(ValueError, match="other weights"):
        _check_kept(rec, 600, 0.5, str(w))
