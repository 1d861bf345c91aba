"""Instrument clock (simulated seconds) and electron-dose ledger."""
from __future__ import annotations

from drivers.validate import real


class Clock:
    """Simulated instrument time in seconds. ``log`` holds (t_start_s, dt_s, reason) entries
    when ``keep_log`` is true."""

    def __init__(self, start_s: float = 0.0, keep_log: bool = True) -> None:
        self._now = real("start_s", start_s)
        self.keep_log = keep_log
        self.log: list[tuple[float, float, str]] = []

    @property
    def now_s(self) -> float:
        return self._now

    def advance(self, dt_s: float, reason: str = "") -> float:
        """Advance by ``dt_s`` >= 0 seconds; return the new time."""
        dt = real("dt_s", dt_s, (0.0, float("inf")))
        if self.keep_log:
            self.log.append((self._now, dt, reason))
        self._now += dt
        return self._now


class DoseLedger:
    """Running totals of the electron dose delivered to the specimen.

    ``total_dose_e_per_m2`` is the sum of each frame's areal dose (electrons / scanned area),
    i.e. the dose an area would have received had every frame hit it.
    """

    def __init__(self) -> None:
        self.total_electrons = 0.0
        self.total_dose_e_per_m2 = 0.0
        self.entries = 0
        self.last_frame_id: int | None = None

    def add(self, electrons: float, area_m2: float, frame_id: int) -> float:
        """Record ``electrons`` spread over ``area_m2``; return that areal dose (e/m²)."""
        n = real("electrons", electrons, (0.0, float("inf")))
        area = real("area_m2", area_m2, (1e-30, float("inf")))
        dose = n / area
        self.total_electrons += n
        self.total_dose_e_per_m2 += dose
        self.entries += 1
        self.last_frame_id = int(frame_id)
        return dose

    def totals(self) -> dict[str, float]:
        return {"electrons": self.total_electrons, "dose_e_per_m2": self.total_dose_e_per_m2,
                "entries": float(self.entries)}
