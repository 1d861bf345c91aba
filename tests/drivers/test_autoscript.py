"""`drivers.autoscript` against the AutoScript fake: contract, units, limits, errors, abort."""
from __future__ import annotations

import itertools
import sys
import threading

import pytest

from drivers import (
    Aborted,
    DriverError,
    DriverTimeout,
    InterlockError,
    NotConnectedError,
    OutOfRangeError,
)
from drivers._vendor import ELEMENTARY_CHARGE_C, VendorSDKMissing
from drivers.autoscript import AutoScriptMicroscope
from tests.drivers.contract import MicroscopeContract
from tests.drivers.fakes import autoscript_fake as fake

_hosts = itertools.count()


@pytest.fixture
def xt(monkeypatch):
    fake.install(monkeypatch)
    server = fake.FakeXT(host=f"xt-{next(_hosts)}", seed=1)
    yield server
    fake.FakeXT.servers.pop(server.host, None)


@pytest.fixture
def scope(xt):
    with AutoScriptMicroscope(host=xt.host, clock=xt.clock) as m:
        yield m


class TestAutoScriptContract(MicroscopeContract):
    @pytest.fixture
    def microscope(self, scope):
        yield scope


# ---- SDK presence --------------------------------------------------------------------------


def test_missing_sdk_names_the_package(monkeypatch):
    for name in fake.MODULE_NAMES:
        monkeypatch.setitem(sys.modules, name, None)  # import now fails like an absent SDK
    with pytest.raises(VendorSDKMissing, match="autoscript_sdb_microscope_client") as info:
        AutoScriptMicroscope(host="anywhere")
    assert isinstance(info.value, NotConnectedError) and isinstance(info.value, ImportError)


def test_no_server_is_not_connected(xt):
    with pytest.raises(NotConnectedError, match="connect"):
        AutoScriptMicroscope(host="no-such-host")


def test_open_driver_spec(xt):
    from agent.connect import open_driver

    m = open_driver("autoscript", host=xt.host)
    try:
        assert m.status().connected and m.status().backend == "autoscript"
        assert ("call", "connect", (xt.host, None)) in xt.calls
    finally:
        m.close()


# ---- limits come from the instrument, refusals happen before sending --------------------------


def test_limits_are_queried_from_the_instrument(xt):
    xt.limits["horizontal_field_width"] = fake.Limits(1e-6, 1e-3)
    xt.axis_limits["x"] = fake.Limits(-20e-3, 30e-3)
    with AutoScriptMicroscope(host=xt.host, clock=xt.clock) as m:
        lim = m.limits()
    assert lim.fov_m == (1e-6, 1e-3) and lim.stage_x_m == (-20e-3, 30e-3)
    assert lim.beam_shift_m == (-40e-6, 40e-6)  # x +-50 um, y +-40 um: the common range
    assert lim.detectors == ("ETD", "TLD", "ICE", "CBS")
    assert lim.stage_tilt_rad[1] == pytest.approx(1.0472, abs=1e-4)


def test_out_of_range_is_refused_before_any_vendor_write(scope, xt):
    lim = scope.limits()
    writes = len(xt.writes())
    with pytest.raises(OutOfRangeError, match="fov_m"):
        scope.set_fov_m(lim.fov_m[1] * 2)
    with pytest.raises(OutOfRangeError, match="high_voltage_v"):
        scope.set_high_voltage_v(lim.high_voltage_v[1] + 1.0)
    with pytest.raises(OutOfRangeError, match="y_m"):
        scope.move_stage(y_m=lim.stage_y_m[0] - 1e-3)
    with pytest.raises(OutOfRangeError, match="line_integration"):
        scope.set_scan(line_integration=lim.line_integration_max + 1)
    assert len(xt.writes()) == writes


def test_values_pass_through_in_si(scope, xt):
    scope.set_working_distance_m(5e-3)
    scope.set_stigmator(0.1, -0.2)
    scope.set_beam_shift_m(1e-6, -2e-6)
    scope.set_scan(rotation_rad=0.5)
    assert xt.values["working_distance"] == 5e-3
    assert (xt.values["stigmator"].x, xt.values["stigmator"].y) == (0.1, -0.2)
    assert (xt.values["beam_shift"].x, xt.values["beam_shift"].y) == (1e-6, -2e-6)
    assert xt.values["rotation"] == 0.5


def test_stage_move_sends_only_the_axes_that_change(scope, xt):
    scope.move_stage(x_m=1e-3)
    (_, _, pos), = xt.called("specimen.stage.absolute_move")
    assert pos.x == 1e-3 and pos.y is None and pos.t is None and pos.r is None
    assert pos.coordinate_system == fake.CoordinateSystem.RAW
    scope.move_stage(x_m=1e-3)  # already there: nothing sent
    assert len(xt.called("specimen.stage.absolute_move")) == 1


# ---- scan shapes ------------------------------------------------------------------------------


