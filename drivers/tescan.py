"""`TescanMicroscope`: TESCAN SEMs through the SharkSEM Python SDK `tescanautomation`.

Written against the publicly documented parts of the SDK (the calls made by fibsem-os and
TESCAN's example scripts) plus names guessed from the SharkSEM protocol where no public
example exists; tested only against the fake in tests/drivers/fakes/tescan_fake.py, never
against a real instrument. Coverage and guesses: docs/adapters.md.

Units are converted at the boundary: the SDK takes mm (working distance, view field, image
shift, stage x/y/z), degrees (scan rotation, stage rotation and tilt), pA (beam current),
V (high voltage) and integer ns (dwell time); the interface speaks m, rad, A, V and s.

The SDK offers no limit queries for the optics, so those ranges come from `TESCAN_LIMITS`
(public specifications and conservative guesses), overridable with `limits=`. Stage limits
are read with `Stage.GetLimits`; when the SDK lacks it and none are configured, stage
moves are refused (`NotSupportedError`) rather than sent unchecked.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from . import _vendor
from .base import Microscope
from .errors import Aborted, DriverError, InterlockError, NotConnectedError, NotSupportedError
from .types import Frame, FrameMeta, Limits, ScanSettings, StagePose, Status

SDK = "tescanautomation"
_HINT = ("Run the server with the Python that has TESCAN's Automation SDK installed, on the "
         "instrument PC or a PC that reaches SharkSEM (see docs/adapters.md).")
MM = 1e-3
PA = 1e-12
NS = 1e-9

#: Optics ranges the SDK cannot report (SI). Sources and guesses: docs/adapters.md.
TESCAN_LIMITS: dict[str, Any] = {
    "fov_m": (1e-6, 2.58e-3),  # fibsem-os SEM_LIMITS for TESCAN
    "dwell_s": (100e-9, 1e-3),  # guess: integer ns, conservative
    "shape_px_max": (8192, 8192),  # guess
    "line_integration_max": 1,  # AcquireImage has no line integration
    "rotation_rad": (-math.pi, math.pi),
    "working_distance_m": (1e-3, 30e-3),  # guess, conservative
    "stigmator": (-100.0, 100.0),  # guess: Essence shows stigmators in %
    "beam_current_a": (10e-12, 100e-9),  # odemis tescan driver PROBE_CURRENT_RANGE
    "high_voltage_v": (200.0, 30e3),  # TESCAN SEM specifications
    "beam_shift_m": (-50e-6, 50e-6),  # guess
}
#: Blanker modes of SharkSEM's ScSetBlanker: 0 off, 1 blanked, 2 automatic.
BLANKER_OFF, BLANKER_ON, BLANKER_AUTO = 0, 1, 2
_STAGE_AXES = (("x_m", "x", MM), ("y_m", "y", MM), ("z_m", "z", MM),
               ("rot_rad", "rot", math.pi / 180), ("tilt_rad", "tiltx", math.pi / 180))
_MOVE_EPS = {"x_m": 1e-12, "y_m": 1e-12, "z_m": 1e-12, "rot_rad": 1e-9, "tilt_rad": 1e-9}


class TescanMicroscope(Microscope):
    """A TESCAN SEM through `tescanautomation`; connects in the constructor.

    host, port: SharkSEM server (port None means the default, 8300). channel: SharkSEM video channel.
    detector: detector name to select at connect (default: keep the current one).
    limits: overrides of `TESCAN_LIMITS` (same keys, SI units). stage_limits: fallback
    stage ranges {"x_m": (lo, hi), ...} when the SDK cannot report them. clock, sleep:
    time sources (tests pass the fake's). poll_s, stage_timeout_s, busy_timeout_s: how
    `move_stage` and `acquire` wait for the stage and the column.
    """

    backend = "tescan"

    def __init__(
        self,
        host: str = "localhost",
        port: int | None = 8300,
        *,
        channel: int = 0,
        detector: str | None = None,
        limits: dict[str, Any] | None = None,
        stage_limits: dict[str, tuple[float, float]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = 0.05,
        stage_timeout_s: float = 300.0,
        busy_timeout_s: float = 120.0,
        abort_connection: bool = True,
    ):
        unknown = set(limits or {}) - set(TESCAN_LIMITS)
        if unknown:
            raise ValueError(f"limits: unknown keys {sorted(unknown)}; allowed {sorted(TESCAN_LIMITS)}")
        self._host, self._port, self._channel = host, 8300 if port is None else port, channel
        self._optics = {**TESCAN_LIMITS, **(limits or {})}
        self._sleep, self._poll_s = sleep, poll_s
        self._stage_timeout_s, self._busy_timeout_s = stage_timeout_s, busy_timeout_s
        sdk = _vendor.import_sdk(SDK, "TESCAN", _HINT)
        common = _vendor.import_sdk(SDK + ".Common", "TESCAN", _HINT)
        self._bpp = getattr(common.Bpp, "Grayscale_16_bit", None) or common.Bpp.Grayscale_8_bit
        self._aborted = threading.Event()
        self._electrons, self._frames = 0.0, 0
        self._shape, self._dwell_ns = (768, 1024), 1000
        self._lim: Limits | None = None
        self._abort_conn: Any = None
        self._conn: Any = self._connect(sdk)
        try:
            if abort_connection:
                try:
                    self._abort_conn = self._connect(sdk)
                except DriverError:
                    self._abort_conn = None  # abort() then uses the main connection
            self._detector_obj = self._pick_detector(detector)
            self._stage_ranges = self._read_stage_limits(stage_limits)
        except BaseException:
            self.close()
            raise
        self._clock = _vendor.InstrumentClock(clock)

    # ---- connection ------------------------------------------------------------------
    def _connect(self, sdk: Any) -> Any:
        with self._call(f"connect to SharkSEM at {self._host}:{self._port}"):
            return sdk.Automation(self._host, self._port)

    def close(self) -> None:
        _vendor.disconnect_quietly(self, ("_abort_conn", "_conn"), "Disconnect")

    def _call(self, what: str, abortable: bool = False) -> Any:
        return _vendor.vendor_call(what, self._aborted if abortable else None)

    @property
    def _c(self) -> Any:
        if self._conn is None:
            raise NotConnectedError("SharkSEM connection is closed")
        return self._conn

    @property
    def _sem(self) -> Any:
        return self._c.SEM

    def _pick_detector(self, name: str | None) -> Any:
        with self._call("select detector"):
            detectors = list(self._sem.Detector.Enum())
            if name is None:
                current = self._sem.Detector.Get(Channel=self._channel)
                return current if current is not None else detectors[0]
        return self._select(name, detectors)

    def _select(self, name: str, detectors: list[Any]) -> Any:
        match = [d for d in detectors if d.name == name]
        if not match:
            raise DriverError(f"detector {name!r} is not offered by the instrument")
        with self._call("select detector"):
            self._sem.Detector.Set(Channel=self._channel, Detector=match[0])
            return self._sem.Detector.Get(Channel=self._channel)

    def _read_stage_limits(self, fallback: dict[str, tuple[float, float]] | None) -> dict | None:
        """Stage ranges in SI from `Stage.GetLimits` (mm, deg), else `fallback`, else None."""
        try:
            with self._call("read stage limits"):
                raw = [float(v) for v in self._c.Stage.GetLimits(1)]
        except (DriverError, AttributeError):
            raw = []
        if len(raw) >= 10:
            return {ours: (raw[2 * i] * scale, raw[2 * i + 1] * scale)
                    for i, (ours, _, scale) in enumerate(_STAGE_AXES)}
        return dict(fallback) if fallback else None

    # ---- state -------------------------------------------------------------------------
    def _status(self) -> Status:
        if self._conn is None:
            return Status(backend=self.backend, connected=False, message="closed")
        try:
            with self._call("read status"):
                blanked = int(self._sem.Scan.GetBlanker()) == BLANKER_ON
                busy = bool(self._sem.IsBusy()) or bool(self._c.Stage.IsBusy())
        except DriverError as exc:
            return Status(backend=self.backend, connected=False, message=str(exc))
        return Status(backend=self.backend, connected=True, beam_blanked=blanked, busy=busy,
                      instrument_time_s=self._clock.now(), total_electrons=self._electrons,
                      frames_acquired=self._frames, message=f"SharkSEM at {self._host}:{self._port}")

    def _limits(self) -> Limits:
        if self._lim is None:
            with self._call("read detectors"):
                detectors = tuple(str(d.name) for d in self._sem.Detector.Enum())
            stage = self._stage_ranges or self._frozen_stage()
            o = self._optics
            self._lim = Limits(
                stage_x_m=stage["x_m"], stage_y_m=stage["y_m"], stage_z_m=stage["z_m"],
                stage_tilt_rad=stage["tilt_rad"], stage_rot_rad=stage["rot_rad"],
                fov_m=o["fov_m"], dwell_s=o["dwell_s"], shape_px_max=o["shape_px_max"],
                line_integration_max=o["line_integration_max"], rotation_rad=o["rotation_rad"],
                working_distance_m=o["working_distance_m"], stigmator=o["stigmator"],
                beam_current_a=o["beam_current_a"], high_voltage_v=o["high_voltage_v"],
                beam_shift_m=o["beam_shift_m"], detectors=detectors)
        return self._lim

    def _frozen_stage(self) -> dict[str, tuple[float, float]]:
        """Stage ranges when none are known: the current pose only (moves are refused)."""
        pose = self._stage()
        return {ours: (getattr(pose, ours), getattr(pose, ours)) for ours, _, _ in _STAGE_AXES}

    # ---- stage -------------------------------------------------------------------------
    def _stage(self) -> StagePose:
        with self._call("read stage position"):
            p = [float(v) for v in self._c.Stage.GetPosition()]
        return StagePose(x_m=p[0] * MM, y_m=p[1] * MM, z_m=p[2] * MM,
                         rot_rad=math.radians(p[3]), tilt_rad=math.radians(p[4]))

    def move_stage(
        self,
        x_m: float | None = None,
        y_m: float | None = None,
        z_m: float | None = None,
        tilt_rad: float | None = None,
        rot_rad: float | None = None,
        relative: bool = False,
    ) -> StagePose:
        """As `Microscope.move_stage`; refused when the stage limits are unknown."""
        if self._stage_ranges is None:
            raise NotSupportedError(
                "move_stage: the SDK reports no stage limits (Stage.GetLimits) and none were "
                "configured; pass stage_limits= to TescanMicroscope")
        return super().move_stage(x_m=x_m, y_m=y_m, z_m=z_m, tilt_rad=tilt_rad,
                                  rot_rad=rot_rad, relative=relative)

    def _move_stage(self, target: StagePose) -> StagePose:
        self._aborted.clear()
        self._wait("stage busy before move", lambda: not self._c.Stage.IsBusy(), self._stage_timeout_s)
        now = self._stage()
        axes = {theirs: getattr(target, ours) / scale for ours, theirs, scale in _STAGE_AXES
                if abs(getattr(target, ours) - getattr(now, ours)) > _MOVE_EPS[ours]}
        if not axes:
            return now
        with self._call("move stage", abortable=True):
            self._c.Stage.MoveTo(**axes)
        self._wait("stage move", lambda: not self._c.Stage.IsBusy(), self._stage_timeout_s)
        return self._stage()

    def _wait(self, what: str, done: Callable[[], bool], timeout_s: float) -> None:
        _vendor.wait_until(done, what, timeout_s, self._aborted, self._sleep, self._poll_s)

    # ---- imaging settings ----------------------------------------------------------------
    def _get_fov_m(self) -> float:
        return self._read("view field", self._sem.Optics.GetViewfield) * MM

    def _set_fov_m(self, fov_m: float) -> float:
        with self._call("set view field"):
            self._sem.Optics.SetViewfield(fov_m / MM)
        return self._get_fov_m()

    def _get_scan(self) -> ScanSettings:
        deg = self._read("image rotation", self._sem.Optics.GetImageRotation)
        rotation = 0.0 if math.isnan(deg) else math.radians(deg)  # NaN on TESCAN's simulator
        return ScanSettings(shape_px=self._shape, dwell_s=self._dwell_ns * NS,
                            rotation_rad=rotation, line_integration=1)

    def _set_scan(self, scan: ScanSettings) -> ScanSettings:
        dwell_ns = int(round(scan.dwell_s / NS))
        current = self._get_scan()
        if scan.rotation_rad != current.rotation_rad:
            with self._call("set image rotation"):
                self._sem.Optics.SetImageRotation(math.degrees(scan.rotation_rad))
        self._shape = (int(scan.shape_px[0]), int(scan.shape_px[1]))
        self._dwell_ns = max(1, dwell_ns)
        return self._get_scan()

    def _get_working_distance_m(self) -> float:
        return self._read("working distance", self._sem.Optics.GetWD) * MM

    def _set_working_distance_m(self, wd_m: float) -> float:
        with self._call("set working distance"):
            self._sem.Optics.SetWD(wd_m / MM)
        return self._get_working_distance_m()

    def _get_stigmator(self) -> tuple[float, float]:
        with self._call("read stigmator"):
            x, y = self._sem.Optics.GetStigmator()
        return (float(x), float(y))

    def _set_stigmator(self, x: float, y: float) -> tuple[float, float]:
        with self._call("set stigmator"):
            self._sem.Optics.SetStigmator(x, y)
        return self._get_stigmator()

    def _get_beam_current_a(self) -> float:
        return self._read("beam current", self._sem.Beam.GetCurrent) * PA

    def _set_beam_current_a(self, current_a: float) -> float:
        with self._call("set beam current"):
            self._sem.Beam.SetCurrent(current_a / PA)
        return self._get_beam_current_a()

    def _get_high_voltage_v(self) -> float:
        return self._read("high voltage", self._sem.Beam.GetVoltage)

    def _set_high_voltage_v(self, hv_v: float) -> float:
        with self._call("set high voltage"):
            self._sem.Beam.SetVoltage(hv_v)
        return self._get_high_voltage_v()

    def _get_beam_shift_m(self) -> tuple[float, float]:
        with self._call("read image shift"):
            x, y = self._sem.Optics.GetImageShift()
        return (float(x) * MM, float(y) * MM)

    def _set_beam_shift_m(self, x_m: float, y_m: float) -> tuple[float, float]:
        with self._call("set image shift"):
            self._sem.Optics.SetImageShift(x_m / MM, y_m / MM)
        return self._get_beam_shift_m()

    def _get_detector(self) -> str:
        return str(self._detector_obj.name)

    def _set_detector(self, name: str) -> str:
        with self._call("list detectors"):
            detectors = list(self._sem.Detector.Enum())
        self._detector_obj = self._select(name, detectors)
        return self._get_detector()

    def _read(self, what: str, get: Callable[[], Any]) -> float:
        with self._call(f"read {what}"):
            return float(get())

    # ---- actions -------------------------------------------------------------------------
    def _acquire(self) -> Frame:
        self._aborted.clear()
        with self._call("read beam state"):
            if self._sem.Beam.GetStatus() != self._sem.Beam.Status.BeamOn:
                raise InterlockError("acquire: the electron beam is off; switch it on in Essence")
        rows, cols = self._shape
        before = self._snapshot()
        with self._call("stop live scan"):
            self._sem.Scan.Stop()
        self._wait("column busy before scan", lambda: not self._sem.IsBusy(), self._busy_timeout_s)
        t0 = self._clock.now()
        with self._call("acquire image", abortable=True):
            doc = self._sem.Scan.AcquireImage(Detector=self._detector_obj, Bpp=self._bpp,
                                              Width=cols, Height=rows, DwellTime=self._dwell_ns)
        t1 = self._clock.now()
        if self._aborted.is_set():
            raise Aborted("acquire image: stopped by abort()")
        if doc is None:
            raise DriverError("acquire image: the instrument returned no image")
        data = _vendor.to_uint16(doc.Image)
        if data.shape != (rows, cols):
            raise DriverError(f"acquire image: got {data.shape} px, asked for {(rows, cols)}")
        pixel = _header_pixel_size(doc, before["fov_m"] / cols)
        dwell_s = self._dwell_ns * NS
        electrons, dose = _vendor.exposure(before["current"], (rows, cols), dwell_s, 1,
                                           before["fov_m"], before["blanked"])
        self._frames += 1
        self._electrons += electrons
        meta = FrameMeta(
            frame_id=self._frames, backend=self.backend, t_start_s=t0, t_end_s=t1,
            pixel_size_m=pixel, fov_m=before["fov_m"], shape_px=(rows, cols), dwell_s=dwell_s,
            line_integration=1, detector=self._get_detector(), stage=before["stage"],
            working_distance_m=before["wd"], stigmator=before["stig"],
            beam_current_a=before["current"], high_voltage_v=before["hv"],
            scan_rotation_rad=before["rotation"], beam_shift_m=before["shift"],
            electrons=electrons, dose_e_per_m2=dose,
            extra={"vendor": "tescan", "dwell_ns": self._dwell_ns,
                   "header_wd_m": _header_float(doc, "SEM", "WD")},
        )
        return Frame(image=data, meta=meta)

    def _snapshot(self) -> dict[str, Any]:
        with self._call("read blanker"):
            blanked = int(self._sem.Scan.GetBlanker()) == BLANKER_ON
        return {
            "fov_m": self._get_fov_m(), "wd": self._get_working_distance_m(),
            "stig": self._get_stigmator(), "current": self._get_beam_current_a(),
            "hv": self._get_high_voltage_v(), "shift": self._get_beam_shift_m(),
            "rotation": self._get_scan().rotation_rad, "stage": self._stage(), "blanked": blanked,
        }

    def _blank(self) -> None:
        with self._call("blank beam"):
            self._sem.Scan.SetBlanker(BLANKER_ON)

    def _unblank(self) -> None:
        """Automatic blanking: the beam reaches the specimen only while scanning."""
        with self._call("unblank beam"):
            self._sem.Scan.SetBlanker(BLANKER_AUTO)

    def _abort(self) -> None:
        """Stop the scan (`SEM.Scan.Stop`) and the stage (`Stage.Stop`) on the abort link."""
        self._aborted.set()
        conn = self._abort_conn or self._conn
        if conn is None:
            return
        failed = []
        for what, stop in (("stop scan", lambda: conn.SEM.Scan.Stop()),
                           ("stop stage", lambda: conn.Stage.Stop())):
            try:
                with self._call(what):
                    stop()
            except DriverError as exc:
                failed.append(str(exc))
        if failed:
            raise DriverError("abort: " + "; ".join(failed))

    def autofocus(self) -> float:
        """Run Essence's fine auto WD (`SEM.AutoWDFine`); returns the new WD (m)."""
        self._aborted.clear()
        with self._call("auto focus", abortable=True):
            self._sem.AutoWDFine(self._detector_obj)
        self._wait("auto focus", lambda: not self._sem.IsBusy(), self._busy_timeout_s)
        return self._get_working_distance_m()


def _header_float(doc: Any, section: str, key: str) -> float | None:
    try:
        return float(doc.Header[section][key])
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _header_pixel_size(doc: Any, fallback_m: float) -> float:
    """Pixel size (m) from the image header (TESCAN headers are SI), else `fallback_m`."""
    value = _header_float(doc, "MAIN", "PixelSizeX")
    return value if value is not None and math.isfinite(value) and value > 0 else fallback_m
