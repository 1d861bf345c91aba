"""CurveZMQ: only clients whose public keys are in the server's allow-list get in."""
from __future__ import annotations

import stat

import pytest
import zmq.auth

from drivers import AccessDeniedError, InvalidArgumentError
from drivers.null import NullMicroscope
from drivers.remote import FrameSubscriber, MicroscopeServer, RemoteMicroscope, generate_keys
from drivers.remote.server import check_exposure


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    generate_keys(d, clients=("alice",))
    stranger = tmp_path_factory.mktemp("stranger")
    generate_keys(stranger, clients=("client",))  # a valid pair the server has never seen
    return d, stranger


@pytest.fixture
def secure_server(keys):
    driver = NullMicroscope(seed=5)
    with MicroscopeServer(driver, control="tcp://127.0.0.1:*", stream="tcp://127.0.0.1:*", keys=keys[0]) as s:
        yield s


def test_key_folder_layout(tmp_path) -> None:
    paths = generate_keys(tmp_path / "k", clients=("client", "viewer"))
    for name in ("server", "client", "viewer"):
        assert (tmp_path / "k" / f"{name}.key").is_file()
        secret = tmp_path / "k" / f"{name}.key_secret"
        assert paths[name] == secret and stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "k" / "authorized").iterdir()) == ["client.key", "viewer.key"]
    with pytest.raises(FileExistsError):
        generate_keys(tmp_path / "k")
    generate_keys(tmp_path / "k", force=True)
    with pytest.raises(InvalidArgumentError):
        generate_keys(tmp_path / "k2", clients=("../evil",))


def test_authorised_client_controls_and_watches(secure_server, keys) -> None:
    d = keys[0]
    creds = {"client_keys": d / "alice.key_secret", "server_public_key": d / "server.key"}
    with RemoteMicroscope(secure_server.control_endpoint, timeout_s=5, **creds) as m, \
            FrameSubscriber(secure_server.stream_endpoint, **creds) as viewer:
        assert m.server_info["curve"] is True
        m.set_scan(shape_px=(32, 32))
        got = None
        for _ in range(50):  # the subscription needs a moment to reach the publisher
            m.acquire()
            got = viewer.recv(timeout_s=0.1)
            if got is not None:
                break
        assert got is not None and got.image.shape == (32, 32)


def test_unauthenticated_client_is_refused(secure_server) -> None:
    with pytest.raises(AccessDeniedError, match="requires CurveZMQ"):
        RemoteMicroscope(secure_server.control_endpoint, timeout_s=5)
    assert secure_server.driver.status().frames_acquired == 0


def test_client_with_unknown_key_is_refused(secure_server, keys) -> None:
    with pytest.raises(AccessDeniedError, match="allow-list"):
        RemoteMicroscope(secure_server.control_endpoint, timeout_s=5, client_keys=keys[1] / "client.key_secret",
                         server_public_key=keys[0] / "server.key")


def test_client_expecting_another_server_key_is_refused(secure_server, keys) -> None:
    with pytest.raises(AccessDeniedError, match="public key is not the one given"):
        RemoteMicroscope(secure_server.control_endpoint, timeout_s=5, client_keys=keys[0] / "alice.key_secret",
                         server_public_key=keys[1] / "server.key")


def test_keyed_client_against_plain_server_is_told_why(keys) -> None:
    with MicroscopeServer(NullMicroscope(), control="tcp://127.0.0.1:*", stream=None) as server:
        with pytest.raises(AccessDeniedError, match="does not use CurveZMQ"):
            RemoteMicroscope(server.control_endpoint, timeout_s=5, client_keys=keys[0] / "alice.key_secret",
                             server_public_key=keys[0] / "server.key")


def test_key_arguments_are_checked(keys) -> None:
    d = keys[0]
    with pytest.raises(InvalidArgumentError, match="server_public_key"):
        RemoteMicroscope("tcp://127.0.0.1:1", client_keys=d / "alice.key_secret")
    with pytest.raises(InvalidArgumentError, match="client_keys"):
        RemoteMicroscope("tcp://127.0.0.1:1", server_public_key=d / "server.key")
    with pytest.raises(InvalidArgumentError, match="40 Z85"):
        RemoteMicroscope("tcp://127.0.0.1:1", client_keys=(b"short", b"keys"), server_public_key=d / "server.key")
    with pytest.raises(FileNotFoundError):
        MicroscopeServer(NullMicroscope(), control="tcp://127.0.0.1:*", keys=d / "missing")


def test_key_pair_tuple_and_key_folder_are_accepted(secure_server, keys, tmp_path) -> None:
    d = keys[0]
    public, secret = zmq.auth.load_certificate(d / "alice.key_secret")
    server_public, _ = zmq.auth.load_certificate(d / "server.key")
    with RemoteMicroscope(secure_server.control_endpoint, timeout_s=5, client_keys=(public, secret),
                          server_public_key=server_public) as m:
        assert m.status().connected
    # `emtwin keys DIR` folder: DIR/client.key_secret and DIR/server.key
    generate_keys(tmp_path / "k")
    with MicroscopeServer(NullMicroscope(), control="tcp://127.0.0.1:*", stream=None, keys=tmp_path / "k") as s:
        with RemoteMicroscope(s.control_endpoint, timeout_s=5, client_keys=tmp_path / "k") as m:
            assert m.get_fov_m() > 0


def test_keys_allow_a_non_loopback_bind() -> None:
    check_exposure(["tcp://0.0.0.0:5555", "tcp://*:5556"], secured=True)  # no error, nothing bound
    with pytest.raises(InvalidArgumentError):
        check_exposure(["tcp://0.0.0.0:5555"], secured=False)


@pytest.mark.parametrize("curve", [False, True])
@pytest.mark.parametrize("kind", ["NO_DETAIL", "PROTOCOL"])
def test_every_handshake_failure_is_named_at_once(curve, kind) -> None:
    """Which side spots a security mismatch first is a race: either event must raise, never time out."""
    from drivers.remote.client import _Channel

    event = {"NO_DETAIL": (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 0),
             "PROTOCOL": (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)}[kind]
    channel = _Channel.__new__(_Channel)
    channel.curve = curve
    want = "CurveZMQ" if kind == "NO_DETAIL" or not curve else "does not use CurveZMQ"
    with pytest.raises(AccessDeniedError, match=want):
        channel._handshake_failed({"event": event[0], "value": event[1]})
