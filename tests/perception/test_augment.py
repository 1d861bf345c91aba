"""Training augmentation: the look of exported micrographs (saturation, smoothing)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")  # perception.train needs the training extras

from perception.train.data import LabelledSampler, augment_figure  # noqa: E402


def _scene():
    yy, xx = np.mgrid[:64, :64]
    lab = ((yy - 32) ** 2 + (xx - 32) ** 2 <= 12 ** 2).astype(np.int32)
    img = 0.3 + 0.4 * lab + np.random.default_rng(0).normal(0, 0.05, lab.shape)
    return np.clip(img, 0.0, 1.0), lab


def test_augment_figure_saturates_or_smooths_and_stays_in_range():
    img, _ = _scene()
    flat = 0
    for seed in range(40):
        out = augment_figure(np.random.default_rng(seed), img.copy())
        assert out.shape == img.shape and np.isfinite(out).all()
        assert -1e-6 <= out.min() and out.max() <= 1 + 1e-6
        flat += np.mean(out >= 1.0 - 1e-6) > 0.02  # a white plateau appeared
    assert 20 <= flat <= 40  # stretched in ~75 % of draws


def test_sampler_figure_probability_is_validated_and_changes_crops():
    img, lab = _scene()
    with pytest.raises(ValueError, match="figure_p"):
        LabelledSampler([img], [lab], 32, np.random.default_rng(0), figure_p=1.5)
    plain = LabelledSampler([img], [lab], 32, np.random.default_rng(1)).batch(8)[0]
    fig = LabelledSampler([img], [lab], 32, np.random.default_rng(1), figure_p=1.0).batch(8)[0]
    assert plain.shape == fig.shape and not np.allclose(plain, fig)


@pytest.mark.parametrize("bad", ["2", "-0.1", "nan"])
def test_train_segment_refuses_a_bad_figure_share_before_generating_data(bad, tmp_path):
    from agent.cli import main

    assert main(["train", "segment", "--figure-aug", bad, "--out", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())  # nothing generated, nothing written


def test_noise_crops_have_no_particles_and_come_at_the_requested_share():
    from perception.train.data import noise_crop

    img, lab = _scene()  # every crop of this scene holds part of the particle
    rng = np.random.default_rng(3)
    for _ in range(9):  # every kind of noise: finite, normalised like a scene, not flat
        z = noise_crop(rng, 64)
        assert z.shape == (64, 64) and np.isfinite(z).all() and -0.5 <= z.min() and z.max() <= 1.5
        assert float(z.std()) > 0.1
    sampler = LabelledSampler([img], [lab], 32, np.random.default_rng(0), scale_range=(1.0, 1.0), noise_p=0.3)
    x, t = sampler.batch(400)
    empty = t[:, 0].reshape(400, -1).max(axis=1) == 0
    assert 0.22 < empty.mean() < 0.38
    assert t[empty].max() == 0 and np.isfinite(x).all()
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="noise_p"):
            LabelledSampler([img], [lab], 32, np.random.default_rng(0), noise_p=bad)
