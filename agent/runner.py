"""Run one autonomous experiment and write its run directory (see DESIGN.md, "Data on disk").

Layout: ``frames/*.tif``, ``particles.csv``, ``journal.jsonl``, ``summary.json``,
``report.html`` and ``checkpoint.pkl``. The checkpoint is written after every measured
field; `resume_experiment` continues from it, so a killed run loses nothing and counts no
particle twice (fields acquired after the last checkpoint are measured again). On the twin
the checkpoint holds the simulated instrument too, so a resumed run is identical to an
uninterrupted one.
"""
from __future__ import annotations

import csv
import json
import math
import os
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from drivers import Frame, Microscope

from .belief import StoppingRule
from .frames_io import write_frame
from .journal import Journal, JournaledMicroscope
from .policies import policy_class
from .session import Budget, MeasureSettings, Session, SessionState

CHECKPOINT_VERSION = 1


@dataclass
class RunConfig:
    """What to run: policy, target, budgets and where to write (SI units)."""

    out: str
    policy: str = "bayes"
    driver: str = "twin"
    scenario: str | None = "default"
    seed: int | None = None
    target_rel_precision: float = 0.02
    credibility: float = 0.95
    per_mode: bool = False
    budget: Budget = field(default_factory=Budget)
    settings: MeasureSettings = field(default_factory=MeasureSettings)
    save_frames: bool = True
    policy_options: dict[str, Any] = field(default_factory=dict)


