"""Physics invariants of the assembled twin, observed through the driver interface."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from drivers import OutOfRangeError
from twin import TwinMicroscope, load_scenario, truth
from twin.loader import ScenarioError


def quiet_scenario(stage_errors: bool = False, **specimen_changes):
    """Default scenario without drift, jitter, vibration, charging, contamination (or stage errors)."""
    sc = load_scenario("default")
    if not stage_errors:
        sc = sc.replace(stage=dataclasses.replace(sc.stage, backlash_m=0.0, repeatability_m=0.0))
    scan = dataclasses.replace(sc.scan, line_jitter_m=0.0, vibration_amplitude_m=0.0)
    drift = dataclasses.replace(sc.drift, velocity_m_per_s=(0.0, 0.0), settle_amplitude_m=0.0)
    charging = dataclasses.replace(sc.charging, enabled=False)
    contamination = dataclasses.replace(sc.contamination, enabled=False)
    specimen = dataclasses.replace(sc.specimen, **specimen_changes)
    return sc.replace(scan=scan, drift=drift, charging=charging, contamination=contamination, specimen=specimen)


def frame_at(sc, defocus_m=0.0, stig=None, x_m=0.0, y_m=0.0, seed=5, shape=(256, 256), fov_m=1.5e-6, **settings):
    tm = TwinMicroscope(sc, seed=seed)
    tm.move_stage(x_m=x_m, y_m=y_m)
    tm.set_scan(shape_px=shape, dwell_s=settings.get("dwell_s", 2e-6))
    tm.set_fov_m(fov_m)
    if "current_a" in settings:
        tm.set_beam_current_a(settings["current_a"])
    if stig is not None:
        tm.set_stigmator(*stig)
    else:
        tm.set_stigmator(*truth.stigmator_correction(tm))
    tm.set_working_distance_m(truth.focus_wd_m(tm) + defocus_m)
    return tm, tm.acquire()


def sharpness(img: np.ndarray) -> float:
    g = ndimage.gaussian_filter(img.astype(float), 1.0)
    gy, gx = np.gradient(g)
    return float(np.mean(gx**2 + gy**2))


def busy_xy(sc, seed=5, fov=1.5e-6):
    """A stage point whose field holds several particles (found from ground truth)."""
    tm = TwinMicroscope(sc, seed=seed)
    for k in range(60):
        x, y = (k % 8) * 3e-6, (k // 8) * 3e-6
        if len(truth.particles_in(tm, x - fov / 3, y - fov / 3, x + fov / 3, y + fov / 3)) >= 3:
            return x, y
    raise AssertionError("no populated field found")


def test_sharpness_falls_monotonically_and_symmetrically_with_defocus():
    sc = quiet_scenario()
    x, y = busy_xy(sc)
    _, f0 = frame_at(sc, 0.0, x_m=x, y_m=y)
    dof = f0.meta.depth_of_field_m
    steps = [1, 2, 4, 8]
    plus = [sharpness(frame_at(sc, k * dof, x_m=x, y_m=y)[1].image) for k in steps]
    minus = [sharpness(frame_at(sc, -k * dof, x_m=x, y_m=y)[1].image) for k in steps]
    s0 = sharpness(f0.image)
    assert s0 > plus[0] and s0 > minus[0]
    assert all(a > b for a, b in zip(plus, plus[1:]))
    assert all(a > b for a, b in zip(minus, minus[1:]))
    for p, m in zip(plus, minus):
        assert p == pytest.approx(m, rel=0.1)


def _gradient_tensor(img: np.ndarray) -> np.ndarray:
    g = ndimage.gaussian_filter(img.astype(float), 1.0)
    gy, gx = np.gradient(g)
    return np.array([(gx * gx).mean(), (gy * gy).mean(), (gx * gy).mean()])


def _lost_gradient_axis(sharp: np.ndarray, blurred: np.ndarray) -> float:
    """Orientation (rad, image axes) of the gradient energy a blur removed: across its streak."""
    jxx, jyy, jxy = _gradient_tensor(sharp) - _gradient_tensor(blurred)
    return 0.5 * math.atan2(2 * jxy, jxx - jyy)


def test_astigmatism_blur_axis_follows_stigmator():
    """At defocus A/2 the astigmatic blur is a line; turning the astig vector by 90° turns it by 45°."""
    sc = quiet_scenario()
    fov = 1.2e-6
    x, y = busy_xy(sc, fov=fov)
    sx0, sy0 = truth.stigmator_correction(TwinMicroscope(sc))
    kw = dict(x_m=x, y_m=y, shape=(256, 256), fov_m=fov, current_a=400e-12, dwell_s=10e-6)
    _, f0 = frame_at(sc, 0.0, **kw)
    half = 0.9 * sc.optics.stigmator_gain_m / 2
    _, fa = frame_at(sc, half, stig=(sx0 - 0.9, sy0), **kw)
    _, fb = frame_at(sc, half, stig=(sx0, sy0 - 0.9), **kw)
    assert sharpness(fa.image) < sharpness(f0.image) and sharpness(fb.image) < sharpness(f0.image)
    a, b = _lost_gradient_axis(f0.image, fa.image), _lost_gradient_axis(f0.image, fb.image)
    diff = abs((a - b + math.pi / 2) % math.pi - math.pi / 2)
    assert diff == pytest.approx(math.pi / 4, abs=0.2)


def test_snr_grows_as_sqrt_of_current_times_dwell():
    sc = quiet_scenario(texture_rms=0.0, density_per_m2=1e6)  # bare substrate
    snr = []
    for current, dwell in ((50e-12, 1e-6), (200e-12, 1e-6), (50e-12, 4e-6)):
        tm, f1 = frame_at(sc, 0.0, current_a=current, dwell_s=dwell, shape=(128, 128))
        f2 = tm.acquire()
        diff = f1.image.astype(float) - f2.image.astype(float)
        offset = sc.detectors[0].offset
        snr.append((f1.image.mean() - offset) / (diff.std() / math.sqrt(2)))
    assert snr[1] / snr[0] == pytest.approx(2.0, rel=0.15)
    assert snr[2] / snr[0] == pytest.approx(2.0, rel=0.15)


def test_drift_displaces_features_by_velocity_times_elapsed_time():
    sc = quiet_scenario()
    v = (3e-9, -2e-9)  # m/s
    sc = sc.replace(drift=dataclasses.replace(sc.drift, velocity_m_per_s=v))
    x, y = busy_xy(sc)
    tm, f1 = frame_at(sc, 0.0, x_m=x, y_m=y, shape=(256, 256), fov_m=1.5e-6)
    for _ in range(20):
        tm.acquire()
    f2 = tm.acquire()
    dt = f2.meta.t_start_s - f1.meta.t_start_s
    shift, _, _ = phase_cross_correlation(f2.image.astype(float), f1.image.astype(float), upsample_factor=20)
    px = f1.meta.pixel_size_m
    # image features move by +offset: +x is +column, +y is −row
    assert shift[1] * px == pytest.approx(v[0] * dt, abs=0.4 * px)
    assert -shift[0] * px == pytest.approx(v[1] * dt, abs=0.4 * px)


def test_moving_away_and_back_reproduces_the_scene_within_stage_error():
    sc = quiet_scenario(stage_errors=True)
    x, y = busy_xy(sc)
    tm, f1 = frame_at(sc, 0.0, x_m=x, y_m=y, shape=(256, 256), fov_m=6e-6)
    ids1 = set(truth.label_ids(tm, f1))
    tm.move_stage(x_m=x + 2e-3, y_m=y - 1e-3)
    tm.acquire()
    tm.move_stage(x_m=x, y_m=y)
    f2 = tm.acquire()
    err = truth.stage_error_m(tm)
    shift, _, _ = phase_cross_correlation(f2.image.astype(float), f1.image.astype(float), upsample_factor=10)
    px = f1.meta.pixel_size_m
    bound = sc.stage.backlash_m + 4 * sc.stage.repeatability_m
    assert math.hypot(*shift) * px <= bound
    assert math.hypot(*err) <= bound
    assert len(ids1 & set(truth.label_ids(tm, f2))) >= 0.5 * len(ids1)


def test_same_seed_and_commands_give_bit_identical_frames():
    def script(seed):
        tm = TwinMicroscope("default", seed=seed)
        tm.set_scan(shape_px=(96, 128))
        out = [tm.acquire().image]
        tm.move_stage(x_m=5e-6, y_m=-3e-6)
        tm.set_working_distance_m(tm.get_working_distance_m() + 1e-6)
        out.append(tm.acquire().image)
        return out

    a, b, c = script(3), script(3), script(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_ground_truth_mask_matches_bright_particles_without_noise_or_blur():
    sc = quiet_scenario(texture_rms=0.0, cluster_fraction=0.0)
    pops = tuple(dataclasses.replace(p, median_diameter_m=200e-9, sigma_log=0.1) for p in sc.specimen.populations)
    sc = sc.replace(specimen=dataclasses.replace(sc.specimen, populations=pops, density_per_m2=0.5e12))
    det0 = dataclasses.replace(sc.detectors[0], read_noise=0.0)
    sc = sc.replace(detectors=(det0,) + sc.detectors[1:])
    x, y = busy_xy(sc, fov=4e-6)
    tm, f = frame_at(sc, 0.0, x_m=x, y_m=y, shape=(512, 512), fov_m=3e-6, current_a=400e-12, dwell_s=20e-6)
    img = f.image.astype(float)
    lab = truth.label_image(tm, f) > 0
    assert lab.mean() > 0.01
    sub, part = np.median(img[~lab]), np.median(img[lab])
    mask = img > (sub + part) / 2
    iou = (mask & lab).sum() / (mask | lab).sum()
    assert iou > 0.95


def test_apparent_size_scales_with_inverse_pixel_size():
    sc = quiet_scenario()
    x, y = busy_xy(sc)
    areas = []
    for fov in (1.5e-6, 3e-6):
        tm, f = frame_at(sc, 0.0, x_m=x, y_m=y, shape=(256, 256), fov_m=fov)
        lab = truth.label_image(tm, f)
        ids, counts = np.unique(lab[lab > 0], return_counts=True)
        inside = [i for i in ids if not np.any(np.isin(i, np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])))]
        areas.append({i: c for i, c in zip(ids, counts) if i in inside})
    common = [i for i in areas[0] if i in areas[1] and areas[0][i] > 60]
    assert common
    ratios = [areas[0][i] / areas[1][i] for i in common]
    assert np.median(ratios) == pytest.approx(4.0, rel=0.15)


def test_stage_limits_and_setting_limits_raise():
    tm = TwinMicroscope("default")
    lim = tm.limits()
    with pytest.raises(OutOfRangeError, match="x_m"):
        tm.move_stage(x_m=lim.stage_x_m[1] * 1.01)
    with pytest.raises(OutOfRangeError, match="working_distance_m"):
        tm.set_working_distance_m(lim.working_distance_m[1] + 1e-3)


def test_instrument_clock_and_dose_ledger():
    tm = TwinMicroscope("default")
    tm.set_scan(shape_px=(100, 200), dwell_s=1e-6)
    t0 = tm.status().instrument_time_s
    f = tm.acquire()
    expected = 100 * (200 * 1e-6 + tm.scenario.scan.flyback_s)
    assert f.meta.t_end_s - f.meta.t_start_s == pytest.approx(expected)
    assert f.meta.electrons == pytest.approx(tm.get_beam_current_a() * 100 * 200 * 1e-6 / 1.602176634e-19)
    tm.move_stage(x_m=1e-3)
    assert tm.status().instrument_time_s - f.meta.t_end_s >= 1e-3 / tm.scenario.stage.speed_m_per_s
    assert tm.status().total_electrons == pytest.approx(f.meta.electrons)
    assert tm.status().instrument_time_s > t0


def test_scenario_errors_name_the_key_and_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[specimen]\ndensity_per_m2 = 1e12\nbogus = 3\n")
    with pytest.raises(ScenarioError, match=r"bad.toml.*specimen\.bogus"):
        load_scenario(bad)
    bad.write_text("[initial]\nfov_m = 'wide'\n")
    with pytest.raises(ScenarioError, match=r"initial\.fov_m"):
        load_scenario(bad)
    with pytest.raises(FileNotFoundError, match="no-such"):
        load_scenario("no-such")


def test_every_shipped_scenario_loads():
    from twin.config import scenario_names

    names = scenario_names()
    assert {"default", "sparse", "dense", "drift-charging"} <= set(names)
    for name in names:
        if name.startswith("stem-"):
            continue  # STEM scenarios: tests/twin/test_stem*.py
        tm = TwinMicroscope(name)
        tm.set_scan(shape_px=(64, 64))
        assert tm.acquire().image.shape == (64, 64)
