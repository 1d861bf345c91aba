"""Ground truth of a `TwinMicroscope`: for benchmarks, training data and rewards only.

The agent must never call these functions (it sees only `drivers.Microscope`). Every function
takes the twin explicitly, so any read of ground truth is visible at the call site, and
`access_log(twin)` counts the reads (tests use it to prove an agent run made none).
"""
from __future__ import annotations

import numpy as np

from drivers import Frame

from .microscope import TwinMicroscope
from .specimen import ParticleTable


def _stem(twin: object):
    """The STEM truth module when `twin` is a STEM twin (same function names), else None."""
    if type(twin).__name__ == "StemTwinMicroscope":
        from .stem import truth as stem_truth

        return stem_truth
    return None


def _log(twin: TwinMicroscope, what: str) -> None:
    if not isinstance(twin, TwinMicroscope):
        raise TypeError(f"ground truth needs a TwinMicroscope, got {type(twin).__name__}")
    log = twin.__dict__.setdefault("_truth_reads", [])
    log.append(what)


def access_log(twin: TwinMicroscope) -> list[str]:
    """Names of the ground-truth functions called on `twin`, in order."""
    if _stem(twin) is not None:
        return _stem(twin).access_log(twin)
    return list(twin.__dict__.get("_truth_reads", []))


def particles_in(twin: TwinMicroscope, x0_m: float, y0_m: float, x1_m: float, y1_m: float) -> ParticleTable:
    """Every particle whose centre lies in the stage rectangle (metres)."""
    if _stem(twin) is not None:
        return _stem(twin).particles_in(twin, x0_m, y0_m, x1_m, y1_m)
    _log(twin, "particles_in")
    return twin._specimen.particles_in(min(x0_m, x1_m), min(y0_m, y1_m), max(x0_m, x1_m), max(y0_m, y1_m))


def label_image(twin: TwinMicroscope, frame: Frame | int) -> np.ndarray:
    """Instance label image (int32, 0 = substrate) aligned pixel by pixel with `frame`.

    Includes the frame's drift, jitter and vibration. Only the most recent frames are kept
    (`TwinMicroscope(truth_cache=N)`); older ones raise KeyError.
    """
    if _stem(twin) is not None:
        return _stem(twin).label_image(twin, frame)
    _log(twin, "label_image")
    fid = frame.meta.frame_id if isinstance(frame, Frame) else int(frame)
    rec = twin._records.get(fid)
    if rec is None:
        raise KeyError(
            f"ground truth of frame {fid} is no longer kept (the last {twin._truth_cache} frames are); "
            "read it right after acquire() or raise truth_cache"
        )
    return rec.label.copy()


def label_ids(twin: TwinMicroscope, frame: Frame | int) -> np.ndarray:
    """Particle ids (the specimen's, int64) of the labels present in `frame`, sorted."""
    if _stem(twin) is not None:
        return _stem(twin).label_ids(twin, frame)
    labels = np.unique(label_image(twin, frame))
    return twin._specimen.ids_of_labels(labels[labels > 0])


def focus_wd_m(twin: TwinMicroscope, x_m: float | None = None, y_m: float | None = None) -> float:
    """In-focus working distance (m) at a stage point (default: where the beam is now).

    STEM twins focus with defocus: use `focus_defocus_m`.
    """
    if _stem(twin) is not None:
        raise TypeError("a STEM twin focuses with defocus_m: use twin.truth.focus_defocus_m")
    _log(twin, "focus_wd_m")
    ax, ay = twin._stg.actual[:2]
    return twin._focus_wd_at(ax if x_m is None else x_m, ay if y_m is None else y_m)


def stage_error_m(twin: TwinMicroscope) -> tuple[float, float]:
    """Actual minus reported stage position (x, y) in metres: backlash + repeatability."""
    if _stem(twin) is not None:
        return _stem(twin).stage_error_m(twin)
    _log(twin, "stage_error_m")
    actual, reported = twin._stg.actual, twin._stg.reported
    return (actual[0] - reported[0], actual[1] - reported[1])


def stigmator_correction(twin: TwinMicroscope) -> tuple[float, float]:
    """The stigmator setting that cancels the column's astigmatism."""
    if _stem(twin) is not None:
        return _stem(twin).stigmator_correction(twin)
    _log(twin, "stigmator_correction")
    oc = twin.scenario.optics
    return (oc.intrinsic_astigmatism_m[0] / oc.stigmator_gain_m, oc.intrinsic_astigmatism_m[1] / oc.stigmator_gain_m)


def focus_defocus_m(twin: object, x_m: float | None = None, y_m: float | None = None) -> float:
    """STEM only: the defocus setting (m) that puts the specimen in focus at a stage point."""
    if _stem(twin) is None:
        raise TypeError("an SEM twin focuses with working distance: use twin.truth.focus_wd_m")
    return _stem(twin).focus_defocus_m(twin, x_m, y_m)
