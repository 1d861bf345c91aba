"""`drivers.tescan` against the tescanautomation fake: contract, unit conversion, errors, abort."""
from __future__ import annotations

import itertools
import math
import sys
import threading
import time

import numpy as np
import pytest

from drivers import (
    Aborted,
    DriverError,
    DriverTimeout,
    InterlockError,
    NotConnectedError,
    NotSupportedError,
    OutOfRangeError,
)
from drivers._vendor import ELEMENTARY_CHARGE_C, VendorSDKMissing, to_uint16, translate
from drivers.tescan import TescanMicroscope
from tests.drivers.contract import MicroscopeContract
from tests.drivers.fakes import tescan_fake as fake

_hosts = itertools.count()
_SETTERS = ("SEM.Optics.Set", "SEM.Beam.Set", "Stage.MoveTo", "SEM.Scan.AcquireImage")


@pytest.fixture
def ess(monkeypatch):
    fake.install(monkeypatch)
    server = fake.FakeEssence(host=f"essence-{next(_hosts)}", seed=2)
    yield server
    fake.FakeEssence.servers.pop(server.host, None)


def _open(ess, **kw):
    return TescanMicroscope(host=ess.host, clock=ess.clock, sleep=ess.sleep, **kw)


@pytest.fixture
def scope(ess):
    with _open(ess) as m:
        yield m


def _sent(ess, name):
    """Arguments of every call to `name`."""
    return [args for n, args in ess.calls if n == name]


def _writes(ess):
    return [c for c in ess.calls if c[0].startswith(_SETTERS)]


class TestTescanContract(MicroscopeContract):
    @pytest.fixture
    def microscope(self, scope):
        yield scope


# ---- SDK presence and connection ----------------------------------------------------------------


def test_missing_sdk_names_the_package(monkeypatch):
    for name in fake.MODULE_NAMES:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(VendorSDKMissing, match="tescanautomation") as info:
        TescanMicroscope(host="anywhere")
    assert isinstance(info.value, NotConnectedError) and isinstance(info.value, ImportError)


def test_refused_connection(ess):
    with pytest.raises(NotConnectedError, match="SharkSEM"):
        TescanMicroscope(host="nowhere")


def test_open_driver_spec(ess):
    from agent.connect import open_driver

    m = open_driver("tescan", host=ess.host, port=8301)
    try:
        assert m.status().connected and ("Automation", (ess.host, 8301)) in ess.calls
    finally:
        m.close()
    assert ess.connections == 0


# ---- units at the boundary --------------------------------------------------------------------


def test_setters_convert_si_to_vendor_units(scope, ess):
    scope.set_working_distance_m(5e-3)
    scope.set_fov_m(250e-6)
    scope.set_beam_current_a(1.5e-9)
    scope.set_high_voltage_v(15e3)
    scope.set_beam_shift_m(1e-6, -2e-6)
    scope.set_scan(rotation_rad=math.pi / 6)
    assert _sent(ess, "SEM.Optics.SetWD")[-1] == pytest.approx((5.0,))
    assert _sent(ess, "SEM.Optics.SetViewfield")[-1] == pytest.approx((0.25,))
    assert _sent(ess, "SEM.Beam.SetCurrent")[-1] == pytest.approx((1500.0,))
    assert _sent(ess, "SEM.Beam.SetVoltage")[-1] == pytest.approx((15000.0,))
    assert _sent(ess, "SEM.Optics.SetImageShift")[-1] == pytest.approx((1e-3, -2e-3))
    assert _sent(ess, "SEM.Optics.SetImageRotation")[-1] == pytest.approx((30.0,))


def test_getters_convert_vendor_units_to_si(scope, ess):
    ess.wd_mm, ess.viewfield_mm, ess.current_pa = 12.5, 0.04, 250.0
    ess.rotation_deg, ess.shift_mm = 90.0, (0.002, -0.001)
    ess.position = [1.5, -2.0, 25.0, 180.0, 30.0]
    assert scope.get_working_distance_m() == pytest.approx(12.5e-3)
    assert scope.get_fov_m() == pytest.approx(40e-6)
    assert scope.get_beam_current_a() == pytest.approx(250e-12)
    assert scope.get_scan().rotation_rad == pytest.approx(math.pi / 2)
    assert scope.get_beam_shift_m() == pytest.approx((2e-6, -1e-6))
    pose = scope.stage()
    assert (pose.x_m, pose.y_m, pose.z_m) == pytest.approx((1.5e-3, -2e-3, 25e-3))
    assert (pose.rot_rad, pose.tilt_rad) == pytest.approx((math.pi, math.pi / 6))


