"""`MicroscopeServer`: exposes any `drivers.Microscope` over ZeroMQ (protocol in docs/protocol.md).

Threads: a *loop* thread owns the sockets, parses and checks every request, answers
`ping`, `release`, `status`, `limits` and `abort` itself and queues everything else for one
*worker* thread that calls the driver in order. So `abort()` reaches the driver while an `acquire()`
runs, and nothing malformed ever reaches the driver: method allow-list, argument names
against the `Microscope` signature and argument types are checked in the loop thread, and
the driver's public methods then check values against the instrument limits.

Requirement on the driver: `status()`, `limits()` and `abort()` must be safe to call from
another thread while a command runs (true of `NullMicroscope` and the twin).
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import zmq

from ..base import COMMANDS, Microscope
from ..errors import AccessDeniedError, Aborted, DriverError, InvalidArgumentError, ProtocolError
from . import protocol as P
from .checks import Request, check_exposure, parse_request, peer_address, request_id
from .keys import load_server_keys

log = logging.getLogger("drivers.remote.server")

_POLL_MS = 50


@dataclass
class _Job:
    seq: int
    envelope: list[Any]
    req_id: int
    method: str
    args: dict[str, Any]
    client: str
    name: str
    cancelled: bool = False


@dataclass
class _Lease:
    client: str
    name: str
    expires: float  # time.monotonic()


class MicroscopeServer:
    """Serve `driver` on a control socket (ROUTER) and publish frames on a stream socket (PUB).

    `keys`: a key directory (see `drivers.remote.keys`) to require CurveZMQ with an allow-list
    of client keys. Without keys only loopback/ipc endpoints are accepted unless
    `insecure=True`. `lease_s`: how long a client keeps control after its last command.
    `stream=None` disables the frame stream. Use as a context manager, or `start()`/`stop()`,
    or `serve_forever()`.
    """

    def __init__(
        self,
        driver: Microscope,
        control: str = "tcp://127.0.0.1:5555",
        stream: str | None = "tcp://127.0.0.1:5556",
        keys: str | os.PathLike | None = None,
        insecure: bool = False,
        lease_s: float = 30.0,
        max_queue: int = 32,
        name: str | None = None,
    ):
        if not isinstance(driver, Microscope):
            raise InvalidArgumentError(f"driver = {driver!r}: must be a drivers.Microscope")
        if not (isinstance(lease_s, (int, float)) and 0 < lease_s < 1e6):
            raise InvalidArgumentError(f"lease_s = {lease_s!r}: must be in (0, 1e6) s")
        self.driver = driver
        self.lease_s = float(lease_s)
        self.max_queue = int(max_queue)
        self.name = name or type(driver).__name__
        self._endpoints = [control] + ([stream] if stream is not None else [])
        self._curve = load_server_keys(keys) if keys is not None else None
        check_exposure(self._endpoints, secured=self._curve is not None, insecure=insecure)
        self._requested = (control, stream)
        self.control_endpoint: str | None = None
        self.stream_endpoint: str | None = None
        self.server_public_key: bytes | None = self._curve[0] if self._curve else None
        self._stopping = threading.Event()
        self._loop_thread: threading.Thread | None = None
        self._worker_thread: threading.Thread | None = None
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._inflight: dict[int, _Job] = {}
        self._running: _Job | None = None
        self._lease: _Lease | None = None
        self._seq = itertools.count(1)
        self._stream_seq = itertools.count(1)

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> "MicroscopeServer":
        """Bind the sockets (errors raise here) and start serving in background threads."""
        if self._loop_thread is not None:
            raise DriverError("server already started")
        self._stopping.clear()
        self._jobs, self._inflight, self._running, self._lease = queue.Queue(), {}, None, None
        self._ctx = zmq.Context()
        self._auth = None
        try:
            self._bind()
        except Exception:
            self._close_sockets()
            raise
        self._worker_thread = threading.Thread(target=self._run_worker, name="emtwin-server-worker", daemon=True)
        self._loop_thread = threading.Thread(target=self._run_loop, name="emtwin-server-loop", daemon=True)
        self._worker_thread.start()
        self._loop_thread.start()
        log.info("serving %s on %s (stream %s, curve %s)", self.name, self.control_endpoint,
                 self.stream_endpoint, "on" if self._curve else "off")
        return self

    def _bind(self) -> None:
        control, stream = self._requested
        if self._curve is not None:
            from zmq.auth.thread import ThreadAuthenticator

            self._auth = ThreadAuthenticator(self._ctx, log=logging.getLogger("drivers.remote.auth"))
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(self._curve[2]))
        self._router = self._socket(zmq.ROUTER)
        self._router.setsockopt(zmq.MAXMSGSIZE, P.MAX_REQUEST_BYTES)
        self.control_endpoint = self._bind_one(self._router, control)
        self._pub = None
        if stream is not None:
            self._pub = self._socket(zmq.PUB)
            self._pub.setsockopt(zmq.SNDHWM, 8)  # a slow viewer drops frames instead of queueing them
            self.stream_endpoint = self._bind_one(self._pub, stream)
        inbox = f"inproc://emtwin-server-{id(self):x}-{os.getpid()}"
        self._inbox = self._socket(zmq.PAIR)
        self._inbox.bind(inbox)
        self._outbox = self._socket(zmq.PAIR)  # used by the worker thread only
        self._outbox.connect(inbox)

    def _socket(self, kind: int) -> zmq.Socket:
        sock = self._ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if self._curve is not None and kind in (zmq.ROUTER, zmq.PUB):
            sock.curve_server = True
            sock.curve_publickey, sock.curve_secretkey = self._curve[0], self._curve[1]
        return sock

    @staticmethod
    def _bind_one(sock: zmq.Socket, endpoint: str) -> str:
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise DriverError(f"cannot bind {endpoint}: {exc}") from None
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving and release the sockets; aborts a command still running. Idempotent."""
        thread = self._loop_thread
        if thread is None:
            return
        self._stopping.set()
        thread.join(timeout_s)
        self._loop_thread = None

    def serve_forever(self) -> None:
        """Serve until Ctrl-C or SIGTERM, then stop cleanly.

        From the main thread, SIGINT and SIGTERM only set the stop flag (their handlers are
        restored afterwards): a KeyboardInterrupt raised inside `Thread.join` can leave the
        joined thread's lock held and the shutdown hanging (CPython bpo-45274)."""
        if self._loop_thread is None:
            self.start()
        previous = self._install_stop_handlers()
        try:
            while self._loop_thread is not None and self._loop_thread.is_alive() and not self._stopping.is_set():
                self._stopping.wait(0.5)
        except KeyboardInterrupt:
            log.info("interrupted; stopping")
        finally:
            self.stop(timeout_s=30.0)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _install_stop_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request_stop(signum: int, _frame: Any) -> None:
            log.info("signal %d; stopping", signum)
            self._stopping.set()

        return {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def __enter__(self) -> "MicroscopeServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- loop thread --------------------------------------------------------------------
    def _run_loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._inbox, zmq.POLLIN)
        try:
            while not self._stopping.is_set():
                events = dict(poller.poll(_POLL_MS))
                if self._inbox in events:
                    self._drain_inbox()
                if self._router in events:
                    self._drain_router()
        except Exception:  # a bug here must not hang clients silently
            log.exception("server loop failed")
        finally:
            self._shutdown()

    def _drain_router(self) -> None:
        for _ in range(256):
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                self._handle(frames)
            except Exception:
                log.exception("unexpected error while handling a request")

    def _drain_inbox(self) -> None:
        for _ in range(256):
            try:
                frames = self._inbox.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            kind = frames[0].bytes
            if kind == b"R":
                job = self._inflight.pop(int.from_bytes(frames[1].bytes, "little"), None)
                if job is not None:
                    self._finished(job)
                    self._send(job.envelope + frames[2:])
            elif kind == b"P" and self._pub is not None:
                try:
                    self._pub.send_multipart([P.STREAM_TOPIC, *frames[1:]], zmq.NOBLOCK, copy=False)
                except zmq.ZMQError:
                    pass  # no subscriber keeps up: drop the frame

    def _send(self, parts: list[Any]) -> None:
        try:
            self._router.send_multipart(parts, zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:  # peer gone or not reading: its problem, not the server's
            log.debug("reply dropped: %s", exc)

    def _reply(self, envelope: list[Any], req_id: int | None, result: Any) -> None:
        try:
            parts = _result_parts(req_id, result)
        except Exception as exc:
            log.exception("cannot encode a result")
            parts = [_error_header(req_id, exc)]
        self._send(envelope + parts)

    def _reply_error(self, envelope: list[Any], req_id: int | None, exc: BaseException) -> None:
        self._send(envelope + [_error_header(req_id, exc)])

    def _handle(self, frames: list[zmq.Frame]) -> None:
        envelope: list[Any] = [frames[0]]
        body = frames[1:]
        if body and len(body[0]) == 0:
            envelope.append(b"")
            body = body[1:]
        req_id = None
        try:
            if len(body) != 1:
                raise ProtocolError(f"a request is one header frame after the envelope; got {len(body)} frames")
            header = P.unpack(body[0].buffer)
            req_id = request_id(header.get("id"))
            P.check_version(header, "client")
            req = parse_request(header, req_id, peer_address(body[0]))
            self._dispatch(envelope, req)
        except DriverError as exc:
            self._reply_error(envelope, req_id, exc)

    def _dispatch(self, envelope: list[Any], req: Request) -> None:
        method = req.method
        if method == "ping":
            return self._reply(envelope, req.req_id, self._info())
        if method == "release":
            if self._lease is not None and self._lease.client == req.client:
                self._lease = None
            return self._reply(envelope, req.req_id, None)
        if method == "status":
            return self._direct(envelope, req, self._status)
        if method == "limits":
            return self._direct(envelope, req, self.driver.limits)
        if method in COMMANDS:
            self._claim(req)
        if method == "abort":
            return self._direct(envelope, req, self._abort)
        if len(self._inflight) >= self.max_queue:
            raise DriverError(f"server busy: {len(self._inflight)} calls queued; try again later")
        job = _Job(next(self._seq), envelope, req.req_id, method, req.args, req.client, req.name)
        self._inflight[job.seq] = job
        self._jobs.put(job)

    def _direct(self, envelope: list[Any], req: Request, fn: Any) -> None:
        try:
            result = fn()
        except Exception as exc:
            if not isinstance(exc, DriverError):
                log.exception("driver error in %s", req.method)
            return self._reply_error(envelope, req.req_id, exc)
        self._reply(envelope, req.req_id, result)

    def _status(self) -> Any:
        st = self.driver.status()
        return dataclasses.replace(st, busy=True) if self._running is not None and not st.busy else st

    def _abort(self) -> None:
        for job in self._inflight.values():
            if job is not self._running and job.method in COMMANDS:
                job.cancelled = True
        self.driver.abort()

    def _info(self) -> dict[str, Any]:
        lease = self._lease
        now = time.monotonic()
        holder = None
        if lease is not None and (lease.expires > now or self._holder_busy()):
            holder = {"name": lease.name, "remaining_s": max(0.0, lease.expires - now)}
        return {"protocol": P.PROTOCOL_VERSION, "server": self.name, "driver": type(self.driver).__name__,
                "curve": self._curve is not None, "lease_s": self.lease_s, "controller": holder,
                "stream": self.stream_endpoint}

    # ---- lease ---------------------------------------------------------------------------
    def _holder_busy(self) -> bool:
        lease = self._lease
        return lease is not None and any(j.client == lease.client for j in self._inflight.values())

    def _claim(self, req: Request) -> None:
        now = time.monotonic()
        lease = self._lease
        if lease is not None and lease.client != req.client and (lease.expires > now or self._holder_busy()):
            busy = " (a command of theirs is running)" if self._holder_busy() else ""
            raise AccessDeniedError(
                f"instrument is controlled by {lease.name} for {max(0.0, lease.expires - now):.0f} more s{busy}; "
                "commands are refused, status queries and the frame stream remain available"
            )
        kept = lease.expires if lease is not None and lease.client == req.client else 0.0
        self._lease = _Lease(req.client, req.name, max(now + self.lease_s, kept))

    def _finished(self, job: _Job) -> None:
        lease = self._lease
        if lease is not None and lease.client == job.client and job.method in COMMANDS:
            lease.expires = max(lease.expires, time.monotonic() + self.lease_s)

    # ---- worker thread --------------------------------------------------------------------
    def _run_worker(self) -> None:
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                self._running = job
                try:
                    parts, stream = self._execute(job)
                finally:
                    self._running = None
                self._post([b"R", job.seq.to_bytes(8, "little"), *parts])
                if stream is not None:
                    self._post([b"P", *stream])
        finally:
            self._outbox.close(0)

    def _post(self, parts: list[Any]) -> None:
        try:
            self._outbox.send_multipart(parts, zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:
            log.warning("worker could not hand a reply to the loop: %s", exc)

    def _execute(self, job: _Job) -> tuple[list[Any], list[Any] | None]:
        """Call the driver; return the reply parts and, for a frame, the stream parts."""
        if job.cancelled:
            return [_error_header(job.req_id, Aborted(f"{job.method} cancelled by abort() before it started"))], None
        try:
            result = getattr(self.driver, job.method)(**job.args)
            buffers: list[Any] = []
            wire = P.encode_value(result, buffers)
            header = P.pack({"v": P.PROTOCOL_VERSION, "id": job.req_id, "ok": True, "result": wire})
        except Exception as exc:
            if not isinstance(exc, DriverError):
                log.exception("driver raised in %s", job.method)
            return [_error_header(job.req_id, exc)], None
        stream = None
        if job.method == "acquire" and self._pub is not None:
            stream = [P.pack({"v": P.PROTOCOL_VERSION, "seq": next(self._stream_seq), "client": job.name,
                              "frame": wire}), *buffers]
        return [header, *buffers], stream

    # ---- shutdown ------------------------------------------------------------------------
    def _shutdown(self) -> None:
        if self._running is not None:
            try:
                self.driver.abort()
            except Exception:
                log.exception("abort during shutdown failed")
        self._jobs.put(None)
        worker = self._worker_thread
        if worker is not None:
            worker.join(10.0)
            if worker.is_alive():
                log.warning("driver call still running at shutdown; leaving its thread behind")
                self._close_sockets(terminate=False)
                return
        self._close_sockets()

    def _close_sockets(self, terminate: bool = True) -> None:
        for name in ("_router", "_pub", "_inbox"):
            sock = getattr(self, name, None)
            if sock is not None:
                sock.close(0)
                setattr(self, name, None)
        outbox = getattr(self, "_outbox", None)
        if outbox is not None and self._worker_thread is None:
            outbox.close(0)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if terminate:
            self._ctx.term()


def _result_parts(req_id: int | None, result: Any) -> list[Any]:
    buffers: list[Any] = []
    wire = P.encode_value(result, buffers)
    return [P.pack({"v": P.PROTOCOL_VERSION, "id": req_id, "ok": True, "result": wire}), *buffers]


def _error_header(req_id: int | None, exc: BaseException) -> bytes:
    return P.pack({"v": P.PROTOCOL_VERSION, "id": req_id, "ok": False, "error": P.error_to_wire(exc)})

