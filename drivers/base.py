"""The `Microscope` interface that the twin, the remote client and vendor adapters implement.

Public methods validate their arguments (type, finiteness, instrument limits) and then call
a protected hook (`_set_fov_m`, ...) that a backend implements. Setters return the value the
instrument actually applied. Out-of-range values raise `OutOfRangeError`; nothing is clamped.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from . import validate as V
from .errors import (  # noqa: F401  (re-exported: drivers.base is the documented home)
    AccessDeniedError,
    Aborted,
    DriverError,
    DriverTimeout,
    InterlockError,
    InvalidArgumentError,
    NotConnectedError,
    NotSupportedError,
    OutOfRangeError,
    ProtocolError,
)
from .types import Frame, FrameMeta, Limits, ScanSettings, StagePose, Status  # noqa: F401

#: Read-only calls: any client may make them.
QUERIES: frozenset[str] = frozenset(
    {
        "status",
        "limits",
        "stage",
        "get_fov_m",
        "get_scan",
        "get_working_distance_m",
        "get_defocus_m",
        "get_stigmator",
        "get_beam_current_a",
        "get_high_voltage_v",
        "get_beam_shift_m",
        "get_detector",
    }
)
#: Calls that change the instrument: only the controlling client may make them.
COMMANDS: frozenset[str] = frozenset(
    {
        "move_stage",
        "set_fov_m",
        "set_scan",
        "set_working_distance_m",
        "set_defocus_m",
        "set_stigmator",
        "set_beam_current_a",
        "set_high_voltage_v",
        "set_beam_shift_m",
        "set_detector",
        "acquire",
        "blank",
        "unblank",
        "abort",
        "autofocus",
    }
)
INTERFACE: frozenset[str] = QUERIES | COMMANDS

_STAGE_AXES = (
    ("x_m", "stage_x_m"),
    ("y_m", "stage_y_m"),
    ("z_m", "stage_z_m"),
    ("tilt_rad", "stage_tilt_rad"),
    ("rot_rad", "stage_rot_rad"),
)


class Microscope(ABC):
    """One scanning electron microscope (SEM, or STEM where `limits().mode == 'stem'`)."""

    # ---- connection and state -------------------------------------------------------
    def status(self) -> Status:
        """Connection state, instrument clock (s) and electron ledger."""
        return self._status()

    def limits(self) -> Limits:
        """The ranges every setter accepts."""
        return self._limits()

    def close(self) -> None:
        """Release the connection; idempotent."""

    def __enter__(self) -> "Microscope":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- stage ------------------------------------------------------------------------
    def stage(self) -> StagePose:
        """Current stage pose as reported by the instrument (m, rad)."""
        return self._stage()

    def move_stage(
        self,
        x_m: float | None = None,
        y_m: float | None = None,
        z_m: float | None = None,
        tilt_rad: float | None = None,
        rot_rad: float | None = None,
        relative: bool = False,
    ) -> StagePose:
        """Move the stage (absolute, or by the given amounts with `relative=True`).

        Axes left as None do not move. Returns the pose reached. The whole target is
        validated before anything moves.
        """
        if not isinstance(relative, bool):
            raise InvalidArgumentError(f"relative = {relative!r}: must be True or False")
        requested = {"x_m": x_m, "y_m": y_m, "z_m": z_m, "tilt_rad": tilt_rad, "rot_rad": rot_rad}
        lim = self.limits()
        now = self.stage() if relative or any(v is None for v in requested.values()) else None
        target: dict[str, float] = {}
        for axis, lim_name in _STAGE_AXES:
            value = requested[axis]
            current = getattr(now, axis) if now is not None else 0.0
            if value is None:
                target[axis] = current
                continue
            value = V.real(axis, value)
            if relative:
                value += current
            target[axis] = V.real(axis, value, getattr(lim, lim_name))
        return self._move_stage(StagePose(**target))

    # ---- imaging settings -----------------------------------------------------------------
    def get_fov_m(self) -> float:
        """Horizontal field width (m) along the scan's fast axis."""
        return self._get_fov_m()

    def set_fov_m(self, fov_m: float) -> float:
        """Set the field width (m); returns the applied value."""
        return self._set_fov_m(V.real("fov_m", fov_m, self.limits().fov_m))

    def get_scan(self) -> ScanSettings:
        return self._get_scan()

    def set_scan(
        self,
        shape_px: tuple[int, int] | None = None,
        dwell_s: float | None = None,
        rotation_rad: float | None = None,
        line_integration: int | None = None,
    ) -> ScanSettings:
        """Change any of the scan settings; returns all settings as applied."""
        lim = self.limits()
        cur = self.get_scan()
        new = ScanSettings(
            shape_px=cur.shape_px if shape_px is None else V.shape("shape_px", shape_px, lim.shape_px_max),
            dwell_s=cur.dwell_s if dwell_s is None else V.real("dwell_s", dwell_s, lim.dwell_s),
            rotation_rad=cur.rotation_rad
            if rotation_rad is None
            else V.real("rotation_rad", rotation_rad, lim.rotation_rad),
            line_integration=cur.line_integration
            if line_integration is None
            else V.integer("line_integration", line_integration, (1, lim.line_integration_max)),
        )
        return self._set_scan(new)

    def get_working_distance_m(self) -> float:
        """Working distance (m): the focus of an SEM."""
        return self._get_working_distance_m()

    def set_working_distance_m(self, working_distance_m: float) -> float:
        wd = V.real("working_distance_m", working_distance_m, self.limits().working_distance_m)
        return self._set_working_distance_m(wd)

    def get_defocus_m(self) -> float:
        """Probe defocus (m); STEM only."""
        if self.limits().defocus_m is None:
            raise NotSupportedError("defocus_m is not offered by this instrument; use working_distance_m")
        return self._get_defocus_m()

    def set_defocus_m(self, defocus_m: float) -> float:
        allowed = self.limits().defocus_m
        if allowed is None:
            raise NotSupportedError("defocus_m is not offered by this instrument; use working_distance_m")
        return self._set_defocus_m(V.real("defocus_m", defocus_m, allowed))

    def get_stigmator(self) -> tuple[float, float]:
        """Stigmator (x, y), dimensionless, each within `limits().stigmator`."""
        return self._get_stigmator()

    def set_stigmator(self, x: float, y: float) -> tuple[float, float]:
        allowed = self.limits().stigmator
        return self._set_stigmator(V.real("stigmator_x", x, allowed), V.real("stigmator_y", y, allowed))

    def get_beam_current_a(self) -> float:
        return self._get_beam_current_a()

    def set_beam_current_a(self, beam_current_a: float) -> float:
        return self._set_beam_current_a(V.real("beam_current_a", beam_current_a, self.limits().beam_current_a))

    def get_high_voltage_v(self) -> float:
        return self._get_high_voltage_v()

    def set_high_voltage_v(self, high_voltage_v: float) -> float:
        return self._set_high_voltage_v(V.real("high_voltage_v", high_voltage_v, self.limits().high_voltage_v))

    def get_beam_shift_m(self) -> tuple[float, float]:
        return self._get_beam_shift_m()

    def set_beam_shift_m(self, x_m: float, y_m: float) -> tuple[float, float]:
        allowed = self.limits().beam_shift_m
        return self._set_beam_shift_m(V.real("x_m", x_m, allowed), V.real("y_m", y_m, allowed))

    def get_detector(self) -> str:
        return self._get_detector()

    def set_detector(self, name: str) -> str:
        return self._set_detector(V.choice("detector", name, self.limits().detectors))

    # ---- actions --------------------------------------------------------------------------
    def acquire(self) -> Frame:
        """Scan one frame with the current settings and return it."""
        return self._acquire()

    def blank(self) -> None:
        """Blank the beam (no dose reaches the specimen)."""
        self._blank()

    def unblank(self) -> None:
        self._unblank()

    def abort(self) -> None:
        """Stop any scan and stage motion; idempotent and safe to call at any time."""
        self._abort()

    def autofocus(self) -> float:
        """Run the instrument's own autofocus; returns the working distance (m) it set."""
        raise NotSupportedError(f"{type(self).__name__} has no built-in autofocus")

    # ---- backend hooks --------------------------------------------------------------------
    @abstractmethod
    def _status(self) -> Status: ...
    @abstractmethod
    def _limits(self) -> Limits: ...
    @abstractmethod
    def _stage(self) -> StagePose: ...
    @abstractmethod
    def _move_stage(self, target: StagePose) -> StagePose: ...
    @abstractmethod
    def _get_fov_m(self) -> float: ...
    @abstractmethod
    def _set_fov_m(self, fov_m: float) -> float: ...
    @abstractmethod
    def _get_scan(self) -> ScanSettings: ...
    @abstractmethod
    def _set_scan(self, scan: ScanSettings) -> ScanSettings: ...
    @abstractmethod
    def _get_working_distance_m(self) -> float: ...
    @abstractmethod
    def _set_working_distance_m(self, wd_m: float) -> float: ...
    @abstractmethod
    def _get_stigmator(self) -> tuple[float, float]: ...
    @abstractmethod
    def _set_stigmator(self, x: float, y: float) -> tuple[float, float]: ...
    @abstractmethod
    def _get_beam_current_a(self) -> float: ...
    @abstractmethod
    def _set_beam_current_a(self, current_a: float) -> float: ...
    @abstractmethod
    def _get_high_voltage_v(self) -> float: ...
    @abstractmethod
    def _set_high_voltage_v(self, hv_v: float) -> float: ...
    @abstractmethod
    def _get_beam_shift_m(self) -> tuple[float, float]: ...
    @abstractmethod
    def _set_beam_shift_m(self, x_m: float, y_m: float) -> tuple[float, float]: ...
    @abstractmethod
    def _get_detector(self) -> str: ...
    @abstractmethod
    def _set_detector(self, name: str) -> str: ...
    @abstractmethod
    def _acquire(self) -> Frame: ...
    @abstractmethod
    def _blank(self) -> None: ...
    @abstractmethod
    def _unblank(self) -> None: ...
    @abstractmethod
    def _abort(self) -> None: ...

    def _get_defocus_m(self) -> float:
        raise NotSupportedError("defocus_m is not offered by this instrument")

    def _set_defocus_m(self, defocus_m: float) -> float:
        raise NotSupportedError("defocus_m is not offered by this instrument")
