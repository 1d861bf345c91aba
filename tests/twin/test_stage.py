"""Stage limits, timing, backlash and repeatability (twin.stage); instrument clock (twin.clock)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from drivers.errors import OutOfRangeError
from twin.clock import Clock, DoseLedger
from twin.stage import Stage, StageConfig

EXACT = StageConfig(backlash_m=0.0, repeatability_m=0.0, angle_backlash_rad=0.0,
                    angle_repeatability_rad=0.0)


def _err(stage: Stage) -> np.ndarray:
    a, r = stage.actual, stage.reported
    return np.array([a.x_m - r.x_m, a.y_m - r.y_m, a.z_m - r.z_m])


def test_starts_at_origin_with_no_error():
    s = Stage(StageConfig(), np.random.default_rng(0))
    assert s.reported == s.actual
    assert (s.reported.x_m, s.reported.y_m, s.reported.z_m) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("kw", [dict(x_m=6e-3), dict(y_m=-5.1e-3), dict(z_m=-1e-6),
                                dict(tilt_rad=2.0), dict(rot_rad=4.0)])
def test_limits_raise_without_moving(kw):
    s = Stage(StageConfig(), np.random.default_rng(0))
    before = s.reported
    with pytest.raises(OutOfRangeError, match=next(iter(kw))):
        s.move(**({"y_m": 1e-3} | kw))
    assert s.reported == before


def test_relative_moves_respect_limits_and_bad_values_raise():
    s = Stage(StageConfig(), np.random.default_rng(0))
    s.move(x_m=4e-3)
    with pytest.raises(OutOfRangeError):
        s.move(x_m=2e-3, relative=True)
    s.move(x_m=-1e-3, relative=True)
    assert s.reported.x_m == pytest.approx(3e-3)
    for bad in (math.nan, math.inf, "1", [1e-3]):
        with pytest.raises(ValueError):
            s.move(y_m=bad)


def test_duration_grows_with_distance_and_includes_settle():
    cfg = StageConfig(speed_m_per_s=1e-3, settle_s=0.5)
    s = Stage(cfg, np.random.default_rng(0))
    assert s.move(x_m=0.0) == 0.0                      # no motion: no time
    assert s.move(x_m=1e-3) == pytest.approx(1.5)
    assert s.move(x_m=4e-3, y_m=2e-3) == pytest.approx(3.5)   # axes move together
    t1 = s.move(x_m=-1e-6, relative=True)
    t2 = s.move(x_m=-100e-6, relative=True)
    assert 0.5 < t1 < t2


def test_away_and_back_returns_within_repeatability():
    cfg = StageConfig(backlash_m=0.0, repeatability_m=0.5e-6)
    errs = []
    for seed in range(40):
        s = Stage(cfg, np.random.default_rng(seed))
        s.move(x_m=1e-3, y_m=-2e-3)
        s.move(x_m=0.0, y_m=0.0)
        errs.append(_err(s)[:2])
    errs = np.array(errs)
    assert np.abs(errs).max() < 4 * 0.5e-6
    assert errs.std() == pytest.approx(0.5e-6, rel=0.3)
    exact = Stage(EXACT, np.random.default_rng(0))
    exact.move(x_m=1e-3, z_m=2e-3, tilt_rad=0.3, rot_rad=1.0)
    assert exact.actual == exact.reported


def test_backlash_appears_on_reversal_only():
    b = 2e-6
    s = Stage(StageConfig(backlash_m=b, repeatability_m=0.0), np.random.default_rng(0))
    s.move(x_m=1e-3)                               # + (same as homing direction)
    assert _err(s)[0] == 0.0
    s.move(x_m=2e-3)                               # + again
    assert _err(s)[0] == 0.0
    s.move(x_m=1.5e-3)                             # reversal: lags towards + by b
    assert _err(s)[0] == pytest.approx(b)
    s.move(x_m=1e-3)                               # − again: no further change
    assert _err(s)[0] == pytest.approx(b)
    s.move(x_m=1.2e-3)                             # reversal: lag changes by b towards −
    assert _err(s)[0] == pytest.approx(0.0)
    assert _err(s)[1] == 0.0                       # y never moved


def test_same_seed_same_errors():
    a = Stage(StageConfig(), np.random.default_rng(4))
    b = Stage(StageConfig(), np.random.default_rng(4))
    for st in (a, b):
        st.move(x_m=1e-3, y_m=1e-3)
        st.move(x_m=-1e-3, tilt_rad=0.2)
    assert a.actual == b.actual and a.actual != a.reported


def test_config_validation():
    with pytest.raises(ValueError, match="StageConfig.x_range_m"):
        StageConfig(x_range_m=(1.0, -1.0))
    with pytest.raises(ValueError, match="StageConfig.speed_m_per_s"):
        StageConfig(speed_m_per_s=0.0)


def test_clock_advances_and_logs():
    c = Clock()
    assert c.advance(1.5, "stage") == 1.5
    assert c.advance(0.0) == 1.5
    with pytest.raises(ValueError, match="dt_s"):
        c.advance(-1.0)
    with pytest.raises(ValueError, match="dt_s"):
        c.advance(math.nan)
    assert c.now_s == 1.5 and c.log == [(0.0, 1.5, "stage"), (1.5, 0.0, "")]


def test_dose_ledger_totals():
    led = DoseLedger()
    assert led.add(1e9, 4e-12, 0) == pytest.approx(2.5e20)
    led.add(1e9, 1e-12, 1)
    t = led.totals()
    assert t["electrons"] == 2e9 and t["dose_e_per_m2"] == pytest.approx(1.25e21)
    with pytest.raises(ValueError):
        led.add(-1.0, 1.0, 2)
