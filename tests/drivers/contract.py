"""Reusable contract tests for any `drivers.Microscope` implementation.

Subclass `MicroscopeContract` in a test module and provide a `microscope` fixture that yields
a fresh, connected instance (and closes it afterwards)::

    class TestMine(MicroscopeContract):
        @pytest.fixture
        def microscope(self):
            with MyDriver(...) as m:
                yield m

Every implementation (twin, remote client, vendor adapters over fakes) must pass it.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from drivers import (
    DriverError,
    Frame,
    InvalidArgumentError,
    Limits,
    Microscope,
    NotSupportedError,
    OutOfRangeError,
    ScanSettings,
    StagePose,
    Status,
)


def _inside(lo: float, hi: float, frac: float) -> float:
    return lo + (hi - lo) * frac


def _small_scan(m: Microscope) -> None:
    """Keep frames small so the suite is quick on any backend."""
    m.set_scan(shape_px=(64, 96), dwell_s=max(m.limits().dwell_s[0], 200e-9), line_integration=1)


class MicroscopeContract:
    """Behaviour every `Microscope` must show. Needs a `microscope` fixture."""

    # ---- state ----------------------------------------------------------------------
    def test_status_and_limits(self, microscope: Microscope) -> None:
        st = microscope.status()
        assert isinstance(st, Status) and st.connected
        lim = microscope.limits()
        assert isinstance(lim, Limits)
        for name in ("stage_x_m", "stage_y_m", "fov_m", "dwell_s", "working_distance_m",
                     "beam_current_a", "high_voltage_v", "stigmator"):
            lo, hi = getattr(lim, name)
            assert math.isfinite(lo) and math.isfinite(hi) and lo < hi, name
        assert lim.detectors and all(isinstance(d, str) for d in lim.detectors)

    # ---- setters return what was applied -------------------------------------------------
    def test_setters_return_applied_values(self, microscope: Microscope) -> None:
        lim = microscope.limits()
        fov = _inside(*lim.fov_m, 1e-3)
        assert microscope.set_fov_m(fov) == pytest.approx(fov, rel=1e-6)
        assert microscope.get_fov_m() == pytest.approx(fov, rel=1e-6)
        wd = _inside(*lim.working_distance_m, 0.3)
        assert microscope.set_working_distance_m(wd) == pytest.approx(wd, rel=1e-6)
        assert microscope.get_working_distance_m() == pytest.approx(wd, rel=1e-6)
        sx, sy = _inside(*lim.stigmator, 0.6), _inside(*lim.stigmator, 0.4)
        assert microscope.set_stigmator(sx, sy) == pytest.approx((sx, sy), abs=1e-9)
        assert microscope.get_stigmator() == pytest.approx((sx, sy), abs=1e-9)
        cur = _inside(*lim.beam_current_a, 0.01)
        assert microscope.set_beam_current_a(cur) == pytest.approx(cur, rel=1e-6)
        assert microscope.get_beam_current_a() == pytest.approx(cur, rel=1e-6)
        hv = _inside(*lim.high_voltage_v, 0.2)
        assert microscope.set_high_voltage_v(hv) == pytest.approx(hv, rel=1e-6)
        assert microscope.get_high_voltage_v() == pytest.approx(hv, rel=1e-6)
        bs = _inside(*lim.beam_shift_m, 0.55)
        assert microscope.set_beam_shift_m(bs, -bs) == pytest.approx((bs, -bs), rel=1e-6)
        det = lim.detectors[-1]
        assert microscope.set_detector(det) == det and microscope.get_detector() == det

    def test_set_scan(self, microscope: Microscope) -> None:
        lim = microscope.limits()
        applied = microscope.set_scan(shape_px=(48, 80), dwell_s=lim.dwell_s[0] * 2)
        assert isinstance(applied, ScanSettings)
        assert tuple(applied.shape_px) == (48, 80)
        assert applied.dwell_s == pytest.approx(lim.dwell_s[0] * 2, rel=1e-6)
        assert microscope.get_scan() == applied

    # ---- refusals -------------------------------------------------------------------------
    def test_out_of_range_raises_and_changes_nothing(self, microscope: Microscope) -> None:
        lim = microscope.limits()
        before = microscope.get_fov_m()
        with pytest.raises(OutOfRangeError, match="fov_m"):
            microscope.set_fov_m(lim.fov_m[1] * 10)
        assert microscope.get_fov_m() == before
        with pytest.raises(OutOfRangeError, match="working_distance_m"):
            microscope.set_working_distance_m(lim.working_distance_m[0] / 10)
        with pytest.raises(OutOfRangeError, match="beam_current_a"):
            microscope.set_beam_current_a(lim.beam_current_a[1] * 100)
        with pytest.raises(OutOfRangeError, match="dwell_s"):
            microscope.set_scan(dwell_s=lim.dwell_s[1] * 10)
        with pytest.raises(OutOfRangeError, match="stigmator"):
            microscope.set_stigmator(lim.stigmator[1] + 1.0, 0.0)

    def test_out_of_range_stage_move_does_not_move(self, microscope: Microscope) -> None:
        lim = microscope.limits()
        before = microscope.stage()
        with pytest.raises(OutOfRangeError, match="x_m"):
            microscope.move_stage(x_m=lim.stage_x_m[1] + 1e-3, y_m=0.0)
        assert microscope.stage() == before

    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), "1e-6", None, True, [1e-6]])
    def test_bad_values_raise_value_errors(self, microscope: Microscope, bad: object) -> None:
        with pytest.raises(InvalidArgumentError) as info:
            microscope.set_fov_m(bad)  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError) and isinstance(info.value, DriverError)
        assert "fov_m" in str(info.value)

    def test_bad_detector_and_shape(self, microscope: Microscope) -> None:
        with pytest.raises(InvalidArgumentError, match="detector"):
            microscope.set_detector("no-such-detector")
        with pytest.raises(InvalidArgumentError, match="shape_px"):
            microscope.set_scan(shape_px=(0, 10))
        with pytest.raises(InvalidArgumentError, match="shape_px"):
            microscope.set_scan(shape_px="big")  # type: ignore[arg-type]

    # ---- stage ----------------------------------------------------------------------------
    def test_stage_absolute_and_relative(self, microscope: Microscope) -> None:
        lim = microscope.limits()
        x = _inside(*lim.stage_x_m, 0.52)
        y = _inside(*lim.stage_y_m, 0.47)
        pose = microscope.move_stage(x_m=x, y_m=y)
        assert isinstance(pose, StagePose)
        assert pose.x_m == pytest.approx(x, abs=1e-9) and pose.y_m == pytest.approx(y, abs=1e-9)
        pose2 = microscope.move_stage(x_m=1e-6, relative=True)
        assert pose2.x_m == pytest.approx(x + 1e-6, abs=1e-9)
        assert pose2.y_m == pytest.approx(y, abs=1e-9)
        assert microscope.stage().x_m == pytest.approx(pose2.x_m, abs=1e-12)

    # ---- imaging ----------------------------------------------------------------------------
    def test_acquire_frame_and_metadata(self, microscope: Microscope) -> None:
        _small_scan(microscope)
        fov = microscope.set_fov_m(_inside(*microscope.limits().fov_m, 1e-3))
        t_before = microscope.status().instrument_time_s
        f1 = microscope.acquire()
        f2 = microscope.acquire()
        for f in (f1, f2):
            assert isinstance(f, Frame)
            assert f.image.shape == (64, 96) and f.image.dtype == np.uint16
            m = f.meta
            assert tuple(m.shape_px) == (64, 96)
            assert m.fov_m == pytest.approx(fov, rel=1e-6)
            assert m.pixel_size_m == pytest.approx(fov / 96, rel=1e-6)
            assert m.t_end_s > m.t_start_s >= t_before
            assert m.electrons > 0 and m.dose_e_per_m2 > 0
            assert m.beam_current_a > 0 and m.high_voltage_v > 0 and m.dwell_s > 0
            assert isinstance(m.stage, StagePose) and m.backend
        assert f2.meta.frame_id > f1.meta.frame_id
        assert f2.meta.t_start_s >= f1.meta.t_end_s
        assert microscope.status().instrument_time_s >= f2.meta.t_end_s

    def test_blanked_beam_gives_no_dose(self, microscope: Microscope) -> None:
        _small_scan(microscope)
        microscope.blank()
        assert microscope.status().beam_blanked
        frame = microscope.acquire()
        assert frame.meta.electrons == 0
        microscope.unblank()
        assert not microscope.status().beam_blanked
        assert microscope.acquire().meta.electrons > 0

    def test_abort_is_idempotent(self, microscope: Microscope) -> None:
        microscope.abort()
        microscope.abort()
        _small_scan(microscope)
        assert microscope.acquire().image.size == 64 * 96

    def test_defocus_matches_mode(self, microscope: Microscope) -> None:
        lim = microscope.limits()
        if lim.defocus_m is None:
            with pytest.raises(NotSupportedError):
                microscope.set_defocus_m(0.0)
        else:
            d = _inside(*lim.defocus_m, 0.6)
            assert microscope.set_defocus_m(d) == pytest.approx(d, rel=1e-6, abs=1e-12)
            assert microscope.get_defocus_m() == pytest.approx(d, rel=1e-6, abs=1e-12)
