"""`expert`: what a careful microscopist scripts.

Survey a 3×3 block of low-magnification frames, detect particles, fit a focus surface from
five sites, visit the most populated fields along a short path, refocus only where the focus
surface is uncertain, and stop with the sequential (Bayesian) rule.
"""
from __future__ import annotations

import numpy as np

from .base import Policy, nearest_neighbour_path
from .fields import field_cells


class ExpertPolicy(Policy):
    name = "expert"

    def plan(self) -> None:
        s = self.session
        x0, y0 = self.start_xy()
        st = s.settings
        sw = st.survey_pixel_size_m * st.survey_shape_px[1]
        sh = st.survey_pixel_size_m * st.survey_shape_px[0]
        for i in range(-1, 2):
            for j in range(-1, 2):
                s.survey(x0 + i * sw, y0 + j * sh)
        cand = field_cells(s.state.sites, (x0, y0), st.fov_m, st.field_height_m, gap_m=st.field_gap_m)
        keep = np.argsort(-cand.count, kind="stable")[:300]
        pts = np.column_stack([cand.x_m[keep], cand.y_m[keep]])
        order = nearest_neighbour_path(pts, (x0, y0)) if len(pts) else []
        self.state["plan"] = [tuple(map(float, pts[k])) for k in order]
        # focus surface from five sites: the four extreme fields and the middle one
        if len(pts):
            picks = {int(np.argmin(pts[:, 0])), int(np.argmax(pts[:, 0])), int(np.argmin(pts[:, 1])),
                     int(np.argmax(pts[:, 1])), int(np.argmin(np.hypot(pts[:, 0] - x0, pts[:, 1] - y0)))}
            self.state["focus_sites"] = [tuple(map(float, pts[k])) for k in sorted(picks)]
        self.state["planned"] = True

    def run(self) -> None:
        s = self.session
        self.initial_focus()
        if not self.state.get("planned"):
            self.plan()
        while self.state.get("focus_sites"):
            x, y = self.state["focus_sites"][0]
            s.goto_field(x, y)
            s.focus()
            self.state["focus_sites"].pop(0)
        plan = self.state["plan"]
        while not s.done() and self.state.get("next", 0) < len(plan):
            x, y = plan[self.state.get("next", 0)]
            if s.focus_uncertain(x, y, tolerance_dof=1.0):
                s.goto_field(x, y)
                s.focus()
            s.measure_field(x, y)
            self.state["next"] = self.state.get("next", 0) + 1
