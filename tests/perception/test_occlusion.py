"""Occlusion fill: an ellipse fitted to the free edge restores the area hidden under a neighbour."""
from __future__ import annotations

import numpy as np
import pytest

from perception.instances import particle_table
from perception.occlusion import fit_ellipse, occluded_area_px


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r * r


def test_fit_ellipse_recovers_a_rotated_ellipse():
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    a, b, th, x0, y0 = 7.0, 3.0, 0.4, 5.0, -2.0
    x = x0 + a * np.cos(t) * np.cos(th) - b * np.sin(t) * np.sin(th)
    y = y0 + a * np.cos(t) * np.sin(th) + b * np.sin(t) * np.cos(th)
    A, B, C, D, E, F = fit_ellipse(x, y)
    assert np.abs(A * x * x + B * x * y + C * y * y + D * x + E * y + F).max() < 1e-9 * max(abs(F), 1.0)
    # area pi*a*b from the conic: 2*pi / sqrt(4AC - B^2) * |det| / (4AC - B^2), det of the 3x3 form
    M = np.array([[A, B / 2, D / 2], [B / 2, C, E / 2], [D / 2, E / 2, F]])
    area = np.pi * abs(np.linalg.det(M)) / (A * C - B * B / 4) ** 1.5
    assert area == pytest.approx(np.pi * a * b, rel=1e-6)


def test_fit_ellipse_needs_six_points():
    assert fit_ellipse(np.arange(5.0), np.arange(5.0) ** 2) is None


def test_hidden_cap_of_an_overlapped_disc_is_restored():
    shape = (60, 80)
    lab = np.zeros(shape, np.int32)
    lab[_disc(shape, 30, 30, 10)] = 1
    lab[_disc(shape, 30, 46, 10)] = 2  # lies on top of particle 1 and hides its right cap
    whole = _disc(shape, 30, 30, 10).sum()
    hidden = occluded_area_px(lab)
    assert (lab == 1).sum() < whole
    assert (lab == 1).sum() + hidden[0] == pytest.approx(whole, abs=2)
    assert hidden[1] == 0  # the top particle is whole


def test_isolated_particles_and_background_get_nothing():
    shape = (40, 40)
    lab = np.zeros(shape, np.int32)
    lab[_disc(shape, 10, 10, 5)] = 1
    lab[_disc(shape, 28, 28, 6)] = 2
    assert occluded_area_px(lab).tolist() == [0.0, 0.0]
    assert occluded_area_px(np.zeros(shape, np.int32)).size == 0


def test_a_mostly_buried_particle_is_left_alone():
    shape = (60, 60)
    lab = np.zeros(shape, np.int32)
    lab[_disc(shape, 30, 30, 14)] = 1
    lab[(np.abs(np.mgrid[0:60, 0:60][0] - 30) < 3) & (np.abs(np.mgrid[0:60, 0:60][1] - 30) < 3)] = 2  # enclosed
    assert occluded_area_px(lab)[1] == 0  # no free edge to fit


def test_particle_table_counts_hidden_area_in_the_diameter():
    shape = (60, 80)
    lab = np.zeros(shape, np.int32)
    lab[_disc(shape, 30, 30, 10)] = 1
    lab[_disc(shape, 30, 46, 10)] = 2
    t = particle_table(lab, 2e-9, occluded_px=occluded_area_px(lab))
    assert t["occluded_px"][0] > 0 and t["area_px"][0] == (lab == 1).sum()
    d = t["equivalent_diameter_m"] / 2e-9
    assert d[0] == pytest.approx(d[1], rel=0.01)  # both whole discs of radius 10
    assert d[0] == pytest.approx(20.0, rel=0.02)
