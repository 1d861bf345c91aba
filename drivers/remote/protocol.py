"""Wire format of the emtwin remote protocol (version 1); see docs/protocol.md.

A message is a ZeroMQ multipart message: one msgpack header frame, then zero or more raw
buffer frames. Values that are not plain msgpack types travel as tagged maps
(``{"$type": "StagePose", "fields": {...}}``); numpy arrays travel as raw buffers whose
dtype and shape sit in the header (``{"$type": "ndarray", "buffer": 0, ...}``), never as lists.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import msgpack
import numpy as np

from ..base import INTERFACE
from ..errors import ERRORS_BY_NAME, DriverError, InvalidArgumentError, ProtocolError
from ..types import Frame, FrameMeta, Limits, ScanSettings, StagePose, Status

PROTOCOL_VERSION = 1
#: Calls about the connection itself, not forwarded to the driver.
META_METHODS: frozenset[str] = frozenset({"ping", "release"})
#: Every method name a client may send; anything else is refused before the driver is touched.
ALLOWED_METHODS: frozenset[str] = INTERFACE | META_METHODS
#: Largest request part the server accepts (requests carry no arrays); bigger ones disconnect.
MAX_REQUEST_BYTES = 64 * 1024
STREAM_TOPIC = b"frame"

_VALUE_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (StagePose, ScanSettings, Limits, Status, FrameMeta)
}
_DTYPE_RE = re.compile(r"^[<>|=]?(b1|u1|u2|u4|u8|i1|i2|i4|i8|f2|f4|f8|c8|c16)$")
_MAX_DIMS = 8


# ---- headers ------------------------------------------------------------------------------
def pack(header: dict[str, Any]) -> bytes:
    """Serialise a header map (already made of plain msgpack types)."""
    return msgpack.packb(header, use_bin_type=True, strict_types=False)


def unpack(data: bytes | memoryview) -> dict[str, Any]:
    """Parse a header frame; anything but a msgpack map raises `ProtocolError`."""
    try:
        header = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated classes
        raise ProtocolError(f"header is not valid msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"header must be a msgpack map, got {type(header).__name__}")
    return header


def check_version(header: dict[str, Any], peer: str) -> None:
    """Refuse a header of another protocol version with a message naming both versions."""
    v = header.get("v")
    if v != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {v!r} from the {peer} is not supported: this side speaks version "
            f"{PROTOCOL_VERSION}; install the same emtwin version on both computers"
        )


# ---- values -------------------------------------------------------------------------------
def encode_value(obj: Any, buffers: list[Any]) -> Any:
    """Return `obj` as plain msgpack types; numpy arrays are appended to `buffers`."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, float)):
        return float(obj) if isinstance(obj, float) else int(obj)
    if isinstance(obj, np.generic):
        return encode_value(obj.item(), buffers)
    if isinstance(obj, np.ndarray):
        return _encode_array(obj, buffers)
    if isinstance(obj, Frame):
        return {"$type": "Frame", "image": _encode_array(obj.image, buffers),
                "meta": encode_value(obj.meta, buffers)}
    if type(obj).__name__ in _VALUE_TYPES and dataclasses.is_dataclass(obj):
        fields = {f.name: encode_value(getattr(obj, f.name), buffers) for f in dataclasses.fields(obj)}
        return {"$type": type(obj).__name__, "fields": fields}
    if isinstance(obj, tuple):
        return {"$type": "tuple", "items": [encode_value(x, buffers) for x in obj]}
    if isinstance(obj, list):
        return [encode_value(x, buffers) for x in obj]
    if isinstance(obj, dict):
        return {str(k): encode_value(v, buffers) for k, v in obj.items()}
    raise TypeError(f"cannot send a value of type {type(obj).__name__} over the wire")


def _encode_array(a: np.ndarray, buffers: list[Any]) -> dict[str, Any]:
    a = np.ascontiguousarray(a)
    if not _DTYPE_RE.match(a.dtype.str):
        raise TypeError(f"cannot send an array of dtype {a.dtype}")
    buffers.append(a)
    return {"$type": "ndarray", "buffer": len(buffers) - 1, "dtype": a.dtype.str, "shape": list(a.shape)}


def decode_value(wire: Any, buffers: list[Any]) -> Any:
    """Inverse of `encode_value`. Malformed input raises `ProtocolError`."""
    try:
        return _decode(wire, buffers)
    except ProtocolError:
        raise
    except (TypeError, ValueError, KeyError, RecursionError) as exc:
        raise ProtocolError(f"malformed value in reply: {type(exc).__name__}: {exc}") from None


def _decode(wire: Any, buffers: list[Any]) -> Any:
    if isinstance(wire, list):
        return [_decode(x, buffers) for x in wire]
    if not isinstance(wire, dict):
        return wire
    tag = wire.get("$type")
    if tag is None:
        return {k: _decode(v, buffers) for k, v in wire.items()}
    if tag == "tuple":
        return tuple(_decode(x, buffers) for x in wire["items"])
    if tag == "ndarray":
        return decode_array(wire, buffers)
    if tag == "Frame":
        meta = _decode(wire["meta"], buffers)
        if not isinstance(meta, FrameMeta):
            raise ProtocolError("Frame.meta is not a FrameMeta")
        return Frame(image=decode_array(wire["image"], buffers), meta=meta)
    cls = _VALUE_TYPES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise ProtocolError(f"unknown value type {tag!r}")
    return cls(**{str(k): _decode(v, buffers) for k, v in wire["fields"].items()})


