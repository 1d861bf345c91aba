"""The real-set section splits its scores by particle polarity (EMPS mixes SEM and TEM panels)."""
import numpy as np

from perception import bench


def _disks(dark: bool):
    yy, xx = np.mgrid[:96, :96]
    gt = np.zeros((96, 96), np.int32)
    for i, (cy, cx) in enumerate(((30, 30), (60, 66)), start=1):
        gt[(yy - cy) ** 2 + (xx - cx) ** 2 <= 12 ** 2] = i
    img = np.where(gt > 0, 200, 60) + np.random.default_rng(0).normal(0, 5, gt.shape)
    img = 255 - img if dark else img
    return np.clip(img, 0, 255).astype(np.uint8), gt


def test_dark_particles_reads_polarity_from_the_labels():
    assert bench.dark_particles(*_disks(True)) is True
    assert bench.dark_particles(*_disks(False)) is False
    img, gt = _disks(False)
    assert bench.dark_particles(img, np.zeros_like(gt)) is False  # nothing labelled


def test_bench_real_splits_by_polarity(tiny_model, monkeypatch):
    monkeypatch.setattr(bench, "emps_pairs", lambda limit=None: [_disks(False), _disks(True), _disks(False)])
    out = bench.bench_real({"tiny": tiny_model[0]}, scales=(1.0, "auto"))
    assert out["images with dark particles"] == {"n_dark": 1, "n_bright": 2}
    floor = out["otsu_watershed (oracle polarity)"]
    assert floor["aji_plus_bright"] > 0.8 and floor["aji_plus_dark"] > 0.8  # two clean disks each
    row = out["tiny scale=1.0"]
    assert row["n_images"] == 3 and 0.0 <= row["aji_plus_dark"] <= 1.0 and 0.0 <= row["f1_50_bright"] <= 1.0
    assert {"tiny scale=auto", "tiny scale=auto polarity=auto"} <= set(out)


def test_bench_real_skips_without_data(monkeypatch):
    monkeypatch.setattr(bench, "emps_pairs", lambda limit=None: [])
    assert "skipped" in bench.bench_real({})


def test_classical_floor_smoothing_keeps_clean_disks_whole():
    img, gt = _disks(False)
    assert bench.classical_floor(img, gt).max() == 2  # one instance per disk, no noise specks
    assert bench.classical_floor(img, gt, sigma_px=0.0).max() >= 2


def test_bench_autoscale_reports_both_scales(tiny_model):
    frames = [_disks(False), _disks(False)]
    out = bench.bench_autoscale({"tiny": tiny_model[0]}, frames=frames)
    assert set(out) == {"tiny scale=1.0", "tiny scale=auto", "tiny scale=auto polarity=auto"}
    assert all(r["n_images"] == 2 and 0.0 <= r["aji_plus"] <= 1.0 for r in out.values())
