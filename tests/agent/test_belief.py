"""Posterior of the mean diameter and the stopping rule."""
import math

import numpy as np
import pytest

from agent.belief import Estimate, StoppingRule, estimate, prefers_mixture


def _lognormal(rng, n, median=60e-9, sigma=0.3):
    return np.exp(rng.normal(math.log(median), sigma, n))


def test_credible_interval_contains_truth_at_nominal_rate():
    """Coverage of the 90 % interval over 200 synthetic data sets is close to 90 %."""
    rng = np.random.default_rng(1)
    true_mean = 60e-9 * math.exp(0.3**2 / 2)
    hits = 0
    trials = 200
    for i in range(trials):
        est = estimate(_lognormal(rng, 60), credibility=0.9, seed=i, allow_mixture=False)
        hits += est.lo_m <= true_mean <= est.hi_m
    assert 0.84 <= hits / trials <= 0.96


def test_interval_shrinks_as_one_over_sqrt_n():
    rng = np.random.default_rng(2)
    w100 = estimate(_lognormal(rng, 100), allow_mixture=False).rel_half_width
    w400 = estimate(_lognormal(rng, 400), allow_mixture=False).rel_half_width
    assert w400 == pytest.approx(w100 / 2, rel=0.25)


def test_sequential_stopping_reaches_target_and_covers():
    rng = np.random.default_rng(3)
    rule = StoppingRule(target_rel_precision=0.03, credibility=0.95)
    true_mean = 60e-9 * math.exp(0.3**2 / 2)
    covered = 0
    for trial in range(40):
        d = np.empty(0)
        while True:
            d = np.concatenate([d, _lognormal(rng, 10)])
            est = estimate(d, seed=trial, allow_mixture=False)
            if rule.reached(est):
                break
        assert est.rel_half_width <= 0.03 and est.n >= rule.min_particles
        covered += est.lo_m <= true_mean <= est.hi_m
    assert covered >= 34  # 95 % nominal; ≥ 85 % observed over 40 sequential runs


def test_mixture_detected_only_for_bimodal_data():
    rng = np.random.default_rng(4)
    uni = _lognormal(rng, 300, sigma=0.2)
    bi = np.concatenate([_lognormal(rng, 200, 40e-9, 0.1), _lognormal(rng, 100, 150e-9, 0.1)])
    assert not prefers_mixture(uni)
    assert prefers_mixture(bi)


def test_too_few_particles_gives_infinite_width():
    est = estimate(np.array([50e-9]))
    assert est.n == 1 and math.isinf(est.rel_half_width)
    assert not StoppingRule().reached(est)


@pytest.mark.parametrize("bad", [[1e-9, float("nan")], [1e-9, -2e-9], [0.0, 1e-9]])
def test_bad_diameters_raise(bad):
    with pytest.raises(ValueError, match="diameters_m"):
        estimate(np.array(bad))


def test_particles_needed_estimate():
    rule = StoppingRule(target_rel_precision=0.02)
    est = Estimate(n=100, mean_m=1.0, lo_m=0.96, hi_m=1.04, credibility=0.95)
    assert rule.particles_needed(est) == pytest.approx(300, abs=2)
