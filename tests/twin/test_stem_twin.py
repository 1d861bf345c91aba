"""Physics invariants of the STEM twin behind the driver interface."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from twin.loader import ScenarioError
from twin.stem import truth
from twin.stem.config import StemScenario, load_stem_scenario, scenario_mode
from twin.stem.haadf import cross_section_m2
from twin.stem.microscope import StemTwinMicroscope
from twin.stem.optics import aberrations

BASE = load_stem_scenario("stem-catalyst")


def _scenario(c30_m: float = 0.0, read_noise: float | None = None, **initial: object) -> StemScenario:
    optics = dataclasses.replace(BASE.optics, c30_m=c30_m, intrinsic_c12_m=(0.0, 0.0))
    init = dataclasses.replace(BASE.initial, **{"defocus_m": 0.0, "shape_px": (128, 128), **initial})
    dets = BASE.detectors
    if read_noise is not None:
        dets = tuple(dataclasses.replace(d, read_noise=read_noise) for d in dets)
    return BASE.replace(optics=optics, initial=init, detectors=dets)


def _sharpness(img: np.ndarray) -> float:
    gy, gx = np.gradient(np.asarray(img, dtype=np.float64))
    return float(np.mean(gx * gx + gy * gy) / np.mean(img) ** 2)


def _focused(m: StemTwinMicroscope, delta_m: float = 0.0) -> None:
    m.set_defocus_m(truth.focus_defocus_m(m) + delta_m)


@pytest.mark.parametrize("fov_m", [40e-9, 10e-9])  # particle-level and atom-level rendering
def test_sharpness_is_symmetric_in_defocus_without_cs(fov_m: float) -> None:
    m = StemTwinMicroscope(_scenario(c30_m=0.0, fov_m=fov_m), seed=1)
    frame = m.acquire()
    rec = m._records[frame.meta.frame_id]
    det = m._detectors["HAADF"]
    s = {}
    for df in (-12e-9, 0.0, 12e-9):
        img, _, _ = m.expected_fraction(rec.grid, det, aberrations(m.scenario.optics, df, (0.0, 0.0)))
        s[df] = _sharpness(img)
    assert s[12e-9] == pytest.approx(s[-12e-9], rel=1e-4)
    assert s[0.0] > 1.2 * s[12e-9]


def test_sharpness_peaks_at_the_true_focus_through_the_driver() -> None:
    m = StemTwinMicroscope(_scenario(c30_m=1e-6, fov_m=40e-9), seed=2)
    m.move_stage(x_m=3e-6, y_m=-2e-6)
    s = []
    for delta in (-30e-9, -10e-9, 0.0, 10e-9, 30e-9):
        _focused(m, delta)
        s.append(_sharpness(truth.noise_free(m, m.acquire())))
    assert int(np.argmax(s)) == 2
    assert s[0] < s[1] < s[2] > s[3] > s[4]


def test_focus_follows_the_specimen_height() -> None:
    sc = _scenario()
    sc = sc.replace(specimen=dataclasses.replace(
        sc.specimen, support=dataclasses.replace(sc.specimen.support, tilt=(0.01, 0.0), warp_m=0.0)))
    m = StemTwinMicroscope(sc, seed=0)
    f0 = truth.focus_defocus_m(m)
    m.move_stage(x_m=10e-6)
    # The film rises 0.01·10 µm = 100 nm towards the gun: focus needs 100 nm less defocus.
    assert truth.focus_defocus_m(m) - f0 == pytest.approx(-100e-9, rel=0.01)


def _snr(m: StemTwinMicroscope) -> float:
    a, b = m.acquire().image.astype(float), m.acquire().image.astype(float)
    offset = m._detectors["HAADF"].offset
    return float((0.5 * (a + b) - offset).mean() / ((a - b).std() / math.sqrt(2)))


def test_snr_scales_with_the_square_root_of_current_times_dwell() -> None:
    m = StemTwinMicroscope(_scenario(read_noise=0.0, fov_m=60e-9, beam_current_a=10e-12, dwell_s=2e-6), seed=4)
    _focused(m)
    base = _snr(m)
    m.set_beam_current_a(40e-12)
    assert _snr(m) / base == pytest.approx(2.0, rel=0.06)
    m.set_beam_current_a(10e-12)
    m.set_scan(dwell_s=8e-6)
    assert _snr(m) / base == pytest.approx(2.0, rel=0.06)


def _run(seed: int) -> list[np.ndarray]:
    m = StemTwinMicroscope(_scenario(fov_m=30e-9), seed=seed)
    out = [m.acquire().image]
    m.move_stage(x_m=0.5e-6, y_m=0.2e-6)
    m.set_defocus_m(5e-9)
    m.set_stigmator(0.1, -0.2)
    m.set_fov_m(8e-9)
    out.append(m.acquire().image)
    m.set_detector("BF")
    out.append(m.acquire().image)
    return out


def test_same_seed_and_commands_give_identical_frames() -> None:
    a, b, c = _run(7), _run(7), _run(8)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("rotation_rad, shift_m", [(0.0, (0.0, 0.0)), (0.7, (6e-9, -4e-9))])
def test_label_image_matches_bright_haadf_regions(rotation_rad: float, shift_m: tuple[float, float]) -> None:
    m = StemTwinMicroscope(_scenario(fov_m=80e-9, shape_px=(192, 256)), seed=5)
    _focused(m)
    m.set_scan(rotation_rad=rotation_rad)
    m.set_beam_shift_m(*shift_m)
    frame = m.acquire()
    clean = truth.noise_free(m, frame)
    labels = truth.label_image(m, frame)
    assert labels.shape == frame.image.shape and labels.max() >= 5
    support = np.median(clean[labels == 0])
    inside = np.median(clean[labels > 0])
    bright = clean > support + 0.3 * (inside - support)
    iou = np.sum(bright & (labels > 0)) / np.sum(bright | (labels > 0))
    assert iou > 0.85
    # Label centroids map back to the particles' stage positions through FrameMeta.pixel_to_stage.
    parts = truth.frame_particles(m, frame)
    ex, ey = truth.stage_error_m(m)
    for lab in np.unique(labels[labels > 0])[:10]:
        rr, cc = np.nonzero(labels == lab)
        if rr.min() == 0 or cc.min() == 0 or rr.max() == labels.shape[0] - 1 or cc.max() == labels.shape[1] - 1:
            continue
        x, y = frame.meta.pixel_to_stage(rr.mean(), cc.mean())
        k = lab - 1
        assert math.hypot(x + ex - parts.x_m[k], y + ey - parts.y_m[k]) < 1.0 * frame.meta.pixel_size_m


def test_revisited_region_looks_the_same() -> None:
    from skimage.registration import phase_cross_correlation

    m = StemTwinMicroscope(_scenario(fov_m=100e-9, shape_px=(128, 128)), seed=6)
    _focused(m)
    a = truth.noise_free(m, m.acquire())
    m.move_stage(x_m=200e-6, y_m=-100e-6)
    m.acquire()
    m.move_stage(x_m=0.0, y_m=0.0)
    _focused(m)
    b = truth.noise_free(m, m.acquire())
    shift, _, _ = phase_cross_correlation(a, b, upsample_factor=1)
    sr, sc = (int(v) for v in shift)
    bb = np.roll(b, (sr, sc), axis=(0, 1))
    core = (slice(abs(sr) + 2, 126 - abs(sr)), slice(abs(sc) + 2, 126 - abs(sc)))
    assert np.corrcoef(a[core].ravel(), bb[core].ravel())[0, 1] > 0.9


def test_atomic_and_particle_rendering_conserve_the_signal() -> None:
    """Across the atomic_pixel_m switch the mean signal of the same field hardly changes."""
    m = StemTwinMicroscope(_scenario(fov_m=25.6e-9, shape_px=(256, 256)), seed=2)
    _focused(m)
    f1 = m.acquire()
    assert (truth.label_image(m, f1) > 0).mean() > 0.01
    support = truth.noise_free(m, f1)[truth.label_image(m, f1) == 0].mean()
    m.set_fov_m(25.6e-9 * 1.001)
    m.set_scan(shape_px=(254, 254))  # pixel just above 0.1 nm: particle level
    f2 = m.acquire()
    assert (f1.meta.extra["rendering"], f2.meta.extra["rendering"]) == ("atoms", "particles")
    a, b = truth.noise_free(m, f1).mean() - support, truth.noise_free(m, f2).mean() - support
    assert a == pytest.approx(b, rel=0.1)  # the particles' share of the signal


def test_z_contrast_and_bright_field_polarity() -> None:
    det = BASE.detectors[0]
    assert cross_section_m2(79, 200e3, det) / cross_section_m2(46, 200e3, det) == pytest.approx((79 / 46) ** 1.7)
    m = StemTwinMicroscope(_scenario(fov_m=80e-9, shape_px=(128, 128)), seed=5)
    _focused(m)
    frame = m.acquire()
    labels = truth.label_image(m, frame)
    haadf = truth.noise_free(m, frame, "HAADF")
    bf = truth.noise_free(m, frame, "BF")
    assert haadf[labels > 0].mean() > 3 * haadf[labels == 0].mean()
    assert bf[labels > 0].mean() < bf[labels == 0].mean() < 1.0


def test_blanked_frames_show_the_detector_offset_only() -> None:
    m = StemTwinMicroscope(_scenario(fov_m=40e-9, read_noise=0.0), seed=1)
    m.blank()
    f = m.acquire()
    assert f.meta.electrons == 0 and np.all(f.image == m._detectors["HAADF"].offset)


def test_low_dose_scenario_damages_support_and_moves_particles() -> None:
    sc = load_stem_scenario("stem-lowdose")
    init = dataclasses.replace(sc.initial, shape_px=(128, 128), fov_m=100e-9, beam_current_a=100e-12, dwell_s=5e-6)
    m = StemTwinMicroscope(sc.replace(initial=init), seed=1)
    before = truth.particles_in(m, -45e-9, -45e-9, 45e-9, 45e-9)
    f1 = m.acquire()
    labels = truth.label_image(m, f1)
    s1 = truth.noise_free(m, f1)[labels == 0].mean()
    for _ in range(3):
        f = m.acquire()
    assert f.meta.dose_e_per_m2 > 3e21
    s2 = truth.noise_free(m, f)[truth.label_image(m, f) == 0].mean()
    assert s2 < 0.6 * s1
    after = truth.particles_in(m, -50e-9, -50e-9, 50e-9, 50e-9)
    common = np.intersect1d(before.id, after.id)
    assert len(common) >= 3
    moved = [math.hypot(after.x_m[after.id == i][0] - before.x_m[before.id == i][0],
                        after.y_m[after.id == i][0] - before.y_m[before.id == i][0]) for i in common]
    assert np.median(moved) > 0.1e-9
    # The catalyst scenario has no damage: the specimen stays put.
    m2 = StemTwinMicroscope(_scenario(fov_m=50e-9), seed=1)
    t0 = truth.particles_in(m2, -25e-9, -25e-9, 25e-9, 25e-9)
    assert len(t0) > 0
    m2.acquire()
    t1 = truth.particles_in(m2, -25e-9, -25e-9, 25e-9, 25e-9)
    assert np.array_equal(t0.x_m, t1.x_m)


@pytest.mark.parametrize("name", ["stem-catalyst", "stem-lowdose"])
def test_shipped_stem_scenarios_load_and_render(name: str) -> None:
    assert scenario_mode(name) == "stem"
    m = StemTwinMicroscope(name)
    m.set_scan(shape_px=(64, 64))
    frame = m.acquire()
    assert frame.image.shape == (64, 64) and frame.meta.mode == "stem" and frame.meta.defocus_m is not None


def test_scenario_files_are_strict(tmp_path) -> None:
    assert load_stem_scenario("stem-lowdose").damage.enabled
    good = 'mode = "stem"\n[optics]\nc30_m = 2e-6\n'
    (tmp_path / "ok.toml").write_text(good)
    assert load_stem_scenario(tmp_path / "ok.toml").optics.c30_m == 2e-6
    (tmp_path / "bad.toml").write_text(good + "wobble = 1\n")
    with pytest.raises(ScenarioError, match="wobble"):
        load_stem_scenario(tmp_path / "bad.toml")
    (tmp_path / "sem.toml").write_text("[optics]\n")
    assert (scenario_mode(tmp_path / "ok.toml"), scenario_mode(tmp_path / "sem.toml")) == ("stem", "sem")
    with pytest.raises(ScenarioError, match="mode"):
        load_stem_scenario(tmp_path / "sem.toml")
    (tmp_path / "range.toml").write_text('mode = "stem"\n[[specimen.populations]]\nelement = "Zz"\n')
    with pytest.raises(ScenarioError, match="element"):
        load_stem_scenario(tmp_path / "range.toml")
    (tmp_path / "adf.toml").write_text('mode = "stem"\n[optics]\nconvergence_semiangle_rad = 40e-3\n')
    with pytest.raises(ScenarioError, match="inner_rad"):
        load_stem_scenario(tmp_path / "adf.toml")


def test_truth_atoms_sit_on_the_support_inside_the_outline() -> None:
    m = StemTwinMicroscope(_scenario(fov_m=40e-9), seed=2)
    tab = truth.particles_in(m, -60e-9, -60e-9, 60e-9, 60e-9)
    k = int(np.argmax(tab.diameter_m))
    pos, z = truth.atoms_of(m, tab, k)
    r, t = 0.5 * tab.diameter_m[k], tab.truncation[k]
    support = float(m._specimen.height_m(tab.x_m[k], tab.y_m[k]))
    assert z == 78 and len(pos) > 100
    assert np.max(np.hypot(pos[:, 0] - tab.x_m[k], pos[:, 1] - tab.y_m[k])) <= r + 1e-15
    assert pos[:, 2].min() >= support - 1e-15 and pos[:, 2].max() <= support + 2 * r * (1 - t) + 1e-15
    assert tab.z_m[k] == pytest.approx(support + r * (1 - t))
    assert "atoms_of" in truth.access_log(m) and truth.access_log(m)[0] == "particles_in"
