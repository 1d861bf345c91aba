"""What the SEM and STEM twins share: stored settings, status, stage moves, settle times.

A twin class using `SettingsStore` keeps `_stig`, `_current_a`, `_hv_v`, `_shift`,
`_detector`, `_blanked`, `_fov_m`, `_scan`, `_stg` (a `twin.stage.Stage`), `_clock`,
`_ledger`, `_drift`, `_frames`, `_limits_cache`, `_lock`, `_abort_event`, `scenario` and
`seed`, and sets `SETTLE_S` (seconds each part of the column needs to settle).
"""
from __future__ import annotations

import threading

from drivers import Limits, ScanSettings, StagePose, Status
from drivers.errors import OutOfRangeError


class SettingsStore:
    """The protected `drivers.Microscope` hooks that both twins implement the same way."""

    SETTLE_S: dict[str, float] = {}

    #: the run checkpoint may pickle the whole twin, so a resumed run is identical
    checkpointable = True

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"], state["_abort_event"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._abort_event = threading.Event()

    def _settle(self, what: str) -> None:
        self._clock.advance(self.SETTLE_S[what], f"set_{what}")

    def _status(self) -> Status:
        return Status(backend="twin", connected=True, mode=self._limits_cache.mode, beam_blanked=self._blanked,
                      busy=False, instrument_time_s=self._clock.now_s, total_electrons=self._ledger.total_electrons,
                      frames_acquired=self._frames, message=f"scenario {self.scenario.name}, seed {self.seed}")

    def _limits(self) -> Limits:
        return self._limits_cache

    def _check_initial(self, extra: dict[str, tuple[float, tuple[float, float]]] | None = None) -> None:
        """Refuse a scenario whose initial state lies outside the instrument's limits."""
        lim, ini = self._limits_cache, self.scenario.initial
        checks = {
            "working_distance_m": (ini.working_distance_m, lim.working_distance_m),
            "fov_m": (ini.fov_m, lim.fov_m),
            "dwell_s": (ini.dwell_s, lim.dwell_s),
            "beam_current_a": (ini.beam_current_a, lim.beam_current_a),
            "high_voltage_v": (ini.high_voltage_v, lim.high_voltage_v),
            "stigmator[x]": (ini.stigmator[0], lim.stigmator),
            "stigmator[y]": (ini.stigmator[1], lim.stigmator),
            **(extra or {}),
        }
        for name, (value, (lo, hi)) in checks.items():
            if not lo <= value <= hi:
                raise OutOfRangeError(f"scenario initial.{name} = {value:.6g} is outside [{lo:.6g}, {hi:.6g}]")

    def _stage(self) -> StagePose:
        x, y, z, tilt, rot = self._stg.reported
        return StagePose(x, y, z, tilt, rot)

    def _move_stage(self, target: StagePose) -> StagePose:
        with self._lock:
            before = self._stg.actual
            duration = self._stg.move(x_m=target.x_m, y_m=target.y_m, z_m=target.z_m, tilt_rad=target.tilt_rad,
                                      rot_rad=target.rot_rad)
            after = self._stg.actual
            self._clock.advance(duration, "move_stage")
            self._drift.on_stage_move(self._clock.now_s, after[0] - before[0], after[1] - before[1])
            return self._stage()

    def _get_fov_m(self) -> float:
        return self._fov_m

    def _set_fov_m(self, fov_m: float) -> float:
        self._fov_m = fov_m
        self._settle("fov")
        return fov_m

    def _get_scan(self) -> ScanSettings:
        return self._scan

    def _set_scan(self, scan: ScanSettings) -> ScanSettings:
        self._scan = ScanSettings(tuple(scan.shape_px), scan.dwell_s, scan.rotation_rad, scan.line_integration)
        return self._scan

    def _get_stigmator(self) -> tuple[float, float]:
        return self._stig

    def _set_stigmator(self, x: float, y: float) -> tuple[float, float]:
        self._stig = (x, y)
        self._settle("stigmator")
        return self._stig

    def _get_beam_current_a(self) -> float:
        return self._current_a

    def _set_beam_current_a(self, current_a: float) -> float:
        self._current_a = current_a
        self._settle("beam_current")
        return current_a

    def _get_high_voltage_v(self) -> float:
        return self._hv_v

    def _set_high_voltage_v(self, hv_v: float) -> float:
        self._hv_v = hv_v
        self._settle("high_voltage")
        return hv_v

    def _get_beam_shift_m(self) -> tuple[float, float]:
        return self._shift

    def _set_beam_shift_m(self, x_m: float, y_m: float) -> tuple[float, float]:
        self._shift = (x_m, y_m)
        self._settle("beam_shift")
        return self._shift

    def _get_detector(self) -> str:
        return self._detector

    def _set_detector(self, name: str) -> str:
        self._detector = name
        self._settle("detector")
        return name

    def _blank(self) -> None:
        self._blanked = True
        self._settle("blank")

    def _unblank(self) -> None:
        self._blanked = False
        self._settle("blank")

    def _abort(self) -> None:
        self._abort_event.set()
