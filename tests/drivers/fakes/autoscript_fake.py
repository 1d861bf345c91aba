"""A fake of Thermo Fisher AutoScript 4 (`autoscript_sdb_microscope_client`) for tests.

It reproduces the part of the SDK surface that `drivers.autoscript` uses, with the SDK's
names, SI units and return types, as documented publicly (see docs/adapters.md for the
sources and for what had to be guessed):

- `SdbMicroscopeClient().connect(host, port)`; `.imaging` (`set_active_view`,
  `set_active_device`, `grab_frame(GrabFrameSettings)` -> `AdornedImage`,
  `start_acquisition`, `stop_acquisition`, `state`); `.beams.electron_beam` (settings with
  `.value` and `.limits`, `Limits`/`Limits2d`, `Point` values, `blank()`, `unblank()`,
  `is_blanked`); `.detector.type`; `.specimen.stage` (`absolute_move(StagePosition)`,
  `current_position`, `get_axis_limits(axis)`, `stop()`); `.auto_functions.run_auto_focus()`.
- Errors: `autoscript_core.common.ApplicationServerException` and `ApiException`, with
  messages like the ones AutoScript's own test suite expects ("out of", "Minimum",
  "WIDTHxHEIGHT").

`FakeXT` is the simulated instrument behind the SDK (the xT server): every client that
connects to its host shares it, it records every call in `calls`, keeps a simulated clock
(`clock()`), and can inject failures (`fail`, `stage_busy`, `vented`, `go_offline`).
`install(monkeypatch)` puts the fake modules into `sys.modules`, so the adapter's lazy
import finds them as it would find the real SDK.
"""
from __future__ import annotations

import math
import sys
import threading
import types
from typing import Any

import numpy as np

# ---- autoscript_core.common -----------------------------------------------------------


class ApiException(Exception):
    """Client-side AutoScript failure (communication, bad use of the API)."""


class ApplicationServerException(Exception):
    """The xT server refused or failed a request."""


# ---- autoscript_sdb_microscope_client.enumerations ----------------------------------------


class ImagingDevice:
    ELECTRON_BEAM = 1
    ION_BEAM = 2
    CCD_CAMERA = 3
    NAV_CAM = 5


class ImagingState:
    IDLE = "Idle"
    ACQUIRING = "Acquiring"
    PAUSED = "Paused"


class CoordinateSystem:
    RAW = "Raw"
    SPECIMEN = "Specimen"


class StageAxis:
    X = "x"
    Y = "y"
    Z = "z"
    R = "r"
    T = "t"


class ScanningResolution:
    PRESET_512X442 = "512x442"
    PRESET_768X512 = "768x512"
    PRESET_1024X884 = "1024x884"
    PRESET_1536X1024 = "1536x1024"
    PRESET_2048X1768 = "2048x1768"
    PRESET_3072X2048 = "3072x2048"
    PRESET_4096X3536 = "4096x3536"
    PRESET_6144X4096 = "6144x4096"


class DetectorType:
    ETD = "ETD"
    TLD = "TLD"
    ICE = "ICE"
    CBS = "CBS"


class DetectorMode:
    SECONDARY_ELECTRONS = "SecondaryElectrons"
    BACKSCATTER_ELECTRONS = "BackscatterElectrons"


PRESETS = tuple(v for k, v in vars(ScanningResolution).items() if k.startswith("PRESET_"))

# ---- autoscript_sdb_microscope_client.structures ----------------------------------------


class Point:
    def __init__(self, x: float = 0.0, y: float = 0.0):
        self.x, self.y = x, y

    def __repr__(self) -> str:
        return f"Point(x={self.x!r}, y={self.y!r})"


class Limits:
    def __init__(self, min: float = 0.0, max: float = 0.0):  # noqa: A002 (SDK names)
        self.min, self.max = min, max

    def is_in(self, value: float) -> bool:
        return self.min <= value <= self.max

    def __repr__(self) -> str:
        return f"Limits(min={self.min!r}, max={self.max!r})"


