"""Splitting merged instances through a neck (`instances.split_concave`)."""
from __future__ import annotations

import numpy as np

from perception.instances import split_concave


def _scene() -> np.ndarray:
    yy, xx = np.mgrid[0:60, 0:90]
    lab = np.zeros((60, 90), np.int32)
    lab[((yy - 30) ** 2 + (xx - 28) ** 2 < 100) | ((yy - 30) ** 2 + (xx - 47) ** 2 < 64)] = 1  # two discs, one label (solidity 0.84)
    lab[(np.abs(yy - 30) < 4) & (xx > 60) & (xx < 88)] = 2  # a rod: convex
    return lab


def test_two_merged_discs_are_split_at_the_neck_and_the_rod_is_not():
    lab = _scene()
    out = split_concave(lab)
    assert out.max() == 3
    assert (out == 2).sum() == (lab == 2).sum()  # the rod is untouched
    parts = [k for k in np.unique(out[lab == 1])]
    assert len(parts) == 2
    cols = [np.nonzero(out == k)[1].mean() for k in parts]
    assert sorted(round(c) for c in cols) == [28, 47]  # one part per disc
    assert ((out > 0) == (lab > 0)).all()  # no pixel gained or lost


def test_solid_instances_and_a_zero_threshold_leave_labels_alone():
    lab = _scene()
    assert (split_concave(lab, min_solidity=0.0) == lab).all()
    disc = np.zeros((30, 30), np.int32)
    disc[np.hypot(*np.mgrid[-15:15, -15:15]) < 10] = 1
    assert (split_concave(disc) == disc).all()


def test_rim_fragments_of_one_particle_are_merged_but_touching_particles_are_not():
    from perception.instances import merge_fragments

    yy, xx = np.mgrid[0:50, 0:50]
    r = np.hypot(yy - 25, xx - 25)
    lab = np.zeros((50, 50), np.int32)
    lab[r < 6] = 1  # dark plateau
    ring = (r >= 6) & (r < 12)
    lab[ring & (xx < 25)] = 2  # bright facets, cut in two
    lab[ring & (xx >= 25)] = 3
    out = merge_fragments(lab)
    assert np.unique(out[lab > 0]).size == 1 and ((out > 0) == (lab > 0)).all()
    pair = np.zeros((40, 60), np.int32)  # two round particles touching: a neck, no enclosed core
    yy, xx = np.mgrid[0:40, 0:60]
    pair[np.hypot(yy - 20, xx - 20) < 10] = 1
    pair[(np.hypot(yy - 20, xx - 39) < 10) & (pair == 0)] = 2
    assert (merge_fragments(pair) == pair).all()


def test_segmenter_rejects_bad_split_and_merge_thresholds():
    import pytest

    from perception import Segmenter
    from perception._common import PerceptionInputError

    for name in ("split_solidity", "merge_solidity"):
        for bad in (1.5, -0.1, True, "0.9", float("nan")):
            with pytest.raises(PerceptionInputError, match=name):
                Segmenter(**{name: bad})
