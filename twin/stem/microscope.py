"""`StemTwinMicroscope`: the simulated STEM behind the `drivers.Microscope` interface.

It assembles the persistent nanoparticle specimen (`twin.stem.specimen`), the aberrated
probe (`twin.stem.optics`), the incoherent renderer (`twin.stem.haadf`) and the SEM twin's
generic parts (stage, scan generator with drift/jitter/vibration, clock, dose ledger,
detector signal chain), and advances the instrument clock on every command.

Focus: the driver's ``defocus_m`` is Δf = −C10 (abTEM's ``defocus``; positive = underfocus,
crossover below the entrance surface). The effective defocus on the specimen at stage point
(x, y) is ``defocus_m − f(x, y)`` with the in-focus setting
``f(x, y) = −[(h(x, y) − h(0, 0)) + (z − z0) + y·tan(tilt)]`` (raising the specimen by dh
moves the crossover dh further below its surface), so defocus 0 focuses on the support at
the stage origin. ``working_distance_m`` is accepted and reported but does nothing (a STEM
focuses with the objective excitation, i.e. ``defocus_m``). Ground truth: `twin.stem.truth`.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivers import Frame, FrameMeta, Limits, Microscope, ScanSettings

from ..clock import Clock, DoseLedger
from ..detector import DetectorConfig, detect
from ..scan import DriftModel, SampleGrid, frame_time_s, sample_grid
from ..stage import Stage
from ..settings import SettingsStore
from . import haadf
from . import optics as so
from .config import StemDetectorConfig, StemScenario, load_stem_scenario
from .specimen import DoseMap, StemParticleTable, StemSpecimen

ELEMENTARY_CHARGE_C = 1.602176634e-19  # exact (SI 2019)

# Settle times of the electron optics (s), typical of a field-emission (S)TEM.
SETTLE_S = {
    "fov": 0.005,
    "defocus": 0.01,
    "working_distance": 0.0,
    "stigmator": 0.005,
    "beam_current": 1.0,
    "high_voltage": 30.0,
    "beam_shift": 0.002,
    "detector": 0.1,
    "blank": 0.001,
}
_MARGIN_MAX_PX = 96


@dataclass(frozen=True, eq=False)
class StemFrameRecord:
    """What ground truth needs about an acquired frame (kept for the most recent frames)."""

    frame_id: int
    grid: SampleGrid
    particles: StemParticleTable
    focus_defocus_m: float
    defocus_error_m: float
    atomic: bool
    aberrations: so.Aberrations
    high_voltage_v: float
    beam_current_a: float


class StemTwinMicroscope(SettingsStore, Microscope):
    """A simulated STEM. ``scenario`` is a shipped name, a TOML path or a `StemScenario`.

    ``seed`` defaults to the scenario's seed; the same seed and command sequence give
    bit-identical frames. ``truth_cache`` is how many recent frames keep their ground truth.
    """

    SETTLE_S = SETTLE_S

    def __init__(self, scenario: str | Path | StemScenario = "stem-catalyst", seed: int | None = None,
                 truth_cache: int = 8):
        self.scenario = load_stem_scenario(scenario)
        sc = self.scenario
        self.seed = int(sc.seed if seed is None else seed)
        streams = np.random.SeedSequence([self.seed, 0x57E4]).spawn(5)
        self._specimen = StemSpecimen(sc.specimen, seed=int(streams[0].generate_state(1)[0]))
        self._stg = Stage(sc.stage, np.random.default_rng(streams[1]))
        self._scan_rng = np.random.default_rng(streams[2])
        self._noise_rng = np.random.default_rng(streams[3])
        self._damage_rng = np.random.default_rng(streams[4])
        self._clock = Clock()
        self._ledger = DoseLedger()
        self._drift = DriftModel(sc.drift)
        self._dose_map = DoseMap()
        self._detectors = {d.name: d for d in sc.detectors}
        self._chains = {d.name: _signal_chain(d) for d in sc.detectors}
        self._lock = threading.RLock()
        self._abort_event = threading.Event()
        self._limits_cache = self._build_limits()
        ini = sc.initial
        self._fov_m = ini.fov_m
        self._scan = ScanSettings(tuple(ini.shape_px), ini.dwell_s, ini.scan_rotation_rad, ini.line_integration)
        self._defocus_m = ini.defocus_m
        self._wd_m = ini.working_distance_m
        self._stig = (float(ini.stigmator[0]), float(ini.stigmator[1]))
        self._current_a = ini.beam_current_a
        self._hv_v = ini.high_voltage_v
        self._shift = (0.0, 0.0)
        self._detector = ini.detector
        self._blanked = False
        self._frames = 0
        self._records: OrderedDict[int, StemFrameRecord] = OrderedDict()
        self._truth_cache = max(1, int(truth_cache))
        self._z0 = self._stg.reported[2]
        self._check_initial({"defocus_m": (self.scenario.initial.defocus_m, self._limits_cache.defocus_m)})
        if ini.stage_x_m or ini.stage_y_m:
            self._stg.move(x_m=ini.stage_x_m, y_m=ini.stage_y_m)

    # ---- limits and status -------------------------------------------------------------------
    def _build_limits(self) -> Limits:
        sc = self.scenario
        st, oc, scan = sc.stage, sc.optics, sc.scan
        return Limits(
            stage_x_m=tuple(st.x_range_m), stage_y_m=tuple(st.y_range_m), stage_z_m=tuple(st.z_range_m),
            stage_tilt_rad=tuple(st.tilt_range_rad), stage_rot_rad=tuple(st.rot_range_rad),
            fov_m=tuple(scan.fov_range_m), dwell_s=tuple(scan.dwell_range_s),
            shape_px_max=(scan.max_height_px, scan.max_width_px), line_integration_max=64,
            rotation_rad=(-math.pi, math.pi), working_distance_m=tuple(oc.working_distance_range_m),
            stigmator=(-oc.stigmator_limit, oc.stigmator_limit), beam_current_a=tuple(oc.current_range_a),
            high_voltage_v=tuple(oc.hv_range_v), beam_shift_m=(-1e-6, 1e-6), detectors=tuple(self._detectors),
            defocus_m=tuple(oc.defocus_range_m), mode="stem",
        )


    # ---- stage -----------------------------------------------------------------------------------


    # ---- settings --------------------------------------------------------------------------------

    def _get_working_distance_m(self) -> float:
        return self._wd_m

    def _set_working_distance_m(self, wd_m: float) -> float:
        self._wd_m = wd_m  # nominal only: a STEM focuses with defocus_m
        return wd_m

    def _get_defocus_m(self) -> float:
        return self._defocus_m

    def _set_defocus_m(self, defocus_m: float) -> float:
        self._defocus_m = defocus_m
        self._settle("defocus")
        return defocus_m


    # ---- focus geometry (ground truth) ----------------------------------------------------------
    def _focus_defocus_at(self, x_m: float, y_m: float) -> float:
        """The defocus setting (m) that focuses the probe on the support at an actual stage point."""
        _, _, z, tilt, _ = self._stg.actual
        dh = self._specimen.relative_height_m(x_m, y_m) + (z - self._z0) + y_m * math.tan(tilt)
        return -dh

    # ---- acquisition -------------------------------------------------------------------------------
    def _acquire(self) -> Frame:
        with self._lock:
            self._abort_event.clear()
            return self._render_frame()

    def _probe_state(self, x_m: float, y_m: float) -> tuple[so.Aberrations, float, float]:
        """Aberrations at the specimen point, the in-focus setting and the defocus error (m)."""
        focus = self._focus_defocus_at(x_m, y_m)
        err = self._defocus_m - focus
        return so.aberrations(self.scenario.optics, err, self._stig), focus, err

    def expected_fraction(self, grid: SampleGrid, det: StemDetectorConfig, ab: so.Aberrations,
                          hv_v: float | None = None, current_a: float | None = None
                          ) -> tuple[np.ndarray, StemParticleTable, bool]:
        """Noise-free fraction of the beam reaching ``det`` at each sampled point (float32),
        the particles near the field and whether atoms were rendered. ``hv_v`` and
        ``current_a`` (source size) default to the present settings."""
        sc = self.scenario
        oc, spec_cfg = sc.optics, sc.specimen
        p = grid.pixel_size_m
        hv = self._hv_v if hv_v is None else hv_v
        current = self._current_a if current_a is None else current_a
        alpha = oc.convergence_semiangle_rad
        atomic = p <= spec_cfg.atomic_pixel_m
        blur = math.hypot(so.source_sigma_m(oc, current, hv), oc.atom_sigma_m if atomic else 0.0)
        probe_px = math.ceil((so.probe_radius_m(hv, alpha, ab) + 3.0 * blur) / p)
        margin = math.ceil(grid.residual_m / p) + min(probe_px, _MARGIN_MAX_PX) + 2
        rg = haadf.RenderGrid.for_frame(grid, margin)
        pad = max(pp.max_diameter_m for pp in spec_cfg.populations)
        x0, x1, y0, y1 = rg.bbox_m(pad)
        table = self._specimen.particles_in(x0, y0, x1, y1)
        sigma = haadf.particle_sigma_per_atom(table, hv, det)
        if atomic:
            obj = haadf.splat_atoms(rg, self._specimen, table, sigma)
        else:
            obj = haadf.splat_particles(rg, table, sigma * haadf.particle_atom_counts(table) / (p * p))
        sup_sigma, sup_n = haadf.support_sigma_density(spec_cfg.support.material, hv, det)
        damage = self._support_damage if self._support_sensitive() else None
        obj += haadf.support_map(rg, self._specimen, sup_sigma, sup_n, damage)
        conv = haadf.convolve(obj, so.otf(rg.shape, p, hv, alpha, ab, grid.rotation_rad, blur))
        frac = haadf.detector_fraction(haadf.read_out(conv, rg, grid), det)
        return frac, table, atomic

    def _support_sensitive(self) -> bool:
        dmg = self.scenario.damage
        return dmg.enabled and dmg.support_critical_dose_e_per_m2 > 0 and len(self._dose_map) > 0

    def _support_damage(self, x_m: np.ndarray, y_m: np.ndarray) -> np.ndarray:
        crit = self.scenario.damage.support_critical_dose_e_per_m2
        return np.exp(-self._dose_map.dose_at(x_m, y_m) / crit)

    def _render_frame(self) -> Frame:
        sc, scan = self.scenario, self._scan
        rows, cols = scan.shape_px
        pixel_m = self._fov_m / cols
        x, y = self._stg.actual[:2]
        t0 = self._clock.now_s
        grid = sample_grid((x, y), self._fov_m, (rows, cols), scan.rotation_rad, t0, scan.dwell_s,
                           scan.line_integration, sc.scan, self._drift, self._scan_rng, beam_shift_m=self._shift)
        ab, focus, err = self._probe_state(*grid.center_m)
        det = self._detectors[self._detector]
        frac, table, atomic = self.expected_fraction(grid, det, ab)
        if self._blanked:
            frac = np.zeros_like(frac)
        image = detect(frac, self._current_a, scan.dwell_s, scan.line_integration, self._chains[det.name],
                       self._noise_rng, brightness=sc.initial.brightness, contrast=sc.initial.contrast)
        frame_s = frame_time_s((rows, cols), scan.dwell_s, scan.line_integration, sc.scan.flyback_s)
        electrons = 0.0 if self._blanked else (
            self._current_a * rows * cols * scan.dwell_s * scan.line_integration / ELEMENTARY_CHARGE_C)
        area_m2 = self._fov_m * self._fov_m * rows / cols
        self._clock.advance(frame_s, "acquire")
        self._frames += 1
        dose = self._ledger.add(electrons, area_m2, self._frames)
        self._remember(grid, table, focus, err, atomic, ab)
        if electrons > 0:
            self._apply_damage(grid, dose)
        meta = FrameMeta(
            frame_id=self._frames, backend="twin", t_start_s=t0, t_end_s=self._clock.now_s, pixel_size_m=pixel_m,
            fov_m=self._fov_m, shape_px=(rows, cols), dwell_s=scan.dwell_s, line_integration=scan.line_integration,
            detector=self._detector, stage=self._stage(), working_distance_m=self._wd_m, stigmator=self._stig,
            beam_current_a=self._current_a, high_voltage_v=self._hv_v, scan_rotation_rad=scan.rotation_rad,
            beam_shift_m=self._shift, electrons=electrons, dose_e_per_m2=electrons / area_m2,
            defocus_m=self._defocus_m,
            depth_of_field_m=so.depth_of_field_m(self._hv_v, sc.optics.convergence_semiangle_rad),
            probe_diameter_m=so.probe_fw50_m(sc.optics, self._current_a, self._hv_v), mode="stem",
            extra={"scenario": sc.name, "seed": self.seed, "detector_kind": det.kind,
                   "detector_inner_rad": det.inner_rad, "detector_outer_rad": det.outer_rad,
                   "convergence_semiangle_rad": sc.optics.convergence_semiangle_rad, "c30_m": sc.optics.c30_m,
                   "rendering": "atoms" if atomic else "particles"},
        )
        return Frame(image=image, meta=meta)

    def _apply_damage(self, grid: SampleGrid, dose_e_per_m2: float) -> None:
        dmg = self.scenario.damage
        if not dmg.enabled:
            return
        ny, nx = grid.shape_px
        p = grid.pixel_size_m
        if dmg.support_critical_dose_e_per_m2 > 0:
            self._dose_map.add(grid.center_m, (nx * p, ny * p), grid.rotation_rad, dose_e_per_m2)
        if dmg.hop_rms_m > 0:
            x0, x1, y0, y1 = grid.bbox_m()
            tab = self._specimen.particles_in(x0, y0, x1, y1)
            if len(tab):
                rms = dmg.hop_rms_m * math.sqrt(dose_e_per_m2 / dmg.hop_dose_e_per_m2) \
                    * (dmg.hop_reference_diameter_m / tab.diameter_m) ** 2
                step = self._damage_rng.standard_normal((2, len(tab))) * rms
                self._specimen.hop(tab.id, step[0], step[1])

    def _remember(self, grid: SampleGrid, table: StemParticleTable, focus: float, err: float, atomic: bool,
                  ab: so.Aberrations) -> None:
        x0, x1, y0, y1 = grid.bbox_m(float(np.max(table.diameter_m, initial=0.0)))
        inside = (table.x_m >= x0) & (table.x_m <= x1) & (table.y_m >= y0) & (table.y_m <= y1)
        rec = StemFrameRecord(self._frames, grid, table.take(np.flatnonzero(inside)), focus, err, atomic, ab,
                              self._hv_v, self._current_a)
        self._records[self._frames] = rec
        while len(self._records) > self._truth_cache:
            self._records.popitem(last=False)


def _signal_chain(det: StemDetectorConfig) -> DetectorConfig:
    """The SEM twin's detector signal chain with this STEM detector's gain and noise."""
    return DetectorConfig(name=det.name, signal="bse", efficiency=det.efficiency, gain=det.gain, offset=det.offset,
                          read_noise=det.read_noise, bit_depth=det.bit_depth,
                          reference_dwell_s=det.reference_dwell_s)