def test_stage_move_in_mm_and_degrees_only_changed_axes(scope, ess):
    scope.move_stage(x_m=1e-3, tilt_rad=math.radians(10.0))
    (sent,), = _sent(ess, "Stage.MoveTo")
    assert sent["x"] == pytest.approx(1.0) and sent["tiltx"] == pytest.approx(10.0)
    assert sent["y"] is None and sent["z"] is None and sent["rot"] is None
    assert _sent(ess, "Stage.IsBusy")  # waited for the background move to finish


def test_acquire_sends_dwell_in_integer_ns(scope, ess):
    applied = scope.set_scan(shape_px=(40, 60), dwell_s=250e-9)
    assert applied.dwell_s == pytest.approx(250e-9)
    frame = scope.acquire()
    (det, bpp, width, height, dwell), = _sent(ess, "SEM.Scan.AcquireImage")
    assert (width, height, dwell) == (60, 40, 250) and isinstance(dwell, int)
    assert bpp == fake.Bpp.Grayscale_16_bit and frame.image.dtype == np.uint16
    assert frame.pixel_size_m == pytest.approx(ess.viewfield_mm * 1e-3 / 60)
    assert _sent(ess, "SEM.Scan.Stop")  # live scan stopped first


def test_dose_is_current_times_dwell_time(scope, ess):
    scope.set_beam_current_a(400e-12)
    scope.set_scan(shape_px=(30, 50), dwell_s=1e-6)
    frame = scope.acquire()
    expected = 400e-12 * 30 * 50 * 1e-6 / ELEMENTARY_CHARGE_C
    assert frame.meta.electrons == pytest.approx(expected, rel=1e-9)
    assert scope.status().total_electrons == pytest.approx(expected, rel=1e-9)


# ---- limits and refusals -------------------------------------------------------------------------


def test_out_of_range_refused_before_any_vendor_call(scope, ess):
    lim = scope.limits()
    before = len(_writes(ess))
    with pytest.raises(OutOfRangeError, match="working_distance_m"):
        scope.set_working_distance_m(lim.working_distance_m[1] + 1e-3)
    with pytest.raises(OutOfRangeError, match="x_m"):
        scope.move_stage(x_m=lim.stage_x_m[1] + 1e-3)
    with pytest.raises(OutOfRangeError, match="line_integration"):
        scope.set_scan(line_integration=2)  # AcquireImage has no line integration
    assert len(_writes(ess)) == before


def test_stage_limits_come_from_the_instrument(scope, ess):
    lim = scope.limits()
    assert lim.stage_x_m == pytest.approx((-40e-3, 40e-3))
    assert lim.stage_z_m == pytest.approx((0.0, 45e-3))
    assert lim.stage_tilt_rad == pytest.approx((math.radians(-30), math.radians(80)))
    assert lim.detectors == ("SE", "BSE", "In-Beam SE")


def test_limit_overrides(ess):
    with _open(ess, limits={"fov_m": (1e-6, 1e-4)}) as m:
        with pytest.raises(OutOfRangeError, match="fov_m"):
            m.set_fov_m(2e-4)
    assert not _sent(ess, "SEM.Optics.SetViewfield")
    with pytest.raises(ValueError, match="unknown keys"):
        _open(ess, limits={"focus": (0, 1)})


def test_unknown_stage_limits_refuse_moves(ess):
    ess.has_stage_limits = False
    with _open(ess) as m:
        with pytest.raises(NotSupportedError, match="stage_limits"):
            m.move_stage(x_m=0.0)
        assert m.acquire().image.size > 0  # the rest still works
    assert not _sent(ess, "Stage.MoveTo")
    with _open(ess, stage_limits={"x_m": (-1e-2, 1e-2), "y_m": (-1e-2, 1e-2), "z_m": (0, 3e-2),
                                  "tilt_rad": (0, 1), "rot_rad": (-4, 4)}) as m:
        assert m.move_stage(x_m=2e-3).x_m == pytest.approx(2e-3)


# ---- busy stage, interlocks, lost connection --------------------------------------------------


