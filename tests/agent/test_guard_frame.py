"""The guard frame keeps which particles are measured independent of their size."""
from __future__ import annotations

import numpy as np

from agent.belief import StoppingRule
from agent.session import Budget, Session
from drivers.null import NullMicroscope
from perception.instances import particle_table


def _session() -> Session:
    return Session(NullMicroscope(), segmenter=None, rule=StoppingRule(0.05), budget=Budget())


def _acceptance(radius: int, rng: np.random.Generator, session: Session, guard: bool, n: int = 400) -> float:
    kept = 0
    size = 160
    yy, xx = np.mgrid[:size, :size]
    for _ in range(n):
        cy, cx = rng.uniform(-15, size + 15, 2)  # same placement law for every size
        lab = ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2).astype(np.int32)
        if not lab.any():
            continue
        t = particle_table(lab, 1e-9)
        ok = session._accepted(t, 1e-9, lab.shape) if guard else ~np.asarray(t["touches_border"], bool)
        kept += int(ok.sum())
    return kept / n


def test_guard_frame_accepts_small_and_large_particles_equally():
    s = _session()
    s.state.max_extent_m = 25e-9  # the large particles below are 25 px across
    def rate(radius, guard):  # common random placements for both sizes
        return _acceptance(radius, np.random.default_rng(0), s, guard)

    assert abs(rate(3, True) - rate(12, True)) < 0.02
    # dropping border-touching particles alone favours small ones
    assert rate(3, False) - rate(12, False) > 0.1


def test_guard_grows_with_the_largest_whole_particle_and_is_capped():
    s = _session()
    lab = np.zeros((100, 100), np.int32)
    lab[40:60, 30:45] = 1  # 20 px tall
    t = particle_table(lab, 2e-9)
    s._accepted(t, 2e-9, lab.shape)
    assert s.state.max_extent_m == 40e-9
    assert s.guard_px(2e-9) == 13  # ceil(0.6 * 20) + 1
    huge = np.zeros((100, 100), np.int32)
    huge[5:95, 5:95] = 1
    s._accepted(particle_table(huge, 2e-9), 2e-9, huge.shape)
    t_edge = particle_table(lab, 2e-9)
    assert s._accepted(t_edge, 2e-9, lab.shape).all()  # the guard is capped at a tenth of the frame


def test_isolated_only_skips_touching_particles():
    lab = np.zeros((100, 100), np.int32)
    lab[40:50, 40:50] = 1
    lab[40:50, 50:58] = 2      # touches 1
    lab[70:78, 20:28] = 3      # alone
    t = particle_table(lab, 1e-9)
    s = _session()
    assert s._accepted(t, 1e-9, lab.shape).tolist() == [True, True, True]
    s.settings.isolated_only = True
    assert s._accepted(t, 1e-9, lab.shape).tolist() == [False, False, True]
