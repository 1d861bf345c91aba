"""Perception: particle segmentation, defocus restoration, focus estimation and metrics.

Inference uses numpy, scipy, scikit-image and onnxruntime only (no torch). Training and ONNX
export live in `perception.train` (torch).
"""
from . import focus, metrics
from ._common import PerceptionInputError
from .focus import FocusEstimator, SpectralFocusEstimator
from .instances import ParticleTable
from .restore import Restorer
from .segment import Segmentation, Segmenter

__all__ = ["Segmenter", "Segmentation", "ParticleTable", "Restorer", "FocusEstimator", "SpectralFocusEstimator", "focus", "metrics",
           "PerceptionInputError"]