def test_busy_stage_is_waited_for(scope, ess):
    ess.busy_polls = 5
    scope.move_stage(y_m=1e-3)
    first_move = ess.calls.index(next(c for c in ess.calls if c[0] == "Stage.MoveTo"))
    assert sum(1 for c in ess.calls[:first_move] if c[0] == "Stage.IsBusy") >= 6


def test_stage_that_stays_busy_times_out(ess):
    with _open(ess, stage_timeout_s=1.0) as m:
        ess.busy_polls = 10**9
        with pytest.raises(DriverTimeout, match="stage busy"):
            m.move_stage(y_m=1e-3)
    assert not _sent(ess, "Stage.MoveTo")


def test_vendor_busy_error_is_a_driver_error(scope, ess):
    ess.fail("Stage.MoveTo", fake.AutomationError("Stage is busy"))
    with pytest.raises(DriverError, match="busy") as info:
        scope.move_stage(x_m=1e-3)
    assert type(info.value) is DriverError


def test_beam_off_is_an_interlock(scope, ess):
    ess.beam_on = False
    with pytest.raises(InterlockError, match="beam is off"):
        scope.acquire()
    assert not _sent(ess, "SEM.Scan.AcquireImage")


def test_lost_connection(scope, ess):
    ess.go_offline()
    with pytest.raises(NotConnectedError, match="socket"):
        scope.get_working_distance_m()
    assert not scope.status().connected


def test_vendor_refusal_maps_to_out_of_range(scope, ess):
    ess.fail("SEM.Optics.SetWD", fake.AutomationError("working distance 5 is out of range"))
    with pytest.raises(OutOfRangeError):
        scope.set_working_distance_m(5e-3)


# ---- blanking, autofocus, abort ---------------------------------------------------------------


def test_blank_and_unblank_use_the_blanker(scope, ess):
    scope.blank()
    assert ess.blanker == 1 and scope.status().beam_blanked
    scope.unblank()
    assert ess.blanker == 2 and not scope.status().beam_blanked


def test_autofocus_waits_and_returns_wd(scope, ess):
    assert scope.autofocus() == pytest.approx(ess.focus_wd_mm * 1e-3)
    assert len(_sent(ess, "SEM.IsBusy")) >= 4


def test_abort_stops_scan_and_stage_on_its_own_link(scope, ess):
    scope.abort()
    scope.abort()
    assert len(_sent(ess, "SEM.Scan.Stop")) == 2 and len(_sent(ess, "Stage.Stop")) == 2
    assert ess.connections == 2


def _in_thread(fn):
    out: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            out.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    return worker, out


def test_abort_interrupts_a_scan(scope, ess):
    ess.hold_scan = True
    worker, out = _in_thread(scope.acquire)
    assert ess.scan_started.wait(5.0)
    scope.abort()
    worker.join(5.0)
    assert len(out) == 1 and isinstance(out[0], Aborted)


def test_abort_interrupts_a_stage_move(ess):
    ess.move_polls = 10**9
    with TescanMicroscope(host=ess.host, clock=ess.clock, sleep=time.sleep, poll_s=0.005,
                          stage_timeout_s=5.0) as m:
        worker, out = _in_thread(lambda: m.move_stage(x_m=1e-3))
        deadline = time.monotonic() + 5.0
        while not _sent(ess, "Stage.MoveTo") and time.monotonic() < deadline:
            time.sleep(0.005)
        m.abort()
        worker.join(5.0)
    assert len(out) == 1 and isinstance(out[0], Aborted)


# ---- shared helpers ---------------------------------------------------------------------------


def test_uint8_images_are_scaled_to_uint16():
    out = to_uint16(np.array([[0, 1, 255]], dtype=np.uint8))
    assert out.dtype == np.uint16 and out.tolist() == [[0, 257, 65535]]


@pytest.mark.parametrize("exc, cls", [
    (TimeoutError("late"), DriverTimeout),
    (ConnectionResetError("peer"), NotConnectedError),
    (RuntimeError("chamber is vented"), InterlockError),
    (RuntimeError("value is out of range"), OutOfRangeError),
    (RuntimeError("acquisition aborted"), Aborted),
    (RuntimeError("something else"), DriverError),
    (AttributeError("'Optics' object has no attribute 'GetStigmator'"), NotSupportedError),
])
def test_translate(exc, cls):
    assert type(translate(exc, "op")) is cls
