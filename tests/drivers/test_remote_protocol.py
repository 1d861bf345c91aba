"""Wire format, typed errors, request checks and the loopback-only rule."""
from __future__ import annotations

import dataclasses
import logging
import threading

import msgpack
import numpy as np
import pytest
import zmq

from drivers import errors as E
from drivers.null import DEFAULT_LIMITS, NullMicroscope
from drivers.remote import MicroscopeServer, RemoteMicroscope, protocol as P
from drivers.types import Frame, ScanSettings, StagePose, Status


# ---- values -------------------------------------------------------------------------------
def _roundtrip(value):
    buffers: list = []
    wire = P.encode_value(value, buffers)
    header = P.unpack(P.pack({"result": wire}))
    return P.decode_value(header["result"], [bytes(memoryview(b)) for b in buffers]), header, buffers


def test_value_types_roundtrip_exactly() -> None:
    frame = NullMicroscope(seed=1).acquire()
    meta = dataclasses.replace(frame.meta, extra={"note": "x", "pair": (1.5, 2), "list": [1, 2]})
    values = [StagePose(1e-3, -2e-3, 5e-3, 0.1, -0.2), ScanSettings((48, 64), 2e-7, 0.3, 4), DEFAULT_LIMITS,
              Status("null", True, frames_acquired=3), meta, (0.25, -0.5), [1, "a", None], {"k": (1, 2)},
              np.float32(0.5), 3, True, None]
    for value in values:
        got, _, _ = _roundtrip(value)
        assert got == value and type(got) is type(value if not isinstance(value, np.generic) else value.item())
    assert _roundtrip(meta)[0].extra["pair"] == (1.5, 2)  # tuples stay tuples, lists stay lists
    assert _roundtrip(meta)[0].extra["list"] == [1, 2]


def test_frames_travel_as_raw_buffers_not_lists() -> None:
    frame = NullMicroscope(seed=2).acquire()
    got, header, buffers = _roundtrip(frame)
    assert len(buffers) == 1 and np.shares_memory(buffers[0], frame.image)
    assert len(P.pack(header)) < 2048 < frame.image.nbytes
    entry = header["result"]["image"]
    assert entry == {"$type": "ndarray", "buffer": 0, "dtype": "<u2", "shape": list(frame.image.shape)}
    assert isinstance(got, Frame) and got.image.tobytes() == frame.image.tobytes() and got.meta == frame.meta


@pytest.mark.parametrize(
    "entry, nbytes",
    [({"dtype": "|O", "shape": [2]}, 16), ({"dtype": "<U4", "shape": [1]}, 16), ({"dtype": "<u2", "shape": [3]}, 4),
     ({"dtype": "<u2", "shape": [-2]}, 4), ({"dtype": "<u2", "shape": [2], "buffer": 5}, 4),
     ({"dtype": "<u2", "shape": "2"}, 4), ({"dtype": "<u2", "shape": [1] * 9}, 2)],
)
def test_malformed_arrays_are_refused(entry, nbytes) -> None:
    wire = {"$type": "ndarray", "buffer": 0, **entry}
    with pytest.raises(E.ProtocolError):
        P.decode_value(wire, [bytes(nbytes)])


def test_unknown_value_type_is_refused() -> None:
    with pytest.raises(E.ProtocolError, match="unknown value type"):
        P.decode_value({"$type": "os.system", "fields": {}}, [])
    with pytest.raises(E.ProtocolError):
        P.decode_value({"$type": "StagePose", "fields": {"warp_m": 1.0}}, [])


# ---- errors -------------------------------------------------------------------------------
class VendorError(E.OutOfRangeError):
    pass


@pytest.mark.parametrize("cls", sorted(E.ERRORS_BY_NAME.values(), key=lambda c: c.__name__))
def test_every_driver_error_keeps_its_class(cls) -> None:
    err = P.error_from_wire(msgpack.unpackb(msgpack.packb(P.error_to_wire(cls("boom 1.5 m")))))
    assert type(err) is cls and str(err) == "boom 1.5 m"