class Limits2d:
    def __init__(self, limits_x: Limits | None = None, limits_y: Limits | None = None):
        self.limits_x, self.limits_y = limits_x or Limits(), limits_y or Limits()


class Rectangle:
    def __init__(self, left: float = 0.0, top: float = 0.0, width: float = 0.0, height: float = 0.0):
        self.left, self.top, self.width, self.height = left, top, width, height


class StagePosition:
    def __init__(self, x=None, y=None, z=None, r=None, t=None, coordinate_system=None):
        self.x, self.y, self.z, self.r, self.t = x, y, z, r, t
        self.coordinate_system = coordinate_system

    def __repr__(self) -> str:
        return (f"StagePosition(x={self.x}, y={self.y}, z={self.z}, r={self.r}, t={self.t}, "
                f"coordinate_system={self.coordinate_system!r})")


class MoveSettings:
    def __init__(self, rotate_compucentric: bool = False, link_z_y: bool = False):
        self.rotate_compucentric, self.link_z_y = rotate_compucentric, link_z_y


class GrabFrameSettings:
    def __init__(self, resolution=None, dwell_time=None, bit_depth=None, reduced_area=None,
                 line_integration=None, scan_interlacing=None, frame_integration=None,
                 drift_correction=False):
        self.resolution, self.dwell_time, self.bit_depth = resolution, dwell_time, bit_depth
        self.reduced_area, self.line_integration = reduced_area, line_integration
        self.scan_interlacing, self.frame_integration = scan_interlacing, frame_integration
        self.drift_correction = drift_correction


class _Bag:
    """Attribute bag for nested metadata (`metadata.binary_result.pixel_size`)."""

    def __init__(self, **kw: Any):
        self.__dict__.update(kw)


class AdornedImage:
    def __init__(self, data: np.ndarray | None = None, metadata: Any = None):
        self.data, self.metadata = data, metadata

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def bit_depth(self) -> int:
        return 16 if self.data.dtype == np.uint16 else 8


# ---- the simulated instrument (xT server) -------------------------------------------------


