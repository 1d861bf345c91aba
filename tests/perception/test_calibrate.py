"""Sizing calibration: fitted offsets per size bin, applied to the segmenter's diameters."""
from __future__ import annotations

import numpy as np
import pytest

from perception import Segmenter
from perception.calibrate import apply_size_calibration, fit_size_calibration
from perception.metrics import matched_diameters


def test_fit_recovers_a_known_offset_per_bin():
    rng = np.random.default_rng(0)
    true = rng.uniform(5, 40, 2000)
    pred = true + np.where(true < 16, 0.6, 0.1) + rng.normal(0, 0.05, true.size)
    cal = fit_size_calibration(pred, true)
    small = np.interp(10.0, cal["d_px"], cal["offset_px"])
    large = np.interp(35.0, cal["d_px"], cal["offset_px"])
    assert small == pytest.approx(0.6, abs=0.05) and large == pytest.approx(0.1, abs=0.05)
    corrected = apply_size_calibration(pred, cal)
    assert abs(corrected.mean() / true.mean() - 1) < abs(pred.mean() / true.mean() - 1) / 3


def test_fit_needs_enough_pairs_and_matching_shapes():
    with pytest.raises(ValueError, match="bin"):
        fit_size_calibration(np.array([10.0, 11.0]), np.array([9.5, 10.5]))
    with pytest.raises(ValueError, match="equal length"):
        fit_size_calibration(np.ones(3), np.ones(4))


def test_apply_without_calibration_is_identity_and_never_halves():
    d = np.array([2.0, 10.0])
    assert np.array_equal(apply_size_calibration(d, None), d)
    cal = {"d_px": [5.0], "offset_px": [3.0]}
    assert np.allclose(apply_size_calibration(d, cal), [1.0, 7.0])


def test_matched_diameters_hand_case():
    gt = np.zeros((10, 10), np.int32)
    gt[1:5, 1:5] = 1
    pred = np.zeros_like(gt)
    pred[1:5, 1:6] = 4
    p, t = matched_diameters(gt, pred)
    assert p == pytest.approx([2 * np.sqrt(20 / np.pi)]) and t == pytest.approx([2 * np.sqrt(16 / np.pi)])


def test_segmenter_applies_the_shipped_calibration():
    seg, raw = Segmenter(), Segmenter(calibrated=False)
    if not seg.size_calibration:
        pytest.skip("the shipped segmenter has no size calibration")
    yy, xx = np.mgrid[:128, :128]
    img = np.where((yy - 64) ** 2 + (xx - 64) ** 2 < 36, 50000, 8000).astype(np.uint16)
    a, b = seg.segment(img, 5e-9).particles, raw.segment(img, 5e-9).particles
    assert len(a) == len(b) >= 1
    assert np.all(a["equivalent_diameter_m"] <= b["equivalent_diameter_m"] + 1e-15)
    assert np.allclose(a["area_m2"], np.pi * a["equivalent_diameter_m"] ** 2 / 4)


def test_system_factor_is_the_inverse_geometric_mean_on_train_seeds_only():
    from perception.calibrate import fit_system_factor

    eps = [{"scenario": "default", "seed": s, "rel_error": r} for s, r in ((0, 0.02), (1, 0.03), (2, 0.01))]
    fit = fit_system_factor(eps, current=1.0)
    gm = np.exp(np.mean(np.log([1.02, 1.03, 1.01])))
    assert fit["system_factor"] == pytest.approx(1.0 / gm)
    assert fit_system_factor(eps, current=0.98)["system_factor"] == pytest.approx(0.98 / gm)
    with pytest.raises(ValueError, match="not a train seed"):
        fit_system_factor(eps + [{"scenario": "default", "seed": 100, "rel_error": 0.0}])
    with pytest.raises(ValueError, match="at least 3"):
        fit_system_factor(eps[:2])
    blind = {"policy_settings": {"field_choice": "size_blind"}}
    fit = fit_system_factor([{**e, **blind} for e in eps])
    assert fit["system_policy_settings"] == {"field_choice": "size_blind"}
    with pytest.raises(ValueError, match="policy settings .* differ"):  # they sample fields differently
        fit_system_factor([{**e, **blind} for e in eps] + [{"scenario": "default", "seed": 3, "rel_error": 0.0}])
    given = {"options": {"policy_options": [["field_choice", "size_blind"]]}}  # records before settings
    assert fit_system_factor([{**e, **given} for e in eps])["system_policy_settings"] == {"field_choice": "size_blind"}


