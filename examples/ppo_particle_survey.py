"""Train a PPO agent on `emtwin/ParticleSurvey-v0` for a few thousand steps (stable-baselines3).

usage: python examples/ppo_particle_survey.py [--steps 3000] [--out runs/ppo]

RL does not beat the `bayes` policy yet; this shows the environment works with a
well-kept RL library. Needs `pip install stable-baselines3` (not a dependency of emtwin).
"""
from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import agent.env  # noqa: F401  (registers emtwin/ParticleSurvey-v0)
from perception.classical import ClassicalSegmenter


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--out", default="runs/ppo")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from stable_baselines3 import PPO

    env = gym.make("emtwin/ParticleSurvey-v0", frame_px=128, max_steps=40, segmenter=ClassicalSegmenter())
    model = PPO("MultiInputPolicy", env, n_steps=256, batch_size=64, seed=args.seed, verbose=0, device="cpu")
    t0 = time.time()
    model.learn(total_timesteps=args.steps, progress_bar=False)
    model.save(f"{args.out}/ppo_particle_survey")
    returns = []
    for ep in range(5):
        obs, _ = env.reset(seed=1000 + ep)
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, r, term, trunc, _ = env.step(int(action))
            total += r
            done = term or trunc
        returns.append(total)
    print(f"trained {args.steps} steps in {time.time() - t0:.0f} s; "
          f"mean return over 5 test episodes {np.mean(returns):.3f} ± {np.std(returns):.3f}")


if __name__ == "__main__":
    main()
