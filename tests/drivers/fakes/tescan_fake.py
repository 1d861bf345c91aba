"""A fake of TESCAN's `tescanautomation` Python SDK (SharkSEM remote control) for tests.

It reproduces the part of the SDK that `drivers.tescan` uses, with the SDK's names and
*vendor units* (mm, degrees, pA, V, ns), as far as they are documented publicly (the calls
the open-source fibsem-os and TESCAN's example scripts make; see docs/adapters.md):

- `Automation(host, port=8300)`, `.Disconnect()`; `SEM.Beam` (`GetStatus`, `On`, `Off`,
  `GetCurrent` pA, `SetCurrent`, `GetVoltage` V, `SetVoltage`); `SEM.Optics` (`GetWD`/`SetWD`
  mm, `GetViewfield`/`SetViewfield` mm, `GetImageRotation`/`SetImageRotation` deg,
  `GetImageShift`/`SetImageShift` mm); `SEM.Scan` (`Stop`, `AcquireImage(Detector, Bpp,
  Width, Height, DwellTime ns)` -> `Document` with `.Image` (a PIL image) and `.Header`
  (SI strings, sections "MAIN" and "SEM")); `SEM.Detector` (`Enum`, `Get`, `Set`);
  `SEM.IsBusy`, `SEM.AutoWDFine`; `Stage.GetPosition` (mm, deg), `Stage.MoveTo(x, y, z, rot,
  tiltx)`.
- Guessed from the SharkSEM protocol (StgGetLimits, StgIsBusy, StgStop, ScSetBlanker,
  ScGetBlanker) because no public tescanautomation example shows them: `Stage.GetLimits`,
  `Stage.IsBusy`, `Stage.Stop`, `SEM.Scan.SetBlanker`/`GetBlanker`, and the stigmator calls
  `SEM.Optics.GetStigmator`/`SetStigmator`. Failures raise `AutomationError` (name guessed).

`FakeEssence` is the simulated instrument behind the SDK: every `Automation` connected to
its host shares it; it records calls, keeps a simulated clock and injects failures.
"""
from __future__ import annotations

import math
import sys
import threading
import types
from typing import Any

import numpy as np
from PIL import Image


class AutomationError(Exception):
    """Raised by the SDK when Essence refuses or fails a request (name guessed)."""


class HVBeamStatus:
    BeamOff = 0
    BeamOn = 1
    Transition = 2


class Bpp:
    Grayscale_8_bit = 8
    Grayscale_16_bit = 16


class Detector:
    def __init__(self, index: int, name: str):
        self.index, self.name = index, name

    def __repr__(self) -> str:
        return f"Detector({self.index}, {self.name!r})"


class Document:
    def __init__(self, image: Image.Image, header: dict[str, dict[str, str]]):
        self.Image, self.Header = image, header


