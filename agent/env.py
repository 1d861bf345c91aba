"""Gymnasium environment over the twin: `emtwin/ParticleSurvey-v0`.

An episode is one experiment on a fresh twin specimen (seeded by `reset(seed=…)`).

Observation (Dict):
- ``image``: the last frame, downsampled to `obs_px` × `obs_px`, percentile-normalised, float32 in [0, 1];
- ``state``: float32 vector — stage offset from the start (x, y in fields), log2 of the field
  width relative to the measurement field, working-distance offset from the start (in depths
  of field), particles catalogued / 1000, relative half-width of the credible interval
  (clipped to 1), instrument time and electrons as fractions of the budget.

Actions (Discrete(9)): 0–3 move one field (+x, −x, +y, −y); 4 autofocus (three frames);
5 zoom in; 6 zoom out; 7 acquire and measure the field; 8 stop.

Reward: information gained, ½·ln of the shrink factor of the posterior variance of the
mean diameter (Δ of −ln(relative half-width)), minus `time_cost` per instrument second and
`dose_cost` per 1e12 electrons; on stop, +1 if the target precision is reached and the
estimate lies within it of the true mean (ground truth: reward only), −1 otherwise.

Usage::

    import gymnasium as gym
    import agent.env  # registers the id
    env = gym.make("emtwin/ParticleSurvey-v0", scenario="default")
"""
from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .belief import StoppingRule
from .session import Budget, MeasureSettings, Session

ENV_ID = "emtwin/ParticleSurvey-v0"
N_STATE = 8
STATE_BOUND = 1e4  # state entries are clipped to ±this


