"""Segmenter behaviour: smoke training -> ONNX, shapes/dtypes, input errors, tiling, watershed."""
import json

import numpy as np
import pytest
from scipy import ndimage as ndi

from perception import PerceptionInputError, Segmenter
from perception.instances import maps_to_instances, particle_table
from perception.tiling import predict_tiled, tile_starts


def test_smoke_training_exports_loadable_onnx(tiny_model):
    import onnxruntime as ort

    path, rec = tiny_model
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"image": np.zeros((3, 1, 64, 96), np.float32)})[0]
    assert out.shape == (3, 3, 64, 96)
    saved = json.loads(path.with_suffix(".json").read_text())
    assert saved["train"]["seed"] == 0 and saved["steps_done"] == 3


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_segment_shapes_and_table(tiny_model, dtype):
    seg = Segmenter(tiny_model[0], tile=64, overlap=16)
    rng = np.random.default_rng(1)
    img = (rng.random((70, 130)) * (200 if dtype == np.uint8 else 4000)).astype(dtype)
    labels, table = seg.segment(img, pixel_size_m=5e-9)
    assert labels.shape == img.shape and labels.dtype == np.int32
    assert len(table) == labels.max()
    assert set(np.unique(labels)) <= set([0] + list(table["id"]))
    assert np.all(table["confidence"] >= 0) and np.all(table["confidence"] <= 1)
    assert len(table["contrast_snr"]) == len(table) and np.all(table["contrast_snr"] >= seg.min_contrast_snr)


@pytest.mark.parametrize("bad", [np.zeros((0, 5)), np.zeros((8, 8, 2)), np.full((8, 8), np.nan),
                                 np.zeros(16), [[1, 2], [3, 4]], np.zeros((8, 8), bool)])
def test_segment_rejects_bad_images(tiny_model, bad):
    seg = Segmenter(tiny_model[0])
    with pytest.raises(PerceptionInputError):
        seg.segment(bad, 1e-9)


@pytest.mark.parametrize("px", [0.0, -1e-9, float("nan"), float("inf"), "a"])
def test_segment_rejects_bad_pixel_size(tiny_model, px):
    with pytest.raises(PerceptionInputError):
        Segmenter(tiny_model[0]).segment(np.zeros((32, 32), np.uint8), px)


def test_missing_model_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        Segmenter(tmp_path / "nope.onnx")


def test_default_tile_follows_the_network():
    from perception.segment import ONE_PASS_TILE, default_tile

    assert default_tile({}) == 256  # records without a net description: the GRN network
    assert default_tile({"net": {"grn": True}}) == 256
    assert default_tile({"net": {"grn": False}}) == ONE_PASS_TILE


def test_tiny_model_keeps_256_px_tiles(tiny_model):
    assert Segmenter(tiny_model[0]).tile == 256
    assert Segmenter(tiny_model[0], tile=512).tile == 512
    for bad in (0, 100, -64):
        with pytest.raises(ValueError, match="tile"):
            Segmenter(tiny_model[0], tile=bad)


def _local_op(batch):
    # a local operator (receptive field 9 px): two channels
    out = np.stack([ndi.uniform_filter(b[0], 9, mode="reflect") for b in batch])
    return np.stack([out, out ** 2], axis=1).astype(np.float32)


def test_tiling_single_tile_equals_untiled():
    img = np.random.default_rng(0).random((100, 90)).astype(np.float32)
    a = predict_tiled(img, _local_op, 2, tile=128, overlap=32)
    b = _local_op(np.pad(img, ((0, 28), (0, 6)), mode="reflect")[None, None])[0][:, :100, :90]
    np.testing.assert_array_equal(a, b)


def test_tiling_is_seam_free():
    rng = np.random.default_rng(0)
    img = ndi.gaussian_filter(rng.random((200, 330)), 3).astype(np.float32)
    whole = predict_tiled(img, _local_op, 2, tile=352, overlap=32)
    tiled = predict_tiled(img, _local_op, 2, tile=64, overlap=32)
    assert np.abs(tiled - whole).max() < 0.02 * np.abs(whole).max()
    const = predict_tiled(np.full((150, 170), 0.3, np.float32), _local_op, 2, tile=64, overlap=16)
    np.testing.assert_allclose(const[0], 0.3, atol=1e-6)


def test_tile_batch_size_changes_nothing_but_the_calls():
    img = np.random.default_rng(1).random((200, 330)).astype(np.float32)
    calls = []

    def op(batch):
        calls.append(len(batch))
        return _local_op(batch)

    ref = predict_tiled(img, op, 2, tile=64, overlap=16, batch=1)
    n_tiles = len(calls)
    for b in (2, 4, 7):
        calls.clear()
        np.testing.assert_array_equal(predict_tiled(img, op, 2, tile=64, overlap=16, batch=b), ref)
        assert max(calls) == b and sum(calls) == n_tiles


