"""`AutoScriptMicroscope`: Thermo Fisher SEMs through AutoScript 4 (`autoscript_sdb_microscope_client`).

Written against the publicly documented AutoScript API and tested only against the fake in
tests/drivers/fakes/autoscript_fake.py, never against a real instrument. Coverage, the vendor
call behind each interface operation and what is not supported: docs/adapters.md.

AutoScript speaks SI (metres, seconds, amperes, volts, radians), so values pass through
unchanged; the adapter adds limit checks before anything is sent, maps vendor errors to
`drivers` errors, keeps the dose ledger (current x pixel dwell time / e) and an instrument
clock (monotonic seconds since connect).

Scan shapes: a shape that is one of the instrument's preset resolutions ("1024x884", ...)
is grabbed as a standard frame; any other shape up to 6144 px a side is grabbed with a
non-standard resolution string, which xT acquires as a "big snapshot" (fewer settings are
honoured there; see docs/adapters.md). `shapes="presets"` refuses non-preset shapes instead.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _vendor
from .base import Microscope
from .errors import Aborted, DriverError, NotConnectedError, NotSupportedError, OutOfRangeError
from .types import Frame, FrameMeta, Limits, ScanSettings, StagePose, Status

SDK = "autoscript_sdb_microscope_client"
_HINT = (
    "Run the server with the Python that Thermo Fisher installed with AutoScript on the "
    "instrument PC (see docs/adapters.md)."
)
#: Largest non-preset side AutoScript grabs into memory (bigger frames go to disk only).
NONSTANDARD_MAX_PX = 6144
#: Smallest side: AutoScript refuses '10x60' with "Minimum ..."; 12 is our guess of the bound.
NONSTANDARD_MIN_PX = 12
#: Line integration upper bound (not queryable; guessed, see docs/adapters.md).
LINE_INTEGRATION_MAX = 255
#: Stage rotation has no limits on AutoScript stages; one full turn either way.
ROTATION_LIMITS_RAD = (-2 * math.pi, 2 * math.pi)
_STAGE_AXES = (("x_m", "x"), ("y_m", "y"), ("z_m", "z"), ("rot_rad", "r"), ("tilt_rad", "t"))
_MOVE_EPS = {"x_m": 1e-12, "y_m": 1e-12, "z_m": 1e-12, "rot_rad": 1e-9, "tilt_rad": 1e-9}


class AutoScriptMicroscope(Microscope):
    """A Thermo Fisher SEM through AutoScript; connects in the constructor.

    host, port: the AutoScript server (on the instrument PC: "localhost"; port None uses
    the SDK's default). view: the xT quad used for imaging (1-4). shapes: "any" or
    "presets". clock: seconds source for instrument time (tests pass a fake clock).
    abort_connection: open a second client for `abort()`, so it can interrupt a blocking
    call made from another thread.
    """

    backend = "autoscript"

    def __init__(
        self,
        host: str = "localhost",
        port: int | None = None,
        *,
        view: int = 1,
        shapes: str = "any",
        clock: Callable[[], float] = time.monotonic,
        abort_connection: bool = True,
    ):
        if shapes not in ("any", "presets"):
            raise ValueError(f"shapes = {shapes!r}: must be 'any' or 'presets'")
        self._host, self._port, self._view, self._shapes = host, port, view, shapes
        sdk = _vendor.import_sdk(SDK, "AutoScript", _HINT)
        self._S = _vendor.import_sdk(SDK + ".structures", "AutoScript", _HINT)
        self._E = _vendor.import_sdk(SDK + ".enumerations", "AutoScript", _HINT)
        self._aborted = threading.Event()
        self._lim: Limits | None = None
        self._presets: tuple[tuple[int, int], ...] | None = None
        self._electrons, self._frames = 0.0, 0
        self._abort_client: Any = None
        self._client: Any = self._connect(sdk, configure=True)
        try:
            if abort_connection:
                try:
                    self._abort_client = self._connect(sdk, configure=False)
                except DriverError:
                    self._abort_client = None  # abort() then uses the main connection
            with self._call("read scan settings"):
                width, height = _parse_wxh(self._eb.scanning.resolution.value)
                self._dwell = float(self._eb.scanning.dwell_time.value)
        except BaseException:
            self.close()
            raise
        self._shape = (height, width)
        self._line_integration = 1
        self._clock = _vendor.InstrumentClock(clock)

    # ---- connection ------------------------------------------------------------------
    def _connect(self, sdk: Any, configure: bool) -> Any:
        """A connected client; `configure` selects the view, device and coordinate system."""
        client = sdk.SdbMicroscopeClient()
        with self._call(f"connect to AutoScript at {self._host}"):
            if self._port is None:
                client.connect(self._host)
            else:
                client.connect(self._host, self._port)
            if not configure:
                return client
            client.imaging.set_active_view(self._view)
            client.imaging.set_active_device(self._E.ImagingDevice.ELECTRON_BEAM)
            client.specimen.stage.set_default_coordinate_system(self._E.CoordinateSystem.RAW)
        return client

    def close(self) -> None:
        _vendor.disconnect_quietly(self, ("_abort_client", "_client"), "disconnect")

    def _call(self, what: str, abortable: bool = False) -> Any:
        return _vendor.vendor_call(what, self._aborted if abortable else None)

    @property
    def _c(self) -> Any:
        if self._client is None:
            raise NotConnectedError("AutoScript connection is closed")
        return self._client

    @property
    def _eb(self) -> Any:
        return self._c.beams.electron_beam

    # ---- state -----------------------------------------------------------------------
    def _status(self) -> Status:
        if self._client is None:
            return Status(backend=self.backend, connected=False, message="closed")
        try:
            with self._call("read status"):
                blanked = self._is_blanked()
                busy = self._c.imaging.state == self._E.ImagingState.ACQUIRING
        except DriverError as exc:
            return Status(backend=self.backend, connected=False, message=str(exc))
        return Status(
            backend=self.backend,
            connected=True,
            beam_blanked=blanked,
            busy=busy,
            instrument_time_s=self._clock.now(),
            total_electrons=self._electrons,
            frames_acquired=self._frames,
            message=f"AutoScript at {self._host}",
        )

    def _limits(self) -> Limits:
        if self._lim is None:
            self._lim = self._query_limits()
        return self._lim

    def _query_limits(self) -> Limits:
        eb, stage = self._eb, self._c.specimen.stage
        with self._call("read limits"):
            axis_ids = getattr(self._E, "StageAxis", None)  # plain "x" where there is none
            axis = {a: _range(stage.get_axis_limits(getattr(axis_ids, a.upper(), a)))
                    for a in "xyzt"}
            stig, shift = eb.stigmator.limits, eb.beam_shift.limits
            detectors = tuple(str(d) for d in self._c.detector.type.available_values)
            return Limits(
                stage_x_m=axis["x"], stage_y_m=axis["y"], stage_z_m=axis["z"],
                stage_tilt_rad=axis["t"], stage_rot_rad=ROTATION_LIMITS_RAD,
                fov_m=_range(eb.horizontal_field_width.limits),
                dwell_s=_range(eb.scanning.dwell_time.limits),
                shape_px_max=(NONSTANDARD_MAX_PX, NONSTANDARD_MAX_PX),
                line_integration_max=LINE_INTEGRATION_MAX,
                rotation_rad=_range(eb.scanning.rotation.limits),
                working_distance_m=_range(eb.working_distance.limits),
                stigmator=_vendor.intersect(_range(stig.limits_x), _range(stig.limits_y)),
                beam_current_a=_range(eb.beam_current.limits),
                high_voltage_v=_range(eb.high_voltage.limits),
                beam_shift_m=_vendor.intersect(_range(shift.limits_x), _range(shift.limits_y)),
                detectors=detectors,
            )

    def presets(self) -> tuple[tuple[int, int], ...]:
        """The instrument's preset scan shapes as (rows, columns)."""
        with self._call("read resolution presets"):
            values = self._eb.scanning.resolution.available_values
        return tuple((h, w) for w, h in (_parse_wxh(v) for v in values))

    # ---- stage -------------------------------------------------------------------------
    def _stage(self) -> StagePose:
        with self._call("read stage position"):
            p = self._c.specimen.stage.current_position
            return StagePose(x_m=float(p.x), y_m=float(p.y), z_m=float(p.z),
                             tilt_rad=float(p.t), rot_rad=float(p.r))

    def _move_stage(self, target: StagePose) -> StagePose:
        self._aborted.clear()
        now = self._stage()
        axes = {theirs: getattr(target, ours) for ours, theirs in _STAGE_AXES
                if abs(getattr(target, ours) - getattr(now, ours)) > _MOVE_EPS[ours]}
        if not axes:
            return now
        position = self._S.StagePosition(coordinate_system=self._E.CoordinateSystem.RAW, **axes)
        with self._call("move stage", abortable=True):
            self._c.specimen.stage.absolute_move(position)
        return self._stage()

    # ---- imaging settings ----------------------------------------------------------------
    def _get_fov_m(self) -> float:
        return self._read("field width", lambda: self._eb.horizontal_field_width.value)

    def _set_fov_m(self, fov_m: float) -> float:
        return self._write("field width", self._eb.horizontal_field_width, fov_m)

    def _get_scan(self) -> ScanSettings:
        rotation = self._read("scan rotation", lambda: self._eb.scanning.rotation.value)
        return ScanSettings(shape_px=self._shape, dwell_s=self._dwell, rotation_rad=rotation,
                            line_integration=self._line_integration)

    def _set_scan(self, scan: ScanSettings) -> ScanSettings:
        shape = (int(scan.shape_px[0]), int(scan.shape_px[1]))
        self._check_shape(shape)
        eb = self._eb
        if scan.dwell_s != self._dwell:
            self._dwell = self._write("dwell time", eb.scanning.dwell_time, scan.dwell_s)
        if scan.rotation_rad != self._read("scan rotation", lambda: eb.scanning.rotation.value):
            self._write("scan rotation", eb.scanning.rotation, scan.rotation_rad)
        self._shape, self._line_integration = shape, scan.line_integration
        return self._get_scan()

    def _check_shape(self, shape: tuple[int, int]) -> None:
        rows, cols = shape
        if self._shapes == "presets" or rows < NONSTANDARD_MIN_PX or cols < NONSTANDARD_MIN_PX:
            presets = self._known_presets() or self.presets()
            if shape in presets:
                return
            names = ", ".join(f"({r}, {c})" for r, c in presets)
            if self._shapes == "presets":
                raise OutOfRangeError(
                    f"shape_px = {shape} is not a preset of this instrument; allowed: {names}")
            raise OutOfRangeError(
                f"shape_px = {shape} is outside the allowed range: non-preset shapes need at "
                f"least {NONSTANDARD_MIN_PX} px a side (presets: {names})")

    def _get_working_distance_m(self) -> float:
        return self._read("working distance", lambda: self._eb.working_distance.value)

    def _set_working_distance_m(self, wd_m: float) -> float:
        applied = self._write("working distance", self._eb.working_distance, wd_m)
        self._lim = None  # field-width limits follow the working distance
        return applied

    def _get_stigmator(self) -> tuple[float, float]:
        with self._call("read stigmator"):
            p = self._eb.stigmator.value
            return (float(p.x), float(p.y))

    def _set_stigmator(self, x: float, y: float) -> tuple[float, float]:
        with self._call("set stigmator"):
            self._eb.stigmator.value = self._S.Point(x, y)
        return self._get_stigmator()

    def _get_beam_current_a(self) -> float:
        return self._read("beam current", lambda: self._eb.beam_current.value)

    def _set_beam_current_a(self, current_a: float) -> float:
        return self._write("beam current", self._eb.beam_current, current_a)

    def _get_high_voltage_v(self) -> float:
        return self._read("high voltage", lambda: self._eb.high_voltage.value)

    def _set_high_voltage_v(self, hv_v: float) -> float:
        applied = self._write("high voltage", self._eb.high_voltage, hv_v)
        self._lim = None  # field-width and current limits follow the high voltage
        return applied

    def _get_beam_shift_m(self) -> tuple[float, float]:
        with self._call("read beam shift"):
            p = self._eb.beam_shift.value
            return (float(p.x), float(p.y))

    def _set_beam_shift_m(self, x_m: float, y_m: float) -> tuple[float, float]:
        with self._call("set beam shift"):
            self._eb.beam_shift.value = self._S.Point(x_m, y_m)
        return self._get_beam_shift_m()

    def _get_detector(self) -> str:
        with self._call("read detector"):
            return str(self._c.detector.type.value)

    def _set_detector(self, name: str) -> str:
        with self._call("select detector"):
            self._c.detector.type.value = name
        return self._get_detector()

    def _read(self, what: str, get: Callable[[], Any]) -> float:
        with self._call(f"read {what}"):
            return float(get())

    def _write(self, what: str, setting: Any, value: float) -> float:
        with self._call(f"set {what}"):
            setting.value = value
            return float(setting.value)

    # ---- actions -----------------------------------------------------------------------
    def _acquire(self) -> Frame:
        self._aborted.clear()
        rows, cols = self._shape
        settings = self._S.GrabFrameSettings(
            resolution=f"{cols}x{rows}", dwell_time=self._dwell, bit_depth=16,
            line_integration=self._line_integration if self._line_integration > 1 else None)
        before = self._snapshot()
        t0 = self._clock.now()
        with self._call("grab frame", abortable=True):
            image = self._c.imaging.grab_frame(settings)
        if self._aborted.is_set():
            raise Aborted("grab frame: stopped by abort()")
        t1 = self._clock.now()
        data = _vendor.to_uint16(image.data)
        if data.shape != (rows, cols):
            raise DriverError(f"grab frame: instrument returned {data.shape[::-1]} px (w x h), "
                              f"asked for {cols}x{rows}")
        pixel = _pixel_size(image, before["fov_m"] / cols)
        electrons, dose = _vendor.exposure(before["current"], (rows, cols), self._dwell,
                                           self._line_integration, before["fov_m"], before["blanked"])
        self._frames += 1
        self._electrons += electrons
        meta = FrameMeta(
            frame_id=self._frames, backend=self.backend, t_start_s=t0, t_end_s=t1,
            pixel_size_m=pixel, fov_m=before["fov_m"], shape_px=(rows, cols),
            dwell_s=self._dwell, line_integration=self._line_integration,
            detector=before["detector"], stage=before["stage"],
            working_distance_m=before["wd"], stigmator=before["stig"],
            beam_current_a=before["current"], high_voltage_v=before["hv"],
            scan_rotation_rad=before["rotation"], beam_shift_m=before["shift"],
            electrons=electrons, dose_e_per_m2=dose,
            extra={"vendor": "autoscript", "resolution": f"{cols}x{rows}",
                   "preset": (rows, cols) in self._known_presets()},
        )
        return Frame(image=data, meta=meta)

    def _known_presets(self) -> tuple[tuple[int, int], ...]:
        if self._presets is None:
            try:
                self._presets = self.presets()
            except DriverError:
                return ()
        return self._presets

    def _snapshot(self) -> dict[str, Any]:
        """Instrument state read just before a frame, for its metadata."""
        return {
            "fov_m": self._get_fov_m(), "wd": self._get_working_distance_m(),
            "stig": self._get_stigmator(), "current": self._get_beam_current_a(),
            "hv": self._get_high_voltage_v(), "shift": self._get_beam_shift_m(),
            "rotation": self._read("scan rotation", lambda: self._eb.scanning.rotation.value),
            "detector": self._get_detector(), "stage": self._stage(),
            "blanked": self._is_blanked(),
        }

    def _is_blanked(self) -> bool:
        with self._call("read blanking"):
            return bool(self._eb.is_blanked)

    def _blank(self) -> None:
        with self._call("blank beam"):
            self._eb.blank()

    def _unblank(self) -> None:
        with self._call("unblank beam"):
            self._eb.unblank()

    def _abort(self) -> None:
        """Stop the scan and the stage; uses the second connection when there is one."""
        self._aborted.set()
        client = self._abort_client or self._client
        if client is None:
            return
        failed = []
        for what, stop in (("stop acquisition", lambda: client.imaging.stop_acquisition()),
                           ("stop stage", lambda: client.specimen.stage.stop())):
            try:
                with self._call(what):
                    stop()
            except DriverError as exc:
                failed.append(str(exc))
        if failed:
            raise DriverError("abort: " + "; ".join(failed))

    def autofocus(self) -> float:
        """Run xT's auto focus (`auto_functions.run_auto_focus`); returns the new WD (m)."""
        self._aborted.clear()
        if self._client is None:
            raise NotConnectedError("AutoScript connection is closed")
        with self._call("auto focus", abortable=True):
            self._c.auto_functions.run_auto_focus()
        self._lim = None
        return self._get_working_distance_m()

    def _get_defocus_m(self) -> float:
        raise NotSupportedError("defocus_m is not offered by an SEM; use working_distance_m")


def _range(limits: Any) -> tuple[float, float]:
    return (float(limits.min), float(limits.max))


def _parse_wxh(value: Any) -> tuple[int, int]:
    """'1024x884' -> (1024, 884) (width, height)."""
    width, height = (int(p) for p in str(value).lower().split("x"))
    return width, height


def _pixel_size(image: Any, fallback_m: float) -> float:
    """Pixel size (m) from AdornedImage metadata, or `fallback_m` when it has none."""
    try:
        value = float(image.metadata.binary_result.pixel_size.x)
    except (AttributeError, TypeError, ValueError):
        return fallback_m
    return value if np.isfinite(value) and value > 0 else fallback_m
