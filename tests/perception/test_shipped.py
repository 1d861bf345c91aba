"""The shipped models: present with their reproducibility records, small, and sensible."""
import json

import numpy as np
import pytest
from scipy import ndimage as ndi

from perception._common import MODELS_DIR

SEG = MODELS_DIR / "segmenter.onnx"
needs_seg = pytest.mark.skipif(not SEG.exists(), reason="no shipped segmenter.onnx (run `emtwin train segment`)")
# every shipped segmenter: "standard" (segmenter.onnx) and "lite" (segmenter_lite.onnx, distilled from it)
def _variant(v: str, int8: bool | None = None):
    args = v if int8 is None else (v, int8)
    return args if v == "standard" else pytest.param(*([args] if int8 is None else args), marks=pytest.mark.skipif(
        not (MODELS_DIR / f"segmenter_{v}.onnx").exists(), reason=f"no shipped segmenter_{v}.onnx"))


VARIANTS = [_variant(v) for v in ("standard", "lite")]


def _stem(variant: str) -> str:
    return "segmenter" if variant == "standard" else f"segmenter_{variant}"


def test_models_fit_in_the_repository():
    total = sum(p.stat().st_size for p in MODELS_DIR.glob("*") if p.is_file())
    assert total <= 20 * 2**20


@pytest.mark.parametrize("onnx", sorted(p.name for p in MODELS_DIR.glob("*.onnx") if "_int8" not in p.name))
def test_every_model_has_a_record(onnx):
    rec = json.loads((MODELS_DIR / onnx).with_suffix(".json").read_text())
    assert "seed" in rec["train"] and rec["command"].startswith("emtwin ")
    assert rec["train_time_s"] > 0


@pytest.mark.parametrize("npz", sorted(p.name for p in MODELS_DIR.glob("*.npz")))
def test_shipped_weights_are_finite(npz):
    """float16 storage must not overflow (BatchNorm running variances can exceed 65504)."""
    with np.load(MODELS_DIR / npz) as z:
        bad = [k for k in z.files if z[k].dtype.kind == "f" and not np.isfinite(z[k]).all()]
    assert not bad, f"{npz}: non-finite {bad}"


@needs_seg
@pytest.mark.parametrize("variant", VARIANTS)
def test_shipped_weights_reproduce_the_shipped_onnx(variant):
    """segmenter_weights.npz (float16) is the network in segmenter.onnx: `train segment
    --init-weights` and `adapt` start from it (and likewise for the lite variant)."""
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from perception.train.convnext import NetConfig, UNet
    from perception.train.weights import load_state

    onnx = MODELS_DIR / f"{_stem(variant)}.onnx"
    rec = json.loads(onnx.with_suffix(".json").read_text())
    net = load_state(UNet(NetConfig.from_dict(rec["net"])), MODELS_DIR / f"{_stem(variant)}_weights.npz").eval()
    x = np.random.default_rng(0).random((1, 1, 128, 128)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    assert np.abs(got - ref).max() < 0.05  # logits; float16 rounding of the stored weights


def _two_touching_disks(invert=False):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    gt = np.zeros((128, 128), np.int32)
    gt[(yy - 64) ** 2 + (xx - 45) ** 2 <= 18 ** 2] = 1
    gt[((yy - 64) ** 2 + (xx - 80) ** 2 <= 17 ** 2) & (gt == 0)] = 2
    img = 0.15 + 0.6 * (gt > 0)
    edge = ndi.morphological_gradient(gt, size=3) > 0
    img = ndi.gaussian_filter(img + 0.3 * edge, 1.0)
    img = img + rng.normal(0, 0.02, img.shape)
    if invert:
        img = 1.0 - img
    return (np.clip(img, 0, 1) * 60000).astype(np.uint16), gt


@needs_seg
@pytest.mark.parametrize("variant, int8", [("standard", False), ("standard", True), _variant("lite", False)])
def test_shipped_segmenter_separates_touching_particles(variant, int8):
    from perception import Segmenter, metrics

    img, gt = _two_touching_disks()
    labels, table = Segmenter(variant, int8=int8).segment(img, 5e-9)
    assert labels.max() == 2
    assert metrics.aji_plus(gt, labels) > 0.8
    d = sorted(table["equivalent_diameter_m"])
    assert d[0] == pytest.approx(34 * 5e-9, rel=0.15) and d[1] == pytest.approx(36 * 5e-9, rel=0.15)


@needs_seg
@pytest.mark.parametrize("variant", VARIANTS)
def test_shipped_segmenter_handles_dark_particles(variant):
    from perception import Segmenter, metrics

    img, gt = _two_touching_disks(invert=True)
    labels, _ = Segmenter(variant).segment(img, 5e-9)
    assert metrics.aji_plus(gt, labels) > 0.7


@needs_seg
@pytest.mark.parametrize("variant", VARIANTS)
def test_sparse_frame_particles_are_neither_split_nor_invented(variant):
    """A frame of the sparse Au scenario (test seed) at 4.3 nm/px, where particles cover < 0.5 %
    of the pixels: one detection per particle (the white point must not sit in the noise)."""
    from perception import Segmenter
    from twin import TwinMicroscope, truth
    from twin.config import load_scenario

    m = TwinMicroscope(load_scenario("sparse"), seed=110)
    px = 4.3e-9
    m.set_fov_m(px * 1024)
    m.set_scan(shape_px=(768, 1024), dwell_s=1e-6)
    n_true = n_pred = 0
    rng = np.random.default_rng(1)
    for _ in range(12):
        m.move_stage(x_m=float(rng.uniform(-3e-4, 3e-4)), y_m=float(rng.uniform(-3e-4, 3e-4)))
        m.set_working_distance_m(truth.focus_wd_m(m))
        f = m.acquire()
        n_true += len(np.unique(truth.label_image(m, f))) - 1
        n_pred += len(Segmenter(variant).segment(f.image, px).particles)
    assert n_true >= 5
    assert abs(n_pred - n_true) <= max(2, 0.2 * n_true)
    with pytest.raises(ValueError, match="white_pct"):
        Segmenter(white_pct=20.0)
