"""Instrument settings shared by the SEM and STEM twins: stored values plus settle time.

A twin class using `SettingsStore` keeps `_stig`, `_current_a`, `_hv_v`, `_shift`,
`_detector`, `_blanked`, `_fov_m` and `_scan`, and defines `_settle(what)`, which advances
its clock by the settle time of that part of the column.
"""
from __future__ import annotations

from drivers import ScanSettings


class SettingsStore:
    """The protected `drivers.Microscope` hooks for settings that only need storing."""

    def _settle(self, what: str) -> None:  # pragma: no cover - each twin defines it
        raise NotImplementedError

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