class FakeEssence:
    """One simulated TESCAN SEM behind SharkSEM at `host`."""

    servers: dict[str, "FakeEssence"] = {}

    def __init__(self, host: str = "fake-essence", seed: int = 0):
        self.host = host
        self.rng = np.random.default_rng(seed)
        self.calls: list[tuple[str, Any]] = []
        self.failures: dict[str, list[BaseException]] = {}
        self.time_s = 0.0
        self.online = True
        self.connections = 0
        self.beam_on = True
        self.blanker = 2  # 0 off, 1 blanked, 2 automatic (blanked between scans)
        self.wd_mm, self.viewfield_mm = 10.0, 0.1
        self.current_pa, self.voltage_v = 100.0, 10e3
        self.rotation_deg, self.shift_mm = 0.0, (0.0, 0.0)
        self.stigmator = (0.0, 0.0)
        self.detectors = [Detector(0, "SE"), Detector(1, "BSE"), Detector(3, "In-Beam SE")]
        self.selected = self.detectors[0]
        self.position = [0.0, 0.0, 20.0, 0.0, 0.0]  # mm, mm, mm, deg, deg
        self.stage_limits = [-40.0, 40.0, -40.0, 40.0, 0.0, 45.0, -360.0, 360.0, -30.0, 80.0]
        self.has_stage_limits = True
        self.busy_polls = 0  # Stage.IsBusy() reports True this many more times
        self.move_polls = 2  # a move keeps the stage busy for this many polls
        self.sem_busy_polls = 0
        self.hold_scan = False  # AcquireImage blocks until Scan.Stop()
        self.stop_event = threading.Event()
        self.scan_started = threading.Event()
        self.frames = 0
        self.focus_wd_mm = 9.5
        FakeEssence.servers[host] = self

    # ---- test controls ---------------------------------------------------------------
    def clock(self) -> float:
        return self.time_s

    def sleep(self, seconds: float) -> None:
        """Pass as `sleep=` to the adapter: advances the simulated clock only."""
        self.time_s += seconds

    def fail(self, name: str, exc: BaseException, times: int = 1) -> None:
        self.failures.setdefault(name, []).extend([exc] * times)

    def go_offline(self) -> None:
        self.online = False

    def called(self, name: str) -> list[tuple[str, Any]]:
        return [c for c in self.calls if c[0] == name]

    def hit(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if not self.online:
            raise ConnectionResetError(f"{name}: SharkSEM socket closed by peer")
        queue = self.failures.get(name)
        if queue:
            raise queue.pop(0)


class _Part:
    def __init__(self, ess: FakeEssence):
        self._e = ess


class _Beam(_Part):
    Status = HVBeamStatus

    def GetStatus(self) -> int:
        self._e.hit("SEM.Beam.GetStatus")
        return HVBeamStatus.BeamOn if self._e.beam_on else HVBeamStatus.BeamOff

    def On(self) -> None:
        self._e.hit("SEM.Beam.On")
        self._e.beam_on = True

    def Off(self) -> None:
        self._e.hit("SEM.Beam.Off")
        self._e.beam_on = False

    def GetCurrent(self) -> float:
        self._e.hit("SEM.Beam.GetCurrent")
        return self._e.current_pa

    def SetCurrent(self, current_pa: float) -> None:
        self._e.hit("SEM.Beam.SetCurrent", current_pa)
        _check("beam current", current_pa, 10.0, 100e3)
        self._e.current_pa = float(current_pa)

    def GetVoltage(self) -> float:
        self._e.hit("SEM.Beam.GetVoltage")
        return self._e.voltage_v

    def SetVoltage(self, voltage_v: float) -> None:
        self._e.hit("SEM.Beam.SetVoltage", voltage_v)
        _check("voltage", voltage_v, 200.0, 30e3)
        self._e.voltage_v = float(voltage_v)


class _Optics(_Part):
    def GetWD(self) -> float:
        self._e.hit("SEM.Optics.GetWD")
        return self._e.wd_mm

    def SetWD(self, wd_mm: float) -> None:
        self._e.hit("SEM.Optics.SetWD", wd_mm)
        _check("working distance", wd_mm, 1.0, 30.0)
        self._e.wd_mm = float(wd_mm)

    def GetViewfield(self) -> float:
        self._e.hit("SEM.Optics.GetViewfield")
        return self._e.viewfield_mm

    def SetViewfield(self, viewfield_mm: float) -> None:
        self._e.hit("SEM.Optics.SetViewfield", viewfield_mm)
        _check("view field", viewfield_mm, 1e-3, 2.58)
        self._e.viewfield_mm = float(viewfield_mm)

    def GetImageRotation(self) -> float:
        self._e.hit("SEM.Optics.GetImageRotation")
        return self._e.rotation_deg

    def SetImageRotation(self, rotation_deg: float) -> None:
        self._e.hit("SEM.Optics.SetImageRotation", rotation_deg)
        _check("image rotation", rotation_deg, -360.0, 360.0)
        self._e.rotation_deg = float(rotation_deg)

    def GetImageShift(self) -> tuple[float, float]:
        self._e.hit("SEM.Optics.GetImageShift")
        return self._e.shift_mm

    def SetImageShift(self, x_mm: float, y_mm: float) -> None:
        self._e.hit("SEM.Optics.SetImageShift", x_mm, y_mm)
        _check("image shift x", x_mm, -0.05, 0.05)
        _check("image shift y", y_mm, -0.05, 0.05)
        self._e.shift_mm = (float(x_mm), float(y_mm))

    def GetStigmator(self) -> tuple[float, float]:
        self._e.hit("SEM.Optics.GetStigmator")
        return self._e.stigmator

    def SetStigmator(self, x: float, y: float) -> None:
        self._e.hit("SEM.Optics.SetStigmator", x, y)
        _check("stigmator x", x, -100.0, 100.0)
        _check("stigmator y", y, -100.0, 100.0)
        self._e.stigmator = (float(x), float(y))


class _Scan(_Part):
    def Stop(self) -> None:
        self._e.hit("SEM.Scan.Stop")
        self._e.stop_event.set()

    def SetBlanker(self, mode: int) -> None:
        self._e.hit("SEM.Scan.SetBlanker", mode)
        if mode not in (0, 1, 2):
            raise AutomationError(f"blanker mode {mode} is out of range")
        self._e.blanker = int(mode)

    def GetBlanker(self) -> int:
        self._e.hit("SEM.Scan.GetBlanker")
        return self._e.blanker

    def AcquireImage(self, Detector: Detector, Bpp: int, Width: int, Height: int,  # noqa: N803
                     DwellTime: int) -> Document | None:
        e = self._e
        e.hit("SEM.Scan.AcquireImage", Detector, Bpp, Width, Height, DwellTime)
        if not e.beam_on:
            raise AutomationError("Cannot scan: the beam is off")
        if not (isinstance(Width, int) and isinstance(Height, int) and 1 <= Width <= 16384
                and 1 <= Height <= 16384):
            raise AutomationError(f"image size {Width}x{Height} is out of range")
        if not isinstance(DwellTime, int) or DwellTime < 1:
            raise AutomationError(f"dwell time {DwellTime!r} ns must be a positive integer")
        e.stop_event.clear()
        e.scan_started.set()
        if e.hold_scan:
            e.stop_event.wait(timeout=5.0)
            return None  # a scan stopped by Scan.Stop() returns no document
        e.time_s += Height * (Width * DwellTime * 1e-9 + 100e-6)
        e.frames += 1
        return self._document(Width, Height, DwellTime, Bpp)

    def _document(self, width: int, height: int, dwell_ns: int, bpp: int) -> Document:
        e = self._e
        level = 150.0 if e.blanker == 1 else 15000.0 + 5000.0 * np.cos(np.arange(height) / 5.0)[:, None]
        counts = np.clip(e.rng.normal(level, 250.0, (height, width)), 0, 65535)
        array = counts.astype(np.uint16) if bpp == 16 else (counts / 257).astype(np.uint8)
        pixel_m = e.viewfield_mm * 1e-3 / width
        x, y, z, rot, tilt = e.position
        header = {
            "MAIN": {"PixelSizeX": repr(pixel_m), "PixelSizeY": repr(pixel_m),
                     "Date": "2026-01-01", "Time": "12:00:00", "DeviceModel": "FAKE",
                     "SerialNumber": "0", "SoftwareVersion": "0"},
            "SEM": {"WD": repr(e.wd_mm * 1e-3), "HV": repr(e.voltage_v),
                    "PredictedBeamCurrent": repr(e.current_pa * 1e-12),
                    "DwellTime": repr(dwell_ns * 1e-9), "ScanRotation": repr(e.rotation_deg),
                    "StigmatorX": repr(e.stigmator[0]), "StigmatorY": repr(e.stigmator[1]),
                    "ImageShiftX": repr(e.shift_mm[0] * 1e-3),
                    "ImageShiftY": repr(e.shift_mm[1] * 1e-3),
                    "StageX": repr(x * 1e-3), "StageY": repr(y * 1e-3), "StageZ": repr(z * 1e-3),
                    "StageRotation": repr(rot), "StageTilt": repr(tilt),
                    "Detector0": e.selected.name},
        }
        return Document(Image.fromarray(array), header)


class _Detectors(_Part):
    def Enum(self) -> list[Detector]:
        self._e.hit("SEM.Detector.Enum")
        return list(self._e.detectors)

    def Get(self, Channel: int = 0) -> Detector:  # noqa: N803
        self._e.hit("SEM.Detector.Get", Channel)
        return self._e.selected

    def Set(self, Channel: int = 0, Detector: Detector | None = None,  # noqa: N803
            Bpp: int | None = None) -> None:
        self._e.hit("SEM.Detector.Set", Channel, Detector)
        if Detector not in self._e.detectors:
            raise AutomationError(f"detector {Detector!r} is not available")
        self._e.selected = Detector


class _SEM(_Part):
    def __init__(self, ess: FakeEssence):
        super().__init__(ess)
        self.Beam, self.Optics = _Beam(ess), _Optics(ess)
        self.Scan, self.Detector = _Scan(ess), _Detectors(ess)

    def IsBusy(self) -> bool:
        self._e.hit("SEM.IsBusy")
        if self._e.sem_busy_polls > 0:
            self._e.sem_busy_polls -= 1
            return True
        return False

    def AutoWDFine(self, Detector: Detector) -> None:  # noqa: N803
        self._e.hit("SEM.AutoWDFine", Detector)
        self._e.time_s += 6.0
        self._e.wd_mm = self._e.focus_wd_mm
        self._e.sem_busy_polls = 3


class _Stage(_Part):
    def GetPosition(self) -> tuple[float, ...]:
        self._e.hit("Stage.GetPosition")
        return tuple(self._e.position)

    def GetLimits(self, Type: int = 1) -> tuple[float, ...]:  # noqa: N803
        self._e.hit("Stage.GetLimits", Type)
        if not self._e.has_stage_limits:
            raise AttributeError("'Stage' object has no attribute 'GetLimits'")
        return tuple(self._e.stage_limits)

    def IsBusy(self) -> bool:
        self._e.hit("Stage.IsBusy")
        if self._e.busy_polls > 0:
            self._e.busy_polls -= 1
            return True
        return False

    def MoveTo(self, x: float | None = None, y: float | None = None, z: float | None = None,
               rot: float | None = None, tiltx: float | None = None) -> None:
        e = self._e
        e.hit("Stage.MoveTo", dict(x=x, y=y, z=z, rot=rot, tiltx=tiltx))
        if e.busy_polls > 0:
            raise AutomationError("Stage is busy")
        target = list(e.position)
        for i, v in enumerate((x, y, z, rot, tiltx)):
            if v is not None:
                lo, hi = e.stage_limits[2 * i], e.stage_limits[2 * i + 1]
                _check(f"stage axis {i}", v, lo, hi)
                target[i] = float(v)
        e.time_s += math.hypot(target[0] - e.position[0], target[1] - e.position[1]) / 2.0 + 0.5
        e.position = target
        e.busy_polls = e.move_polls  # SharkSEM moves run in the background

    def Stop(self) -> None:
        self._e.hit("Stage.Stop")
        self._e.busy_polls = 0


class Automation:
    """Connects to the fake Essence at `host` (the real one opens SharkSEM sockets)."""

    def __init__(self, host: str = "localhost", port: int = 8300):
        ess = FakeEssence.servers.get(host)
        if ess is None:
            raise ConnectionRefusedError(f"SharkSEM: cannot connect to {host}:{port}")
        ess.hit("Automation", host, port)
        ess.connections += 1
        self._e = ess
        self.SEM, self.Stage = _SEM(ess), _Stage(ess)

    def Disconnect(self) -> None:  # noqa: N802
        if self._e is not None:
            self._e.calls.append(("Disconnect", ()))
            self._e.connections -= 1
            self._e = None

    @staticmethod
    def VersionCheck(version: str) -> None:  # noqa: N802
        return None


def _check(what: str, value: float, lo: float, hi: float) -> None:
    if not lo <= float(value) <= hi:
        raise AutomationError(f"{what} {value} is out of range [{lo}, {hi}]")


MODULE_NAMES = ("tescanautomation", "tescanautomation.Common", "tescanautomation.SEM")


def make_modules() -> dict[str, types.ModuleType]:
    common = types.ModuleType("tescanautomation.Common")
    common.Bpp, common.Detector, common.Document = Bpp, Detector, Document
    sem = types.ModuleType("tescanautomation.SEM")
    sem.HVBeamStatus = HVBeamStatus
    root = types.ModuleType("tescanautomation")
    root.Automation, root.AutomationError = Automation, AutomationError
    root.Common, root.SEM = common, sem
    return {"tescanautomation": root, "tescanautomation.Common": common,
            "tescanautomation.SEM": sem}


def install(monkeypatch: Any) -> None:
    for name, module in make_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
