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
