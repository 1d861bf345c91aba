"""`spiral`: a square spiral of fields around the start, refocusing with three frames each time.

The hackathon-style search: no survey, but the Bayesian stopping rule ends it.
"""
from __future__ import annotations

from .base import Policy, square_spiral


class SpiralPolicy(Policy):
    name = "spiral"

    def run(self) -> None:
        s = self.session
        self.initial_focus()
        x0, y0 = self.start_xy()
        w, h = s.settings.fov_m, s.settings.field_height_m
        cells = square_spiral(2000)
        while not s.done() and self.state.get("cell", 0) < len(cells):
            c, r = cells[self.state.get("cell", 0)]
            x, y = x0 + c * w, y0 + r * h
            s.goto_field(x, y)
            s.focus()
            s.measure_field(x, y)
            self.state["cell"] = self.state.get("cell", 0) + 1
