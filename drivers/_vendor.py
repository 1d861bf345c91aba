"""Helpers shared by the vendor adapters (`drivers.autoscript`, `drivers.tescan`).

- `import_sdk`: import a vendor SDK lazily; a missing one raises `VendorSDKMissing`, which
  names the package and the Python that looked for it.
- `vendor_call`: a context manager that turns whatever the SDK raises into a `DriverError`
  subclass (`translate` decides which), and into `Aborted` once `abort()` was called.
- `InstrumentClock`: instrument seconds for a real microscope (monotonic wall clock since
  connect: a real instrument has no simulated clock).
- `exposure`: electrons and areal dose of one frame when the vendor does not report them.
- `disconnect_quietly`: drop an adapter's connections, ignoring errors of dead links.
"""
from __future__ import annotations

import importlib
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType

import numpy as np

from .errors import (
    Aborted,
    DriverError,
    DriverTimeout,
    InterlockError,
    NotConnectedError,
    NotSupportedError,
    OutOfRangeError,
)

ELEMENTARY_CHARGE_C = 1.602176634e-19  # exact, SI 2019


def disconnect_quietly(owner: object, attrs: tuple[str, ...], method: str) -> None:
    """Set each attribute `attrs` of `owner` to None and call `method` on the connection it held
    (closing a dead link is not an error, so what the SDK raises there is ignored)."""
    for name in attrs:
        link = getattr(owner, name, None)
        setattr(owner, name, None)
        if link is not None:
            try:
                getattr(link, method)()
            except Exception:  # noqa: BLE001 - closing a dead link is not an error
                pass


class VendorSDKMissing(NotConnectedError, ImportError):
    """The vendor's Python package cannot be imported in this Python."""


def import_sdk(module: str, product: str, hint: str = "") -> ModuleType:
    """Import `module` (a vendor SDK) or raise `VendorSDKMissing` naming it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise VendorSDKMissing(
            f"the {product} adapter needs the Python package '{module}', which cannot be "
            f"imported by {sys.executable} ({exc}). {hint}".strip()
        ) from exc


# Words in a vendor error message, checked in this order (first match decides the class).
_TIMEOUT_WORDS = ("timeout", "timed out")
_CONNECTION_WORDS = ("not connected", "disconnected", "connect to", "connection", "socket",
                     "transport")
_ABORT_WORDS = ("abort", "cancel", "stopped by", "interrupted")
_INTERLOCK_WORDS = (
    "interlock", "vacuum", "not pumped", "vented", "door", "beam is off", "beam off",
    "high voltage is off", "emission", "gun valve", "column valve",
)
_RANGE_WORDS = ("out of range", "out of bounds", "outside", "maximum", "minimum", "too large",
                "too small")
_BUSY_WORDS = ("busy", "is moving", "in progress")


def translate(exc: BaseException, what: str) -> DriverError:
    """Map an exception raised by a vendor SDK during `what` to a `DriverError` subclass."""
    if isinstance(exc, DriverError):
        return exc
    text = f"{what}: {type(exc).__name__}: {exc}"
    low = str(exc).lower()
    if isinstance(exc, TimeoutError) or any(w in low for w in _TIMEOUT_WORDS):
        return DriverTimeout(text)
    if isinstance(exc, (ConnectionError, EOFError)) or any(w in low for w in _CONNECTION_WORDS):
        return NotConnectedError(text)
    if isinstance(exc, OSError):  # socket errors below the SDK
        return NotConnectedError(text)
    if isinstance(exc, AttributeError):  # this SDK version lacks the call
        return NotSupportedError(f"{text} (the installed SDK has no such call)")
    if any(w in low for w in _ABORT_WORDS):
        return Aborted(text)
    if any(w in low for w in _INTERLOCK_WORDS):
        return InterlockError(text)
    if any(w in low for w in _RANGE_WORDS):
        return OutOfRangeError(text)
    if any(w in low for w in _BUSY_WORDS):
        return DriverError(f"instrument busy: {text}")
    return DriverError(text)


@contextmanager
def vendor_call(what: str, aborted: threading.Event | None = None) -> Iterator[None]:
    """Run vendor calls; re-raise their errors as `DriverError` subclasses.

    When `aborted` is set by the time the call fails, the error becomes `Aborted`.
    """
    try:
        yield
    except DriverError:
        raise
    except Exception as exc:
        if aborted is not None and aborted.is_set():
            raise Aborted(f"{what}: stopped by abort() ({type(exc).__name__}: {exc})") from exc
        raise translate(exc, what) from exc


class InstrumentClock:
    """Seconds since connect, read from a monotonic clock (wall time of the instrument PC)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._t0 = float(clock())

    def now(self) -> float:
        return float(self._clock()) - self._t0


def wait_until(
    done: Callable[[], bool],
    what: str,
    timeout_s: float,
    aborted: threading.Event,
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = 0.05,
) -> None:
    """Poll `done()` until true; raise `Aborted` on abort, `DriverTimeout` after `timeout_s`.

    Counts polls (not wall time) so an injected `sleep` keeps tests deterministic.
    """
    polls = max(1, int(math.ceil(timeout_s / poll_s)))
    for _ in range(polls):
        if aborted.is_set():
            raise Aborted(f"{what}: stopped by abort()")
        with vendor_call(what, aborted):
            if done():
                return
        sleep(poll_s)
    raise DriverTimeout(f"{what}: not finished after {timeout_s:g} s")


def exposure(
    current_a: float,
    shape_px: tuple[int, int],
    dwell_s: float,
    line_integration: int,
    fov_m: float,
    blanked: bool,
) -> tuple[float, float]:
    """(electrons, dose in e/m^2) of one frame: current x pixel dwell time / e.

    Counts the time the beam dwells on pixels only (not flyback, not the live scan
    before or after the frame): a lower bound on what the specimen received.
    """
    if blanked:
        return 0.0, 0.0
    rows, cols = shape_px
    exposure_s = rows * cols * dwell_s * line_integration
    electrons = current_a * exposure_s / ELEMENTARY_CHARGE_C
    area_m2 = fov_m * fov_m * rows / cols  # square pixels of fov_m / cols
    return electrons, electrons / area_m2


def to_uint16(image: object) -> np.ndarray:
    """Detector counts as uint16; 8-bit images are scaled by 257 (0..255 -> 0..65535)."""
    a = np.asarray(image)
    if a.ndim == 3:  # some SDKs return (rows, cols, 1)
        a = a[..., 0]
    if a.dtype == np.uint16:
        return np.ascontiguousarray(a)
    if a.dtype == np.uint8:
        return a.astype(np.uint16) * np.uint16(257)
    return np.clip(np.rint(a.astype(np.float64)), 0, 65535).astype(np.uint16)


def intersect(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """The range both `a` and `b` allow (for an (x, y) pair that shares one range)."""
    return (max(a[0], b[0]), min(a[1], b[1]))
