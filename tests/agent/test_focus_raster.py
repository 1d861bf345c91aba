"""bayes widens its focus raster on sparse specimens so that it holds particles (`size_focus_raster`)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

import numpy as np

from agent.policies.bayes import BayesPolicy
from agent.session import MeasureSettings
from agent.survey import Sites


def _policy(n_catalogued: int, field_m: float = 10e-6, **options) -> BayesPolicy:
    settings = MeasureSettings(pixel_size_m=5e-9, focus_shape_px=(512, 512))
    field = SimpleNamespace(fov_m=field_m, height_m=field_m, detected=n_catalogued)
    state = SimpleNamespace(fields=[field], survey_fields=[], sites=Sites.empty())
    limits = SimpleNamespace(shape_px_max=(4096, 4096))
    pol = BayesPolicy.__new__(BayesPolicy)
    pol.options, pol.state = options, {}
    pol.session = SimpleNamespace(settings=settings, state=state, catalog=[0] * n_catalogued,
                                  autofocus=SimpleNamespace(shape_px=(512, 512)),
                                  scope=SimpleNamespace(limits=lambda: limits))
    return pol


def test_dense_specimen_keeps_the_configured_raster():
    pol = _policy(1000)  # 10 per µm²: a 2.56 µm raster holds ~66
    pol.size_focus_raster()
    assert pol.session.autofocus.shape_px == (512, 512)


def test_sparse_specimen_widens_the_raster_to_hold_six_particles():
    pol = _policy(16)  # 0.16 per µm²: 6 particles need 37.5 µm², a 6.1 µm side = 1225 px at 5 nm
    pol.size_focus_raster()
    rows, cols = pol.session.autofocus.shape_px
    assert rows == cols == 1024  # capped at 2x the configured side
    pol = _policy(40)  # 0.4 per µm²: 15 µm², 3.9 µm = 775 px
    pol.size_focus_raster()
    assert pol.session.autofocus.shape_px == pytest.approx((775, 775), abs=2)
    assert pol.session.settings.focus_shape_px == pol.session.autofocus.shape_px


def test_a_raster_holding_half_the_wanted_count_is_kept():
    pol = _policy(70)  # 0.7 per µm²: the 2.56 µm raster holds 4.6 of the 6 wanted
    pol.size_focus_raster()
    assert pol.session.autofocus.shape_px == (512, 512)


def test_the_raster_shrinks_back_when_the_density_rises():
    pol = _policy(16)
    pol.size_focus_raster()
    pol.session.catalog = [0] * 1000
    pol.size_focus_raster()
    assert pol.session.autofocus.shape_px == (512, 512)


def test_survey_sites_give_the_density_before_any_field():
    pol = _policy(0)
    pol.session.state.fields = []
    pol.session.state.survey_fields = [(0.0, 0.0, 50e-6, 50e-6)]
    pol.session.state.sites = Sites(np.zeros(250), np.zeros(250), np.ones(250))  # 0.1 sites per µm²
    assert pol.particle_density_m2() == pytest.approx(0.1e12 * BayesPolicy.survey_undercount)


@pytest.mark.parametrize("bad", [-1.0, "6", True, float("nan")])
def test_bad_option_rejected(bad):
    with pytest.raises(ValueError, match="focus_particles"):
        _policy(16, focus_particles=bad).size_focus_raster()
