"""The server survives any byte sequence and keeps answering valid calls."""
from __future__ import annotations

import logging

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.null import NullMicroscope
from drivers.remote import MicroscopeServer, RemoteMicroscope
from drivers.remote import protocol as P


class CountingMicroscope(NullMicroscope):
    """Records every call of a hook that changes the instrument."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.calls: list[str] = []

    def __getattribute__(self, name: str):
        if name.startswith(("_set_", "_move_", "_acquire", "_blank", "_unblank", "_abort")):
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)


@pytest.fixture
def target():
    driver = CountingMicroscope()
    with MicroscopeServer(driver, control="tcp://127.0.0.1:*", stream="tcp://127.0.0.1:*") as server:
        ctx = zmq.Context()
        raw = ctx.socket(zmq.DEALER)
        raw.linger = 0
        raw.connect(server.control_endpoint)
        client = RemoteMicroscope(server.control_endpoint, timeout_s=5.0)
        try:
            yield server, driver, raw, client
        finally:
            client.close()
            raw.close()
            ctx.term()


def _drain(sock: zmq.Socket) -> None:
    while sock.poll(0):
        sock.recv_multipart()


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(),
                     st.text(max_size=20), st.binary(max_size=20))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=12)
_methods = st.one_of(st.sampled_from(sorted(P.ALLOWED_METHODS) + ["_acquire", "close", "__init__"]), _scalars)
_headers = st.fixed_dictionaries(
    {},
    optional={"v": st.one_of(st.just(P.PROTOCOL_VERSION), _scalars), "id": _scalars, "method": _methods,
              "args": st.one_of(st.dictionaries(st.text(max_size=12), _values, max_size=4), _values),
              "client": st.one_of(st.text(max_size=70), _scalars), "name": _values},
).map(lambda h: msgpack.packb(h, use_bin_type=True))
_frames = st.one_of(st.binary(max_size=300), _headers, st.just(b""))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_frames, min_size=1, max_size=5))
def test_server_survives_random_messages(target, caplog, parts) -> None:
    server, driver, raw, client = target
    raw.send_multipart(parts)
    assert client.call("ping", timeout_s=5.0)["protocol"] == P.PROTOCOL_VERSION
    _drain(raw)
    assert server._loop_thread.is_alive() and server._worker_thread.is_alive()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # refused, not crashed


def test_raw_bytes_never_reach_the_driver(target) -> None:
    server, driver, raw, client = target

    @settings(max_examples=100, deadline=None)
    @given(parts=st.lists(st.binary(max_size=200), min_size=1, max_size=4))
    def send(parts):
        raw.send_multipart(parts)

    send()
    assert client.get_fov_m() > 0
    assert driver.calls == []


@pytest.mark.parametrize("size", [P.MAX_REQUEST_BYTES + 1, 8 * 2**20])
def test_huge_frames_are_dropped(target, size) -> None:
    server, driver, raw, client = target
    raw.send_multipart([b"", b"\x00" * size])
    raw.send_multipart([b""] * 1000)
    assert client.set_fov_m(2e-6) == 2e-6
    assert client.call("ping")["protocol"] == P.PROTOCOL_VERSION
    assert driver.calls == ["_set_fov_m"]