class FakeXT:
    """One simulated Thermo Fisher SEM behind the AutoScript server at `host`."""

    servers: dict[str, "FakeXT"] = {}

    def __init__(self, host: str = "fake-xt", seed: int = 0):
        self.host = host
        self.rng = np.random.default_rng(seed)
        self.calls: list[tuple[str, str, Any]] = []
        self.failures: dict[str, list[BaseException]] = {}
        self.time_s = 0.0
        self.online = True
        self.stage_busy = False
        self.vented = False
        self.hold_grab = False  # grab_frame blocks until stop_acquisition()
        self.stop_event = threading.Event()
        self.grab_started = threading.Event()
        self.frames = 0
        self.clients = 0
        self.focus_wd = 7.25e-3
        self.state = ImagingState.IDLE
        self.active_view, self.active_device = 1, ImagingDevice.ELECTRON_BEAM
        self.values: dict[str, Any] = {
            "working_distance": 4e-3,
            "horizontal_field_width": 100e-6,
            "beam_current": 100e-12,
            "high_voltage": 5e3,
            "stigmator": Point(0.0, 0.0),
            "beam_shift": Point(0.0, 0.0),
            "dwell_time": 1e-6,
            "resolution": "1024x884",
            "rotation": 0.0,
            "detector_type": DetectorType.ETD,
            "detector_mode": DetectorMode.SECONDARY_ELECTRONS,
        }
        self.limits: dict[str, Any] = {
            "working_distance": Limits(1e-3, 50e-3),
            "horizontal_field_width": Limits(50e-9, 2.3e-3),
            "beam_current": Limits(1e-12, 100e-9),
            "high_voltage": Limits(200.0, 30e3),
            "stigmator": Limits2d(Limits(-1.0, 1.0), Limits(-1.0, 1.0)),
            "beam_shift": Limits2d(Limits(-50e-6, 50e-6), Limits(-40e-6, 40e-6)),
            "dwell_time": Limits(25e-9, 25e-3),
            "rotation": Limits(-math.pi, math.pi),
        }
        self.detectors = [DetectorType.ETD, DetectorType.TLD, DetectorType.ICE, DetectorType.CBS]
        self.blanked = False
        self.axis_limits = {
            "x": Limits(-55e-3, 55e-3), "y": Limits(-55e-3, 55e-3), "z": Limits(0.0, 31e-3),
            "t": Limits(math.radians(-38.0), math.radians(60.0)),
        }
        self.position = {"x": 0.0, "y": 0.0, "z": 4e-3, "r": 0.0, "t": 0.0}
        self.coordinate_system = CoordinateSystem.RAW
        FakeXT.servers[host] = self

    # ---- test controls ----------------------------------------------------------------
    def clock(self) -> float:
        """Simulated instrument clock (s); pass as `clock=` to the adapter."""
        return self.time_s

    def fail(self, path: str, exc: BaseException, times: int = 1) -> None:
        """Make the next `times` uses of `path` (e.g. 'specimen.stage.absolute_move') raise."""
        self.failures.setdefault(path, []).extend([exc] * times)

    def go_offline(self) -> None:
        """Simulate a lost connection: every later call raises."""
        self.online = False

    def called(self, path: str) -> list[tuple[str, str, Any]]:
        return [c for c in self.calls if c[1] == path]

    def writes(self) -> list[tuple[str, str, Any]]:
        """Every call that changes the instrument (setters and actions, not reads)."""
        return [c for c in self.calls if c[0] in ("set", "call")
                and c[1] not in _READ_ONLY_CALLS]

    # ---- used by the proxies ------------------------------------------------------------
    def hit(self, kind: str, path: str, arg: Any = None) -> None:
        self.calls.append((kind, path, arg))
        if not self.online:
            raise ApiException(f"{path}: connection to the AutoScript server was lost")
        queue = self.failures.get(path)
        if queue:
            raise queue.pop(0)


_READ_ONLY_CALLS = {
    "imaging.get_active_view", "imaging.get_active_device", "specimen.stage.get_axis_limits",
    "connect", "disconnect", "imaging.set_active_view", "imaging.set_active_device",
    "specimen.stage.set_default_coordinate_system",
}


class _Node:
    def __init__(self, xt: FakeXT, path: str):
        self._xt, self._path = xt, path


class _Setting(_Node):
    """A setting with `.value`, `.limits` and `.available_values`, like the SDK's."""

    def __init__(self, xt: FakeXT, path: str, key: str):
        super().__init__(xt, path)
        self._key = key

    @property
    def value(self) -> Any:
        self._xt.hit("get", self._path)
        v = self._xt.values[self._key]
        return Point(v.x, v.y) if isinstance(v, Point) else v

    @value.setter
    def value(self, v: Any) -> None:
        self._xt.hit("set", self._path, v)
        self._check(v)
        self._xt.values[self._key] = Point(v.x, v.y) if isinstance(v, Point) else v

    @property
    def limits(self) -> Any:
        self._xt.hit("get", self._path + ".limits")
        return self._xt.limits[self._key]

    @property
    def available_values(self) -> list:
        self._xt.hit("get", self._path + ".available_values")
        if self._key == "resolution":
            return list(PRESETS)
        if self._key == "detector_type":
            return list(self._xt.detectors)
        raise ApplicationServerException(f"{self._path} has no list of available values")

    def _check(self, v: Any) -> None:
        if self._xt.vented and self._key == "high_voltage":
            raise ApplicationServerException("Cannot change high voltage: the chamber is vented")
        if self._key == "resolution":
            if v not in PRESETS:
                raise ApplicationServerException(f"Resolution {v} is not a supported preset")
            return
        if self._key == "detector_type":
            if v not in self._xt.detectors:
                raise ApplicationServerException(f"Detector type {v} is not available")
            return
        lim = self._xt.limits.get(self._key)
        if isinstance(lim, Limits2d):
            ok = lim.limits_x.is_in(v.x) and lim.limits_y.is_in(v.y)
        elif isinstance(lim, Limits):
            ok = lim.is_in(float(v))
        else:
            ok = True
        if not ok:
            raise ApplicationServerException(f"Value {v} of {self._path} is out of range")


