"""bayes picks fields by cost alone among non-empty, wholly surveyed ones (field_choice=size_blind,
the default: the survey sees large particles rather than small ones, so ranking by its yield
favours them), or with field_choice=yield by survey yield; the oracle, which sees every
particle, ranks by yield."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from agent.bench.sweep import expand
from agent.policies import parse_policy_options
from agent.policies.bayes import BayesPolicy
from agent.session import MeasureSettings
from agent.survey import Sites


def _policy(**options) -> BayesPolicy:
    """Stage at the origin; one survey site in the field next to it, 20 in a field 8 pitches away."""
    settings = MeasureSettings(pixel_size_m=5e-9, shape_px=(768, 1024))
    pitch = settings.fov_m + settings.field_gap_m
    x = np.r_[pitch, np.full(20, 8 * pitch)]
    sites = Sites(x, np.zeros_like(x), np.full(x.size, 1e-14))
    survey = [(4 * pitch, 0.0, 10 * pitch, 2 * pitch)]  # (x, y, w, h): both cells wholly inside
    state = SimpleNamespace(fields=[], survey_fields=survey, sites=sites, focus_results=[])
    pol = BayesPolicy.__new__(BayesPolicy)
    pol.options, pol.state = options, {}
    pol.session = SimpleNamespace(settings=settings, state=state, catalog=[0] * 100,
                                  scope=SimpleNamespace(stage=lambda: SimpleNamespace(x_m=0.0, y_m=0.0)),
                                  focus_uncertain=lambda x, y, tol: False)
    return pol, pitch


def test_yield_goes_to_the_crowded_field_and_size_blind_to_the_near_one():
    pol, pitch = _policy(field_choice="yield")
    (x, _), rate_yield = pol.best_field()
    assert x == pytest.approx(8 * pitch)
    pol, pitch = _policy()  # the default is size_blind
    (x, _), rate = pol.best_field()
    assert x == pytest.approx(pitch)
    assert rate == pytest.approx(rate_yield)  # surveying more is weighed as before


def test_defaults_and_settings():
    from agent.policies.oracle import OraclePolicy
    from agent.policies.raster import RasterPolicy

    assert BayesPolicy.settings()["field_choice"] == "size_blind"
    assert BayesPolicy.settings({"field_choice": "yield"}) == {"frame_scale": 2.0, "focus_particles": 6.0,
                                                               "field_choice": "yield"}
    assert OraclePolicy.settings()["field_choice"] == "yield"
    assert RasterPolicy.settings() == {"fixed_count": 1000}
    for cls in (BayesPolicy, OraclePolicy, RasterPolicy):  # every option has a default, and it is allowed
        assert set(cls.option_defaults) == set(cls.option_names)
        for name, value in cls.option_defaults.items():
            assert cls.check_option(name, value) == value


def test_size_blind_skips_cells_on_a_survey_frame_edge():
    pol, pitch = _policy(field_choice="size_blind")
    pol.session.state.survey_fields = [(5 * pitch, 0.0, 8 * pitch, 2 * pitch)]  # the near cell sticks out
    (x, _), _ = pol.best_field()
    assert x == pytest.approx(8 * pitch)


def test_field_choice_is_validated():
    pol, _ = _policy(field_choice="largest")
    with pytest.raises(ValueError, match="field_choice"):
        pol.best_field()
    with pytest.raises(ValueError, match="field_choice = 'largest': must be one of yield, size_blind"):
        parse_policy_options("bayes", ["field_choice=largest"])


def test_policy_options_are_parsed_and_checked():
    assert parse_policy_options("bayes", ["frame_scale=1", "field_choice=size_blind"]) == {
        "frame_scale": 1, "field_choice": "size_blind"}
    assert parse_policy_options("raster", ["fixed_count=500"]) == {"fixed_count": 500}
    for bad, msg in ((["frame_scale"], "NAME=VALUE"), (["=1"], "NAME=VALUE"), (["nope=1"], "takes frame_scale"),
                     (["frame_scale=inf"], "finite"), (["frame_scale=100"], r"number in \[0.1, 16\]"),
                     (["focus_particles=many"], "must be a number")):
        with pytest.raises(ValueError, match=msg):
            parse_policy_options("bayes", bad)
    with pytest.raises(ValueError, match="fixed_count = 0"):
        parse_policy_options("raster", ["fixed_count=0"])
    with pytest.raises(ValueError, match="takes no options"):
        parse_policy_options("spiral", ["frame_scale=1"])


def test_sweep_gives_each_policy_only_its_options():
    specs = expand(["default"], ["bayes", "raster"], 1, policy_options={"field_choice": "size_blind"})
    got = {s.policy: dict(s.policy_options) for s in specs}
    assert got == {"bayes": {"field_choice": "size_blind"}, "raster": {}}
    with pytest.raises(ValueError, match="taken by none"):
        expand(["default"], ["spiral"], 1, policy_options={"field_choice": "size_blind"})


def test_size_blind_does_not_return_onto_a_measured_field():
    pol, pitch = _policy(field_choice="size_blind")
    fov = pol.session.settings.fov_m
    f = SimpleNamespace(x_m=pitch - 0.55 * fov, y_m=0.0, fov_m=fov, height_m=1.0, detected=5)
    pol.session.state.fields = [f]  # a stage error left the near cell's site just outside this field
    assert not pol.visited_mask(np.array([pitch]), np.array([0.0]))[0]
    (x, _), _ = pol.best_field()
    assert x == pytest.approx(8 * pitch)
