"""`oracle`: the physical-limit reference for benchmarks. It reads twin ground truth.

It knows where every particle is and the in-focus working distance everywhere, so it
spends no time surveying or focusing; otherwise it chooses fields like `bayes`. Only the
benchmark runner constructs it, passing a ground-truth accessor.
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..survey import Sites
from .bayes import BayesPolicy


class Truth(Protocol):
    def particles(self, x0: float, y0: float, x1: float, y1: float) -> Any: ...
    def focus_wd_m(self, x: float, y: float) -> float: ...


class OraclePolicy(BayesPolicy):
    name = "oracle"
    # its sites are every true particle, so ranking fields by yield does not favour any size
    option_defaults = {**BayesPolicy.option_defaults, "field_choice": "yield"}

    def __init__(self, session: Any, truth: Truth | None = None, **options: Any):
        if truth is None:
            raise ValueError("policy 'oracle' reads ground truth: it runs only on the twin (emtwin bench or --driver twin)")
        super().__init__(session, **options)
        self.truth = truth
        self._sites: Sites | None = None
        self._block = 0

    def initial_focus(self) -> None:
        pose = self.session.scope.stage()
        self.state.setdefault("start_xy", (pose.x_m, pose.y_m))
        self.state["initial_focus_done"] = True

    def sites(self) -> Sites:
        if self._sites is None:
            self.survey_more()
        return self._sites  # type: ignore[return-value]

    def survey_more(self) -> bool:
        """Reveal the true particles of a growing square around the start (costs nothing)."""
        self._block += 1
        if self._block > 40:
            return False
        x0, y0 = self.start_xy()
        half = 25e-6 * self._block
        p = self.truth.particles(x0 - half, y0 - half, x0 + half, y0 + half)
        x, y, d = np.asarray(p.x_m), np.asarray(p.y_m), np.asarray(p.diameter_m)
        self._sites = Sites(x, y, np.pi * d**2 / 4)
        self.state["survey_block"] = self._block
        return True

    def survey_rate(self) -> float:
        return 0.0 if self._block < 40 else -1.0

    def prepare_focus(self, x: float, y: float) -> None:
        self.session.scope.set_working_distance_m(self.truth.focus_wd_m(x, y))

    def detection_ratio(self) -> float:
        return 1.0

    def run(self) -> None:
        s = self.session
        self.choose_frame()
        self.initial_focus()
        while not s.done():
            best = self.best_field()
            if best is None:
                if not self.survey_more():
                    return
                continue
            (x, y), _ = best
            s.goto_field(x, y)
            self.prepare_focus(x, y)
            s.measure_field(x, y)
            self.adapt_pixel_size()
