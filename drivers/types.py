"""Frozen value types exchanged through the `Microscope` interface (SI units throughout)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Range = tuple[float, float]


@dataclass(frozen=True)
class StagePose:
    """Stage position: x, y, z in metres; tilt and rotation in radians."""

    x_m: float = 0.0
    y_m: float = 0.0
    z_m: float = 0.0
    tilt_rad: float = 0.0
    rot_rad: float = 0.0


@dataclass(frozen=True)
class ScanSettings:
    """Scan generator state. `shape_px` is (rows, columns); `dwell_s` is per pixel per pass."""

    shape_px: tuple[int, int] = (768, 1024)
    dwell_s: float = 1e-6
    rotation_rad: float = 0.0
    line_integration: int = 1


@dataclass(frozen=True)
class Limits:
    """What the instrument accepts. Ranges are inclusive (low, high) in SI units."""

    stage_x_m: Range
    stage_y_m: Range
    stage_z_m: Range
    stage_tilt_rad: Range
    stage_rot_rad: Range
    fov_m: Range
    dwell_s: Range
    shape_px_max: tuple[int, int]
    line_integration_max: int
    rotation_rad: Range
    working_distance_m: Range
    stigmator: Range
    beam_current_a: Range
    high_voltage_v: Range
    beam_shift_m: Range
    detectors: tuple[str, ...]
    defocus_m: Range | None = None  # None: not offered (SEM focuses with working distance)
    mode: str = "sem"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Limits":
        return cls(**{k: _tuplify(v) for k, v in d.items()})


@dataclass(frozen=True)
class Status:
    """Connection and instrument state."""

    backend: str
    connected: bool
    mode: str = "sem"
    beam_blanked: bool = False
    busy: bool = False
    instrument_time_s: float = 0.0
    total_electrons: float = 0.0
    frames_acquired: int = 0
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Status":
        return cls(**d)


@dataclass(frozen=True)
class FrameMeta:
    """Acquisition metadata of one frame. Times are instrument seconds; dose in electrons."""

    frame_id: int
    backend: str
    t_start_s: float
    t_end_s: float
    pixel_size_m: float
    fov_m: float
    shape_px: tuple[int, int]
    dwell_s: float
    line_integration: int
    detector: str
    stage: StagePose
    working_distance_m: float
    stigmator: tuple[float, float]
    beam_current_a: float
    high_voltage_v: float
    scan_rotation_rad: float
    beam_shift_m: tuple[float, float]
    electrons: float
    dose_e_per_m2: float
    defocus_m: float | None = None
    depth_of_field_m: float | None = None
    probe_diameter_m: float | None = None
    mode: str = "sem"
    extra: dict[str, Any] = field(default_factory=dict)

    def pixel_to_stage(self, row: Any, col: Any) -> tuple[Any, Any]:
        """Stage coordinates (m) of pixel centres, by the interface's scan convention.

        Column index grows along +x, row index grows along -y (image "up" is +y), the
        field is centred on stage position + beam shift and turned by the scan rotation.
        """
        rows, cols = self.shape_px
        p = self.pixel_size_m
        u = (np.asarray(col, dtype=float) - (cols - 1) / 2) * p
        v = -(np.asarray(row, dtype=float) - (rows - 1) / 2) * p
        c, s = np.cos(self.scan_rotation_rad), np.sin(self.scan_rotation_rad)
        x = self.stage.x_m + self.beam_shift_m[0] + c * u - s * v
        y = self.stage.y_m + self.beam_shift_m[1] + s * u + c * v
        return x, y

    def stage_to_pixel(self, x_m: Any, y_m: Any) -> tuple[Any, Any]:
        """Inverse of `pixel_to_stage`: (row, col) as floats."""
        rows, cols = self.shape_px
        p = self.pixel_size_m
        dx = np.asarray(x_m, dtype=float) - self.stage.x_m - self.beam_shift_m[0]
        dy = np.asarray(y_m, dtype=float) - self.stage.y_m - self.beam_shift_m[1]
        c, s = np.cos(self.scan_rotation_rad), np.sin(self.scan_rotation_rad)
        u, v = c * dx + s * dy, -s * dx + c * dy
        return (rows - 1) / 2 - v / p, u / p + (cols - 1) / 2

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FrameMeta":
        d = dict(d)
        d["stage"] = StagePose(**d["stage"])
        for key in ("shape_px", "stigmator", "beam_shift_m"):
            d[key] = tuple(d[key])
        return cls(**d)


@dataclass(frozen=True, eq=False)
class Frame:
    """An acquired image (numpy array, uint16 detector counts unless stated) and its metadata."""

    image: np.ndarray
    meta: FrameMeta

    @property
    def pixel_size_m(self) -> float:
        return self.meta.pixel_size_m


def _tuplify(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tuplify(x) for x in v)
    return v