def test_foreign_errors_map_to_nearest_class() -> None:
    assert type(P.error_from_wire(P.error_to_wire(VendorError("x")))) is E.OutOfRangeError
    assert type(P.error_from_wire(P.error_to_wire(ValueError("bad")))) is E.InvalidArgumentError
    assert type(P.error_from_wire(P.error_to_wire(TypeError("'Stage' object is not callable")))) is E.DriverError
    err = P.error_from_wire(P.error_to_wire(RuntimeError("vendor SDK crashed")))
    assert type(err) is E.DriverError and "RuntimeError: vendor SDK crashed" in str(err)
    assert type(P.error_from_wire({"type": "SystemExit", "message": "m"})) is E.DriverError


# ---- endpoints and the loopback-only rule -----------------------------------------------------
@pytest.mark.parametrize("ep, loop", [
    ("tcp://127.0.0.1:5555", True), ("tcp://localhost:1", True), ("tcp://[::1]:5", True), ("ipc:///tmp/x", True),
    ("tcp://127.3.2.1:*", True), ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False),
    ("tcp://10.0.0.5:5555", False), ("tcp://eth0:5555", False), ("tcp://[::]:5555", False),
])
def test_loopback_detection(ep, loop) -> None:
    assert P.is_loopback(ep) is loop


@pytest.mark.parametrize("ep", ["127.0.0.1:5555", "udp://127.0.0.1:5", "tcp://127.0.0.1", "ipc://", 5555])
def test_malformed_endpoints_are_refused(ep) -> None:
    with pytest.raises(E.InvalidArgumentError):
        P.endpoint_host(ep)


@pytest.mark.parametrize("control, stream", [("tcp://0.0.0.0:5555", None), ("tcp://*:5555", None),
                                             ("tcp://127.0.0.1:5555", "tcp://*:5556")])
def test_non_loopback_bind_without_keys_is_refused_before_binding(control, stream) -> None:
    with pytest.raises(E.InvalidArgumentError, match="without CurveZMQ keys.*insecure"):
        MicroscopeServer(NullMicroscope(), control=control, stream=stream)


def test_insecure_flag_allows_with_a_warning(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="drivers.remote.server"):
        server = MicroscopeServer(NullMicroscope(), control="tcp://*:5555", stream=None, insecure=True)
    assert server.control_endpoint is None  # constructed, never started: nothing was bound
    assert "WITHOUT authentication" in caplog.text


