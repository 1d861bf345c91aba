"""The fast incoherent renderer against abTEM PRISM references (a ~2 nm Au cluster on carbon).

The references in tests/data/stem/ were computed with abTEM 1.0.11 by
``python -m twin.stem.abtem_ref --cases all`` and hold their own atom positions, so these
comparisons need no abTEM. The slow test recomputes the small case with abTEM (~1 min).
"""
from __future__ import annotations

import importlib.util

import pytest

from twin.stem import abtem_ref as R


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return R.compare(R.VALIDATION, compute_missing=False)


def test_fast_renderer_matches_abtem_at_each_defocus(rows: list[dict]) -> None:
    for r in rows:
        assert r["ncc"] >= 0.9, r


def test_sharpness_falls_with_defocus_in_both(rows: list[dict]) -> None:
    by_df = sorted(rows, key=lambda r: abs(r["defocus_m"]))
    for key in ("contrast_fast", "contrast_abtem"):
        values = [r[key] for r in by_df]
        assert values == sorted(values, reverse=True) and values[0] > 2 * values[-1], (key, values)


def test_absolute_signal_within_a_factor_two(rows: list[dict]) -> None:
    for r in rows:
        assert 0.5 < r["mean_fast"] / r["mean_abtem"] < 2.0, r


def test_small_case_matches_its_reference() -> None:
    (row,) = R.compare(R.SMALL, compute_missing=False)
    assert row["ncc"] >= 0.9


def test_ncc_is_a_correlation() -> None:
    import numpy as np

    a = np.random.default_rng(0).random((16, 16))
    assert R.ncc(a, 3 * a + 1) == pytest.approx(1.0)
    assert R.ncc(a, -a) == pytest.approx(-1.0)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("abtem") is None, reason="abTEM not installed (extra 'stem')")
def test_live_abtem_small_case(tmp_path) -> None:
    """Recompute the small reference with abTEM and compare (about a minute on 2 cores)."""
    case = R.CASES["au1nm-small"]
    refs = R.ensure([case], cache_dir=tmp_path, read_dirs=(tmp_path,))
    ref = refs[case.name]
    assert ref is not None and ref["path"].startswith(str(tmp_path))
    fast = R.fast_image(case, ref["positions_m"], ref["z"])
    assert R.ncc(fast, ref["image"]) >= 0.9
    shipped = R.load(case, (R.SHIPPED,))
    if shipped is not None:
        assert R.ncc(ref["image"], shipped["image"]) > 0.999
