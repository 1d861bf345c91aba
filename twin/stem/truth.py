"""Ground truth of a `StemTwinMicroscope`: for benchmarks, training data and rewards only.

The agent must never call these (it sees only `drivers.Microscope`). Every function takes the
twin explicitly and is logged in ``access_log(twin)``, like `twin.truth` for the SEM twin.
"""
from __future__ import annotations

import math

import numpy as np

from drivers import Frame

from .microscope import StemFrameRecord, StemTwinMicroscope
from .optics import c12_from_stigmator
from .specimen import StemParticleTable


def _log(twin: StemTwinMicroscope, what: str) -> None:
    if not isinstance(twin, StemTwinMicroscope):
        raise TypeError(f"STEM ground truth needs a StemTwinMicroscope, got {type(twin).__name__}")
    twin.__dict__.setdefault("_truth_reads", []).append(what)


def access_log(twin: StemTwinMicroscope) -> list[str]:
    """Names of the ground-truth functions called on ``twin``, in order."""
    return list(twin.__dict__.get("_truth_reads", []))


def particles_in(twin: StemTwinMicroscope, x0_m: float, y0_m: float, x1_m: float, y1_m: float) -> StemParticleTable:
    """Every particle whose centre lies in the stage rectangle (m), at its current position."""
    _log(twin, "particles_in")
    return twin._specimen.particles_in(min(x0_m, x1_m), min(y0_m, y1_m), max(x0_m, x1_m), max(y0_m, y1_m))


def atoms_of(twin: StemTwinMicroscope, table: StemParticleTable, k: int) -> tuple[np.ndarray, int]:
    """Atom positions (N, 3) in stage metres (z: height, as ``table.z_m``) and the atomic
    number of particle ``k`` of ``table``."""
    _log(twin, "atoms_of")
    pos, z = twin._specimen.atoms_3d(table, k)
    r, t = 0.5 * float(table.diameter_m[k]), float(table.truncation[k])
    mid = 0.5 * ((-r + 2.0 * r * t) + r)  # sphere-centred z of the particle's mid-plane
    shift = np.array([table.x_m[k], table.y_m[k], float(table.z_m[k]) - mid])
    return pos + shift, z


def _record(twin: StemTwinMicroscope, frame: Frame | int) -> StemFrameRecord:
    fid = frame.meta.frame_id if isinstance(frame, Frame) else int(frame)
    rec = twin._records.get(fid)
    if rec is None:
        raise KeyError(f"ground truth of frame {fid} is no longer kept (the last {twin._truth_cache} frames are); "
                       "read it right after acquire() or raise truth_cache")
    return rec


def frame_particles(twin: StemTwinMicroscope, frame: Frame | int) -> StemParticleTable:
    """The particles near the frame, at their positions when it was acquired."""
    _log(twin, "frame_particles")
    return _record(twin, frame).particles


def label_image(twin: StemTwinMicroscope, frame: Frame | int) -> np.ndarray:
    """Instance labels (int32, 0 = support) aligned pixel by pixel with ``frame``: a pixel is
    labelled k+1 when the point the beam visited (drift, jitter and shift included) lies inside
    the projected outline of particle k of `frame_particles` (larger particles on top)."""
    _log(twin, "label_image")
    rec = _record(twin, frame)
    return _labels(rec)


def label_ids(twin: StemTwinMicroscope, frame: Frame | int) -> np.ndarray:
    """Specimen particle ids (int64) of the labels present in ``frame``, sorted by label."""
    _log(twin, "label_ids")
    rec = _record(twin, frame)
    labels = np.unique(_labels(rec))
    return rec.particles.id[labels[labels > 0] - 1]