class _Scanning(_Node):
    def __init__(self, xt: FakeXT, path: str):
        super().__init__(xt, path)
        self.dwell_time = _Setting(xt, path + ".dwell_time", "dwell_time")
        self.resolution = _Setting(xt, path + ".resolution", "resolution")
        self.rotation = _Setting(xt, path + ".rotation", "rotation")


class _ElectronBeam(_Node):
    def __init__(self, xt: FakeXT, path: str):
        super().__init__(xt, path)
        for key in ("working_distance", "horizontal_field_width", "beam_current", "high_voltage",
                    "stigmator", "beam_shift"):
            setattr(self, key, _Setting(xt, f"{path}.{key}", key))
        self.scanning = _Scanning(xt, path + ".scanning")
        self.is_installed = True

    @property
    def is_blanked(self) -> bool:
        self._xt.hit("get", self._path + ".is_blanked")
        return self._xt.blanked

    def blank(self) -> None:
        self._xt.hit("call", self._path + ".blank")
        self._xt.blanked = True

    def unblank(self) -> None:
        self._xt.hit("call", self._path + ".unblank")
        self._xt.blanked = False


class _Detector(_Node):
    def __init__(self, xt: FakeXT):
        super().__init__(xt, "detector")
        self.type = _Setting(xt, "detector.type", "detector_type")
        self.mode = _Setting(xt, "detector.mode", "detector_mode")


class _Stage(_Node):
    is_installed = True
    is_homed = True
    is_linked = True

    def set_default_coordinate_system(self, cs: str) -> None:
        self._xt.hit("call", self._path + ".set_default_coordinate_system", cs)
        self._xt.coordinate_system = cs

    @property
    def current_position(self) -> StagePosition:
        self._xt.hit("get", self._path + ".current_position")
        p = self._xt.position
        return StagePosition(p["x"], p["y"], p["z"], p["r"], p["t"], self._xt.coordinate_system)

    def get_axis_limits(self, axis: str) -> Limits:
        self._xt.hit("call", self._path + ".get_axis_limits", axis)
        if axis not in self._xt.axis_limits:
            raise ApplicationServerException(f"Axis {axis} has no limits")
        return self._xt.axis_limits[axis]

    def absolute_move(self, position: StagePosition, settings: MoveSettings | None = None) -> None:
        xt = self._xt
        xt.hit("call", self._path + ".absolute_move", position)
        if not isinstance(position, StagePosition):
            raise ApiException("absolute_move expects a StagePosition")
        if xt.stage_busy:
            raise ApplicationServerException("Stage is busy: another movement is in progress")
        if position.coordinate_system not in (None, xt.coordinate_system):
            raise ApplicationServerException("Only the default coordinate system is simulated")
        target = dict(xt.position)
        for axis in "xyzrt":
            v = getattr(position, axis)
            if v is None:
                continue
            lim = xt.axis_limits.get(axis)
            if lim is not None and not lim.is_in(v):
                raise ApplicationServerException(f"Target {axis} = {v} is out of range")
            target[axis] = float(v)
        travel = math.hypot(target["x"] - xt.position["x"], target["y"] - xt.position["y"])
        xt.time_s += travel / 1e-3 + 0.3  # 1 mm/s, 0.3 s settle
        xt.position = target

    def stop(self) -> None:
        self._xt.hit("call", self._path + ".stop")


