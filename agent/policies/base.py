"""The policy interface: a policy drives a `Session` until its stopping rule or budget says stop."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ..session import Session


class Policy(ABC):
    """A way to run the experiment. State that must survive a resume lives in `self.state`."""

    name: str = "policy"
    #: options `--policy-option NAME=VALUE` may set (`RunConfig.policy_options`)
    option_names: tuple[str, ...] = ()
    #: the allowed values of word-valued options, and [low, high] of numeric ones
    option_choices: dict[str, tuple[str, ...]] = {}
    option_ranges: dict[str, tuple[float, float]] = {}
    #: the value of each option when it is not given
    option_defaults: dict[str, Any] = {}

    @classmethod
    def check_option(cls, name: str, value: Any) -> Any:
        """`value` if it is allowed for option `name`; ValueError naming what is allowed otherwise."""
        choices = cls.option_choices.get(name)
        if choices is not None:
            if value not in choices:
                raise ValueError(f"policy option {name} = {value!r}: must be one of {', '.join(choices)}")
            return value
        low, high = cls.option_ranges[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"policy option {name} = {value!r}: must be a number in [{low:g}, {high:g}]")
        return value

    @classmethod
    def settings(cls, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every option's value in effect: `option_defaults` overridden by `given`."""
        return {**cls.option_defaults, **dict(given or {})}

    def option(self, name: str) -> Any:
        """Policy option `name` (its `option_defaults` value when not given), checked by `check_option`."""
        return self.check_option(name, self.settings(self.options)[name])

    def __init__(self, session: Session, **options: Any):
        self.session = session
        self.options = options
        self.state = session.state.policy_state

    @abstractmethod
    def run(self) -> None:
        """Acquire until `session.done()` (resumable: continue from `self.state`)."""

    # ---- shared steps -----------------------------------------------------------------------
    fine_initial_focus = True  # False: the first measurement field's refocus serves instead

    def initial_focus(self) -> None:
        """Coarse then fine two-frame focus (survey, then measurement scale) at the start."""
        if self.state.get("initial_focus_done"):
            return
        s = self.session
        pose = s.scope.stage()
        st = s.settings
        s.scope.set_fov_m(st.survey_pixel_size_m * 256)
        s.scope.set_scan(shape_px=(256, 256), dwell_s=st.survey_dwell_s)
        s.focus(method="two_point", coarse=True)
        if self.fine_initial_focus:
            s.goto_field(pose.x_m, pose.y_m)
            s.focus(method="two_point")
        self.state["initial_focus_done"] = True
        self.state["start_xy"] = (pose.x_m, pose.y_m)

    def start_xy(self) -> tuple[float, float]:
        return tuple(self.state.get("start_xy", (0.0, 0.0)))  # type: ignore[return-value]


def serpentine(n_cols: int, n_rows: int) -> list[tuple[int, int]]:
    """Grid indices (col, row) in boustrophedon order, centred on (0, 0)."""
    out = []
    for r in range(n_rows):
        cols = range(n_cols) if r % 2 == 0 else range(n_cols - 1, -1, -1)
        out.extend((c - n_cols // 2, r - n_rows // 2) for c in cols)
    return out


def square_spiral(n: int) -> list[tuple[int, int]]:
    """First n cells of a square spiral around (0, 0)."""
    out = [(0, 0)]
    x = y = 0
    step, d = 1, 0
    dirs = [(1, 0), (0, 1), (-1, 0), (0, -1)]
    while len(out) < n:
        for _ in range(2):
            dx, dy = dirs[d % 4]
            for _ in range(step):
                x, y = x + dx, y + dy
                out.append((x, y))
                if len(out) >= n:
                    return out
            d += 1
        step += 1
    return out


def nearest_neighbour_path(points: np.ndarray, start: tuple[float, float]) -> list[int]:
    """Order of `points` (n, 2) visiting each once greedily from `start` (short travel)."""
    left = list(range(len(points)))
    order, cur = [], np.asarray(start, dtype=float)
    while left:
        d = np.hypot(points[left, 0] - cur[0], points[left, 1] - cur[1])
        k = left.pop(int(np.argmin(d)))
        order.append(k)
        cur = points[k]
    return order


def travel_s(a: tuple[float, float], b: tuple[float, float], speed_m_per_s: float = 1e-3, settle_s: float = 0.5) -> float:
    """Expected stage travel time between two points (s): distance / speed + settle."""
    return math.hypot(b[0] - a[0], b[1] - a[1]) / speed_m_per_s + settle_s