def test_tile_starts_cover_everything():
    for length in (64, 65, 200, 1000):
        s = tile_starts(length, 64, 16)
        assert s[0] == 0 and s[-1] + 64 >= length
        assert all(b - a <= 64 - 16 for a, b in zip(s, s[1:]))


def test_watershed_separates_two_touching_disks():
    from perception.train.data import make_targets

    yy, xx = np.mgrid[:60, :80]
    gt = np.zeros((60, 80), np.int32)
    gt[(yy - 30) ** 2 + (xx - 25) ** 2 <= 15 ** 2] = 1
    gt[((yy - 30) ** 2 + (xx - 53) ** 2 <= 14 ** 2) & (gt == 0)] = 2
    fg, bd, ct = make_targets(gt)
    labels = maps_to_instances(fg, bd, ct)
    assert labels.max() == 2
    from perception.metrics import aji_plus

    assert aji_plus(gt, labels) > 0.95


def test_particle_table_units():
    lab = np.zeros((20, 20), np.int32)
    lab[0:4, 0:4] = 1  # touches border, 16 px
    lab[10:12, 10:12] = 2
    t = particle_table(lab, 2e-9)
    assert list(t["id"]) == [1, 2]
    assert t["area_m2"][0] == pytest.approx(16 * 4e-18)
    assert t["equivalent_diameter_m"][1] == pytest.approx(np.sqrt(16 / np.pi) * 2e-9)
    assert list(t["touches_border"]) == [True, False]
    assert t["centroid_x_m"][1] == pytest.approx(11.0 * 2e-9)  # pixel centre of cols 10, 11
    assert list(t["touches_other"]) == [False, False]


def test_touches_other_marks_adjacent_instances_only():
    lab = np.zeros((12, 12), np.int32)
    lab[1:4, 1:4] = 1
    lab[1:4, 4:6] = 2          # shares an edge with 1
    lab[6:9, 6:9] = 3
    lab[5, 9] = 4              # diagonal neighbour of 3 (8-adjacency)
    lab[10:12, 0:2] = 5        # alone (background all round)
    t = particle_table(lab, 1e-9)
    assert list(t["touches_other"]) == [True, True, True, True, False]


@pytest.mark.parametrize("scale", [0.5, "auto"])
def test_segment_at_other_scales_keeps_shape(tiny_model, scale):
    img = (np.random.default_rng(3).random((90, 120)) * 255).astype(np.uint8)
    labels, table = Segmenter(tiny_model[0]).segment(img, 1e-9, scale=scale)
    assert labels.shape == img.shape and len(table) == labels.max()


def test_segment_cli_writes_outputs(tiny_model, tmp_path):
    import tifffile
    from skimage import io

    from agent.cli import main

    img = (np.random.default_rng(4).random((64, 80)) * 60000).astype(np.uint16)
    src = tmp_path / "frame.tif"
    tifffile.imwrite(str(src), img)
    out = tmp_path / "out"
    assert main(["segment", str(src), "--pixel-size-m", "5e-9", "--out", str(out), "--model", str(tiny_model[0])]) == 0
    lab = tifffile.imread(str(out / "frame_labels.tif"))
    assert lab.shape == img.shape
    assert io.imread(str(out / "frame_overlay.png")).shape == (64, 80, 3)
    header = (out / "frame_particles.csv").read_text().splitlines()[0]
    assert header.startswith("id,centroid_x_m,centroid_y_m")
    # no pixel size anywhere -> usage error (exit status 2)
    assert main(["segment", str(src), "--out", str(out), "--model", str(tiny_model[0])]) == 2
    # a negative contrast threshold is refused with exit status 2
    assert main(["segment", str(src), "--pixel-size-m", "5e-9", "--out", str(out), "--model", str(tiny_model[0]),
                 "--min-contrast-snr", "-1"]) == 2
    assert main(["segment", str(src), "--pixel-size-m", "5e-9", "--out", str(out), "--model", str(tiny_model[0]),
                 "--white-pct", "101"]) == 2
    for bad in ("0", "nan", "big"):  # argparse rejects the value: usage error, exit status 2
        with pytest.raises(SystemExit) as exc:
            main(["segment", str(src), "--pixel-size-m", "5e-9", "--out", str(out), "--scale", bad])
        assert exc.value.code == 2
    assert main(["segment", str(src), "--pixel-size-m", "5e-9", "--out", str(out), "--model", str(tiny_model[0]),
                 "--scale", "auto", "--auto-polarity"]) == 0
