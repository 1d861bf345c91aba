"""Motorised 5-axis specimen stage: limits, travel time, settle, backlash, repeatability.

Conventions: x, y in the stage plane (m); ``+z`` raises the specimen towards the pole piece,
i.e. reduces the pole-piece-to-surface distance by the same amount (m); tilt about the stage
x axis (rad); rotation about the stage normal, counter-clockwise seen from the column (rad).

``reported`` is what the encoders/controller say (the commanded target); ``actual`` is where
the specimen truly is. Errors per linear axis:

* Backlash (lead-screw/nut slack, hysteresis model): the stage is homed approaching in +, so
  an axis whose last move was in + sits exactly on target; after a move in −, it stops short
  by ``backlash_m``, i.e. at ``target + backlash``. The error thus changes by the backlash,
  towards the previous move's direction, only when an axis reverses; it persists until the
  next reversal. A few µm is typical of lead-screw SEM stages without an anti-backlash
  approach (vendors quote ~1–2 µm repeatability only with one).
* Repeatability: an independent Gaussian error (rms ``repeatability_m``) on every move of
  an axis. Tilt and rotation use ``angle_backlash_rad`` and ``angle_repeatability_rad``.

All axes move simultaneously; a move takes the slowest axis' travel time plus ``settle_s``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from drivers.types import StagePose
from drivers.validate import real

AXES = ("x_m", "y_m", "z_m", "tilt_rad", "rot_rad")


class StagePosition(NamedTuple):
    """Five stage coordinates; unpacks and indexes like a tuple (x, y, z, tilt, rot)."""

    x_m: float
    y_m: float
    z_m: float
    tilt_rad: float
    rot_rad: float

    def pose(self) -> StagePose:
        """The same position as a `drivers.types.StagePose`."""
        return StagePose(*self)


@dataclass(frozen=True)
class StageConfig:
    """Stage limits (inclusive), speeds and mechanical errors (SI units)."""

    x_range_m: tuple[float, float] = (-5e-3, 5e-3)
    y_range_m: tuple[float, float] = (-5e-3, 5e-3)
    z_range_m: tuple[float, float] = (0.0, 10e-3)
    tilt_range_rad: tuple[float, float] = (-0.0698, 1.2217)   # -4° .. 70°
    rot_range_rad: tuple[float, float] = (-math.pi, math.pi)
    speed_m_per_s: float = 1e-3
    z_speed_m_per_s: float = 0.5e-3
    tilt_speed_rad_per_s: float = 0.05
    rot_speed_rad_per_s: float = 0.2
    settle_s: float = 0.5
    backlash_m: float = 2e-6
    repeatability_m: float = 0.5e-6
    angle_backlash_rad: float = 1e-3
    angle_repeatability_rad: float = 2e-4

    def __post_init__(self) -> None:
        for name in ("x_range_m", "y_range_m", "z_range_m", "tilt_range_rad", "rot_range_rad"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not all(math.isfinite(v) for v in lo_hi) or not lo_hi[0] < lo_hi[1]:
                raise ValueError(f"StageConfig.{name} = {lo_hi}: must be (low, high) with low < high")
        for name in ("speed_m_per_s", "z_speed_m_per_s", "tilt_speed_rad_per_s",
                     "rot_speed_rad_per_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"StageConfig.{name} = {v}: must be a finite number > 0")
        for name in ("settle_s", "backlash_m", "repeatability_m", "angle_backlash_rad",
                     "angle_repeatability_rad"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"StageConfig.{name} = {v}: must be a finite number >= 0")

    def ranges(self) -> tuple[tuple[float, float], ...]:
        return (self.x_range_m, self.y_range_m, self.z_range_m, self.tilt_range_rad,
                self.rot_range_rad)


class Stage:
    """Stage state. Starts at (0, 0, z_low, 0, 0) (clipped into range), homed in +."""

    def __init__(self, cfg: StageConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self._rng = rng
        self._target = np.array([min(max(0.0, lo), hi) for lo, hi in cfg.ranges()])
        self._err = np.zeros(5)      # repeatability error of the last move, per axis
        self._dir = np.ones(5)       # direction of the last move per axis (+1 / −1)
        self._speed = np.array([cfg.speed_m_per_s, cfg.speed_m_per_s, cfg.z_speed_m_per_s,
                                cfg.tilt_speed_rad_per_s, cfg.rot_speed_rad_per_s])
        self._backlash = np.array([cfg.backlash_m] * 3 + [cfg.angle_backlash_rad] * 2)
        self._sigma = np.array([cfg.repeatability_m] * 3 + [cfg.angle_repeatability_rad] * 2)

    @staticmethod
    def _pose(v: np.ndarray) -> StagePosition:
        return StagePosition(*(float(a) for a in v))

    @property
    def reported(self) -> StagePosition:
        """Position the controller reports (the commanded target)."""
        return self._pose(self._target)

    @property
    def actual(self) -> StagePosition:
        """True position: target + backlash (after a move in −) + repeatability error."""
        return self._pose(self._target + np.where(self._dir < 0, self._backlash, 0.0) + self._err)

    def move(self, x_m: float | None = None, y_m: float | None = None, z_m: float | None = None,
             tilt_rad: float | None = None, rot_rad: float | None = None,
             relative: bool = False) -> float:
        """Move the given axes (absolute, or relative to the reported position); return the
        duration (s). Raises ``OutOfRangeError`` (a ValueError) for a target outside the limits,
        before moving anything. Draws 5 standard normals per call that moves an axis."""
        new = self._target.copy()
        for k, (name, value, rng_) in enumerate(zip(AXES, (x_m, y_m, z_m, tilt_rad, rot_rad),
                                                    self.cfg.ranges())):
            if value is None:
                continue
            v = real(name, value)
            target = self._target[k] + v if relative else v
            new[k] = real(name, target, rng_)
        delta = new - self._target
        moved = delta != 0.0
        if not moved.any():
            return 0.0
        draws = self._rng.standard_normal(5)
        self._dir = np.where(moved, np.sign(delta), self._dir)
        self._err = np.where(moved, draws * self._sigma, self._err)
        self._target = new
        return float(np.max(np.abs(delta) / self._speed)) + self.cfg.settle_s
