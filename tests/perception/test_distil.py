"""Knowledge distillation in `train segment --teacher` (soft targets from a teacher U-Net)."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from perception.train.convnext import NetConfig, UNet  # noqa: E402
from perception.train.seg import SegTrainConfig, distil_loss, seg_loss, train_segmenter  # noqa: E402

TINY = NetConfig(dims=(8, 16, 16, 16), depths=(1, 1, 1, 1), dec_dims=(16, 8, 8, 8), fine_chans=4)
CFG = SegTrainConfig()


def _maps(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 16, 16, generator=g), (torch.rand(2, 3, 16, 16, generator=g) > 0.5).float()


def test_weight_zero_or_no_teacher_is_the_label_loss():
    logits, t = _maps(0)
    teacher, _ = _maps(1)
    ref = seg_loss(logits, t, CFG)
    assert torch.equal(distil_loss(logits, t, None, CFG, 0.5), ref)
    assert torch.equal(distil_loss(logits, t, teacher, CFG, 0.0), ref)
    mixed = distil_loss(logits, t, teacher, CFG, 0.25)
    soft = distil_loss(logits, t, teacher, CFG, 1.0)
    assert torch.allclose(mixed, 0.75 * ref + 0.25 * soft)


def test_soft_loss_is_stationary_at_the_teachers_logits():
    """d/dz BCE(z, sigmoid(z_t)) = sigmoid(z) - sigmoid(z_t): zero where the student equals the teacher."""
    teacher, t = _maps(2)
    at = teacher.clone().requires_grad_(True)
    distil_loss(at, t, teacher, CFG, 1.0).backward()
    assert float(at.grad.abs().max()) < 1e-7
    off = (teacher + 0.5).requires_grad_(True)
    distil_loss(off, t, teacher, CFG, 1.0).backward()
    assert float(off.grad.abs().max()) > 1e-4


def test_distillation_pulls_the_student_towards_the_teacher():
    from perception.train.data import LabelledSampler
    from perception.train.sources import synth_scenes

    ims, labs = synth_scenes(3, seed=0, shape=(96, 96))
    torch.manual_seed(0)
    teacher = UNet(TINY).eval()
    teacher.head.bias.data = torch.tensor([3.0, -3.0, 3.0])  # maps far from the labels: fg and centre ~0.95
    start = UNet(TINY)
    x = torch.from_numpy(LabelledSampler(ims, labs, 64, np.random.default_rng(9)).batch(4)[0])
    gap = {}
    for alpha in (0.0, 1.0):
        sampler = LabelledSampler(ims, labs, 64, np.random.default_rng(0))
        cfg = SegTrainConfig(steps=150, batch=4, crop=64, lr=3e-3)  # past the 100-step warm-up
        model, _ = train_segmenter(sampler, cfg, net=TINY, model=copy.deepcopy(start), teacher=teacher,
                                   distil_weight=alpha)
        with torch.no_grad():
            gap[alpha] = float((torch.sigmoid(model.eval()(x)) - torch.sigmoid(teacher(x))).abs().mean())
    assert gap[1.0] < 0.7 * gap[0.0]


@pytest.mark.parametrize("argv, message", [
    (["--teacher", "perception/models/segmenter_weights.npz", "--distil-weight", "1.5"], "--distil-weight"),
    (["--teacher", "perception/models/segmenter_weights.npz", "--distil-weight", "nan"], "--distil-weight"),
    (["--teacher", "no/such_weights.npz"], "--teacher"),
    (["--teacher", "perception/models/segmenter.onnx"], "--teacher"),
    (["--noise-aug", "2"], "--noise-aug"),
    (["--teacher", "{bare}"], "no NAME.json"),
])
def test_cli_refuses_bad_distillation_options_before_generating_data(argv, message, tmp_path, capsys):
    from agent.cli import main

    if "{bare}" in argv:  # weights without the record that names their network
        (tmp_path / "w").mkdir()
        bare = tmp_path / "w" / "bare_weights.npz"
        bare.write_bytes(b"")
        argv = [str(bare) if a == "{bare}" else a for a in argv]
        tmp_path = tmp_path / "out"
        tmp_path.mkdir()

    base = ["train", "segment", "--n-scenes", "1", "--steps", "1", "--out", str(tmp_path), "--cache", str(tmp_path / "c")]
    assert main(base + argv) == 2
    assert message in capsys.readouterr().err and not list(tmp_path.iterdir())