class RunDirectory:
    """Paths of one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.frames = self.root / "frames"
        self.journal = self.root / "journal.jsonl"
        self.particles = self.root / "particles.csv"
        self.summary = self.root / "summary.json"
        self.report = self.root / "report.html"
        self.checkpoint = self.root / "checkpoint.pkl"

    def create(self, resume: bool) -> None:
        if not resume and self.journal.exists():
            raise FileExistsError(f"{self.root} already holds a run; use --resume {self.root} or another --out")
        self.frames.mkdir(parents=True, exist_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_particles(path: Path, rows: list[dict]) -> None:
    """particles.csv: one row per unique particle, stage position (m) and diameter (m)."""
    cols = ["particle", "x_m", "y_m", "diameter_m", "frame_id", "confidence"]
    lines = [",".join(cols)]
    for r in rows:
        lines.append(",".join(f"{r.get(c, '')}" if not isinstance(r.get(c), float) else f"{r[c]:.9g}" for c in cols))
    _atomic_write(path, ("\n".join(lines) + "\n").encode())


def read_particles(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return [dict(r) for r in csv.DictReader(fh)]


class Experiment:
    """One experiment: a driver, a session, a policy and the run directory."""

    def __init__(self, cfg: RunConfig, scope: Microscope, segmenter: Any, state: SessionState | None = None,
                 resume: bool = False, progress: bool = True, on_field: Callable[[Session], None] | None = None,
                 policy_kwargs: dict[str, Any] | None = None, estimator: Any = None):
        self.cfg = cfg
        self.raw_scope = scope
        self.dir = RunDirectory(cfg.out)
        self.dir.create(resume)
        self.journal = Journal(self.dir.journal)
        self.scope = JournaledMicroscope(scope, self.journal, on_frame=self._save_frame)
        rule = StoppingRule(cfg.target_rel_precision, cfg.credibility, per_mode=cfg.per_mode)
        self.session = Session(self.scope, segmenter, rule, cfg.budget, cfg.settings, on_update=self._on_field,
                               state=state, estimator=estimator)  # type: ignore[arg-type]
        self.policy = policy_class(cfg.policy)(self.session, **cfg.policy_options, **(policy_kwargs or {}))
        self.on_field = on_field
        self.progress = _Progress(enabled=progress)
        self.started = time.time()

    def _save_frame(self, frame: Frame) -> None:
        if self.cfg.save_frames:
            write_frame(self.dir.frames / f"{frame.meta.frame_id:05d}_{self.session.purpose}.tif", frame)

    def _on_field(self, session: Session) -> None:
        if self.on_field is not None:
            self.on_field(session)  # test hook: may raise to simulate a crash before the checkpoint
        self.checkpoint()
        self.progress.update(session)

    def checkpoint(self) -> None:
        """Write particles.csv and checkpoint.pkl atomically (after every field)."""
        write_particles(self.dir.particles, self.session.catalog.rows)
        blob = {"version": CHECKPOINT_VERSION, "config": self.cfg, "state": self.session.state,
                "scope": self.raw_scope if getattr(self.raw_scope, "checkpointable", False) else None}
        _atomic_write(self.dir.checkpoint, pickle.dumps(blob))

    def run(self) -> dict[str, Any]:
        self.journal.write("start", config=asdict(self.cfg), status=self.raw_scope.status())
        try:
            self.policy.run()
        finally:
            self.progress.close()
        self.checkpoint()
        summary = self.summary()
        _atomic_write(self.dir.summary, json.dumps(summary, indent=2).encode())
        self.journal.write("stop", summary=summary)
        self.journal.close()
        return summary

    def summary(self) -> dict[str, Any]:
        s = self.session
        est = s.estimate() if len(s.catalog) >= 2 else s.state.last_estimate
        st = self.raw_scope.status()
        return {
            "policy": self.cfg.policy,
            "policy_settings": type(self.policy).settings(self.cfg.policy_options),  # defaults included
            "driver": self.cfg.driver,
            "scenario": self.cfg.scenario,
            "seed": self.cfg.seed,
            "target_rel_precision": self.cfg.target_rel_precision,
            "credibility": self.cfg.credibility,
            "target_reached": bool(est is not None and s.rule.reached(est)),
            "mean_diameter_m": None if est is None or not math.isfinite(est.mean_m) else est.mean_m,
            "credible_interval_m": None if est is None else [est.lo_m, est.hi_m],
            "rel_half_width": None if est is None else est.rel_half_width,
            "model": None if est is None else est.model,
            "modes": [] if est is None else [dict(zip(("weight", "mean_m", "lo_m", "hi_m"), m)) for m in est.modes],
            "particle_count": len(s.catalog),
            "fields": len(s.state.fields),
            "instrument_s": st.instrument_time_s,
            "electrons": st.total_electrons,
            "frames_by_type": dict(s.state.frames_by_type),
            "focus_calls": len(s.state.focus_results),
            "focus_frames_per_refocus": (s.state.frames_by_type.get("focus", 0) / len(s.state.focus_results)
                                         if s.state.focus_results else 0.0),
            "pixel_size_m": s.settings.pixel_size_m,
            "wall_s": time.time() - self.started,
        }


class _Progress:
    """tqdm bar: particles measured, credible interval, instrument time and dose."""

    def __init__(self, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(desc="particles", unit=" p", dynamic_ncols=True)

    def update(self, s: Session) -> None:
        if self.bar is None:
            return
        est = s.state.last_estimate
        self.bar.n = len(s.catalog)
        ci = f"±{100 * est.rel_half_width:.1f}%" if est is not None and math.isfinite(est.rel_half_width) else "±∞"
        mean = f"{est.mean_m * 1e9:.1f} nm" if est is not None and math.isfinite(est.mean_m) else "–"
        st = s.scope.status()
        self.bar.set_postfix_str(f"mean {mean} {ci} | {st.instrument_time_s:.0f} s | {st.total_electrons:.2e} e⁻")
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def load_checkpoint(out: str | Path) -> dict[str, Any]:
    """Read a run directory's checkpoint (raises with a clear message if absent/corrupt)."""
    path = RunDirectory(out).checkpoint
    if not path.is_file():
        raise FileNotFoundError(f"{out}: no checkpoint.pkl; not an emtwin run directory or nothing measured yet")
    try:
        blob = pickle.loads(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - corrupt file of any kind
        raise ValueError(f"{path}: unreadable checkpoint ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {blob.get('version') if isinstance(blob, dict) else '?'} "
                         f"is not {CHECKPOINT_VERSION}")
    return blob
