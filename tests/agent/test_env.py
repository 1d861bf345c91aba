"""The gymnasium environment: checker, determinism, errors."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import agent.env  # noqa: F401  (registers the id)
from agent.env import ENV_ID, ParticleSurveyEnv
from perception.classical import ClassicalSegmenter


def make() -> ParticleSurveyEnv:
    return ParticleSurveyEnv(frame_px=128, max_steps=20, segmenter=ClassicalSegmenter())


def test_env_passes_gymnasium_checker():
    env = make()
    check_env(env, skip_render_check=True)


def test_registered_id_makes_the_env():
    env = gym.make(ENV_ID, frame_px=128, max_steps=5, segmenter=ClassicalSegmenter())
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (1, 64, 64)
    env.close()


def test_reset_with_seed_is_deterministic():
    def rollout(seed):
        env = make()
        obs, _ = env.reset(seed=seed)
        out = [obs["image"].copy()]
        total = 0.0
        for a in (7, 0, 4, 7, 2, 7):
            obs, r, term, trunc, _ = env.step(a)
            out.append(obs["image"].copy())
            total += r
            if term or trunc:
                break
        return out, total

    a, ra = rollout(3)
    b, rb = rollout(3)
    c, _ = rollout(4)
    assert ra == rb and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_stop_ends_the_episode_and_costs_are_negative():
    env = make()
    env.reset(seed=1)
    _, r_move, *_ = env.step(0)
    assert r_move < 0  # time and dose cost, no information
    _, r_stop, term, trunc, _ = env.step(8)
    assert term and not trunc and r_stop <= -1.0  # stopped before the target


@pytest.mark.parametrize("bad", [9, -1, 2.5, "x"])
def test_bad_action_raises(bad):
    env = make()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(bad)