def test_preset_and_nonstandard_shapes(scope, xt):
    scope.set_scan(shape_px=(884, 1024), dwell_s=100e-9)
    frame = scope.acquire()
    assert frame.image.shape == (884, 1024) and frame.meta.extra["preset"] is True
    scope.set_scan(shape_px=(64, 96), line_integration=3)
    frame = scope.acquire()
    settings = xt.called("imaging.grab_frame")[-1][2]
    assert settings.resolution == "96x64" and settings.line_integration == 3
    assert settings.bit_depth == 16 and frame.meta.extra["preset"] is False


def test_presets_only_mode_names_the_presets(xt):
    with AutoScriptMicroscope(host=xt.host, clock=xt.clock, shapes="presets") as m:
        with pytest.raises(OutOfRangeError, match=r"\(442, 512\)"):
            m.set_scan(shape_px=(64, 96))
        assert m.set_scan(shape_px=(442, 512)).shape_px == (442, 512)


def test_too_small_nonstandard_shape_refused_before_sending(scope, xt):
    with pytest.raises(OutOfRangeError, match="shape_px"):
        scope.set_scan(shape_px=(10, 64))
    assert not xt.called("imaging.grab_frame")


# ---- dose, metadata, time -----------------------------------------------------------------------


def test_dose_is_current_times_dwell_time(scope, xt):
    scope.set_beam_current_a(200e-12)
    scope.set_scan(shape_px=(50, 80), dwell_s=1e-6, line_integration=2)
    frame = scope.acquire()
    expected = 200e-12 * 50 * 80 * 1e-6 * 2 / ELEMENTARY_CHARGE_C
    assert frame.meta.electrons == pytest.approx(expected, rel=1e-12)
    fov = scope.get_fov_m()
    assert frame.meta.dose_e_per_m2 == pytest.approx(expected / (fov * fov * 50 / 80), rel=1e-12)
    assert frame.meta.t_end_s - frame.meta.t_start_s == pytest.approx(50 * (80 * 2e-6 + 100e-6))
    assert scope.status().total_electrons == pytest.approx(expected, rel=1e-12)


def test_autofocus_returns_the_new_working_distance(scope, xt):
    assert scope.autofocus() == pytest.approx(xt.focus_wd)
    assert xt.called("auto_functions.run_auto_focus")


# ---- vendor errors ------------------------------------------------------------------------------


def test_busy_stage_is_a_driver_error(scope, xt):
    xt.stage_busy = True
    with pytest.raises(DriverError, match="busy") as info:
        scope.move_stage(x_m=1e-3)
    assert type(info.value) is DriverError


def test_vented_chamber_is_an_interlock(scope, xt):
    xt.vented = True
    with pytest.raises(InterlockError, match="vented"):
        scope.acquire()


def test_timeout_and_unknown_errors(scope, xt):
    xt.fail("imaging.grab_frame", TimeoutError("no answer from xT"))
    with pytest.raises(DriverTimeout):
        scope.acquire()
    xt.fail("beams.electron_beam.working_distance", fake.ApplicationServerException("odd"))
    with pytest.raises(DriverError, match="odd"):
        scope.get_working_distance_m()


def test_lost_connection(scope, xt):
    xt.go_offline()
    with pytest.raises(NotConnectedError):
        scope.get_fov_m()
    assert not scope.status().connected


def test_closed_adapter_refuses_calls(xt):
    m = AutoScriptMicroscope(host=xt.host, clock=xt.clock)
    m.close()
    m.close()
    assert not m.status().connected
    with pytest.raises(NotConnectedError):
        m.get_fov_m()


# ---- abort ----------------------------------------------------------------------------------------


def test_abort_stops_scan_and_stage(scope, xt):
    scope.abort()
    assert xt.called("imaging.stop_acquisition") and xt.called("specimen.stage.stop")


def test_abort_from_another_thread_interrupts_a_frame(scope, xt):
    xt.hold_grab = True
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            scope.acquire()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert xt.grab_started.wait(5.0)
    scope.abort()
    worker.join(5.0)
    assert len(outcome) == 1 and isinstance(outcome[0], Aborted)
    assert xt.clients == 2  # abort went through its own connection


# ---- served over the remote protocol (what `emtwin serve --driver autoscript` does) ---------


def test_served_over_the_remote_protocol(xt, tmp_path):
    from agent.connect import open_driver
    from drivers.remote import MicroscopeServer, RemoteMicroscope

    endpoint = f"ipc://{tmp_path}/autoscript.sock"
    driver = open_driver("autoscript", host=xt.host)
    server = MicroscopeServer(driver, control=endpoint, stream=None, name="autoscript")
    server.start()
    worker = threading.Thread(target=server.serve_forever, daemon=True)
    worker.start()
    try:
        with RemoteMicroscope(endpoint) as remote:
            remote.set_scan(shape_px=(64, 96), dwell_s=200e-9)
            frame = remote.acquire()
            assert frame.image.shape == (64, 96) and frame.meta.backend == "autoscript"
            with pytest.raises(OutOfRangeError, match="fov_m"):
                remote.set_fov_m(1.0)
            remote.abort()
    finally:
        server.stop()
        driver.close()
    assert xt.called("imaging.grab_frame") and xt.called("imaging.stop_acquisition")
