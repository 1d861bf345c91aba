"""A tiny segmenter trained for 3 steps on procedural scenes and exported to ONNX, shared by the tests."""
import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    pytest.importorskip("torch")
    from perception.train.convnext import NetConfig
    from perception.train.data import LabelledSampler
    from perception.train.seg import SegTrainConfig, export_segmenter, train_segmenter
    from perception.train.sources import synth_scenes

    out = tmp_path_factory.mktemp("tiny_model")
    ims, labs = synth_scenes(3, seed=0, shape=(96, 96))
    sampler = LabelledSampler(ims, labs, 64, np.random.default_rng(0))
    net = NetConfig(dims=(8, 16, 16, 16), depths=(1, 1, 1, 1), dec_dims=(16, 8, 8, 8), fine_chans=4)
    model, rec = train_segmenter(sampler, SegTrainConfig(steps=3, batch=2, crop=64), net=net)
    rec = export_segmenter(model, out, rec, calib=None, int8=False)
    return out / "segmenter.onnx", rec
