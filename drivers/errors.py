"""Error hierarchy shared by every `Microscope` backend.

Every error a driver raises is a `DriverError`. Errors about a bad argument are also
`ValueError`, so plain Python code that catches `ValueError` keeps working.
"""
from __future__ import annotations


class DriverError(Exception):
    """Base class of all errors raised by a microscope driver."""


class InvalidArgumentError(DriverError, ValueError):
    """An argument has the wrong type, is NaN/inf, or is malformed."""


class OutOfRangeError(InvalidArgumentError):
    """A value lies outside the instrument's limits (never silently clamped)."""


class NotSupportedError(DriverError):
    """The instrument does not offer this operation (e.g. `defocus_m` on an SEM)."""


class NotConnectedError(DriverError):
    """The driver has no live connection to the instrument."""


class DriverTimeout(DriverError, TimeoutError):
    """The instrument or the server did not answer in time."""


class Aborted(DriverError):
    """The operation was stopped by `abort()`."""


class InterlockError(DriverError):
    """A hardware interlock forbids the operation (vacuum, door, beam off...)."""


class AccessDeniedError(DriverError):
    """Another client controls the instrument, or the caller is not authorised."""


class ProtocolError(DriverError):
    """A remote message was malformed or of an incompatible protocol version."""


#: Every error class by name, so a remote client can re-raise the same class.
ERRORS_BY_NAME: dict[str, type[DriverError]] = {
    cls.__name__: cls
    for cls in (
        DriverError,
        InvalidArgumentError,
        OutOfRangeError,
        NotSupportedError,
        NotConnectedError,
        DriverTimeout,
        Aborted,
        InterlockError,
        AccessDeniedError,
        ProtocolError,
    )
}
