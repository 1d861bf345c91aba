"""`RemoteMicroscope`: a `drivers.Microscope` whose hooks forward to a `MicroscopeServer`.

Every call has a timeout. A call that gets no reply in time raises `DriverTimeout`, and its
socket is thrown away (Lazy Pirate): the next call opens a fresh one and works as soon as the
server is back. Calls are never retried, because a command such as `move_stage` must not run
twice. The client is thread-safe: each concurrent call uses its own socket, so `abort()` from
another thread reaches the server while `acquire()` waits for its frame.
"""
from __future__ import annotations

import contextlib
import getpass
import itertools
import os
import socket as _socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..base import Microscope
from ..errors import (
    AccessDeniedError,
    DriverTimeout,
    InvalidArgumentError,
    NotConnectedError,
    ProtocolError,
)
from ..types import Frame, Limits, ScanSettings, StagePose, Status
from .. import validate as V
from . import protocol as P
from .keys import load_client_keys

#: Extra time allowed for `autofocus()` on top of the default timeout (s).
AUTOFOCUS_EXTRA_S = 120.0
#: `acquire()` waits the default timeout plus this many expected frame times.
FRAME_TIME_FACTOR = 2.0

_HANDSHAKE_EVENTS = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


class _Channel:
    """One DEALER socket to the server and a monitor for handshake failures."""

    _counter = itertools.count()

    def __init__(self, ctx: zmq.Context, endpoint: str, curve: tuple[bytes, bytes, bytes] | None):
        self.curve = curve is not None
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            self.sock.curve_publickey, self.sock.curve_secretkey, self.sock.curve_serverkey = curve
        addr = f"inproc://emtwin-monitor-{id(self):x}-{next(self._counter)}"
        self.monitor = self.sock.get_monitor_socket(_HANDSHAKE_EVENTS, addr)
        self.sock.connect(endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)

    def request(self, header: bytes, req_id: int, timeout_s: float) -> tuple[dict[str, Any], list[zmq.Frame]] | None:
        """Send and wait for the reply to `req_id`; None if none arrived within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        try:
            self.sock.send_multipart([b"", header], zmq.NOBLOCK)
        except zmq.Again:
            return None
        while True:
            remaining_ms = (deadline - time.monotonic()) * 1000.0
            if remaining_ms <= 0:
                return None
            events = dict(self.poller.poll(max(1, int(remaining_ms + 0.999))))
            if self.monitor in events:
                self._handshake_failed(recv_monitor_message(self.monitor))
            if self.sock in events:
                frames = self.sock.recv_multipart(copy=False)
                if frames and len(frames[0]) == 0:
                    frames = frames[1:]
                if not frames:
                    continue
                reply = P.unpack(frames[0].buffer)
                if reply.get("id") == req_id:
                    return reply, frames[1:]
                # a late reply to an earlier call (only after a timeout): ignore it

    def _handshake_failed(self, event: dict[str, Any]) -> None:
        kind, value = event["event"], event["value"]
        if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            raise AccessDeniedError(
                f"the server refused this client's CurveZMQ key (ZAP status {value}): its public key is "
                "not in the server's allow-list (authorized/ folder)"
            )
        if kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            need = ("does not use CurveZMQ; connect without keys" if self.curve
                    else "requires CurveZMQ keys (client_keys=...)")
            raise AccessDeniedError(f"security mismatch: the server {need}")
        if kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            raise ProtocolError(f"handshake failed (ZMTP error {value:#x}): is this an emtwin server?")
        if self.curve:  # the server hung up mid-handshake: wrong server key, or a plain server
            raise AccessDeniedError(
                "CurveZMQ handshake failed: the server's public key is not the one given (server.key), "
                "or the server does not use CurveZMQ"
            )
        # A plain client: the server hung up on the greeting before saying why. Which side spots the
        # mechanism mismatch first is a race, and a NULL-mechanism handshake fails for no other reason.
        raise AccessDeniedError(
            "security mismatch: the handshake failed, so the server most likely requires CurveZMQ keys "
            "(client_keys=...)"
        )

    def close(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self.sock.disable_monitor()
        self.monitor.close(0)
        self.sock.close(0)


class RemoteMicroscope(Microscope):
    """A microscope served by `MicroscopeServer` at `endpoint` (``tcp://HOST:PORT`` or ``ipc://PATH``).

    `timeout_s` is the default per-call timeout (s); `acquire()` adds twice the expected frame
    time and `autofocus()` adds `AUTOFOCUS_EXTRA_S`. Override per call with
    ``m.call(method, timeout_s=..., **args)`` or for a block with ``with m.timeout(60): ...``.
    `client_keys`/`server_public_key`: CurveZMQ keys (see `drivers.remote.keys.load_client_keys`).
    `name` identifies this client in lease messages (default user@host pid N). The constructor
    contacts the server and raises `DriverTimeout` if it does not answer.
    """

    def __init__(
        self,
        endpoint: str,
        timeout_s: float = 10.0,
        client_keys: Any = None,
        server_public_key: Any = None,
        name: str | None = None,
    ):
        P.endpoint_host(endpoint)  # validates the form
        self.endpoint = endpoint
        self.timeout_s = _positive("timeout_s", timeout_s)
        self._curve = load_client_keys(client_keys, server_public_key)
        self.name = name or f"{getpass.getuser()}@{_socket.gethostname()} pid {os.getpid()}"
        self.client_id = uuid.uuid4().hex
        self._ctx = zmq.Context()
        self._idle: list[_Channel] = []
        self._busy: set[_Channel] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._local = threading.local()
        self._limits_cache: Limits | None = None
        self._scan_cache: ScanSettings | None = None
        self._closed = False
        try:
            self.server_info: dict[str, Any] = self.call("ping")
        except BaseException:
            self._teardown()
            raise

    # ---- generic call -----------------------------------------------------------------------
    def call(self, method: str, *, timeout_s: float | None = None, **args: Any) -> Any:
        """Call `method` on the server with keyword `args`; no local checks beyond the allow-list."""
        if self._closed:
            raise NotConnectedError(f"RemoteMicroscope({self.endpoint}) is closed")
        if method not in P.ALLOWED_METHODS:
            raise InvalidArgumentError(f"method = {method!r}: not a drivers.Microscope method")
        wait_s = self._timeout_for(method, timeout_s)
        req_id = next(self._ids)
        buffers: list[Any] = []
        wire_args = {k: P.encode_value(v, buffers) for k, v in args.items()}
        if buffers:
            raise InvalidArgumentError(f"{method}: arrays cannot be sent as arguments")
        header = P.pack({"v": P.PROTOCOL_VERSION, "id": req_id, "method": method, "args": wire_args,
                         "client": self.client_id, "name": self.name})
        reply, frames = self._exchange(method, header, req_id, wait_s)
        if not reply.get("ok"):
            raise P.error_from_wire(reply.get("error"))
        P.check_version(reply, "server")
        return P.decode_value(reply.get("result"), frames)

    def _exchange(self, method: str, header: bytes, req_id: int, wait_s: float) -> tuple[dict[str, Any], list[Any]]:
        channel = self._checkout()
        try:
            answer = channel.request(header, req_id, wait_s)
        except zmq.ZMQError as exc:  # the context was closed by another thread
            self._discard(channel)
            raise NotConnectedError(f"{method}(): connection to {self.endpoint} closed ({exc})") from None
        except BaseException:
            self._discard(channel)
            raise
        if answer is None:
            self._discard(channel)
            raise DriverTimeout(
                f"no reply to {method}() from {self.endpoint} within {wait_s:.3g} s (server down, busy or "
                "unreachable); the connection was reset and the next call reconnects"
            )
        self._checkin(channel)
        return answer

    def _checkout(self) -> _Channel:
        with self._lock:
            if self._closed:
                raise NotConnectedError(f"RemoteMicroscope({self.endpoint}) is closed")
            channel = self._idle.pop() if self._idle else _Channel(self._ctx, self.endpoint, self._curve)
            self._busy.add(channel)
            return channel

    def _checkin(self, channel: _Channel) -> None:
        with self._lock:
            self._busy.discard(channel)
            if self._closed:
                channel.close()
            else:
                self._idle.append(channel)

    def _discard(self, channel: _Channel) -> None:
        with self._lock:
            self._busy.discard(channel)
            with contextlib.suppress(zmq.ZMQError):
                channel.close()
            self._limits_cache = self._scan_cache = None  # re-read after a reconnect

    # ---- timeouts -------------------------------------------------------------------------
    @contextlib.contextmanager
    def timeout(self, timeout_s: float) -> Iterator[None]:
        """Use `timeout_s` for every call made by this thread inside the block."""
        stack = self._local.__dict__.setdefault("stack", [])
        stack.append(_positive("timeout_s", timeout_s))
        try:
            yield
        finally:
            stack.pop()

    def _timeout_for(self, method: str, timeout_s: float | None) -> float:
        if timeout_s is not None:
            return _positive("timeout_s", timeout_s)
        stack = self._local.__dict__.get("stack")
        if stack:
            return stack[-1]
        if method == "acquire":
            return self.timeout_s + FRAME_TIME_FACTOR * self.expected_frame_s()
        if method == "autofocus":
            return self.timeout_s + AUTOFOCUS_EXTRA_S
        return self.timeout_s

    def expected_frame_s(self) -> float:
        """Beam time of one frame with the current scan settings (s), without flyback."""
        scan = self._scan_cache or self._get_scan()
        rows, cols = scan.shape_px
        return rows * cols * scan.dwell_s * scan.line_integration

    # ---- connection ------------------------------------------------------------------------
    def release(self) -> None:
        """Give up control so that another client can send commands."""
        self.call("release")
        self._scan_cache = None

    def close(self) -> None:
        """Release control (best effort, at most 1 s) and close the sockets; idempotent."""
        if self._closed:
            return
        with contextlib.suppress(Exception):
            self.call("release", timeout_s=min(self.timeout_s, 1.0))
        self._teardown()

    def _teardown(self) -> None:
        with self._lock:
            self._closed = True
            for channel in self._idle:
                channel.close()
            self._idle.clear()
        # A call still waiting in another thread wakes with ETERM, closes its socket, and then
        # term() returns.
        self._ctx.term()

    def __repr__(self) -> str:
        return f"RemoteMicroscope({self.endpoint!r}, name={self.name!r})"

    # ---- hooks ---------------------------------------------------------------------------
    def _status(self) -> Status:
        return self.call("status")

    def _limits(self) -> Limits:
        if self._limits_cache is None:
            self._limits_cache = self.call("limits")
        return self._limits_cache

    def _stage(self) -> StagePose:
        return self.call("stage")

    def _move_stage(self, target: StagePose) -> StagePose:
        return self.call("move_stage", x_m=target.x_m, y_m=target.y_m, z_m=target.z_m,
                         tilt_rad=target.tilt_rad, rot_rad=target.rot_rad, relative=False)

    def _get_fov_m(self) -> float:
        return self.call("get_fov_m")

    def _set_fov_m(self, fov_m: float) -> float:
        return self.call("set_fov_m", fov_m=fov_m)

    def _get_scan(self) -> ScanSettings:
        self._scan_cache = self.call("get_scan")
        return self._scan_cache

    def _set_scan(self, scan: ScanSettings) -> ScanSettings:
        self._scan_cache = self.call("set_scan", shape_px=tuple(scan.shape_px), dwell_s=scan.dwell_s,
                                     rotation_rad=scan.rotation_rad, line_integration=scan.line_integration)
        return self._scan_cache

    def _get_working_distance_m(self) -> float:
        return self.call("get_working_distance_m")

    def _set_working_distance_m(self, wd_m: float) -> float:
        return self.call("set_working_distance_m", working_distance_m=wd_m)

    def _get_defocus_m(self) -> float:
        return self.call("get_defocus_m")

    def _set_defocus_m(self, defocus_m: float) -> float:
        return self.call("set_defocus_m", defocus_m=defocus_m)

    def _get_stigmator(self) -> tuple[float, float]:
        return self.call("get_stigmator")

    def _set_stigmator(self, x: float, y: float) -> tuple[float, float]:
        return self.call("set_stigmator", x=x, y=y)

    def _get_beam_current_a(self) -> float:
        return self.call("get_beam_current_a")

    def _set_beam_current_a(self, current_a: float) -> float:
        return self.call("set_beam_current_a", beam_current_a=current_a)

    def _get_high_voltage_v(self) -> float:
        return self.call("get_high_voltage_v")

    def _set_high_voltage_v(self, hv_v: float) -> float:
        return self.call("set_high_voltage_v", high_voltage_v=hv_v)

    def _get_beam_shift_m(self) -> tuple[float, float]:
        return self.call("get_beam_shift_m")

    def _set_beam_shift_m(self, x_m: float, y_m: float) -> tuple[float, float]:
        return self.call("set_beam_shift_m", x_m=x_m, y_m=y_m)

    def _get_detector(self) -> str:
        return self.call("get_detector")

    def _set_detector(self, name: str) -> str:
        return self.call("set_detector", name=name)

    def _acquire(self) -> Frame:
        frame = self.call("acquire")
        if not isinstance(frame, Frame):
            raise ProtocolError(f"acquire() returned {type(frame).__name__}, not a Frame")
        return frame

    def _blank(self) -> None:
        self.call("blank")

    def _unblank(self) -> None:
        self.call("unblank")

    def _abort(self) -> None:
        self.call("abort")

    def autofocus(self) -> float:
        """The server instrument's autofocus, if it has one (`NotSupportedError` otherwise)."""
        return self.call("autofocus")


class FrameSubscriber:
    """Watch the frames a server publishes (any client, without taking control).

    ``recv(timeout_s)`` returns the next `Frame` or None if none arrived in time; the client
    that acquired it is in `last_client`. Frames published while nobody listens are lost, and
    a slow viewer skips frames.
    """

    def __init__(self, endpoint: str, client_keys: Any = None, server_public_key: Any = None):
        P.endpoint_host(endpoint)
        curve = load_client_keys(client_keys, server_public_key)
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 8)
        if curve is not None:
            self._sock.curve_publickey, self._sock.curve_secretkey, self._sock.curve_serverkey = curve
        self._sock.setsockopt(zmq.SUBSCRIBE, P.STREAM_TOPIC)
        self._sock.connect(endpoint)
        self.last_client: str | None = None
        self.last_seq: int | None = None

    def recv(self, timeout_s: float = 1.0) -> Frame | None:
        """The next published frame, or None after `timeout_s` seconds."""
        deadline = time.monotonic() + _positive("timeout_s", timeout_s)
        while True:
            remaining_ms = (deadline - time.monotonic()) * 1000.0
            if remaining_ms <= 0 or not self._sock.poll(max(1, int(remaining_ms + 0.999))):
                return None
            parts = self._sock.recv_multipart(copy=False)
            if len(parts) < 2 or parts[0].bytes != P.STREAM_TOPIC:
                continue
            try:
                header = P.unpack(parts[1].buffer)
                P.check_version(header, "server")
                frame = P.decode_value(header.get("frame"), parts[2:])
            except ProtocolError:
                continue
            if isinstance(frame, Frame):
                self.last_client, self.last_seq = header.get("client"), header.get("seq")
                return frame

    def close(self) -> None:
        if not self._sock.closed:
            self._sock.close(0)
            self._ctx.term()

    def __enter__(self) -> "FrameSubscriber":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _positive(name: str, value: object) -> float:
    v = V.real(name, value)
    if v <= 0:
        raise InvalidArgumentError(f"{name} = {v:.6g} s: must be > 0")
    return v