class ParticleSurveyEnv(gym.Env):
    """Find particles, keep focus and measure the mean diameter to a target precision."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, scenario: str = "default", obs_px: int = 64, max_steps: int = 200,
                 target_rel_precision: float = 0.05, time_cost: float = 1e-3, dose_cost: float = 1e-3,
                 frame_px: int = 256, segmenter: Any = None, render_mode: str | None = None):
        if obs_px < 8:
            raise ValueError(f"obs_px = {obs_px}: must be >= 8")
        self.scenario = scenario
        self.obs_px = int(obs_px)
        self.max_steps = int(max_steps)
        self.target = float(target_rel_precision)
        self.time_cost, self.dose_cost = float(time_cost), float(dose_cost)
        self.frame_px = int(frame_px)
        self.render_mode = render_mode
        self._segmenter = segmenter
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0.0, 1.0, (1, self.obs_px, self.obs_px), np.float32),
            "state": spaces.Box(-STATE_BOUND, STATE_BOUND, (N_STATE,), np.float32),
        })
        self.action_space = spaces.Discrete(9)
        self.session: Session | None = None
        self._image = np.zeros((self.obs_px, self.obs_px), np.float32)

    # ---- gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        from twin import TwinMicroscope, truth

        twin_seed = int(self.np_random.integers(0, 2**31 - 1))
        self.twin = TwinMicroscope(self.scenario, seed=twin_seed)
        self._truth = truth
        settings = MeasureSettings(pixel_size_m=4e-9, shape_px=(self.frame_px, self.frame_px),
                                   focus_shape_px=(64, 64))
        budget = Budget(max_instrument_s=600.0, max_electrons=1e14, max_frames=10_000)
        rule = StoppingRule(self.target, 0.95, min_particles=20)
        self.session = Session(self.twin, self.segmenter, rule, budget, settings)
        pose = self.twin.stage()
        self._start = (pose.x_m, pose.y_m)
        self._wd0 = self.twin.get_working_distance_m()
        self.twin.set_fov_m(settings.fov_m)
        self.twin.set_scan(shape_px=settings.shape_px, dwell_s=settings.dwell_s)
        self._steps = 0
        self._log_precision = 0.0
        self._observe(self.twin.acquire())
        return self._obs(), {"instrument_s": 0.0}

    def step(self, action: int) -> tuple[dict, float, bool, bool, dict]:
        if not self.action_space.contains(action):
            raise ValueError(f"action = {action!r}: must be an integer in [0, 8]")
        s = self.session
        assert s is not None, "call reset() first"
        t0, e0 = s.instrument_s(), s.electrons()
        reward, terminated = 0.0, False
        action = int(action)
        if action <= 3:
            self._move(action)
        elif action == 4:
            s.focus()
            self._observe(self.twin.acquire())
        elif action in (5, 6):
            self._zoom(0.5 if action == 5 else 2.0)
        elif action == 7:
            pose = self.twin.stage()
            s.settings.pixel_size_m = self.twin.get_fov_m() / self.frame_px
            s.measure_field(pose.x_m, pose.y_m)
            reward += self._information_gain()
            self._observe(s.last_frame)
        else:
            terminated = True
            reward += self._final_bonus()
        reward -= self.time_cost * (s.instrument_s() - t0) + self.dose_cost * (s.electrons() - e0) / 1e12
        self._steps += 1
        if not terminated and s.target_reached():
            terminated = True
            reward += self._final_bonus()
        truncated = not terminated and (self._steps >= self.max_steps or not s.budget_left())
        info = {"instrument_s": s.instrument_s(), "particles": len(s.catalog)}
        return self._obs(), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        g = (self._image * 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)

    # ---- internals ----------------------------------------------------------------------------
    @property
    def segmenter(self) -> Any:
        if self._segmenter is None:
            from perception import Segmenter

            self._segmenter = Segmenter()
        return self._segmenter

    def _move(self, action: int) -> None:
        fov = self.twin.get_fov_m()
        dx, dy = [(fov, 0.0), (-fov, 0.0), (0.0, fov), (0.0, -fov)][action]
        lim = self.twin.limits()
        pose = self.twin.stage()
        x = min(max(pose.x_m + dx, lim.stage_x_m[0]), lim.stage_x_m[1])
        y = min(max(pose.y_m + dy, lim.stage_y_m[0]), lim.stage_y_m[1])
        self.twin.move_stage(x_m=x, y_m=y)
        self._observe(self.twin.acquire())

    def _zoom(self, factor: float) -> None:
        lo, hi = self.twin.limits().fov_m
        fov = min(max(self.twin.get_fov_m() * factor, max(lo, 0.5e-6)), min(hi, 100e-6))
        self.twin.set_fov_m(fov)
        self._observe(self.twin.acquire())

    def _observe(self, frame: Any) -> None:
        img = frame.image.astype(np.float32)
        h, w = img.shape
        k = max(1, min(h, w) // self.obs_px)
        img = img[: k * self.obs_px, : k * self.obs_px].reshape(self.obs_px, k, self.obs_px, k).mean(axis=(1, 3))
        lo, hi = np.percentile(img, [1, 99])
        self._image = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)

    def _information_gain(self) -> float:
        est = self.session.state.last_estimate if self.session else None
        if est is None or not math.isfinite(est.rel_half_width) or est.rel_half_width <= 0:
            return 0.0
        now = -math.log(est.rel_half_width)
        gain = now - self._log_precision if self._log_precision else 0.0
        self._log_precision = now
        return float(gain)

    def _final_bonus(self) -> float:
        s = self.session
        est = s.state.last_estimate if s else None
        if s is None or est is None or not s.rule.reached(est):
            return -1.0
        from .groundtruth import true_diameters

        d = true_diameters(self.twin, s.state)
        ok = d.size and abs(est.mean_m - d.mean()) / d.mean() <= self.target
        return 1.0 if ok else -1.0

    def _obs(self) -> dict[str, np.ndarray]:
        s = self.session
        pose = self.twin.stage()
        meas_fov = s.settings.pixel_size_m * self.frame_px
        fov = self.twin.get_fov_m()
        est = s.state.last_estimate
        rhw = min(est.rel_half_width, 1.0) if est is not None and math.isfinite(est.rel_half_width) else 1.0
        st = self.twin.status()
        dof = 4e-9 / 3e-3
        state = np.array([
            (pose.x_m - self._start[0]) / meas_fov,
            (pose.y_m - self._start[1]) / meas_fov,
            math.log2(fov / meas_fov),
            (self.twin.get_working_distance_m() - self._wd0) / dof,
            len(s.catalog) / 1000.0,
            rhw,
            st.instrument_time_s / s.budget.max_instrument_s,
            st.total_electrons / s.budget.max_electrons,
        ], dtype=np.float32)
        np.clip(state, -STATE_BOUND, STATE_BOUND, out=state)
        return {"image": self._image[None].copy(), "state": state}


def register() -> None:
    """Register `emtwin/ParticleSurvey-v0` with gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="agent.env:ParticleSurveyEnv", max_episode_steps=500)


register()
