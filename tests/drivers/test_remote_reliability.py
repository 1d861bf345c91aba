"""Timeouts and recovery, abort during a long frame, the control lease and the frame stream."""
from __future__ import annotations

import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from drivers import AccessDeniedError, Aborted, DriverTimeout, NotConnectedError
from drivers.null import NullMicroscope
from drivers.remote import FrameSubscriber, MicroscopeServer, RemoteMicroscope
from drivers.remote.testing import SlowMicroscope

ROOT = Path(__file__).resolve().parents[2]
SERVER_SCRIPT = """
import sys
from drivers.remote import MicroscopeServer
from drivers.remote.testing import SlowMicroscope
server = MicroscopeServer(SlowMicroscope(frame_wall_s=30.0), control=sys.argv[1], stream=None).start()
print("ready", flush=True)
server.serve_forever()
"""


def _spawn(endpoint: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, endpoint], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 30.0)
    if not ready or proc.stdout.readline().strip() != "ready":
        proc.kill()
        pytest.fail("server process did not start")
    return proc


def _wait_until(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
def slow():
    with MicroscopeServer(SlowMicroscope(frame_wall_s=30.0), control="tcp://127.0.0.1:*",
                          stream="tcp://127.0.0.1:*", lease_s=30.0) as server:
        yield server


def _in_thread(fn):
    """Run `fn` in a thread; return a dict that gets 'result' or 'error'."""
    out: dict = {}

    def target() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    out["thread"] = threading.Thread(target=target)
    out["thread"].start()
    return out


# ---- timeouts ---------------------------------------------------------------------------------
def test_killed_server_gives_timeout_then_next_call_works_after_restart(tmp_path) -> None:
    endpoint = f"ipc://{tmp_path}/control"
    proc = _spawn(endpoint)
    try:
        m = RemoteMicroscope(endpoint, timeout_s=1.0)
        m.set_scan(shape_px=(16, 16))
        wait_s = m._timeout_for("acquire", None)
        assert wait_s < 1.1
        killer = threading.Timer(0.3, proc.kill)
        killer.start()
        t0 = time.monotonic()
        with pytest.raises(DriverTimeout, match="acquire"):
            m.acquire()  # the server dies while it is scanning
        assert time.monotonic() - t0 < wait_s + 1.0
        killer.join()
        proc.wait(10)
        with pytest.raises(DriverTimeout):
            m.status()  # nobody there
        proc = _spawn(endpoint)
        assert m.status().connected  # same client object, new socket
        assert m.set_fov_m(2e-6) == 2e-6
        m.close()
    finally:
        proc.kill()
        proc.wait(10)


def test_restart_on_the_same_tcp_port() -> None:
    with MicroscopeServer(NullMicroscope(), control="tcp://127.0.0.1:*", stream=None) as first:
        endpoint = first.control_endpoint
        m = RemoteMicroscope(endpoint, timeout_s=0.5)
        assert m.get_fov_m() > 0
    with pytest.raises(DriverTimeout):
        m.get_fov_m()
    with MicroscopeServer(NullMicroscope(), control=endpoint, stream=None):
        assert m.get_fov_m() > 0
        m.close()
    with pytest.raises(NotConnectedError):
        m.get_fov_m()


def test_per_call_and_block_timeouts(slow) -> None:
    with RemoteMicroscope(slow.control_endpoint, timeout_s=5.0) as m:
        for attempt in (lambda: m.call("acquire", timeout_s=0.2), lambda: _with_timeout(m, 0.2)):
            t0 = time.monotonic()
            with pytest.raises(DriverTimeout):
                attempt()
            assert time.monotonic() - t0 < 2.0
            m.abort()  # stop the scan that is still running on the server
            _wait_until(lambda: not m.status().busy)
        assert m.limits().fov_m[1] > 0  # works again after the timeouts


def _with_timeout(m: RemoteMicroscope, seconds: float):
    with m.timeout(seconds):
        return m.acquire()


def test_acquire_timeout_allows_for_the_frame_time(slow) -> None:
    with RemoteMicroscope(slow.control_endpoint, timeout_s=3.0) as m:
        m.set_scan(shape_px=(4096, 4096), dwell_s=10e-6, line_integration=4)
        frame_s = 4096 * 4096 * 10e-6 * 4
        assert m.expected_frame_s() == pytest.approx(frame_s)
        assert m._timeout_for("acquire", None) >= 3.0 + frame_s
        assert m._timeout_for("get_fov_m", None) == 3.0
        assert m._timeout_for("acquire", 7.0) == 7.0


# ---- abort ----------------------------------------------------------------------------------
def test_abort_reaches_the_instrument_during_a_long_frame(slow) -> None:
    with RemoteMicroscope(slow.control_endpoint, timeout_s=60.0) as m:
        m.set_scan(shape_px=(16, 16))
        scan = _in_thread(m.acquire)  # 30 s of wall time unless aborted
        _wait_until(lambda: m.status().busy)
        t0 = time.monotonic()
        m.abort()
        scan["thread"].join(10.0)
        assert not scan["thread"].is_alive()
        assert isinstance(scan.get("error"), Aborted), scan
        assert time.monotonic() - t0 < 5.0
        slow.driver.frame_wall_s = 0.0
        assert m.acquire().image.shape == (16, 16)  # usable again


def test_abort_cancels_queued_commands(slow) -> None:
    with RemoteMicroscope(slow.control_endpoint, timeout_s=60.0) as m:
        m.limits()  # cached: set_fov_m below then sends exactly one request
        scan = _in_thread(m.acquire)
        _wait_until(lambda: m.status().busy)
        queued = _in_thread(lambda: m.set_fov_m(3e-6))
        _wait_until(lambda: len(slow._inflight) == 2)
        m.abort()
        for job in (scan, queued):
            job["thread"].join(10.0)
            assert isinstance(job.get("error"), Aborted), job
        assert m.get_fov_m() != 3e-6


# ---- lease ------------------------------------------------------------------------------------
def test_one_controlling_client_at_a_time(slow) -> None:
    slow.driver.frame_wall_s = 0.0
    with RemoteMicroscope(slow.control_endpoint, timeout_s=5.0, name="alice") as alice, \
            RemoteMicroscope(slow.control_endpoint, timeout_s=5.0, name="bob") as bob:
        alice.set_fov_m(2e-6)
        with pytest.raises(AccessDeniedError, match=r"controlled by alice .* for 30 more s"):
            bob.set_fov_m(4e-6)
        with pytest.raises(AccessDeniedError, match="controlled by alice"):
            bob.abort()
        assert bob.get_fov_m() == 2e-6 and bob.status().connected and bob.stage() == alice.stage()
        assert bob.server_info["controller"] is None
        assert bob.call("ping")["controller"]["name"].startswith("alice")
        alice.release()
        assert bob.set_fov_m(4e-6) == 4e-6
        with pytest.raises(AccessDeniedError, match="controlled by bob"):
            alice.blank()
    assert slow.driver.get_fov_m() == 4e-6


def test_lease_expires(slow) -> None:
    slow.lease_s = 0.2
    with RemoteMicroscope(slow.control_endpoint, timeout_s=5.0, name="alice") as alice, \
            RemoteMicroscope(slow.control_endpoint, timeout_s=5.0, name="bob") as bob:
        alice.blank()
        with pytest.raises(AccessDeniedError):
            bob.unblank()
        time.sleep(0.3)
        bob.unblank()
        assert not bob.status().beam_blanked


def test_lease_holds_during_a_long_command(slow) -> None:
    slow.lease_s = 0.1
    with RemoteMicroscope(slow.control_endpoint, timeout_s=60.0, name="alice") as alice, \
            RemoteMicroscope(slow.control_endpoint, timeout_s=5.0, name="bob") as bob:
        scan = _in_thread(alice.acquire)
        _wait_until(lambda: bob.status().busy)  # another client may read status meanwhile
        time.sleep(0.2)  # longer than the lease, but alice's acquisition is still running
        with pytest.raises(AccessDeniedError, match="a command of theirs is running"):
            bob.set_fov_m(2e-6)
        alice.abort()
        scan["thread"].join(10.0)
        assert isinstance(scan.get("error"), Aborted)


# ---- stream -------------------------------------------------------------------------------------
def test_viewer_watches_frames_without_control(slow) -> None:
    slow.driver.frame_wall_s = 0.0
    with RemoteMicroscope(slow.control_endpoint, timeout_s=5.0, name="alice") as alice, \
            FrameSubscriber(slow.stream_endpoint) as viewer:
        alice.set_scan(shape_px=(24, 40))
        seen = None
        for _ in range(50):  # the subscription needs a moment to reach the publisher
            sent = alice.acquire()
            seen = viewer.recv(timeout_s=0.1)
            if seen is not None:
                break
        assert seen is not None and viewer.last_client.startswith("alice")
        assert seen.image.tobytes() == sent.image.tobytes() and seen.meta == sent.meta
        assert viewer.recv(timeout_s=0.05) is None


def test_stopping_the_server_aborts_a_running_command() -> None:
    driver = SlowMicroscope(frame_wall_s=30.0)
    server = MicroscopeServer(driver, control="tcp://127.0.0.1:*", stream=None).start()
    try:
        m = RemoteMicroscope(server.control_endpoint, timeout_s=1.0)
        scan = _in_thread(lambda: m.call("acquire", timeout_s=3.0))
        _wait_until(driver.started.is_set)
    finally:
        t0 = time.monotonic()
        server.stop()
    assert time.monotonic() - t0 < 5.0 and server._worker_thread is not None
    assert not server._worker_thread.is_alive()  # the scan was aborted, not left running
    scan["thread"].join(10.0)
    assert isinstance(scan.get("error"), DriverTimeout)
    m.close()
