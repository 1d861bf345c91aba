"""`Segmenter`: particle instance segmentation of an SEM frame with an ONNX network (CPU).

The shipped network (perception/models/segmenter.onnx, a ConvNeXt-V2 U-Net) maps a
percentile-normalised frame to three maps (foreground, boundary, centre); `instances`
turns them into labels with a seeded watershed. Any image size is handled by tiling.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

from .calibrate import apply_size_calibration
from ._common import PerceptionInputError, check_image, check_in_range, check_positive, load_record, normalise, onnx_session, resolve_model
from .instances import ParticleTable, maps_to_instances, particle_table, sigmoid
from .occlusion import occluded_area_px
from .significance import MAX_CONTRAST_SNR, ROSE_K, drop_insignificant
from .tiling import predict_tiled


class Segmentation(NamedTuple):
    """Result of `Segmenter.segment`: int32 instance labels (0 = background) and the particle table."""

    labels: np.ndarray
    particles: ParticleTable


def _typical_diameter_px(mask: np.ndarray) -> float:
    """Typical particle diameter from the foreground mask alone (robust to over-segmentation):
    twice the area-weighted median over connected components of their largest inscribed radius
    (the distance-transform maximum; for a cluster of touching particles ~ one particle's radius)."""
    lab, n = ndi.label(mask)
    if n == 0:
        return 0.0
    dist = ndi.distance_transform_edt(mask)
    rmax = np.asarray(ndi.maximum(dist, lab, index=np.arange(1, n + 1)))
    area = np.bincount(lab.ravel())[1:].astype(float)
    order = np.argsort(rmax)
    cum = np.cumsum(area[order])
    return 2.0 * float(rmax[order][np.searchsorted(cum, 0.5 * cum[-1])])


def auto_scale(d_probe_px: float, d_one_px: float, shape: tuple[int, ...], max_px: float = 70.0,
               target_px: float = 24.0, agree: float = 0.2) -> float:
    """Inference scale (<= 1) for particles of unknown size, from two typical diameters in
    full-resolution px: `d_probe_px` seen by a coarse pass (see `Segmenter.segment`) and
    `d_one_px` seen at scale 1 (only consulted when the coarse pass sees large particles).

    1 when the coarse pass sees particles within the network's training range (<= `max_px`),
    or when the pass at scale 1 agrees with it within a factor 1 + `agree` (then the network
    resolves them at full resolution). Otherwise the scale that brings them to `target_px`,
    but not below 64 px on the image's short side.
    """
    for v, name in ((d_probe_px, "d_probe_px"), (max_px, "max_px"), (target_px, "target_px"), (agree, "agree")):
        if not np.isfinite(v) or v < 0:
            raise PerceptionInputError(f"{name} = {v!r}: must be a finite number >= 0 (px)")
    if d_probe_px <= max_px:
        return 1.0
    if np.isfinite(d_one_px) and d_one_px > 0 and abs(np.log(d_one_px / d_probe_px)) <= np.log1p(agree):
        return 1.0
    return float(min(1.0, max(target_px / d_probe_px, 64.0 / min(shape))))


def weighted_confidence(table: ParticleTable) -> float:
    """Area-weighted mean confidence of a particle table (0 for an empty one): how sure the
    network is of what it found, the criterion of ``Segmenter(invert="auto")``."""
    if not len(table):
        return 0.0
    area = np.asarray(table["area_px"], float)
    return float((np.asarray(table["confidence"], float) * area).sum() / max(area.sum(), 1.0))


def upsample_labels(labels: np.ndarray, fg: np.ndarray, shape: tuple[int, ...], fg_thr: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Labels and foreground probability found at a reduced scale, brought to `shape`.

    The probability is interpolated bilinearly on the grid `ndi.zoom` used to reduce the image
    (corners aligned); each particle is then the upsampled probability above `fg_thr` nearest
    to its upsampled label, so outlines against the background follow the interpolated map
    instead of the coarse pixel grid (boundaries between touching particles stay coarse).
    """
    from skimage.segmentation import expand_labels

    zoom = (shape[0] / labels.shape[0], shape[1] / labels.shape[1])
    fg_up = ndi.zoom(fg, zoom, order=1, prefilter=False)
    lab_up = ndi.zoom(labels, zoom, order=0, prefilter=False)
    lab_up = expand_labels(lab_up, distance=float(np.ceil(max(zoom))))
    lab_up[fg_up <= fg_thr] = 0
    return lab_up.astype(np.int32), fg_up


ONE_PASS_TILE = 2048  # px: frames up to this size go through a GRN-free network in one pass


def default_tile(record: dict) -> int:
    """Inference tile (px) for a model: 256 if its network has GRN layers (they normalise over
    the whole input, so the training context of 128-256 px must be kept), else one pass."""
    return 256 if record.get("net", {}).get("grn", True) else ONE_PASS_TILE


class Segmenter:
    """Instance segmentation with an ONNX model.

    model: path to an .onnx file, or None for the shipped model (``int8=True`` picks the
    QDQ-quantised one when shipped). threads: onnxruntime intra-op threads. tile/overlap:
    tiled inference geometry in px (tile None: 256 for networks with GRN, one pass up to 2048
    px for those without). fg_thr/seed_thr: watershed thresholds. min_area_px: smallest
    instance kept. invert: None (network decides), True/False to flip contrast first, or
    "auto": segment both polarities and keep the one whose particles the network is more
    confident of (area-weighted mean confidence; of an empty result, the mean background
    probability). Twice the time; for images of unknown polarity such as TEM bright-field
    panels, not for instruments whose polarity is known.
    auto_max_px, auto_target_px, auto_probe, auto_agree: the rule of ``scale="auto"`` (see
    `auto_scale`; the probe is the coarse pass's scale).
    min_contrast_snr: instances whose contrast SNR against their surroundings is below this are
    dropped (Rose criterion, `perception.significance`; 0 keeps all). white_pct: the intensity
    percentile mapped to 1 before inference (the black point is the 0.5 %). The shipped network
    was trained on crowded 256-px scenes normalised at 99.5 %, where that percentile lies on
    particles; on an acquired frame with sparse particles it lies in the substrate noise, the
    particles saturate and the network splits them and marks noise. 99.9 % keeps the white
    point on particles down to ~0.1 % particle cover (see docs/perception.md). fill_occluded:
    add to each touching particle the area hidden under its neighbours (`perception.occlusion`),
    so that diameters are projected-area-equivalent also in clusters (column `occluded_px`), times
    the calibration's `occluded_gain` (1 without one, or with calibrated=False).
    split_solidity: instances less solid than this (two particles merged through a neck) are
    split on their distance transform (`instances.split_concave`; 0 never splits). Merges lose
    the smaller particle of a touching pair, which biased the mean diameter up by ~1.5 % on
    the dense scenario.
    """

    def __init__(self, model: str | os.PathLike | None = None, *, int8: bool = False, threads: int = 2,
                 tile: int | None = None, overlap: int = 64, fg_thr: float = 0.5, seed_thr: float = 0.3,
                 min_area_px: int = 8, invert: bool | str | None = None, auto_max_px: float = 70.0,
                 auto_target_px: float = 24.0, auto_probe: float = 0.25, auto_agree: float = 0.2,
                 calibrated: bool = True, min_contrast_snr: float = ROSE_K, white_pct: float = 99.9,
                 fill_occluded: bool = True, split_solidity: float = 0.85, merge_solidity: float = 0.88):
        self.model_path = resolve_model(model, "segmenter", int8=int8)
        self.record = load_record(self.model_path)
        self.session = onnx_session(self.model_path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.tile = default_tile(self.record) if tile is None else int(tile)
        if self.tile < 32 or self.tile % 32:
            raise ValueError(f"tile = {tile!r}: must be a multiple of 32 px, at least 32 (or None)")
        self.overlap = int(overlap)
        self.fg_thr, self.seed_thr, self.min_area_px = float(fg_thr), float(seed_thr), int(min_area_px)
        if invert not in (None, True, False, "auto"):
            raise PerceptionInputError(f"invert = {invert!r}: must be None, True, False or 'auto'")
        self.invert = invert
        self.auto_max_px = check_positive(auto_max_px, "auto_max_px", 0.0, 1e4)
        self.auto_target_px = check_positive(auto_target_px, "auto_target_px", 0.0, 1e4)
        self.auto_probe = check_positive(auto_probe, "auto_probe", 0.0, 1.0)
        self.auto_agree = check_in_range(auto_agree, "auto_agree", 0.0, 10.0)
        self.size_calibration = self.record.get("size_calibration") if calibrated else None
        self.min_contrast_snr = check_in_range(min_contrast_snr, "min_contrast_snr", 0.0, MAX_CONTRAST_SNR)
        self.white_pct = check_positive(white_pct, "white_pct", 50.0, 100.0)
        self.fill_occluded = bool(fill_occluded)
        self.occluded_gain = check_in_range((self.size_calibration or {}).get("occluded_gain", 1.0),
                                            f"occluded_gain in {self.model_path.name}'s record", 0.0, 2.0)
        self.split_solidity = check_in_range(split_solidity, "split_solidity", 0.0, 1.0)
        self.merge_solidity = check_in_range(merge_solidity, "merge_solidity", 0.0, 1.0)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch.astype(np.float32, copy=False)})[0]

    def predict_maps(self, image: np.ndarray, invert: bool | None = None) -> np.ndarray:
        """(3, H, W) float32 probabilities: foreground, boundary, centre; `invert` overrides
        the segmenter's own setting ("auto" counts as not inverted here)."""
        img = normalise(check_image(image), hi_pct=self.white_pct)
        if (self.invert is True) if invert is None else invert:
            img = 1.0 - img
        logits = predict_tiled(img, self._run, 3, tile=self.tile, overlap=self.overlap)
        return sigmoid(logits)

    def _labels_at(self, image: np.ndarray, scale: float, invert: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Labels and foreground probability at full resolution, inferring at `scale` x size."""
        if scale == 1.0:
            fg, bd, ct = self.predict_maps(image, invert)
            return maps_to_instances(fg, bd, ct, fg_thr=self.fg_thr, seed_thr=self.seed_thr,
                                     min_area_px=self.min_area_px, split_solidity=self.split_solidity,
                                     merge_solidity=self.merge_solidity), fg
        small = ndi.zoom(normalise(image, hi_pct=self.white_pct), scale, order=1, prefilter=False)
        fg, bd, ct = self.predict_maps(small, invert)
        lab = maps_to_instances(fg, bd, ct, fg_thr=self.fg_thr, seed_thr=self.seed_thr,
                                min_area_px=max(2, int(self.min_area_px * scale * scale)),
                                split_solidity=self.split_solidity, merge_solidity=self.merge_solidity)
        return upsample_labels(lab, fg, image.shape, self.fg_thr)

    def _probe_diameter_px(self, image: np.ndarray, invert: bool | None = None) -> float:
        """Typical particle diameter (full-resolution px) from the foreground of a coarse pass."""
        probe = min(1.0, max(self.auto_probe, 64.0 / min(image.shape)))
        small = ndi.zoom(normalise(image, hi_pct=self.white_pct), probe, order=1, prefilter=False) if probe < 1 else image
        return _typical_diameter_px(self.predict_maps(small, invert)[0] > self.fg_thr) / probe

    def _auto(self, image: np.ndarray, invert: bool | None = None) -> tuple[float, np.ndarray, np.ndarray]:
        """(scale, labels, foreground) with the scale chosen by `auto_scale`."""
        d_probe = self._probe_diameter_px(image, invert)
        labels = fg = None
        d_one = float("nan")
        if d_probe > self.auto_max_px:
            labels, fg = self._labels_at(image, 1.0, invert)
            d_one = _typical_diameter_px(fg > self.fg_thr)
        s = auto_scale(d_probe, d_one, image.shape, self.auto_max_px, self.auto_target_px, self.auto_agree)
        if labels is None or s != 1.0:
            labels, fg = self._labels_at(image, s, invert)
        return s, labels, fg

    def segment(self, image: np.ndarray, pixel_size_m: float, scale: float | str = 1.0) -> Segmentation:
        """Instance labels (int32, same shape as `image`) and a particle table in metres.

        scale: inference resolution relative to the image (e.g. 0.5 halves it), or "auto" for
        particles of unknown size (real images without a known scale): a coarse pass at
        `auto_probe` x size estimates the typical particle diameter; `auto_scale` then keeps
        scale 1 or picks the scale that brings it to `auto_target_px` (the network was trained
        on ~5-70 px particles).
        """
        check_image(image)
        px = check_positive(pixel_size_m, "pixel_size_m", 0.0, 1e-2)
        if scale != "auto":
            scale = check_positive(scale, "scale", 0.0, 4.0)
        if self.invert != "auto":
            return self._segment(image, px, scale)[0]
        (plain, c_plain), (flipped, c_flipped) = (self._segment(image, px, scale, flip) for flip in (False, True))
        return flipped if c_flipped > c_plain else plain

    def _segment(self, image: np.ndarray, px: float, scale: float | str,
                 invert: bool | None = None) -> tuple[Segmentation, float]:
        """The segmentation, and how sure the network is of it: the area-weighted confidence of
        its particles, or for an empty result the mean background probability."""
        if scale == "auto":
            s, labels, fg = self._auto(image, invert)
        else:
            s = float(scale)
            labels, fg = self._labels_at(image, s, invert)
        labels, snr = drop_insignificant(image, labels, self.min_contrast_snr)
        hidden = occluded_area_px(labels) * self.occluded_gain if self.fill_occluded else None
        table = particle_table(labels, px, confidence_map=fg, contrast_snr=snr, occluded_px=hidden)
        sure = weighted_confidence(table) if len(table) else float(1.0 - fg.mean())
        return Segmentation(labels, self._calibrate(table, px, s)), sure

    def _calibrate(self, table: ParticleTable, px: float, scale: float) -> ParticleTable:
        """Subtract the model's outline offset (`perception.calibrate`) from diameters and areas,
        then apply its end-to-end factor (`system_factor`, 1 if absent)."""
        if not self.size_calibration or not len(table):
            return table
        d_inf = table["equivalent_diameter_m"] / px * scale  # diameter in inference pixels
        d = apply_size_calibration(d_inf, self.size_calibration) / scale * px
        d = d * float(self.size_calibration.get("system_factor", 1.0))
        table.columns["equivalent_diameter_m"] = d
        table.columns["area_m2"] = np.pi * d * d / 4.0
        return table

    def __repr__(self) -> str:
        return f"Segmenter(model={Path(self.model_path).name!r}, tile={self.tile}, overlap={self.overlap})"