class _Specimen(_Node):
    def __init__(self, xt: FakeXT):
        super().__init__(xt, "specimen")
        self.stage = _Stage(xt, "specimen.stage")


class _Imaging(_Node):
    def __init__(self, xt: FakeXT):
        super().__init__(xt, "imaging")

    def set_active_view(self, view: int) -> None:
        self._xt.hit("call", "imaging.set_active_view", view)
        self._xt.active_view = view

    def get_active_view(self) -> int:
        self._xt.hit("call", "imaging.get_active_view")
        return self._xt.active_view

    def set_active_device(self, device: int) -> None:
        self._xt.hit("call", "imaging.set_active_device", device)
        self._xt.active_device = device

    def get_active_device(self) -> int:
        self._xt.hit("call", "imaging.get_active_device")
        return self._xt.active_device

    @property
    def state(self) -> str:
        self._xt.hit("get", "imaging.state")
        return self._xt.state

    def start_acquisition(self) -> None:
        self._xt.hit("call", "imaging.start_acquisition")
        self._xt.state = ImagingState.ACQUIRING

    def stop_acquisition(self) -> None:
        self._xt.hit("call", "imaging.stop_acquisition")
        self._xt.state = ImagingState.IDLE
        self._xt.stop_event.set()

    def grab_frame(self, settings: GrabFrameSettings | None = None) -> AdornedImage:
        xt = self._xt
        xt.hit("call", "imaging.grab_frame", settings)
        s = settings or GrabFrameSettings()
        if xt.vented:
            raise ApplicationServerException("Cannot grab frame: the chamber is vented")
        width, height = _parse_resolution(s.resolution or xt.values["resolution"])
        dwell = xt.values["dwell_time"] if s.dwell_time is None else s.dwell_time
        if dwell <= 0 or not xt.limits["dwell_time"].is_in(dwell):
            raise ApplicationServerException(f"Value of dwell time {dwell} is out of range")
        li = 1 if s.line_integration is None else s.line_integration
        if not 1 <= li <= 255:
            raise ApplicationServerException(f"Line integration {li} is out of range")
        depth = 8 if s.bit_depth is None else s.bit_depth
        if depth not in (8, 16):
            raise ApplicationServerException("Bit depth must be 8 or 16")
        if s.reduced_area is not None:
            width = int(s.reduced_area.width * width)
            height = int(s.reduced_area.height * height)
        return self._scan(width, height, dwell, li, depth)

    def _scan(self, width: int, height: int, dwell: float, li: int, depth: int) -> AdornedImage:
        xt = self._xt
        xt.stop_event.clear()
        xt.state = ImagingState.ACQUIRING
        xt.grab_started.set()
        if xt.hold_grab:
            xt.stop_event.wait(timeout=5.0)
            xt.state = ImagingState.IDLE
            raise ApplicationServerException("Acquisition was aborted by stop_acquisition()")
        xt.time_s += height * (width * dwell * li + 100e-6)
        xt.state = ImagingState.IDLE
        xt.frames += 1
        level = 200.0 if xt.blanked else 12000.0 + 4000.0 * np.sin(np.arange(width) / 7.0)
        data = np.clip(xt.rng.normal(level, 300.0, (height, width)), 0, 65535)
        data = data.astype(np.uint16) if depth == 16 else (data / 257).astype(np.uint8)
        pixel = xt.values["horizontal_field_width"] / width
        meta = _Bag(
            binary_result=_Bag(pixel_size=Point(pixel, pixel)),
            scan_settings=_Bag(dwell_time=dwell, line_integration=li),
            acquisition=_Bag(acquisition_datetime="01/01/2026 12:00:00"),
            optics=_Bag(scan_field_of_view=_Bag(width=pixel * width, height=pixel * height)),
        )
        return AdornedImage(data, meta)