def decode_array(wire: Any, buffers: list[Any]) -> np.ndarray:
    """Rebuild an array from its header entry and buffer, without copying the bytes."""
    if not isinstance(wire, dict) or wire.get("$type") != "ndarray":
        raise ProtocolError("expected an ndarray entry")
    index, dtype, shape = wire.get("buffer"), wire.get("dtype"), wire.get("shape")
    if not (isinstance(index, int) and 0 <= index < len(buffers)):
        raise ProtocolError(f"ndarray buffer index {index!r} is not one of the {len(buffers)} buffers")
    if not (isinstance(dtype, str) and _DTYPE_RE.match(dtype)):
        raise ProtocolError(f"ndarray dtype {dtype!r} is not allowed")
    if not (isinstance(shape, list) and len(shape) <= _MAX_DIMS
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise ProtocolError(f"ndarray shape {shape!r} is not a list of at most {_MAX_DIMS} sizes")
    buf = buffers[index]
    view = buf.buffer if hasattr(buf, "buffer") else memoryview(buf)  # zmq.Frame or bytes
    dt = np.dtype(dtype)
    if math.prod(shape) * dt.itemsize != view.nbytes:
        raise ProtocolError(
            f"ndarray buffer has {view.nbytes} bytes; dtype {dtype} and shape {shape} need "
            f"{math.prod(shape) * dt.itemsize}"
        )
    return np.frombuffer(view, dtype=dt).reshape(shape)


# ---- requests -----------------------------------------------------------------------------
_SCALARS = (type(None), bool, int, float, str)
MAX_ARG_ITEMS = 8


def decode_args(wire: Any) -> dict[str, Any]:
    """Decode request arguments: a map of names to scalars or short sequences of scalars.

    Deliberately narrower than `decode_value`: nothing nested, no arrays, no value types.
    """
    if not isinstance(wire, dict):
        raise ProtocolError(f"args must be a map of argument names to values, got {type(wire).__name__}")
    args: dict[str, Any] = {}
    for name, value in wire.items():
        if not isinstance(name, str):
            raise ProtocolError(f"argument name {name!r} is not a string")
        args[name] = _decode_arg(name, value)
    return args


def _decode_arg(name: str, value: Any) -> Any:
    if isinstance(value, _SCALARS):
        return value
    items, as_tuple = value, False
    if isinstance(value, dict) and value.get("$type") == "tuple" and set(value) == {"$type", "items"}:
        items, as_tuple = value["items"], True
    if isinstance(items, list) and len(items) <= MAX_ARG_ITEMS and all(isinstance(x, _SCALARS) for x in items):
        return tuple(items) if as_tuple else list(items)
    raise InvalidArgumentError(
        f"{name} = {short_repr(value)}: must be a number, string, boolean, None or a list of up to "
        f"{MAX_ARG_ITEMS} of those"
    )


def short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- errors -------------------------------------------------------------------------------
def error_to_wire(exc: BaseException) -> dict[str, str]:
    """Name the nearest `drivers` error class of `exc`.

    A plain `ValueError` becomes `InvalidArgumentError`; any other exception (a driver bug such
    as a `TypeError` inside the driver) becomes `DriverError` with the exception's type name.
    """
    if isinstance(exc, DriverError):
        for cls in type(exc).__mro__:
            if cls.__name__ in ERRORS_BY_NAME and ERRORS_BY_NAME[cls.__name__] is cls:
                return {"type": cls.__name__, "message": str(exc)}
    if isinstance(exc, ValueError):
        return {"type": "InvalidArgumentError", "message": f"{exc}"}
    return {"type": "DriverError", "message": f"{type(exc).__name__}: {exc}"}


def error_from_wire(wire: Any) -> DriverError:
    """The exception to raise on the client for an error reply."""
    if not isinstance(wire, dict):
        return ProtocolError(f"malformed error reply: {short_repr(wire)}")
    cls = ERRORS_BY_NAME.get(str(wire.get("type")), DriverError)
    return cls(str(wire.get("message", "")))


# ---- endpoints ----------------------------------------------------------------------------
_LOOPBACK_HOSTS = {"localhost", "::1", "[::1]", "lo", "ip6-localhost"}


def endpoint_host(endpoint: str) -> str | None:
    """Host part of a tcp:// endpoint, or None for local transports (ipc, inproc)."""
    if not isinstance(endpoint, str) or "://" not in endpoint:
        raise InvalidArgumentError(f"endpoint = {endpoint!r}: must look like tcp://HOST:PORT or ipc://PATH")
    transport, rest = endpoint.split("://", 1)
    if transport in ("ipc", "inproc"):
        if not rest:
            raise InvalidArgumentError(f"endpoint = {endpoint!r}: needs a path after {transport}://")
        return None
    if transport != "tcp":
        raise InvalidArgumentError(f"endpoint = {endpoint!r}: transport must be tcp, ipc or inproc")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port:
        raise InvalidArgumentError(f"endpoint = {endpoint!r}: must look like tcp://HOST:PORT")
    if ";" in host:  # tcp://SOURCE;HOST:PORT
        host = host.split(";", 1)[1]
    return host


def is_loopback(endpoint: str) -> bool:
    """True for ipc/inproc endpoints and tcp endpoints on a loopback address."""
    host = endpoint_host(endpoint)
    if host is None:
        return True
    if host in _LOOPBACK_HOSTS:
        return True
    parts = host.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(p.isdigit() for p in parts)
