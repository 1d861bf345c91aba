"""`NullMicroscope`: an in-memory backend with no physics (for tests, demos and servers).

It keeps every setting, advances an instrument clock like a real scan would and returns
frames of seeded Gaussian noise around a constant level. Use `twin.TwinMicroscope` for
images that look like a specimen.
"""
from __future__ import annotations

import threading

import numpy as np

from .base import Microscope
from .errors import Aborted
from .types import Frame, FrameMeta, Limits, ScanSettings, StagePose, Status

ELEMENTARY_CHARGE_C = 1.602176634e-19  # exact, SI 2019

DEFAULT_LIMITS = Limits(
    stage_x_m=(-5e-3, 5e-3),
    stage_y_m=(-5e-3, 5e-3),
    stage_z_m=(0.0, 10e-3),
    stage_tilt_rad=(-0.2, 1.0),
    stage_rot_rad=(-3.2, 3.2),
    fov_m=(100e-9, 1e-3),
    dwell_s=(50e-9, 1e-3),
    shape_px_max=(4096, 4096),
    line_integration_max=64,
    rotation_rad=(-3.2, 3.2),
    working_distance_m=(1e-3, 30e-3),
    stigmator=(-1.0, 1.0),
    beam_current_a=(1e-12, 20e-9),
    high_voltage_v=(200.0, 30e3),
    beam_shift_m=(-5e-6, 5e-6),
    detectors=("InLens", "ETD", "BSD"),
)


class NullMicroscope(Microscope):
    """A settings store with a clock; frames are noise. Thread-safe `abort()`."""

    def __init__(self, seed: int = 0, limits: Limits = DEFAULT_LIMITS, flyback_s: float = 100e-6):
        self._lim = limits
        self._rng = np.random.default_rng(seed)
        self._flyback_s = flyback_s
        self._pose = StagePose(z_m=limits.stage_z_m[0])
        self._fov_m = 5e-6
        self._scan = ScanSettings(shape_px=(256, 256), dwell_s=1e-6)
        self._wd_m = 5e-3
        self._stig = (0.0, 0.0)
        self._current_a = 100e-12
        self._hv_v = 5e3
        self._shift = (0.0, 0.0)
        self._detector = limits.detectors[0]
        self._blanked = False
        self._t_s = 0.0
        self._electrons = 0.0
        self._frames = 0
        self._abort_event = threading.Event()

    def _status(self) -> Status:
        return Status(
            backend="null",
            connected=True,
            mode=self._lim.mode,
            beam_blanked=self._blanked,
            instrument_time_s=self._t_s,
            total_electrons=self._electrons,
            frames_acquired=self._frames,
        )

    def _limits(self) -> Limits:
        return self._lim

    def _stage(self) -> StagePose:
        return self._pose

    def _move_stage(self, target: StagePose) -> StagePose:
        travel = float(np.hypot(target.x_m - self._pose.x_m, target.y_m - self._pose.y_m))
        self._t_s += travel / 1e-3 + 0.5
        self._pose = target
        return target

    def _get_fov_m(self) -> float:
        return self._fov_m

    def _set_fov_m(self, fov_m: float) -> float:
        self._fov_m = fov_m
        return fov_m

    def _get_scan(self) -> ScanSettings:
        return self._scan

    def _set_scan(self, scan: ScanSettings) -> ScanSettings:
        self._scan = scan
        return scan

    def _get_working_distance_m(self) -> float:
        return self._wd_m

    def _set_working_distance_m(self, wd_m: float) -> float:
        self._wd_m = wd_m
        return wd_m

    def _get_stigmator(self) -> tuple[float, float]:
        return self._stig

    def _set_stigmator(self, x: float, y: float) -> tuple[float, float]:
        self._stig = (x, y)
        return self._stig

    def _get_beam_current_a(self) -> float:
        return self._current_a

    def _set_beam_current_a(self, current_a: float) -> float:
        self._current_a = current_a
        return current_a

    def _get_high_voltage_v(self) -> float:
        return self._hv_v

    def _set_high_voltage_v(self, hv_v: float) -> float:
        self._hv_v = hv_v
        return hv_v

    def _get_beam_shift_m(self) -> tuple[float, float]:
        return self._shift

    def _set_beam_shift_m(self, x_m: float, y_m: float) -> tuple[float, float]:
        self._shift = (x_m, y_m)
        return self._shift

    def _get_detector(self) -> str:
        return self._detector

    def _set_detector(self, name: str) -> str:
        self._detector = name
        return name

    def _acquire(self) -> Frame:
        self._abort_event.clear()
        rows, cols = self._scan.shape_px
        frame_s = rows * (cols * self._scan.dwell_s * self._scan.line_integration + self._flyback_s)
        t0 = self._t_s
        if self._abort_event.is_set():
            raise Aborted("acquisition aborted")
        electrons = 0.0 if self._blanked else self._current_a * frame_s / ELEMENTARY_CHARGE_C
        level = 0.0 if self._blanked else 20000.0
        image = np.clip(self._rng.normal(level + 1000.0, 300.0, (rows, cols)), 0, 65535).astype(np.uint16)
        self._t_s += frame_s
        self._electrons += electrons
        self._frames += 1
        area = self._fov_m * self._fov_m * rows / cols
        meta = FrameMeta(
            frame_id=self._frames,
            backend="null",
            t_start_s=t0,
            t_end_s=self._t_s,
            pixel_size_m=self._fov_m / cols,
            fov_m=self._fov_m,
            shape_px=(rows, cols),
            dwell_s=self._scan.dwell_s,
            line_integration=self._scan.line_integration,
            detector=self._detector,
            stage=self._pose,
            working_distance_m=self._wd_m,
            stigmator=self._stig,
            beam_current_a=self._current_a,
            high_voltage_v=self._hv_v,
            scan_rotation_rad=self._scan.rotation_rad,
            beam_shift_m=self._shift,
            electrons=electrons,
            dose_e_per_m2=electrons / area,
            mode=self._lim.mode,
        )
        return Frame(image=image, meta=meta)

    def _blank(self) -> None:
        self._blanked = True

    def _unblank(self) -> None:
        self._blanked = False

    def _abort(self) -> None:
        self._abort_event.set()
