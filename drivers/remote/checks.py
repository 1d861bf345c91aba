"""Checks on everything a client sends, done before the driver is touched (pure functions)."""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

import zmq

from ..base import Microscope
from ..errors import InvalidArgumentError, ProtocolError
from . import protocol as P

log = logging.getLogger("drivers.remote.server")

_SIGNATURES = {name: inspect.signature(getattr(Microscope, name)) for name in P.ALLOWED_METHODS - P.META_METHODS}
_MAX_NAME = 80


@dataclass
class Request:
    """A request that passed every check: safe to hand to the driver."""

    req_id: int
    method: str
    args: dict[str, Any] = field(default_factory=dict)
    client: str = ""
    name: str = ""


def check_exposure(endpoints: list[str], secured: bool, insecure: bool = False) -> None:
    """Refuse non-loopback endpoints without CurveZMQ unless `insecure` (then log a warning).

    Only the endpoint strings are inspected, so nothing is bound when the answer is no.
    """
    exposed = [ep for ep in endpoints if not P.is_loopback(ep)]
    if not exposed or secured:
        return
    if not insecure:
        raise InvalidArgumentError(
            f"refusing to bind {exposed[0]} without CurveZMQ keys: anyone on the network could "
            "drive the instrument. Create keys with `emtwin keys DIR` and pass keys=DIR (--keys DIR), "
            "bind 127.0.0.1, or pass insecure=True (--insecure) on a trusted network"
        )
    log.warning("serving %s WITHOUT authentication or encryption (insecure=True)", ", ".join(exposed))


def request_id(value: Any) -> int | None:
    """The request id if it is a valid one (an integer in [0, 2**63)), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return value
    return None


def parse_request(header: dict[str, Any], req_id: int | None, peer: str) -> Request:
    """Check a version-checked header: id, method allow-list, client id, argument names and types.

    Raises `ProtocolError` or `InvalidArgumentError`; argument values are checked later by the
    driver's public method against the instrument limits.
    """
    if req_id is None:
        raise ProtocolError(f"id = {P.short_repr(header.get('id'))}: must be an integer in [0, 2**63)")
    method = header.get("method")
    if not isinstance(method, str) or method not in P.ALLOWED_METHODS:
        raise ProtocolError(
            f"method = {P.short_repr(method)}: not allowed; only drivers.Microscope methods and ping/release"
        )
    client = header.get("client")
    if not (isinstance(client, str) and 0 < len(client) <= 64):
        raise ProtocolError(f"client = {P.short_repr(client)}: must be a client id string of 1 to 64 characters")
    name = header.get("name", "")
    if not isinstance(name, str):
        raise ProtocolError(f"name = {P.short_repr(name)}: must be a string")
    name = "".join(ch for ch in name if ch.isprintable())[:_MAX_NAME] or client[:8]
    if peer:
        name = f"{name} at {peer}"
    args = P.decode_args(header.get("args", {}))
    _check_signature(method, args)
    return Request(req_id, method, args, client, name)


def _check_signature(method: str, args: dict[str, Any]) -> None:
    if method in P.META_METHODS:
        if args:
            raise InvalidArgumentError(f"{method}() takes no arguments; got {', '.join(args)}")
        return
    try:
        _SIGNATURES[method].bind(None, **args)
    except TypeError as exc:
        params = [p for p in _SIGNATURES[method].parameters if p != "self"]
        raise InvalidArgumentError(
            f"{method}(): {exc}; its arguments are ({', '.join(params)})"
        ) from None


def peer_address(frame: zmq.Frame) -> str:
    """The sender's address as libzmq reports it ('' for ipc or when unknown)."""
    try:
        return frame.get("Peer-Address") or ""
    except Exception:
        return ""
