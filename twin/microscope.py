"""`TwinMicroscope`: the simulated SEM behind the `drivers.Microscope` interface.

It assembles the persistent specimen, optics, scan, detector, stage, charging and
contamination, and advances an instrument clock and a dose ledger on every command.
Ground truth is not reachable from here through the driver interface: see `twin.truth`.

Geometry: the in-focus working distance at stage point (x, y) is
``initial.working_distance_m − (z_stage − z_stage0) − (h(x, y) − h(0, 0)) − y·tan(tilt)``,
so the scenario's initial working distance is in focus at the stage origin. Defocus
Δ = working distance setting − in-focus working distance (positive: focus below the surface).
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivers import Frame, FrameMeta, Limits, Microscope, ScanSettings

from . import detector as det
from . import optics
from .clock import Clock, DoseLedger
from .config import Scenario, load_scenario
from .exposure import ExposureHistory
from .scan import DriftModel, SampleGrid, frame_time_s, sample_grid
from .specimen import Specimen
from .settings import SettingsStore
from .stage import Stage

ELEMENTARY_CHARGE_C = 1.602176634e-19  # exact (SI 2019)

# Settle times of the electron optics (s): typical of field-emission SEM columns.
SETTLE_S = {
    "fov": 0.005,
    "scan": 0.0,
    "working_distance": 0.02,
    "stigmator": 0.005,
    "beam_current": 1.0,
    "high_voltage": 5.0,
    "beam_shift": 0.002,
    "detector": 0.2,
    "blank": 0.001,
}


@dataclass(frozen=True)
class FrameRecord:
    """What ground truth needs about an acquired frame (kept for the most recent frames)."""

    frame_id: int
    label: np.ndarray
    grid_origin_m: tuple[float, float]
    col_step_m: tuple[float, float]
    row_step_m: tuple[float, float]
    focus_wd_m: float


class TwinMicroscope(SettingsStore, Microscope):
    """A simulated SEM. `scenario` is a shipped name, a TOML path or a `Scenario`.

    `seed` defaults to the scenario's seed; the same seed and the same command sequence
    give bit-identical frames. `truth_cache` is how many recent frames keep their ground
    truth label image.
    """

    SETTLE_S = SETTLE_S

    def __new__(cls, scenario: object = "default", seed: int | None = None, truth_cache: int = 8):
        """A STEM scenario (top-level ``mode = "stem"``) gives a `StemTwinMicroscope`."""
        from .stem.config import StemScenario, scenario_mode

        if cls is TwinMicroscope and (
            isinstance(scenario, StemScenario)
            or (not isinstance(scenario, Scenario) and scenario_mode(scenario) == "stem")
        ):
            from .stem.microscope import StemTwinMicroscope

            return StemTwinMicroscope(scenario, seed=seed, truth_cache=truth_cache)
        return super().__new__(cls)

    def __init__(self, scenario: str | Path | Scenario = "default", seed: int | None = None, truth_cache: int = 8):
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        sc = self.scenario
        self.seed = int(sc.seed if seed is None else seed)
        streams = np.random.SeedSequence([self.seed, 0x5E3]).spawn(4)
        self._specimen = Specimen(sc.specimen, seed=int(streams[0].generate_state(1)[0]))
        self._stg = Stage(sc.stage, np.random.default_rng(streams[1]))
        self._scan_rng = np.random.default_rng(streams[2])
        self._noise_rng = np.random.default_rng(streams[3])
        self._clock = Clock()
        self._ledger = DoseLedger()
        self._drift = DriftModel(sc.drift)
        self._exposure = ExposureHistory(sc.charging, sc.contamination)
        self._detectors = {d.name: d for d in sc.detectors}
        self._lock = threading.RLock()
        self._abort_event = threading.Event()
        self._limits_cache = self._build_limits()
        ini = sc.initial
        self._fov_m = ini.fov_m
        self._scan = ScanSettings(tuple(ini.shape_px), ini.dwell_s, ini.scan_rotation_rad, ini.line_integration)
        self._wd_m = ini.working_distance_m
        self._stig = tuple(ini.stigmator)
        self._current_a = ini.beam_current_a
        self._hv_v = ini.high_voltage_v
        self._shift = (0.0, 0.0)
        self._detector = ini.detector
        self._blanked = False
        self._frames = 0
        self._records: OrderedDict[int, FrameRecord] = OrderedDict()
        self._truth_cache = max(1, int(truth_cache))
        self._z0 = self._stg.reported[2]
        self._h0 = float(self._specimen.height_m(0.0, 0.0))
        self._check_initial()
        if ini.stage_x_m or ini.stage_y_m:
            self._stg.move(x_m=ini.stage_x_m, y_m=ini.stage_y_m)

    # ---- limits and status ------------------------------------------------------------
    def _build_limits(self) -> Limits:
        sc = self.scenario
        st, oc, scan = sc.stage, sc.optics, sc.scan
        return Limits(
            stage_x_m=tuple(st.x_range_m),
            stage_y_m=tuple(st.y_range_m),
            stage_z_m=tuple(st.z_range_m),
            stage_tilt_rad=tuple(st.tilt_range_rad),
            stage_rot_rad=tuple(st.rot_range_rad),
            fov_m=tuple(scan.fov_range_m),
            dwell_s=tuple(scan.dwell_range_s),
            shape_px_max=(scan.max_height_px, scan.max_width_px),
            line_integration_max=64,
            rotation_rad=(-math.pi, math.pi),
            working_distance_m=tuple(oc.wd_range_m),
            stigmator=(-oc.stigmator_limit, oc.stigmator_limit),
            beam_current_a=tuple(oc.current_range_a),
            high_voltage_v=tuple(oc.hv_range_v),
            beam_shift_m=(-5e-6, 5e-6),
            detectors=tuple(self._detectors),
            defocus_m=None,
            mode="sem",
        )


    # ---- stage --------------------------------------------------------------------------


    # ---- settings -----------------------------------------------------------------------

    def _get_working_distance_m(self) -> float:
        return self._wd_m

    def _set_working_distance_m(self, wd_m: float) -> float:
        self._wd_m = wd_m
        self._settle("working_distance")
        return wd_m


    # ---- focus geometry ---------------------------------------------------------------------
    def _focus_wd_at(self, x_m: float, y_m: float) -> float:
        """In-focus working distance (m) at an actual stage point (ground truth)."""
        _, _, z, tilt, _ = self._stg.actual
        h = float(self._specimen.height_m(x_m, y_m))
        return self.scenario.initial.working_distance_m - (z - self._z0) - (h - self._h0) - y_m * math.tan(tilt)

    # ---- acquisition --------------------------------------------------------------------------
    def _acquire(self) -> Frame:
        with self._lock:
            self._abort_event.clear()
            return self._render_frame()

    def _render_frame(self) -> Frame:
        sc, scan = self.scenario, self._scan
        rows, cols = scan.shape_px
        pixel_m = self._fov_m / cols
        x, y = self._stg.actual[:2]
        t0 = self._clock.now_s
        probe = optics.probe(sc.optics, self._hv_v, self._current_a, self._wd_m)
        focus_wd = self._focus_wd_at(x, y)
        defocus = self._wd_m - focus_wd
        grid = sample_grid(
            (x, y), self._fov_m, (rows, cols), scan.rotation_rad, t0, scan.dwell_s, scan.line_integration,
            sc.scan, self._drift, self._scan_rng, beam_shift_m=self._shift,
        )
        grid = self._exposure.deflect(grid, t0, insulator=lambda g: self._specimen.render(g).insulator)
        maps = self._specimen.render(grid)
        cfg = self._detectors[self._detector]
        signal = maps.se if cfg.signal == "se" else maps.bse
        signal = self._exposure.modulate(signal, maps.insulator, grid, t0, cfg.signal)
        otf = optics.otf((rows, cols), pixel_m, probe, defocus, optics.astigmatism_m(sc.optics, self._stig),
                         scan.rotation_rad)
        signal = optics.blur(signal, otf)
        np.maximum(signal, 0.0, out=signal)  # the sampled analytic OTF can ring slightly below zero
        current = 0.0 if self._blanked else self._current_a
        image = det.detect(signal, current, scan.dwell_s, scan.line_integration, cfg, self._noise_rng,
                           brightness=sc.initial.brightness, contrast=sc.initial.contrast)
        image = det.smooth(image, cfg.smoothing_px)
        frame_s = frame_time_s((rows, cols), scan.dwell_s, scan.line_integration, sc.scan.flyback_s)
        electrons = 0.0 if self._blanked else self._current_a * rows * cols * scan.dwell_s * scan.line_integration / ELEMENTARY_CHARGE_C
        area_m2 = self._fov_m * self._fov_m * rows / cols
        self._clock.advance(frame_s, "acquire")
        self._frames += 1
        self._ledger.add(electrons, area_m2, self._frames)
        if electrons > 0:
            self._exposure.record(grid, electrons / area_m2, self._clock.now_s)
        self._remember(grid, maps.label, focus_wd)
        meta = FrameMeta(
            frame_id=self._frames,
            backend="twin",
            t_start_s=t0,
            t_end_s=self._clock.now_s,
            pixel_size_m=pixel_m,
            fov_m=self._fov_m,
            shape_px=(rows, cols),
            dwell_s=scan.dwell_s,
            line_integration=scan.line_integration,
            detector=self._detector,
            stage=self._stage(),
            working_distance_m=self._wd_m,
            stigmator=self._stig,
            beam_current_a=self._current_a,
            high_voltage_v=self._hv_v,
            scan_rotation_rad=scan.rotation_rad,
            beam_shift_m=self._shift,
            electrons=electrons,
            dose_e_per_m2=electrons / area_m2,
            depth_of_field_m=optics.depth_of_field_m(probe.alpha_rad, pixel_m),
            probe_diameter_m=probe.diameter_m,
            mode="sem",
            extra={"scenario": sc.name, "seed": self.seed, "signal": cfg.signal},
        )
        return Frame(image=image, meta=meta)

    def _remember(self, grid: SampleGrid, label: np.ndarray, focus_wd: float) -> None:
        rec = FrameRecord(self._frames, label, grid.origin_m, grid.col_step_m, grid.row_step_m, focus_wd)
        self._records[self._frames] = rec
        while len(self._records) > self._truth_cache:
            self._records.popitem(last=False)
