"""`Session`: what a policy can do with an instrument, with bookkeeping.

A session owns the (journaled) driver, the segmenter, the particle catalogue, the focus map,
the belief and the budgets. Policies call `survey`, `focus`, `measure_field` and `done`;
everything acquired is written to the run directory as it happens. The session only talks to
`drivers.Microscope`; it never sees twin ground truth.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from drivers import Frame, Microscope

from .autofocus import Autofocus, FocusResult
from .belief import Estimate, StoppingRule, estimate
from .dedup import ParticleCatalog
from .focusmap import FocusMap
from .survey import Sites, detect_sites


@dataclass
class Budget:
    """Hard limits: the session reports `done` once any is used up."""

    max_instrument_s: float = 3600.0
    max_electrons: float = 1e15
    max_frames: int = 2000


@dataclass
class MeasureSettings:
    """Acquisition settings for measurement frames (SI)."""

    pixel_size_m: float = 4e-9
    shape_px: tuple[int, int] = (768, 1024)
    dwell_s: float = 1e-6
    survey_pixel_size_m: float = 50e-9
    survey_shape_px: tuple[int, int] = (768, 1024)
    survey_dwell_s: float = 200e-9
    focus_shape_px: tuple[int, int] = (256, 256)
    min_confidence: float = 0.8  # detections with a lower mean foreground probability are dropped
    isolated_only: bool = False  # size only particles touching no other (occlusion-free; see measure_field)
    field_gap_m: float = 2.5e-6  # spacing between measurement fields; must exceed stage backlash + repeatability

    @property
    def fov_m(self) -> float:
        return self.pixel_size_m * self.shape_px[1]

    @property
    def field_height_m(self) -> float:
        return self.pixel_size_m * self.shape_px[0]


@dataclass
class FieldRecord:
    """One measurement field: where, when, how many particles (new/total), focus used."""

    frame_id: int
    x_m: float
    y_m: float
    fov_m: float
    height_m: float
    wd_m: float
    pixel_size_m: float
    new_particles: int
    detected: int
    t_s: float


@dataclass
class SessionState:
    """Everything needed to continue a session (checkpointed after each field)."""

    catalog: ParticleCatalog = field(default_factory=ParticleCatalog)
    focus_map: FocusMap = field(default_factory=FocusMap)
    fields: list[FieldRecord] = field(default_factory=list)
    sites: Sites = field(default_factory=Sites.empty)
    frames_by_type: Counter = field(default_factory=Counter)
    focus_results: list[dict] = field(default_factory=list)
    focus_trace: list[tuple[float, float, float]] = field(default_factory=list)  # (t, x, wd)
    survey_fields: list[tuple[float, float, float, float]] = field(default_factory=list)
    last_estimate: Estimate | None = None
    max_extent_m: float = 0.0  # largest bounding-box side of a whole particle seen so far
    policy_state: dict[str, Any] = field(default_factory=dict)


class Session:
    """Acquisition primitives and bookkeeping for one experiment."""

    def __init__(self, scope: Microscope, segmenter: Any, rule: StoppingRule, budget: Budget,
                 settings: MeasureSettings | None = None, on_update: Callable[["Session"], None] | None = None,
                 state: SessionState | None = None, estimator: Any = None):
        self.scope = scope
        self.segmenter = segmenter
        self.rule = rule
        self.budget = budget
        self.settings = settings or MeasureSettings()
        self.state = state or SessionState()
        self.on_update = on_update
        self.estimator = estimator
        self.purpose = "measure"
        self.last_frame: Frame | None = None
        self.autofocus = Autofocus(scope, shape_px=self.settings.focus_shape_px)

    # ---- bookkeeping -------------------------------------------------------------------------
    @property
    def catalog(self) -> ParticleCatalog:
        return self.state.catalog

    @property
    def focus_map(self) -> FocusMap:
        return self.state.focus_map

    def instrument_s(self) -> float:
        return self.scope.status().instrument_time_s

    def electrons(self) -> float:
        return self.scope.status().total_electrons

    def frames(self) -> int:
        return sum(self.state.frames_by_type.values())

    def budget_left(self) -> bool:
        st = self.scope.status()
        return (st.instrument_time_s < self.budget.max_instrument_s and st.total_electrons < self.budget.max_electrons
                and self.frames() < self.budget.max_frames)

    def estimate(self) -> Estimate:
        est = estimate(self.catalog.d, credibility=self.rule.credibility, seed=len(self.catalog))
        self.state.last_estimate = est
        return est

    def target_reached(self) -> bool:
        est = self.state.last_estimate
        return est is not None and est.n == len(self.catalog) and self.rule.reached(est)

    def done(self) -> bool:
        return self.target_reached() or not self.budget_left()

    def _acquire(self, purpose: str) -> Frame:
        self.purpose = purpose
        frame = self.scope.acquire()
        self.state.frames_by_type[purpose] += 1
        self.last_frame = frame
        return frame

    # ---- survey ------------------------------------------------------------------------------
    def survey(self, x_m: float, y_m: float, wd_m: float | None = None) -> Sites:
        """One low-magnification frame centred at (x, y); returns candidate sites found."""
        s = self.settings
        self.scope.move_stage(x_m=x_m, y_m=y_m)
        self.scope.set_fov_m(s.survey_pixel_size_m * s.survey_shape_px[1])
        self.scope.set_scan(shape_px=s.survey_shape_px, dwell_s=s.survey_dwell_s)
        if wd_m is not None:
            self.scope.set_working_distance_m(wd_m)
        frame = self._acquire("survey")
        sites = detect_sites(frame)
        self.state.sites = self.state.sites.concat(sites)
        fov = frame.meta.fov_m
        self.state.survey_fields.append((x_m, y_m, fov, fov * s.survey_shape_px[0] / s.survey_shape_px[1]))
        return sites

    # ---- focus -------------------------------------------------------------------------------
    def _aim_at_site(self) -> tuple[float, float] | None:
        """Beam-shift the focus raster onto a particle seen here (particles give a focus signal).

        Uses the last frame if it was taken at this stage position, else a quick preview
        (256², 4× the measurement pixel, survey dwell; counted as a focus frame). Stage
        coordinates from elsewhere are not trusted: stage repeatability is ~µm.
        Returns the beam shift to restore, or None when nothing is in view.
        """
        pose = self.scope.stage()
        frame = self.last_frame
        if frame is None or frame.meta.stage != pose:
            frame = self._preview()
        sites = detect_sites(frame)
        if not len(sites):
            return None
        lo, hi = self.scope.limits().beam_shift_m
        dx = sites.x_m - pose.x_m
        dy = sites.y_m - pose.y_m
        reach = (dx > lo) & (dx < hi) & (dy > lo) & (dy < hi)
        if not reach.any():
            return None
        k = int(np.argmax(np.where(reach, sites.area_m2, -1.0)))
        saved = self.scope.get_beam_shift_m()
        self.scope.set_beam_shift_m(float(dx[k]), float(dy[k]))
        return saved

    def _preview(self) -> Frame:
        s = self.settings
        scan, fov = self.scope.get_scan(), self.scope.get_fov_m()
        lim = self.scope.limits()
        self.scope.set_fov_m(min(max(4 * s.pixel_size_m * 256, lim.fov_m[0]), lim.fov_m[1]))
        self.scope.set_scan(shape_px=(256, 256), dwell_s=s.survey_dwell_s)
        try:
            frame = self._acquire("focus")
        finally:
            self.scope.set_scan(shape_px=scan.shape_px, dwell_s=scan.dwell_s)
            self.scope.set_fov_m(fov)
        return frame

    def focus(self, method: str = "three_point", coarse: bool = False) -> FocusResult:
        """Autofocus near the current stage position.

        `two_point` first tries the field centre (2 frames); only if nothing there gives a
        focus signal does it aim at a particle found in a preview and try again. The other
        methods aim first. Coarse focus (survey scale) never aims.
        """
        if method == "two_point" and not coarse:
            res = self._focus(method, coarse)
            if res.converged:
                return res
        saved_shift = None if coarse else self._aim_at_site()
        try:
            return self._focus(method, coarse)
        finally:
            if saved_shift is not None:
                self.scope.set_beam_shift_m(*saved_shift)

    def _focus(self, method: str, coarse: bool) -> FocusResult:
        wd0 = self.scope.get_working_distance_m()
        px = self.scope.get_fov_m() / self.scope.get_scan().shape_px[1]
        dof = self._dof(px)
        self.purpose = "focus"
        before = self.scope.status().frames_acquired
        if method == "sweep":
            res = self.autofocus.sweep(wd0, span_m=40 * dof, n=9)
        elif method == "two_point":
            res = self.autofocus.two_point(wd0, 1.5 * dof)
        elif method == "learned" and self.estimator is not None:
            res = self.autofocus.learned(wd0, 2 * dof, self.estimator, iterations=2)
        else:
            res = self.autofocus.three_point(wd0, 1.5 * dof)
        self.state.frames_by_type["focus"] += self.scope.status().frames_acquired - before
        pose = self.scope.stage()
        if not coarse and (res.converged or not len(self.focus_map)):  # flat curves and coarse focus teach the map nothing
            self.focus_map.add(pose.x_m, pose.y_m, res.wd_m)
        self.state.focus_results.append({"method": res.method, "frames": res.frames, "converged": res.converged,
                                         "wd_m": res.wd_m, "x_m": pose.x_m, "y_m": pose.y_m,
                                         "instrument_s": res.instrument_s, "t_s": self.instrument_s()})
        self.state.focus_trace.append((self.instrument_s(), pose.x_m, res.wd_m))
        return res

    def _dof(self, pixel_m: float) -> float:
        """Depth of field (m) at this pixel size: pixel / α, with α from the last frame if known."""
        alpha = self.state.policy_state.get("alpha_rad", 3e-3)
        return pixel_m / alpha

    # ---- measurement ---------------------------------------------------------------------------
    def guard_px(self, pixel_m: float) -> int:
        """Guard-frame width (px) at this pixel size (see `measure_field`)."""
        return int(math.ceil(0.6 * self.state.max_extent_m / pixel_m)) + 1

    def _accepted(self, t: Any, pixel_m: float, shape: tuple[int, int]) -> np.ndarray:
        """Mask of detections that are confident, whole, and centred inside the guard frame."""
        if not len(t):
            return np.zeros(0, bool)
        whole = ~np.asarray(t["touches_border"], dtype=bool)
        ok = whole & (np.asarray(t["confidence"]) >= self.settings.min_confidence)
        if self.settings.isolated_only and "touches_other" in t.columns:
            ok &= ~np.asarray(t["touches_other"], dtype=bool)
        if ok.any():
            ext = float(np.asarray(t["extent_px"])[ok].max()) * pixel_m
            self.state.max_extent_m = max(self.state.max_extent_m, ext)
        g = min(self.guard_px(pixel_m), min(shape) // 10)  # a merged cluster must not blank the frame
        r, c = np.asarray(t["centroid_row_px"]), np.asarray(t["centroid_col_px"])
        return ok & (r >= g) & (r <= shape[0] - 1 - g) & (c >= g) & (c <= shape[1] - 1 - g)

    def goto_field(self, x_m: float, y_m: float) -> None:
        """Move to (x, y), set measurement magnification and the focus map's working distance."""
        s = self.settings
        self.scope.move_stage(x_m=x_m, y_m=y_m)
        self.scope.set_fov_m(s.fov_m)
        self.scope.set_scan(shape_px=s.shape_px, dwell_s=s.dwell_s)
        wd, _ = self.focus_map.predict(x_m, y_m)
        if math.isfinite(wd):
            self.scope.set_working_distance_m(wd)

    def focus_uncertain(self, x_m: float, y_m: float, tolerance_dof: float = 0.5) -> bool:
        """True when the focus map's prediction here is worse than `tolerance_dof` depths of field."""
        _, sigma = self.focus_map.predict(x_m, y_m)
        return not sigma <= tolerance_dof * self._dof(self.settings.pixel_size_m)

    def measure_field(self, x_m: float, y_m: float) -> FieldRecord:
        """Acquire one measurement frame at (x, y), segment it and catalogue new particles.

        Sizing is kept free of edge bias with a guard frame: a particle counts only if its
        centroid lies at least g px inside every edge, with g = 0.6 x the largest whole
        particle seen so far (+1 px; at most a tenth of the frame). Such particles are never cut by the frame, so which
        ones are kept does not depend on their size (the guard-area rule of unbiased
        stereology: Gundersen 1977, J. Microsc. 111:219; Miles 1978), whereas simply dropping
        particles that touch the border loses large ones more often. Detections less
        confident than `settings.min_confidence` are dropped; the belief is updated. With
        `settings.isolated_only`, particles touching another are not sized: in a cluster the
        visible outline is smaller than the particle (occlusion; -3.4 % in diameter on the
        twin's dense clusters), at the cost of measuring fewer particles per frame. This
        assumes that clustering does not depend on size.
        """
        self.goto_field(x_m, y_m)
        frame = self._acquire("measure")
        if frame.meta.depth_of_field_m:
            self.state.policy_state["alpha_rad"] = frame.meta.pixel_size_m / frame.meta.depth_of_field_m
        seg = self.segmenter.segment(frame.image, frame.meta.pixel_size_m)
        inside = self._accepted(seg.particles, frame.meta.pixel_size_m, frame.image.shape)
        t = seg.particles
        rows = np.asarray(t["centroid_row_px"])[inside] if len(t) else np.empty(0)
        cols = np.asarray(t["centroid_col_px"])[inside] if len(t) else np.empty(0)
        diam = np.asarray(t["equivalent_diameter_m"])[inside] if len(t) else np.empty(0)
        xs, ys = frame.meta.pixel_to_stage(rows, cols)
        extra = [{"confidence": float(c)} for c in (np.asarray(t["confidence"])[inside] if len(t) else [])]
        new = self.catalog.add(np.atleast_1d(xs), np.atleast_1d(ys), diam, frame.meta.frame_id, extra)
        rec = FieldRecord(frame.meta.frame_id, x_m, y_m, frame.meta.fov_m,
                          frame.meta.fov_m * frame.meta.shape_px[0] / frame.meta.shape_px[1],
                          frame.meta.working_distance_m, frame.meta.pixel_size_m, int(new.sum()), int(inside.sum()),
                          self.instrument_s())
        self.state.fields.append(rec)
        self.state.focus_trace.append((self.instrument_s(), x_m, frame.meta.working_distance_m))
        self.estimate()
        if self.on_update is not None:
            self.on_update(self)
        return rec
