"""Driver interface: one `Microscope` base class for the twin, remote clients and vendor adapters."""
from .base import COMMANDS, INTERFACE, QUERIES, Microscope
from .errors import (
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
from .types import Frame, FrameMeta, Limits, ScanSettings, StagePose, Status

__all__ = [
    "Microscope", "QUERIES", "COMMANDS", "INTERFACE",
    "Frame", "FrameMeta", "Limits", "ScanSettings", "StagePose", "Status",
    "DriverError", "InvalidArgumentError", "OutOfRangeError", "NotSupportedError",
    "NotConnectedError", "DriverTimeout", "Aborted", "InterlockError", "AccessDeniedError",
    "ProtocolError",
]
