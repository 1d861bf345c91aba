"""The driver contract over the wire, and bit-identical frames in-process and remote."""
from __future__ import annotations

import numpy as np
import pytest

from drivers import Microscope
from drivers.null import NullMicroscope
from drivers.remote import MicroscopeServer, RemoteMicroscope
from tests.drivers.contract import MicroscopeContract
from twin import TwinMicroscope


def _remote(driver: Microscope):
    """Yield a client of a loopback server wrapping `driver`; always stops server and driver."""
    try:
        with MicroscopeServer(driver, control="tcp://127.0.0.1:*", stream=None) as server:
            with RemoteMicroscope(server.control_endpoint, timeout_s=20.0) as m:
                yield m
    finally:
        driver.close()


class TestRemoteNullContract(MicroscopeContract):
    @pytest.fixture
    def microscope(self):
        yield from _remote(NullMicroscope(seed=3))


class TestRemoteTwinContract(MicroscopeContract):
    @pytest.fixture
    def microscope(self):
        yield from _remote(TwinMicroscope("default", seed=7))


def _script(m: Microscope) -> list:
    """A short acquisition: settings, a stage move, three frames."""
    lim = m.limits()
    m.set_scan(shape_px=(48, 64), dwell_s=max(lim.dwell_s[0], 500e-9))
    m.set_fov_m(lim.fov_m[0] + (lim.fov_m[1] - lim.fov_m[0]) * 2e-3)
    m.move_stage(x_m=lim.stage_x_m[0] * 0.1, y_m=lim.stage_y_m[1] * 0.05)
    frames = [m.acquire(), m.acquire()]
    lo, hi = lim.working_distance_m
    m.set_working_distance_m(lo + 0.4 * (hi - lo))
    m.move_stage(x_m=20e-6, relative=True)
    frames.append(m.acquire())
    return frames


def _assert_identical(local: list, remote: list) -> None:
    assert len(local) == len(remote)
    for a, b in zip(local, remote):
        assert a.image.dtype == b.image.dtype and a.image.shape == b.image.shape
        assert a.image.tobytes() == b.image.tobytes()
        assert a.meta == b.meta


@pytest.mark.parametrize(
    "make",
    [lambda: NullMicroscope(seed=11), lambda: TwinMicroscope("default", seed=7)],
    ids=["null", "twin"],
)
def test_remote_frames_are_bit_identical_to_in_process(make) -> None:
    with make() as local:
        expected = _script(local)
    for m in _remote(make()):
        got = _script(m)
    _assert_identical(expected, got)
    assert not np.all(got[0].image == got[1].image)  # a real comparison, not of constant images
