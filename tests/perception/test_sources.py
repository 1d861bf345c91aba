"""Training scene sources: the scenario frames and the mix's fractions."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from perception.train.sources import labelled_scenes  # noqa: E402
from perception.train.twin_data import ScenarioFrameGenerator  # noqa: E402


def test_scenario_frames_are_deterministic_labelled_and_in_the_size_range():
    a = ScenarioFrameGenerator(seed=5, shape_px=(128, 128), names=("default",), d_px_range=(10.0, 20.0))
    b = ScenarioFrameGenerator(seed=5, shape_px=(128, 128), names=("default",), d_px_range=(10.0, 20.0))
    frames = [a.labelled_frame() for _ in range(4)]
    for (ia, la), (ib, lb) in zip(frames, (b.labelled_frame() for _ in range(4))):
        assert np.array_equal(ia, ib) and np.array_equal(la, lb)
    labelled = [lab for _, lab in frames if lab.max() > 0]
    assert labelled, "frames of the default specimen should show particles"
    areas = np.concatenate([np.bincount(lab.ravel())[1:] for lab in labelled])
    d_px = 2 * np.sqrt(np.median(areas) / np.pi)
    assert 4.0 < d_px < 40.0  # median 10-20 px; edge-cut and small particles pull it down


def test_scenario_frames_use_train_seeds_only():
    gen = ScenarioFrameGenerator(seed=1, shape_px=(64, 64), names=("default", "sparse"))
    for _ in range(6):
        gen.labelled_frame()
    for k, s in gen._twins:
        assert s in gen.scenarios[k].train_seeds


@pytest.mark.parametrize("synth, scen", [(-0.1, 0.0), (0.6, 0.6), (0.3, float("nan"))])
def test_mix_fractions_are_validated(synth, scen):
    with pytest.raises(ValueError, match="fraction"):
        labelled_scenes("mix", 4, 0, (64, 64), cache_dir=None, synth_fraction=synth, scenario_fraction=scen)


def test_mix_includes_scenario_frames(tmp_path):
    ims, labs = labelled_scenes("mix", 4, 0, (64, 64), cache_dir=tmp_path, synth_fraction=0.25, scenario_fraction=0.5)
    assert len(ims) == len(labs) == 4
    assert any("sc0.5" in p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize("bad", [float("nan"), -1.0, float("inf")])
def test_fcmae_refuses_a_bad_target_sigma(bad):
    from perception.train.convnext import FCMAE, NetConfig

    with pytest.raises(ValueError, match="target_sigma_px"):
        FCMAE(NetConfig(), target_sigma_px=bad)


def test_visible_labels_drops_particles_hidden_in_noise():
    from perception.train.sources import visible_labels

    rng = np.random.default_rng(5)
    img = rng.normal(10.0, 2.0, (80, 80))
    rr, cc = np.mgrid[:80, :80]
    lab = np.zeros((80, 80), np.int32)
    lab[(rr - 20) ** 2 + (cc - 20) ** 2 <= 25] = 1          # labelled but no contrast
    seen = (rr - 55) ** 2 + (cc - 55) ** 2 <= 25
    img[seen] += 8.0
    lab[seen] = 2
    (out,), dropped = visible_labels([img], [lab], 5.0)
    assert dropped == 1 and out.max() == 1 and np.all(out[seen] == 1)
    (same,), none = visible_labels([img], [lab], 0.0)
    assert none == 0 and np.array_equal(same, lab)
    with pytest.raises(ValueError, match="label_min_snr"):
        visible_labels([img], [lab], float("nan"))
