"""bayes sizes its last field to the particles the belief still needs (`BayesPolicy.rows_needed`)."""
from __future__ import annotations

from types import SimpleNamespace

from agent.belief import StoppingRule
from agent.policies.bayes import BayesPolicy
from agent.session import MeasureSettings


def _policy(n: int, half_width: float, per_field: int) -> BayesPolicy:
    settings = MeasureSettings(shape_px=(1000, 1000), pixel_size_m=4e-9)
    field = SimpleNamespace(detected=per_field, height_m=settings.field_height_m)
    state = SimpleNamespace(last_estimate=SimpleNamespace(n=n, rel_half_width=half_width), fields=[field])
    pol = BayesPolicy.__new__(BayesPolicy)
    pol.session = SimpleNamespace(settings=settings, state=state, rule=StoppingRule(target_rel_precision=0.02))
    return pol


def test_far_from_the_target_the_whole_frame_is_scanned():
    assert _policy(100, 0.05, 200).rows_needed() == 1000


def test_near_the_target_only_the_missing_share_is_scanned():
    # 400 particles at 2.2 %: 400 * (1.21 - 1) = 84 missing; 1.2 * 84 / 400 per field -> 252 rows
    assert _policy(400, 0.022, 400).rows_needed() == 252
    assert _policy(400, 0.0201, 400).rows_needed() == 250  # never below a quarter of the frame


def test_without_a_belief_or_a_full_field_the_whole_frame_is_scanned():
    pol = _policy(400, 0.022, 400)
    pol.session.state.last_estimate = None
    assert pol.rows_needed() == 1000
    pol = _policy(400, 0.022, 400)
    pol.session.state.fields[0].height_m *= 0.5
    assert pol.rows_needed() == 1000