def test_occluded_gain_recovers_the_share_of_the_hidden_area():
    from perception.calibrate import fit_occluded_gain

    rng = np.random.default_rng(1)
    area, hidden = rng.uniform(50, 400, 300), rng.uniform(0, 80, 300)
    true = np.sqrt(4 * (area + 0.4 * hidden) / np.pi)  # the fill overshoots 2.5x
    cal = {"d_px": [10.0], "offset_px": [0.0]}
    assert fit_occluded_gain(area, hidden, true, cal) == pytest.approx(0.4, abs=1e-3)
    # clipped: even no fill is too large, or even twice the fill too small
    assert fit_occluded_gain(area, hidden, true * 0.5, cal) == 0.0
    assert fit_occluded_gain(area, hidden, true * 2.0, cal, max_gain=2.0) == 2.0


def test_occluded_gain_refuses_too_few_or_mismatched_pairs():
    from perception.calibrate import fit_occluded_gain

    cal = {"d_px": [10.0], "offset_px": [0.0]}
    with pytest.raises(ValueError, match="hidden area: need 20"):
        fit_occluded_gain(np.full(30, 100.0), np.r_[np.ones(5), np.zeros(25)], np.full(30, 11.0), cal)
    with pytest.raises(ValueError, match="equal length"):
        fit_occluded_gain(np.ones(3), np.ones(3), np.ones(4), cal)


def test_segmenter_scales_the_hidden_area_by_the_recorded_gain(tmp_path, monkeypatch):
    import json
    import shutil

    import perception.segment as segment_module
    from perception._common import MODELS_DIR

    for ext in (".onnx", ".json"):
        shutil.copy(MODELS_DIR / f"segmenter_lite{ext}", tmp_path / f"seg{ext}")
    rec = json.loads((tmp_path / "seg.json").read_text())
    rec["size_calibration"]["occluded_gain"] = 0.25
    (tmp_path / "seg.json").write_text(json.dumps(rec))
    monkeypatch.setattr(segment_module, "occluded_area_px", lambda lab: np.full(int(lab.max()), 40.0))
    yy, xx = np.mgrid[:128, :128]
    img = np.where((yy - 64) ** 2 + (xx - 64) ** 2 < 64, 50000, 8000).astype(np.uint16)
    got = {}
    for name, kw in (("gain", {}), ("raw", {"calibrated": False})):
        seg = Segmenter(tmp_path / "seg.onnx", **kw)
        got[name] = seg.segment(img, 5e-9).particles["occluded_px"]
    assert Segmenter(tmp_path / "seg.onnx").occluded_gain == 0.25
    assert len(got["gain"]) >= 1 and set(got["gain"]) == {10} and set(got["raw"]) == {40}


def test_too_few_touching_particles_leave_the_fill_whole(capsys):
    from perception.calibrate import _gain_fit

    touch = np.array([[100.0, 120.0], [10.0, 0.0], [11.0, 12.0]])  # visible px, hidden px, true diameter px
    assert _gain_fit(touch, {"d_px": [10.0], "offset_px": [0.0]}) == {}
    assert "no hidden-area gain" in capsys.readouterr().err


def test_a_malformed_gain_in_the_record_is_refused_by_name(tmp_path):
    import json
    import shutil

    from perception._common import MODELS_DIR, PerceptionInputError

    for ext in (".onnx", ".json"):
        shutil.copy(MODELS_DIR / f"segmenter_lite{ext}", tmp_path / f"seg{ext}")
    rec = json.loads((tmp_path / "seg.json").read_text())
    rec["size_calibration"]["occluded_gain"] = float("nan")
    (tmp_path / "seg.json").write_text(json.dumps(rec))
    with pytest.raises(PerceptionInputError, match="occluded_gain in seg.onnx's record"):
        Segmenter(tmp_path / "seg.onnx")
    assert Segmenter(tmp_path / "seg.onnx", calibrated=False).occluded_gain == 1.0