def _parse_resolution(res: str) -> tuple[int, int]:
    try:
        w, h = (int(p) for p in str(res).lower().split("x"))
    except ValueError:
        raise ApplicationServerException(f"Resolution {res!r} must be given as WIDTHxHEIGHT") from None
    if w > 65536 or h > 65536:
        raise ApplicationServerException("Maximum resolution is 65536x65536")
    if w < 12 or h < 12:
        raise ApplicationServerException("Minimum resolution is 12x12")
    if f"{w}x{h}" not in PRESETS and (w > 6144 or h > 6144):
        raise ApplicationServerException("Resolutions above 6144 must be grabbed to disk")
    return w, h


class _AutoFunctions(_Node):
    def run_auto_focus(self, settings: Any = None) -> None:
        xt = self._xt
        xt.hit("call", "auto_functions.run_auto_focus", settings)
        xt.time_s += 8.0
        xt.values["working_distance"] = xt.focus_wd


class SdbMicroscopeClient:
    """The AutoScript client: `connect()` to the fake server at a host."""

    def __init__(self) -> None:
        self._xt: FakeXT | None = None

    def connect(self, host: str = "localhost", port: int | None = None) -> None:
        xt = FakeXT.servers.get(host)
        if xt is None:
            raise ApiException(f"Cannot connect to AutoScript server at {host}:{port or 7520}")
        xt.hit("call", "connect", (host, port))
        xt.clients += 1
        self._xt = xt
        self.imaging = _Imaging(xt)
        self.beams = _Bag(electron_beam=_ElectronBeam(xt, "beams.electron_beam"))
        self.detector = _Detector(xt)
        self.specimen = _Specimen(xt)
        self.auto_functions = _AutoFunctions(xt, "auto_functions")
        self.service = _Bag(system=_Bag(name="Fake SEM", serial_number="0000", version="xT 0"),
                            autoscript=_Bag(client=_Bag(version="4.9.0")))

    def disconnect(self) -> None:
        if self._xt is not None:
            self._xt.calls.append(("call", "disconnect", None))
            self._xt.clients -= 1
            self._xt = None


# ---- module objects ----------------------------------------------------------------------

MODULE_NAMES = (
    "autoscript_core", "autoscript_core.common", "autoscript_sdb_microscope_client",
    "autoscript_sdb_microscope_client.structures", "autoscript_sdb_microscope_client.enumerations",
)


def make_modules() -> dict[str, types.ModuleType]:
    """The fake SDK as importable modules, keyed by their real names."""
    common = types.ModuleType("autoscript_core.common")
    common.ApiException, common.ApplicationServerException = ApiException, ApplicationServerException
    core = types.ModuleType("autoscript_core")
    core.common = common
    structures = types.ModuleType("autoscript_sdb_microscope_client.structures")
    for cls in (Point, Limits, Limits2d, Rectangle, StagePosition, MoveSettings,
                GrabFrameSettings, AdornedImage):
        setattr(structures, cls.__name__, cls)
    enumerations = types.ModuleType("autoscript_sdb_microscope_client.enumerations")
    for cls in (ImagingDevice, ImagingState, CoordinateSystem, StageAxis, ScanningResolution,
                DetectorType, DetectorMode):
        setattr(enumerations, cls.__name__, cls)
    client = types.ModuleType("autoscript_sdb_microscope_client")
    client.SdbMicroscopeClient = SdbMicroscopeClient
    client.structures, client.enumerations = structures, enumerations
    return {
        "autoscript_core": core, "autoscript_core.common": common,
        "autoscript_sdb_microscope_client": client,
        "autoscript_sdb_microscope_client.structures": structures,
        "autoscript_sdb_microscope_client.enumerations": enumerations,
    }


def install(monkeypatch: Any) -> None:
    """Put the fake SDK into `sys.modules` for one test (undone by pytest)."""
    for name, module in make_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