def _labels(rec: StemFrameRecord) -> np.ndarray:
    g, tab = rec.grid, rec.particles
    ny, nx = g.shape_px
    p = g.pixel_size_m
    out = np.zeros((ny, nx), dtype=np.int32)
    if len(tab) == 0:
        return out
    best = np.zeros((ny, nx))
    ox, oy = g.origin_m[0] + g.shift_m[0], g.origin_m[1] + g.shift_m[1]
    dx, dy = tab.x_m - ox, tab.y_m - oy
    col = (dx * g.col_step_m[0] + dy * g.col_step_m[1]) / (p * p)
    row = (dx * g.row_step_m[0] + dy * g.row_step_m[1]) / (p * p)
    rad = 0.5 * tab.diameter_m
    half = np.ceil((rad + g.residual_m) / p).astype(np.int64) + 1
    order = np.argsort(rad, kind="stable")
    for h in np.unique(half):
        sel = order[half[order] == h]
        off = np.arange(-h, h + 1)
        rr = np.rint(row[sel]).astype(np.int64)[:, None, None] + off[None, :, None]
        cc = np.rint(col[sel]).astype(np.int64)[:, None, None] + off[None, None, :]
        rr, cc = np.broadcast_arrays(rr, cc)
        ok = (rr >= 0) & (rr < ny) & (cc >= 0) & (cc < nx)
        k = np.broadcast_to(sel[:, None, None], rr.shape)[ok]
        r_, c_ = rr[ok], cc[ok]
        d2 = (g.x_m[r_, c_] - tab.x_m[k]) ** 2 + (g.y_m[r_, c_] - tab.y_m[k]) ** 2
        inside = d2 <= rad[k] ** 2
        r_, c_, k = r_[inside], c_[inside], k[inside]
        top = rad[k] >= best[r_, c_]
        # Within one group several particles may claim a pixel: the larger radius wins.
        srt = np.lexsort((rad[k][top],))
        r2, c2, k2 = r_[top][srt], c_[top][srt], k[top][srt]
        out[r2, c2] = (k2 + 1).astype(np.int32)
        best[r2, c2] = rad[k2]
    return out


def focus_defocus_m(twin: StemTwinMicroscope, x_m: float | None = None, y_m: float | None = None) -> float:
    """The defocus setting (m) that focuses on the support at a stage point (default: under
    the beam now, ignoring beam shift)."""
    _log(twin, "focus_defocus_m")
    ax, ay = twin._stg.actual[:2]
    return twin._focus_defocus_at(ax if x_m is None else x_m, ay if y_m is None else y_m)


def defocus_error_m(twin: StemTwinMicroscope, frame: Frame | int | None = None) -> float:
    """Effective defocus Δf (m, = −C10) on the specimen: of ``frame`` if given, else now."""
    _log(twin, "defocus_error_m")
    if frame is not None:
        return _record(twin, frame).defocus_error_m
    ax, ay = twin._stg.actual[:2]
    return twin._defocus_m - twin._focus_defocus_at(ax, ay)


def stigmator_correction(twin: StemTwinMicroscope) -> tuple[float, float]:
    """The stigmator setting that cancels the column's two-fold astigmatism (C12 = 0)."""
    _log(twin, "stigmator_correction")
    oc = twin.scenario.optics
    return (oc.intrinsic_c12_m[0] / oc.stigmator_gain_m, oc.intrinsic_c12_m[1] / oc.stigmator_gain_m)


def c12_m(twin: StemTwinMicroscope) -> tuple[float, float]:
    """Residual two-fold astigmatism (C12 magnitude in m, angle φ12 in rad) at the current stigmator."""
    _log(twin, "c12_m")
    a, b = c12_from_stigmator(twin.scenario.optics, twin._stig)
    return (math.hypot(a, b), 0.5 * math.atan2(b, a))


def stage_error_m(twin: StemTwinMicroscope) -> tuple[float, float]:
    """Actual minus reported stage position (x, y) in metres: backlash + repeatability."""
    _log(twin, "stage_error_m")
    actual, reported = twin._stg.actual, twin._stg.reported
    return (actual[0] - reported[0], actual[1] - reported[1])


def noise_free(twin: StemTwinMicroscope, frame: Frame | int, detector: str | None = None) -> np.ndarray:
    """Noise-free detector fraction (float32) of ``frame``: its scan positions, probe, high
    voltage and current, with the specimen as it is now (damage since included). ``detector``
    defaults to the frame's (for tests and training targets)."""
    _log(twin, "noise_free")
    rec = _record(twin, frame)
    name = detector or (frame.meta.detector if isinstance(frame, Frame) else twin._detector)
    frac, _, _ = twin.expected_fraction(rec.grid, twin._detectors[name], rec.aberrations, rec.high_voltage_v,
                                        rec.beam_current_a)
    return frac
