"""The encoder's learning-rate factor in fine-tuning (`train segment --encoder-lr-scale`)."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from perception.train.convnext import NetConfig, UNet  # noqa: E402
from perception.train.seg import SegTrainConfig, encoder_lr_factor, train_segmenter  # noqa: E402

TINY = NetConfig(dims=(8, 16, 16, 16), depths=(1, 1, 1, 1), dec_dims=(16, 8, 8, 8), fine_chans=4)


def test_default_factor_halves_only_an_fcmae_encoder():
    assert encoder_lr_factor(SegTrainConfig(), from_fcmae=True) == 0.5
    assert encoder_lr_factor(SegTrainConfig(), from_fcmae=False) == 1.0
    assert encoder_lr_factor(SegTrainConfig(encoder_lr_scale=0.25), from_fcmae=False) == 0.25


def _change(before: torch.nn.Module, after: torch.nn.Module) -> float:
    a, b = before.state_dict(), after.state_dict()
    return float(sum((a[k].float() - b[k].float()).norm() for k in a if a[k].is_floating_point()))


def test_scale_slows_the_encoder_of_a_warm_started_unet():
    from perception.train.data import LabelledSampler
    from perception.train.sources import synth_scenes

    ims, labs = synth_scenes(3, seed=0, shape=(96, 96))
    torch.manual_seed(0)
    start = UNet(TINY)
    moved = {}
    for scale in (None, 1e-3):
        sampler = LabelledSampler(ims, labs, 64, np.random.default_rng(0))
        cfg = SegTrainConfig(steps=3, batch=2, crop=64, encoder_lr_scale=scale)
        model, rec = train_segmenter(sampler, cfg, net=TINY, model=copy.deepcopy(start))
        assert rec["train"]["encoder_lr_scale"] == scale and rec["encoder_lr_factor"] == (scale or 1.0)
        moved[scale] = (_change(start.encoder, model.encoder), _change(start.up16, model.up16))
    assert moved[None][0] > 0 and moved[1e-3][1] > 0
    assert moved[1e-3][0] < 0.01 * moved[None][0]  # the encoder barely moves
    assert moved[1e-3][1] > 0.3 * moved[None][1]  # the decoder still learns at the full rate


@pytest.mark.parametrize("bad", ["0", "1.5", "nan", "-0.5"])
def test_cli_refuses_a_bad_scale_before_generating_data(bad, tmp_path, capsys):
    from agent.cli import main

    argv = ["train", "segment", "--encoder-lr-scale", bad, "--n-scenes", "1", "--steps", "1", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "--encoder-lr-scale" in capsys.readouterr().err and not list(tmp_path.iterdir())