# ---- requests against a live server -------------------------------------------------------
class RecordingMicroscope(NullMicroscope):
    """Counts calls that change the instrument."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.commands: list[str] = []

    def _set_fov_m(self, fov_m: float) -> float:
        self.commands.append("set_fov_m")
        return super()._set_fov_m(fov_m)

    def _move_stage(self, target):
        self.commands.append("move_stage")
        return super()._move_stage(target)

    def _blank(self) -> None:
        self.commands.append("blank")
        super()._blank()


@pytest.fixture
def served():
    driver = RecordingMicroscope()
    with MicroscopeServer(driver, control="tcp://127.0.0.1:*", stream=None) as server:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(server.control_endpoint)
        try:
            yield server, driver, sock
        finally:
            sock.close()
            ctx.term()


def _ask(sock, *parts: bytes) -> dict:
    sock.send_multipart([b"", *parts])
    assert sock.poll(5000), "no reply"
    frames = sock.recv_multipart()
    assert frames[0] == b""
    return msgpack.unpackb(frames[1])


def _req(**fields) -> bytes:
    header = {"v": P.PROTOCOL_VERSION, "id": 7, "method": "get_fov_m", "args": {}, "client": "c1", "name": "t"}
    header.update(fields)
    return msgpack.packb({k: v for k, v in header.items() if v is not ...})


@pytest.mark.parametrize("fields, error, words", [
    ({"v": 2}, "ProtocolError", "version 2"),
    ({"v": ...}, "ProtocolError", "version None"),
    ({"method": "_set_fov_m", "args": {"fov_m": 1e-6}}, "ProtocolError", "not allowed"),
    ({"method": "close"}, "ProtocolError", "not allowed"),
    ({"method": "__class__"}, "ProtocolError", "not allowed"),
    ({"method": 5}, "ProtocolError", "not allowed"),
    ({"id": "7"}, "ProtocolError", "id"),
    ({"id": -1}, "ProtocolError", "id"),
    ({"client": ...}, "ProtocolError", "client"),
    ({"client": "x" * 100}, "ProtocolError", "client"),
    ({"method": "set_fov_m", "args": {"fov_m": 1e-6, "force": True}}, "InvalidArgumentError", "force"),
    ({"method": "set_fov_m", "args": {}}, "InvalidArgumentError", "fov_m"),
    ({"method": "set_fov_m", "args": {"self": 1, "fov_m": 1e-6}}, "InvalidArgumentError", "self"),
    ({"method": "set_fov_m", "args": [1e-6]}, "ProtocolError", "args"),
    ({"method": "set_fov_m", "args": {"fov_m": [[1e-6]]}}, "InvalidArgumentError", "fov_m"),
    ({"method": "set_fov_m", "args": {"fov_m": {"$type": "ndarray", "buffer": 0}}}, "InvalidArgumentError", "fov_m"),
    ({"method": "set_fov_m", "args": {"fov_m": "1e-6"}}, "InvalidArgumentError", "fov_m"),
    ({"method": "set_fov_m", "args": {"fov_m": float("nan")}}, "InvalidArgumentError", "fov_m"),
    ({"method": "set_fov_m", "args": {"fov_m": 1.0}}, "OutOfRangeError", "fov_m"),
    ({"method": "move_stage", "args": {"x_m": 1.0}}, "OutOfRangeError", "x_m"),
    ({"method": "ping", "args": {"x": 1}}, "InvalidArgumentError", "no arguments"),
])
def test_bad_requests_get_typed_errors_and_never_reach_the_driver(served, fields, error, words) -> None:
    server, driver, sock = served
    reply = _ask(sock, _req(**fields))
    assert reply["ok"] is False and reply["error"]["type"] == error, reply
    assert words in reply["error"]["message"]
    assert reply["v"] == P.PROTOCOL_VERSION
    assert driver.commands == []


@pytest.mark.parametrize("parts", [[b"\xc1"], [msgpack.packb([1, 2])], [msgpack.packb(3)], [],
                                   [_req(), b"extra"], [b"", b""]])
def test_malformed_messages_get_protocol_errors(served, parts) -> None:
    reply = _ask(served[2], *parts)
    assert reply["ok"] is False and reply["error"]["type"] == "ProtocolError"
    assert reply["id"] in (None, 7)


def test_valid_raw_request_and_req_socket(served) -> None:
    server, driver, sock = served
    reply = _ask(sock, _req(method="set_fov_m", args={"fov_m": 2e-6}))
    assert reply == {"v": P.PROTOCOL_VERSION, "id": 7, "ok": True, "result": 2e-6}
    assert driver.commands == ["set_fov_m"]
    req = sock.context.socket(zmq.REQ)  # a plain REQ client works too
    req.linger = 0
    req.connect(server.control_endpoint)
    req.send(_req(method="get_fov_m"))
    assert req.poll(5000)
    assert msgpack.unpackb(req.recv())["result"] == 2e-6
    req.close()


def test_client_reraises_the_same_error_classes(served) -> None:
    server, driver, _ = served
    with RemoteMicroscope(server.control_endpoint, timeout_s=5) as m:
        with pytest.raises(E.OutOfRangeError, match="fov_m"):
            m.call("set_fov_m", fov_m=10.0)  # bypasses local checks: the server refuses
        with pytest.raises(E.NotSupportedError):
            m.call("get_defocus_m")
        with pytest.raises(E.NotSupportedError):
            m.call("autofocus")
        with pytest.raises(E.InvalidArgumentError, match="not a drivers.Microscope method"):
            m.call("shutdown")
        with pytest.raises(E.InvalidArgumentError, match="nope"):
            m.call("set_fov_m", fov_m=1e-6, nope=1)
    assert driver.commands == []


def test_client_refuses_a_server_of_another_version() -> None:
    """A fake server that answers every request with protocol version 99."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            if router.poll(20):
                ident, empty, header = router.recv_multipart()
                rid = msgpack.unpackb(header)["id"]
                router.send_multipart([ident, empty, msgpack.packb({"v": 99, "id": rid, "ok": True, "result": {}})])

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        with pytest.raises(E.ProtocolError, match="version 99 .* speaks version 1"):
            RemoteMicroscope(f"tcp://127.0.0.1:{port}", timeout_s=5)
    finally:
        stop.set()
        thread.join()
        router.close()
        ctx.term()
