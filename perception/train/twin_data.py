"""Domain-randomised training frames from the twin (ground truth read through `twin.truth`).

Every `frames_per_scenario` frames a new scenario is drawn: particle sizes, shapes, materials,
clustering, substrate texture, edge brightening, detector (SE/BSE), noise (dwell, current),
brightness/contrast, charging, contamination, drift and vibration. Per frame: a random
stage position, a field of view giving median particles of 5-70 px, and a random defocus
and residual astigmatism in depth-of-field units.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np


def relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive int32 labels 1..n (the twin's labels are particle ids up to 2**31)."""
    ids, inv = np.unique(labels, return_inverse=True)
    out = inv.reshape(labels.shape).astype(np.int32)
    return out if ids[0] == 0 else out + 1


def _logu(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def randomised_scenario(base, rng: np.random.Generator, quiet: bool = False):
    """A copy of `base` (twin.config.Scenario) with randomised specimen, detector and artifacts.

    quiet=True switches off drift, vibration, jitter, charging and contamination (for frame
    pairs that must align pixel for pixel).
    """
    from twin.specimen_config import Population

    rep = dataclasses.replace
    d_med = _logu(rng, 20e-9, 400e-9)
    shapes = ("sphere", "ellipsoid", "faceted", "rod")
    w = rng.dirichlet(np.ones(4) * 0.7)
    w[3] *= 0.4
    pops = [Population(fraction=1.0, distribution="bimodal" if rng.random() < 0.2 else "lognormal",
                       median_diameter_m=d_med, sigma_log=rng.uniform(0.08, 0.4),
                       median2_diameter_m=d_med * rng.uniform(1.8, 3.0), sigma_log2=rng.uniform(0.08, 0.25),
                       weight2=rng.uniform(0.1, 0.5), shapes=shapes, shape_weights=tuple(float(x) for x in w),
                       material=str(rng.choice(["TiO2", "SiO2", "Au", "Ag", "Fe3O4", "Al2O3", "polystyrene", "Pt"])))]
    cover = rng.uniform(0.05, 0.45)  # projected area fraction
    density = cover / (math.pi * d_med ** 2 / 4)
    d_max = max(p.max_diameter_m() for p in pops)
    tile_m = float(np.clip(max(d_med * 30, 6.5 * d_max), 1e-6, 1e-3))  # few particles per tile: fast
    spec = rep(base.specimen, populations=tuple(pops), density_per_m2=density, tile_m=tile_m,
               extent_m=(min(2e-3, 100 * tile_m),) * 2,
               empty_fraction=rng.uniform(0.0, 0.3), cluster_fraction=rng.uniform(0.0, 0.9),
               cluster_size_mean=rng.uniform(2.0, 12.0), substrate=str(rng.choice(["Si", "C"])),
               texture_rms=rng.uniform(0.0, 0.12), texture_scale_m=d_med * rng.uniform(0.1, 1.0),
               edge_gain=rng.uniform(0.2, 2.0), edge_length_m=d_med * rng.uniform(0.03, 0.2))
    scan = rep(base.scan, line_jitter_m=0.0 if quiet else d_med * rng.uniform(0, 0.02),
               vibration_amplitude_m=0.0 if quiet else d_med * rng.uniform(0, 0.03))
    drift = rep(base.drift, velocity_m_per_s=(0.0, 0.0) if quiet else tuple(rng.normal(0, 5e-10, 2)),
                settle_amplitude_m=0.0 if quiet else rng.uniform(0, 3e-8))
    charging = rep(base.charging, enabled=(not quiet) and rng.random() < 0.3)
    contamination = rep(base.contamination, enabled=(not quiet) and rng.random() < 0.3)
    dets = tuple(rep(d, read_noise=rng.uniform(5, 80)) for d in base.detectors)
    # the detector output is offset + (brightness - 0.5) * 65535 + contrast gain * signal rate:
    # pick the current and a contrast that keep the signal on scale, like an operator's ABC
    current = _logu(rng, 20e-12, 2e-9)
    k = (100e-12 / current) * _logu(rng, 0.3, 3.0)
    contrast = float(np.clip(0.5 + math.log2(k) / 10.0, 0.0, 1.0))
    ini = rep(base.initial, brightness=rng.uniform(0.495, 0.505), contrast=contrast, beam_current_a=current)
    return base.replace(specimen=spec, scan=scan, drift=drift, charging=charging, contamination=contamination,
                        detectors=dets, initial=ini)


class TwinSceneGenerator:
    """Draws labelled frames (and aligned frame pairs) from randomised twins."""

    def __init__(self, seed: int = 0, shape_px: tuple[int, int] = (256, 256), scenario: str = "default",
                 frames_per_scenario: int = 4, quiet: bool = False):
        from twin.config import Scenario, load_scenario

        self.rng = np.random.default_rng(seed)
        try:
            self.base = load_scenario(scenario)
        except (FileNotFoundError, NotADirectoryError):
            if scenario != "default":
                raise
            self.base = Scenario()  # the dataclass defaults are the default scenario
        self.shape_px = tuple(int(s) for s in shape_px)
        self.frames_per_scenario = frames_per_scenario
        self.quiet = quiet
        self._count = 0
        self._twin = None
        self.rejected: list[str] = []

    def _new_twin(self):
        from twin import TwinMicroscope

        sc = randomised_scenario(self.base, self.rng, quiet=self.quiet)
        self._twin = TwinMicroscope(sc, seed=int(self.rng.integers(2 ** 31)))
        return self._twin

    def twin(self):
        """The current twin, renewed every `frames_per_scenario` calls."""
        if self._twin is None or self._count % self.frames_per_scenario == 0:
            self._new_twin()
        self._count += 1
        return self._twin

    def setup(self, m, d_px_range: tuple[float, float] = (5.0, 70.0)) -> float:
        """Random position, field of view, beam and detector on twin `m`; return the DoF (m)."""
        from twin import optics, truth

        rng, sc = self.rng, m.scenario
        pop = sc.specimen.populations[0]
        px = pop.median_diameter_m / _logu(rng, *d_px_range)
        rows, cols = self.shape_px
        m.set_fov_m(px * cols)
        m.set_scan(shape_px=(rows, cols), dwell_s=_logu(rng, 1e-7, 2e-5))
        m.set_high_voltage_v(_logu(rng, 1e3, 20e3))
        m.set_detector(str(rng.choice([d.name for d in sc.detectors], p=[0.5, 0.3, 0.2])))
        lim = 0.4 * min(sc.specimen.extent_m)  # stay on the (reduced) specimen area
        m.move_stage(x_m=float(rng.uniform(-lim, lim)), y_m=float(rng.uniform(-lim, lim)))
        wd_focus = truth.focus_wd_m(m)
        m.set_working_distance_m(wd_focus)
        return px / optics.alpha_rad(sc.optics, wd_focus)

    def set_focus(self, m, dof_m: float, defocus_dof: float, astig_dof: tuple[float, float]) -> None:
        """WD = in-focus WD + defocus; stigmator so that the residual astigmatism is `astig_dof`."""
        from twin import truth

        oc = m.scenario.optics
        s0 = truth.stigmator_correction(m)
        gain = oc.stigmator_gain_m
        sx = float(np.clip(s0[0] - astig_dof[0] * dof_m / gain, -oc.stigmator_limit, oc.stigmator_limit))
        sy = float(np.clip(s0[1] - astig_dof[1] * dof_m / gain, -oc.stigmator_limit, oc.stigmator_limit))
        m.set_stigmator(sx, sy)
        m.set_working_distance_m(truth.focus_wd_m(m) + defocus_dof * dof_m)

    def attempt(self, fn, *args):
        """fn(*args), drawing a new scenario when the twin rejects a randomised setting."""
        for _ in range(20):
            try:
                return fn(*args)
            except ValueError as exc:
                self.rejected.append(str(exc))
                self._twin = None
                self._count = 0
        raise RuntimeError(f"twin rejected 20 randomised scenarios in a row; last: {self.rejected[-1]}")

    def labelled_frame(self, max_defocus_dof: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
        """(image float32, labels int32): a frame with mostly mild defocus/astigmatism."""
        return self.attempt(self._labelled_frame, max_defocus_dof)

    def _labelled_frame(self, max_defocus_dof: float) -> tuple[np.ndarray, np.ndarray]:
        from twin import truth

        m = self.twin()
        dof = self.setup(m)
        rng = self.rng
        big = rng.random() < 0.25
        dz = rng.uniform(-max_defocus_dof, max_defocus_dof) if big else rng.normal(0, 0.7)
        ast = tuple(rng.normal(0, 1.5 if big else 0.4, 2))
        self.set_focus(m, dof, dz, ast)
        f = m.acquire()
        lab = truth.label_image(m, f)
        if lab.max() == 0 and rng.random() < 0.8:  # keep a few empty fields, not many
            return self._labelled_frame(max_defocus_dof)
        return f.image.astype(np.float32), relabel(lab)


SEM_SCENARIOS = ("default", "sparse", "dense", "drift-charging", "bam-tio2", "bimodal", "drift", "astigmatism",
                 "charging", "lowdose", "tilted", "shifted")


class ScenarioFrameGenerator:
    """Labelled frames from the shipped SEM scenarios as an agent acquires them (train seeds only).

    Unlike `TwinSceneGenerator` nothing about the specimen or detector is randomised: each
    frame picks a scenario and one of its `train_seeds`, a random stage position, a pixel
    size giving median particles of `d_px_range` px, a dwell of 0.2-4 us and a focus error
    of N(0, 0.5) depths of field (the measurement regime of `emtwin run`). Training uses the
    scenarios' `train_seeds`; benchmarks (split="test") and agent episodes use `test_seeds`.
    """

    def __init__(self, seed: int = 0, shape_px: tuple[int, int] = (256, 256), names: tuple[str, ...] = SEM_SCENARIOS,
                 d_px_range: tuple[float, float] = (7.0, 28.0), split: str = "train", focus_sigma_dof: float = 0.5):
        from twin.config import load_scenario

        if split not in ("train", "test"):
            raise ValueError(f"split = {split!r}: must be 'train' or 'test'")
        self.split = split
        self.rng = np.random.default_rng(seed)
        self.shape_px = tuple(int(s) for s in shape_px)
        self.scenarios = [load_scenario(n) for n in names]
        self.d_px_range = d_px_range
        if not 0.0 <= float(focus_sigma_dof) < 10.0:
            raise ValueError(f"focus_sigma_dof = {focus_sigma_dof!r}: must be in [0, 10)")
        self.focus_sigma_dof = float(focus_sigma_dof)
        self._twins: dict[tuple[int, int], object] = {}

    def _twin(self):
        from twin import TwinMicroscope

        k = int(self.rng.integers(len(self.scenarios)))
        sc = self.scenarios[k]
        seeds = list(sc.train_seeds if self.split == "train" else sc.test_seeds) or [0 if self.split == "train" else 100]
        s = int(seeds[int(self.rng.integers(len(seeds)))])
        if (k, s) not in self._twins:
            if len(self._twins) > 24:
                self._twins.clear()
            self._twins[(k, s)] = TwinMicroscope(sc, seed=s)
        return self._twins[(k, s)]

    def labelled_frame(self) -> tuple[np.ndarray, np.ndarray]:
        """(image float32, labels int32) of one measurement-like frame."""
        img, lab, _ = self.labelled_frame_sizes()
        return img, lab

    def labelled_frame_sizes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image, labels, true diameter in px of labels 1..n): the specimen's projected-area-
        equivalent diameters, whole even where a particle is partly hidden under another."""
        from twin import optics, truth

        rng = self.rng
        for _ in range(20):
            m = self._twin()
            sc = m.scenario
            d_med = min(p.median_diameter_m for p in sc.specimen.populations)
            px = d_med / _logu(rng, *self.d_px_range)
            rows, cols = self.shape_px
            lim = m.limits()
            fov = px * cols
            if not lim.fov_m[0] <= fov <= lim.fov_m[1]:
                continue
            m.set_fov_m(fov)
            m.set_scan(shape_px=(rows, cols), dwell_s=_logu(rng, 2e-7, 4e-6))
            half = 0.4 * min(sc.specimen.extent_m)
            m.move_stage(x_m=float(rng.uniform(-half, half)), y_m=float(rng.uniform(-half, half)))
            wd = truth.focus_wd_m(m)
            dof = px / optics.alpha_rad(sc.optics, wd)
            m.set_working_distance_m(wd + float(rng.normal(0.0, self.focus_sigma_dof)) * dof)
            f = m.acquire()
            lab = truth.label_image(m, f)
            if lab.max() == 0 and rng.random() < 0.8:
                continue
            return f.image.astype(np.float32), relabel(lab), _true_diameters_px(m, lab, px)
        raise RuntimeError("ScenarioFrameGenerator: 20 draws without a usable frame")


def _true_diameters_px(m, lab: np.ndarray, px: float) -> np.ndarray:
    """Specimen diameters (px) of the particle ids in `lab`, in the order of `relabel`."""
    from twin import truth

    ids = np.unique(lab)
    ids = ids[ids > 0]
    if ids.size == 0:
        return np.zeros(0)
    pose, (ex, ey) = m.stage(), truth.stage_error_m(m)
    x, y = pose.x_m + ex, pose.y_m + ey
    half = 2.0 * px * max(lab.shape)
    tab = truth.particles_in(m, x - half, y - half, x + half, y + half)
    d = dict(zip(tab.id.tolist(), tab.diameter_m.tolist()))
    return np.array([d.get(int(i), np.nan) for i in ids]) / px
