"""`bayes`: the product's policy. Next field by expected information per instrument second.

After a survey frame, each candidate field's expected yield of new particles k is
estimated from survey sites not yet covered (scaled by the observed detection ratio). The
expected information of measuring it is the shrinkage of the posterior of the mean,
½·ln((n + k)/n) nats for n particles catalogued (the posterior variance ∝ 1/n), and its cost
is stage travel + frame time + a refocus when the focus map is uncertain there. When no
candidate is worth more than surveying a new area, the policy surveys along a spiral;
otherwise it measures the cheapest candidate wholly inside survey frames (`field_choice`
option "size_blind", the default: the survey sees large particles best, so ranking by its
yield would favour them) or the one with the best information per second ("yield"). The
pixel size adapts after the first 30 particles so the median particle spans ~14 px (3–15 nm/px). Measurement frames
and focus rasters have twice the configured side (`frame_scale` option; 1536×2048 and 512²
by default): a stage move costs ~0.5 s of settling whatever the frame size, so four times
the area per move saves about three moves in four. Stops with the Bayesian rule.
"""
from __future__ import annotations

import math

import numpy as np

from ..survey import Sites
from .base import Policy, square_spiral, travel_s
from .fields import field_cells


class BayesPolicy(Policy):
    name = "bayes"
    option_names = ("frame_scale", "focus_particles", "field_choice")
    option_choices = {"field_choice": ("yield", "size_blind")}
    option_ranges = {"frame_scale": (0.1, 16.0), "focus_particles": (0.0, 1000.0)}
    # frame_scale: measurement frame side relative to the configured shape; focus_particles:
    # particles a focus raster should hold on average (size_focus_raster); field_choice: below
    option_defaults = {"frame_scale": 2.0, "focus_particles": 6.0, "field_choice": "size_blind"}
    target_px_per_diameter = 14.0
    fine_initial_focus = False  # the focus map is empty, so the first field is refocused anyway
    max_focus_grow = 2.0  # at most 2x the side (4x the scan time) of the configured focus raster
    # catalogued particles per survey site, by area: 4-11 on the shipped default, sparse and dense
    # scenarios (50 nm survey pixels miss small particles and merge clusters; fifth session)
    survey_undercount = 5.0

    # ---- hooks the oracle overrides -----------------------------------------------------------
    def sites(self) -> Sites:
        return self.session.state.sites

    def survey_more(self) -> bool:
        """Survey the next spiral block; False when the spiral is exhausted."""
        s, st = self.session, self.session.settings
        x0, y0 = self.start_xy()
        sw = st.survey_pixel_size_m * st.survey_shape_px[1]
        sh = st.survey_pixel_size_m * st.survey_shape_px[0]
        k = self.state.get("survey_block", 0)
        cells = square_spiral(200)
        if k >= len(cells):
            return False
        c, r = cells[k]
        s.survey(x0 + c * sw, y0 + r * sh)
        self.state["survey_block"] = k + 1
        return True

    def prepare_focus(self, x: float, y: float) -> None:
        s = self.session
        if s.focus_uncertain(x, y, tolerance_dof=0.5):
            s.goto_field(x, y)
            self.size_focus_raster()
            s.focus(method="two_point")

    def particle_density_m2(self) -> float:
        """Particles per m² seen so far: catalogued per measured area once fields exist, else
        survey sites per surveyed area times `survey_undercount`. 0 when nothing is known."""
        st = self.session.state
        if st.fields and len(self.session.catalog):
            return len(self.session.catalog) / sum(f.fov_m * f.height_m for f in st.fields)
        area = sum(w * h for _, _, w, h in st.survey_fields)
        return len(self.sites()) * self.survey_undercount / area if area > 0 else 0.0

    def size_focus_raster(self) -> None:
        """Widen the focus raster (never below its configured side) so that it holds
        `focus_particles` particles on average when it would hold fewer than half of that: an
        empty raster gives no focus signal and costs a preview and a second pair. Particles are
        ~Poisson, so P(empty) = exp(-6) = 0.25 % after growing, below 5 % without.
        The side grows at most `max_focus_grow` x: on sparse specimens each such focus frame
        costs ~0.8 s more, about what a failed pair and its preview cost."""
        s = self.session
        base = self.state.setdefault("focus_base_px", tuple(s.settings.focus_shape_px))
        want = float(self.option("focus_particles"))
        density = self.particle_density_m2()
        rows, cols = base
        expected = density * rows * cols * s.settings.pixel_size_m ** 2
        if density > 0 and expected < want / 2:  # hysteresis: crowded specimens keep the configured raster
            side = math.sqrt(want / density) / s.settings.pixel_size_m
            rmax, cmax = s.scope.limits().shape_px_max
            grow = min(max(side / math.sqrt(rows * cols), 1.0), rmax / rows, cmax / cols, self.max_focus_grow)
            rows, cols = int(round(rows * grow)), int(round(cols * grow))
        s.settings.focus_shape_px = (rows, cols)
        s.autofocus.shape_px = (rows, cols)

    def field_choice(self) -> str:
        """Policy option `field_choice`: "size_blind" (default) measures the cheapest (travel,
        refocus) candidate that holds a survey site, lies wholly inside survey frames and is not
        next to a measured field, while the decision to survey more still weighs the best yield;
        "yield" ranks candidates by the particles the survey sees in them. The survey (50 nm
        pixels) sees large particles rather than small ones, so "yield" favours fields rich in
        large particles: on the bimodal scenario the measured fields' particles were up to 7 %
        larger than the specimen's, and with the same size factor "yield" sized 0.8 % larger on
        average over 35 test episodes (docs/benchmarks.md, nineteenth and twentieth sessions).
        "yield" needs ~22 % less instrument time and suits specimens whose particles the survey
        sees at every size."""
        return self.option("field_choice")

    # ---- planning ------------------------------------------------------------------------------
    def choose_frame(self) -> None:
        """Scale measurement and focus frames by `frame_scale`, within the scan generator's limits.

        Larger focus rasters (512² by default) nearly always hold a particle, so the two-frame
        focus rarely needs a preview to aim at one.
        """
        s = self.session
        if self.state.get("frame_set"):
            return
        k = float(self.option("frame_scale"))
        rmax, cmax = s.scope.limits().shape_px_max
        for name in ("shape_px", "focus_shape_px"):
            rows, cols = getattr(s.settings, name)
            setattr(s.settings, name, (int(min(round(rows * k), rmax)), int(min(round(cols * k), cmax))))
        s.autofocus.shape_px = s.settings.focus_shape_px
        self.state["frame_set"] = True

    def adapt_pixel_size(self) -> None:
        s = self.session
        if self.state.get("pixel_adapted") or len(s.catalog) < 30:
            return
        median_d = float(np.median(s.catalog.d))
        lim = s.scope.limits()
        px = float(np.clip(median_d / self.target_px_per_diameter, 3e-9, 15e-9))
        px = min(max(px, lim.fov_m[0] / s.settings.shape_px[1]), lim.fov_m[1] / s.settings.shape_px[1])
        s.settings.pixel_size_m = px
        self.state["pixel_adapted"] = True
        self.state["pixel_size_m"] = px

    def visited_mask(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        covered = np.zeros(x.shape, dtype=bool)
        for f in self.session.state.fields:
            covered |= (np.abs(x - f.x_m) < f.fov_m / 2) & (np.abs(y - f.y_m) < f.height_m / 2)
        return covered

    def detection_ratio(self) -> float:
        """Particles catalogued per survey site in measured fields (prior 1.0)."""
        st = self.session.state
        sites = self.sites()
        if not st.fields or len(sites) == 0:
            return 1.0
        n_sites = int(self.visited_mask(sites.x_m, sites.y_m).sum())
        detected = sum(f.detected for f in st.fields)
        return (detected + 2.0) / (n_sites + 2.0)

    def frame_s(self) -> float:
        st = self.session.settings
        return st.shape_px[0] * (st.shape_px[1] * st.dwell_s + 100e-6)

    def focus_cost_s(self) -> float:
        res = self.session.state.focus_results
        return float(np.mean([r["instrument_s"] for r in res])) if res else 1.0

    def best_field(self) -> tuple[tuple[float, float], float] | None:
        """Best candidate (x, y) and its information per second, or None."""
        s = self.session
        sites = self.sites()
        x0, y0 = self.start_xy()
        cand = field_cells(sites, (x0, y0), s.settings.fov_m, s.settings.field_height_m,
                           gap_m=s.settings.field_gap_m)
        if len(cand) == 0:
            return None
        keep = ~self.visited_mask(sites.x_m, sites.y_m)
        fresh = field_cells(Sites(sites.x_m[keep], sites.y_m[keep], sites.area_m2[keep]), (x0, y0),
                            s.settings.fov_m, s.settings.field_height_m, gap_m=s.settings.field_gap_m)
        if len(fresh) == 0:
            return None
        n = max(len(s.catalog), 1)
        k = fresh.count * self.detection_ratio()
        info = 0.5 * np.log((n + k) / n)
        pose = s.scope.stage()
        cost = np.array([travel_s((pose.x_m, pose.y_m), (x, y)) for x, y in zip(fresh.x_m, fresh.y_m)])
        cost += self.frame_s()
        unsure = np.array([s.focus_uncertain(x, y, 0.5) for x, y in zip(fresh.x_m, fresh.y_m)])
        cost += unsure * self.focus_cost_s()
        rate = info / cost
        i = int(np.argmax(rate))
        if self.field_choice() == "size_blind":  # the cheapest whole-surveyed candidate, whatever it holds
            whole = self.fully_surveyed(fresh.x_m, fresh.y_m) & ~self.near_measured(fresh.x_m, fresh.y_m)
            if whole.any():
                j = int(np.flatnonzero(whole)[np.argmin(cost[whole])])
                return (float(fresh.x_m[j]), float(fresh.y_m[j])), float(rate[i])
        return (float(fresh.x_m[i]), float(fresh.y_m[i])), float(rate[i])

    def near_measured(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Mask of cells centred less than a field's width and height from a measured field: a site
        that a stage error left outside that field must not pull the next frame back onto it."""
        s = self.session
        near = np.zeros(np.shape(x), dtype=bool)
        for f in s.state.fields:
            near |= (np.abs(x - f.x_m) < s.settings.fov_m) & (np.abs(y - f.y_m) < s.settings.field_height_m)
        return near

    def fully_surveyed(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Mask of field-sized cells centred at (x, y) whose four corners all lie in survey frames
        (a cell on a survey frame's edge shows only part of its sites)."""
        s = self.session
        hw, hh = s.settings.fov_m / 2, s.settings.field_height_m / 2
        ok = np.ones(np.shape(x), dtype=bool)
        for dx, dy in ((-hw, -hh), (-hw, hh), (hw, -hh), (hw, hh)):
            inside = np.zeros(np.shape(x), dtype=bool)
            for sx, sy, w, h in s.state.survey_fields:
                inside |= (np.abs(x + dx - sx) <= w / 2) & (np.abs(y + dy - sy) <= h / 2)
            ok &= inside
        return ok

    def survey_rate(self) -> float:
        """Information per second expected from surveying: a new block's fields, discounted."""
        s = self.session
        n = max(len(s.catalog), 1)
        per_field = max(np.mean([f.detected for f in s.state.fields]) if s.state.fields else 10.0, 1.0)
        survey_s = s.settings.survey_shape_px[0] * (s.settings.survey_shape_px[1] * s.settings.survey_dwell_s + 100e-6) + 1.0
        return 0.5 * math.log((n + per_field) / n) / (survey_s + self.frame_s() + 1.0)

    def rows_needed(self, margin: float = 1.2, min_fraction: float = 0.25) -> int:
        """Scan rows for the next field: all of them, unless the belief says that fewer particles
        than a full field holds will reach the target. The half-width falls as 1/sqrt(n), so
        n_total = n (w / target)^2; the field gets `margin` x the missing particles' share of a
        full field's rows (at least `min_fraction`). Scan time is proportional to rows, so the
        last field of a dense specimen costs a fraction of a frame instead of a whole one."""
        s = self.session
        rows = s.settings.shape_px[0]
        est = s.state.last_estimate
        if est is None or not s.state.fields or not np.isfinite(est.rel_half_width):
            return rows
        full = [f.detected for f in s.state.fields if f.height_m >= 0.99 * s.settings.field_height_m]
        per_field = float(np.mean(full)) if full else 0.0
        if per_field < 1:
            return rows
        missing = est.n * ((est.rel_half_width / s.rule.target_rel_precision) ** 2 - 1.0)
        frac = margin * max(missing, 0.0) / per_field
        if frac >= 1.0:
            return rows
        return int(min(rows, max(math.ceil(frac * rows), math.ceil(min_fraction * rows))))

    def run(self) -> None:
        s = self.session
        self.choose_frame()
        self.initial_focus()
        if not self.state.get("survey_block"):
            self.survey_more()
        while not s.done():
            best = self.best_field()
            if best is None or best[1] < self.survey_rate():
                if self.survey_more():
                    continue
                if best is None:
                    return
            (x, y), _ = best
            self.prepare_focus(x, y)
            rows = self.rows_needed()
            full = s.settings.shape_px
            s.settings.shape_px = (rows, full[1])
            try:
                s.measure_field(x, y)
            finally:
                s.settings.shape_px = full
            self.adapt_pixel_size()
