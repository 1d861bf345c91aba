"""`emtwin adapt DIR`: a tiny smoke run of both self-supervised methods, and refusals."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # perception.train needs the training extras

from perception.train.convnext import NetConfig, UNet  # noqa: E402
from perception.train.weights import extract_prefix, save_state  # noqa: E402

TINY = NetConfig(dims=(8, 16, 16, 16), depths=(1, 1, 1, 1), dec_dims=(16, 8, 8, 8), fine_chans=4)


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """A folder of two unlabelled PNG frames and a tiny segmenter (weights + JSON record)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("adapt")
    folder = root / "mine"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray((rng.random((96, 128)) * 255).astype(np.uint8)).save(folder / f"f{k}.png")
    torch.manual_seed(0)
    weights = save_state(UNet(TINY), root / "tiny_weights.npz")
    (root / "tiny.json").write_text(json.dumps({"net": TINY.to_dict()}))
    return folder, weights


def _argv(folder, weights, out, *extra):
    return ["adapt", str(folder), "--out", str(out), "--init-weights", str(weights), "--data", "synth",
            "--n-scenes", "2", "--n-unlabelled-scenes", "2", "--scene-px", "96", "--pretrain-steps", "2",
            "--finetune-steps", "2", "--batch", "2", "--crop", "64", "--no-int8", *extra]


def _same(a, b) -> bool:
    with np.load(a) as x, np.load(b) as y:
        return all(np.array_equal(x[k], y[k]) for k in x.files)


@pytest.mark.parametrize("method", ["fcmae", "unet"])
def test_adapt_writes_a_segmenter_that_runs(start, tmp_path, method):
    from agent.cli import main
    from perception import Segmenter

    folder, weights = start
    extra = ["--method", method]
    if method == "fcmae":
        extra += ["--encoder", str(extract_prefix(weights, "encoder.", tmp_path / "enc.npz"))]
    assert main(_argv(folder, weights, tmp_path / "out", *extra)) == 0
    out = tmp_path / "out"
    rec = json.loads((out / "segmenter_adapted.json").read_text())
    assert rec["method"] == method and all((out / f).exists() for f in rec["files"])
    assert rec["pretrain"]["kind"] == ("mim_unet" if method == "unet" else "fcmae_encoder")
    assert rec["pretrain"]["n_images"] == 4  # 2 frames of DIR + 2 generated scenes
    assert rec["finetune"]["steps_done"] == 2
    if method == "unet":  # the fine-tuning continued from the MIM-trained U-Net, not the start
        assert rec["finetune"]["init_weights"].endswith("segmenter_adapted_mim_weights.npz")
        assert not _same(out / "segmenter_adapted_mim_weights.npz", weights)
    img = (np.random.default_rng(1).random((96, 160)) * 255).astype(np.uint8)
    labels, table = Segmenter(out / "segmenter_adapted.onnx", tile=64, overlap=16).segment(img, 5e-9)
    assert labels.shape == img.shape and len(table) == labels.max()


def test_adapt_refuses_bad_options(start, tmp_path):
    from agent.cli import main

    folder, weights = start
    assert main(_argv(folder, weights, tmp_path, "--method", "unet", "--encoder", str(weights))) == 2
    assert main(_argv(folder, tmp_path / "missing_weights.npz", tmp_path)) == 2
    assert main(_argv(tmp_path / "no_such_dir", weights, tmp_path)) == 2
    assert not list(tmp_path.glob("*.onnx"))


def test_pretrain_unet_default_name_keeps_fcmae_files(start, tmp_path):
    """`train pretrain --method unet` without --name writes mim*, never the FCMAE encoder's
    file names (with the default --out those are the shipped fcmae_encoder.*)."""
    from agent.cli import main

    _, weights = start
    assert main(["train", "pretrain", "--method", "unet", "--init", str(weights), "--data", "synth", "--n-scenes", "2",
                 "--scene-px", "96", "--steps", "1", "--batch", "2", "--crop", "64", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mim.json", "mim.npz", "mim_weights.npz"]
    assert json.loads((tmp_path / "mim.json").read_text())["net"]["dims"] == list(TINY.dims)


def test_pretrain_records_totals_over_a_chain_of_runs(start, tmp_path):
    """A run continuing another (`--init`) records the steps and training time of the chain."""
    from agent.cli import main

    _, weights = start
    argv = ["train", "pretrain", "--method", "unet", "--data", "synth", "--n-scenes", "2", "--scene-px", "96",
            "--steps", "2", "--batch", "2", "--crop", "64"]
    assert main([*argv, "--init", str(weights), "--out", str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a" / "mim.json").read_text())
    assert first["steps_total"] == 2  # tiny.json has no steps: the chain starts here
    assert main([*argv, "--init", str(tmp_path / "a" / "mim_weights.npz"), "--out", str(tmp_path / "b")]) == 0
    second = json.loads((tmp_path / "b" / "mim.json").read_text())
    assert second["steps_done"] == 2 and second["steps_total"] == 4
    assert second["train_time_total_s"] == pytest.approx(first["train_time_s"] + second["train_time_s"], abs=0.11)


def test_a_malformed_weights_record_is_named(tmp_path):
    from perception.train.commands import _weights_record

    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="x.json: the record of x_weights.npz is not valid JSON"):
        _weights_record(tmp_path / "x_weights.npz")
    assert _weights_record(tmp_path / "missing_weights.npz") == {}
