"""Through-focus sweep (the raster baseline's autofocus): finds focus, stays put on empty fields,
never leaves the instrument's working-distance range."""
from __future__ import annotations

import numpy as np
import pytest

from agent.autofocus import Autofocus
from twin import TwinMicroscope, truth
from twin.config import load_scenario


def _scope(name: str, seed: int, x_m: float = 0.0, y_m: float = 0.0) -> tuple[TwinMicroscope, float]:
    m = TwinMicroscope(load_scenario(name), seed=seed)
    m.set_fov_m(4e-9 * 512)
    m.set_scan(shape_px=(384, 512), dwell_s=1e-6)
    m.move_stage(x_m=x_m, y_m=y_m)
    m.set_working_distance_m(truth.focus_wd_m(m))
    dof = m.acquire().meta.depth_of_field_m
    return m, dof


def _populated(m: TwinMicroscope, want: bool, half_m: float = 3e-6) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    for _ in range(400):
        x, y = (float(v) for v in rng.uniform(-2e-4, 2e-4, 2))
        if (len(truth.particles_in(m, x - half_m, y - half_m, x + half_m, y + half_m)) > 0) == want:
            return x, y
    pytest.skip("no such field found")


def test_sweep_finds_focus_on_a_field_with_particles():
    m, _ = _scope("default", 100)
    x, y = _populated(m, True)
    m, dof = _scope("default", 100, x, y)
    focus = truth.focus_wd_m(m)
    res = Autofocus(m, shape_px=(256, 256)).sweep(focus + 5 * dof, span_m=40 * dof, n=9)
    assert res.converged
    assert abs(res.wd_m - focus) < 2.5 * dof
    assert m.get_working_distance_m() == pytest.approx(res.wd_m)


def test_sweep_leaves_focus_alone_on_an_empty_field():
    m, _ = _scope("sparse", 110)
    x, y = _populated(m, False)
    m, dof = _scope("sparse", 110, x, y)
    start = truth.focus_wd_m(m) + 3 * dof
    res = Autofocus(m, shape_px=(256, 256)).sweep(start, span_m=40 * dof, n=9)
    assert not res.converged
    assert res.wd_m == pytest.approx(start)


def test_sweep_near_the_range_limit_stays_inside_it():
    m, dof = _scope("sparse", 110)
    lo, hi = m.limits().working_distance_m
    res = Autofocus(m, shape_px=(128, 128)).sweep(lo + 1e-6, span_m=2e-3, n=9)  # half the span is below range
    assert lo <= res.wd_m <= hi
    assert lo <= m.get_working_distance_m() <= hi
