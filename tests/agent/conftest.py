"""Shared fixtures: a fast classical segmenter and small experiment settings."""
from __future__ import annotations

import pytest

from agent.runner import RunConfig
from agent.session import Budget, MeasureSettings
from perception.classical import ClassicalSegmenter


@pytest.fixture
def segmenter() -> ClassicalSegmenter:
    """Classical segmentation: fast, and good enough to exercise the agent's logic."""
    return ClassicalSegmenter()


def small_config(out, policy: str = "bayes", target: float = 0.1, max_frames: int = 120) -> RunConfig:
    settings = MeasureSettings(pixel_size_m=5e-9, shape_px=(256, 384), survey_shape_px=(256, 256),
                               survey_pixel_size_m=60e-9, focus_shape_px=(64, 64))
    return RunConfig(out=str(out), policy=policy, scenario="default", seed=1, target_rel_precision=target,
                     budget=Budget(max_instrument_s=600.0, max_frames=max_frames), settings=settings,
                     save_frames=True)
