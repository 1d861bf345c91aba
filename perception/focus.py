"""Focus: classical sharpness metrics and a learned two-frame focus/stigmation estimator.

Sharpness metrics (larger = sharper; all invariant to a global intensity gain):
- normalised variance  var(I) / mean(I)^2 (Groen et al., Cytometry 6 (1985) 81)
- Brenner              mean((I[x+2] - I[x])^2) / mean(I)^2 (Brenner et al., J. Histochem. Cytochem. 1976)
- Tenengrad            mean(|Sobel I|^2) / mean(I)^2 (Krotkov, IJCV 1 (1988) 223)
- spectral energy      fraction of the non-DC power between 0.15 and 0.5 cycles/px

The learned estimator follows the DeepFocus idea (Schubert et al., Nat. Commun. 15 (2024)
"DeepFocus: fast focus and astigmatism correction for electron microscopy"): acquire two
frames at working distance WD - delta and WD + delta, and let a small network predict the
working-distance error (in depth-of-field units, converted to metres) and the stigmator
correction; apply and repeat. Here the network is an MLP on spectral features of the pair
(`focus_features`), exported to ONNX by `perception/train/focus_train.py`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ._common import PerceptionInputError, check_image, check_positive, load_record, onnx_session, resolve_model


def _prep(image: np.ndarray) -> np.ndarray:
    img = check_image(image).astype(np.float64)
    m = img.mean()
    if m <= 0:
        img = img - img.min() + 1.0
        m = img.mean()
    return img / m


def normalised_variance(image: np.ndarray) -> float:
    """var(I) / mean(I)^2 (dimensionless)."""
    img = _prep(image)
    return float(img.var())


def brenner(image: np.ndarray) -> float:
    """Brenner gradient along rows and columns, step 2 px, over mean(I)^2."""
    img = _prep(image)
    gx = img[:, 2:] - img[:, :-2]
    gy = img[2:, :] - img[:-2, :]
    return float(0.5 * ((gx ** 2).mean() + (gy ** 2).mean()))


def tenengrad(image: np.ndarray) -> float:
    """Mean squared Sobel gradient magnitude over mean(I)^2."""
    img = _prep(image)
    gx = ndi.sobel(img, axis=1, mode="reflect")
    gy = ndi.sobel(img, axis=0, mode="reflect")
    return float((gx ** 2 + gy ** 2).mean())


def spectral_energy(image: np.ndarray, f_lo: float = 0.15, f_hi: float = 0.5) -> float:
    """Share of the non-DC power spectrum between f_lo and f_hi cycles/px (Hann-windowed)."""
    img = _prep(image)
    img = img - img.mean()
    win = np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1]))
    p = np.abs(np.fft.rfft2(img * win)) ** 2
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.rfftfreq(img.shape[1])[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    total = p[f > 0].sum()
    if total <= 0:
        return 0.0
    return float(p[(f >= f_lo) & (f <= f_hi)].sum() / total)


SHARPNESS = {
    "normalised_variance": normalised_variance,
    "brenner": brenner,
    "tenengrad": tenengrad,
    "spectral_energy": spectral_energy,
}


def sharpness(image: np.ndarray, method: str = "tenengrad") -> float:
    """Sharpness of `image` by `method` (one of SHARPNESS)."""
    if method not in SHARPNESS:
        raise PerceptionInputError(f"method = {method!r}: must be one of {', '.join(SHARPNESS)}")
    return SHARPNESS[method](image)


@dataclass(frozen=True)
class FocusEstimate:
    """Prediction from one +/- delta frame pair.

    wd_error_dof: WD - WD_focus in depths of field; astig_dof: residual astigmatism (x, y) in
    depths of field. Apply: working distance += `wd_correction_m`; stigmator (x, y) +=
    `stigmator_correction` (instrument stigmator units, via `stigmator_gain_m`).
    """

    wd_error_dof: float
    astig_dof: tuple[float, float]
    wd_correction_m: float
    stigmator_correction: tuple[float, float]


#: Edges of the radial frequency rings of the focus features, in units of 1/64 cycles/px (up to Nyquist).
RING_EDGES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 19, 22, 26, 32)
_CLIP_DOF = 12.0  # spectral-fit inputs are clipped to +/- this many DoF


def _ring_geometry(win: int, edges: tuple[float, ...]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Ring masks, cos 2theta, sin 2theta and the noise-floor mask on the rfft2 grid of a win x win window.

    theta is the angle of (f_col, f_row) with rows pointing down, as in `spectral_focus_estimate`.
    """
    fy = np.fft.fftfreq(win)[:, None] * np.ones((1, win // 2 + 1))
    fx = np.fft.rfftfreq(win)[None, :] * np.ones((win, 1))
    k = np.hypot(fx, fy) * win
    th = np.arctan2(fy, fx)
    rings = [(k >= lo) & (k < hi) for lo, hi in zip(edges[:-1], edges[1:])]
    return rings, np.cos(2 * th), np.sin(2 * th), k > 0.42 * win


def _frame_features(p: np.ndarray, rings: list[np.ndarray], c2: np.ndarray, s2: np.ndarray, hi: np.ndarray,
                    norm: float) -> np.ndarray:
    """One frame's block: log SNR per ring, quadrupole moments (cos 2theta, sin 2theta) of the power per
    ring, and log of the white-noise variance per pixel (relative to mean^2)."""
    noise = max(float(np.median(p[hi])), 1e-30)
    snr = [np.log(max(p[r].mean(), 1e-30) / noise) for r in rings]
    cq = [float((p[r] * c2[r]).sum() / max(p[r].sum(), 1e-30)) for r in rings]
    sq = [float((p[r] * s2[r]).sum() / max(p[r].sum(), 1e-30)) for r in rings]
    return np.array([*snr, *cq, *sq, np.log(noise / norm)])


def focus_features(minus: np.ndarray, plus: np.ndarray, delta_dof: float = 2.0, win: int = 64,
                   spectral: bool = True) -> np.ndarray:
    """Scene-independent features of a WD -/+ delta frame pair (float32 vector, see `feature_layout`).

    Per frame (Welch spectra as in `spectral_focus_estimate`, both frames scaled by their joint
    mean): log(P / noise) in the rings `RING_EDGES` (the blur's radial OTF: how far the signal
    reaches, where the Airy-like zeros of the defocus disk fall), the quadrupole moments
    <cos 2theta>, <sin 2theta> of the power in each ring (the blur ellipse's orientation,
    i.e. astigmatism) and the log noise variance per pixel (dose). With `spectral`, the classical
    fit (e, ax, ay) clipped to +/- 12 DoF (0 when it fails) and a validity flag are appended.
    """
    if int(win) != win or win < 64:
        raise PerceptionInputError(f"win = {win!r}: must be an integer >= 64 px (every ring needs samples)")
    win = int(win)
    a = check_image(minus, "minus").astype(np.float64)
    b = check_image(plus, "plus").astype(np.float64)
    if a.shape != b.shape:
        raise PerceptionInputError(f"plus shape = {b.shape}: must equal minus shape {a.shape}")
    if min(a.shape) < win:
        raise PerceptionInputError(f"frame shape = {a.shape}: each side must be >= {win} px (the spectral window)")
    scale = 0.5 * (a.mean() + b.mean())
    scale = scale if abs(scale) > 1e-12 else 1.0
    rings, c2, s2, hi = _ring_geometry(win, tuple(e * win / 64 for e in RING_EDGES))
    norm = float(np.hanning(win) @ np.hanning(win)) ** 2  # Welch power of unit-variance white noise
    blocks = [_frame_features(_welch_power(x / scale, win), rings, c2, s2, hi, norm) for x in (a, b)]
    if spectral:
        est = np.array(spectral_focus_estimate(minus, plus, delta_dof, win))
        ok = bool(np.isfinite(est).all())
        blocks.append(np.append(np.clip(est, -_CLIP_DOF, _CLIP_DOF) if ok else np.zeros(3), float(ok)))
    return np.concatenate(blocks).astype(np.float32)


def feature_layout(n_rings: int = len(RING_EDGES) - 1, spectral: bool = True) -> dict[str, np.ndarray]:
    """Indices into the `focus_features` vector: per-frame blocks, quadrupole moments, spectral fit."""
    blk = 3 * n_rings + 1
    idx = np.arange(blk)
    out = {"minus": idx, "plus": idx + blk,
           "cos2": np.concatenate([idx[n_rings:2 * n_rings], idx[n_rings:2 * n_rings] + blk]),
           "sin2": np.concatenate([idx[2 * n_rings:3 * n_rings], idx[2 * n_rings:3 * n_rings] + blk]),
           "n_features": np.array(2 * blk + (4 if spectral else 0))}
    if spectral:
        out["spectral"] = np.arange(2 * blk, 2 * blk + 3)  # e, ax, ay; then the validity flag
    return out


def symmetry_group(layout: dict[str, np.ndarray], full: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact symmetries of the two-frame problem as (perm (G, F), input signs (G, F), output signs (G, 3)).

    Swapping the frames maps (e, ax, ay) -> (-e, -ax, -ay) (blur radii |e -/+ delta| swap and the
    ellipse turns by 90 degrees). With `full`, also mirror images: a column flip negates the
    sin 2theta moments and ay, a transpose negates the cos 2theta moments and ax. A model
    f(x) = mean_g s_out(g) f(g x) is then exactly equivariant. x' = x[perm] * sign_in.
    """
    n = int(layout["n_features"])
    sp = layout.get("spectral")
    swap = np.arange(n)
    swap[layout["minus"]], swap[layout["plus"]] = layout["plus"], layout["minus"]
    mirrors = [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)] if full else [(1.0, 1.0)]
    perms, s_in, s_out = [], [], []
    for sw in (False, True):
        for cx, sy in mirrors:
            sig = np.ones(n)
            sig[layout["cos2"]] *= cx
            sig[layout["sin2"]] *= sy
            out = np.array([1.0, cx, sy])
            if sp is not None:
                sig[sp] *= out
            if sw:
                out = -out
                if sp is not None:
                    sig[sp] *= -1.0
            perms.append(swap if sw else np.arange(n))
            s_in.append(sig)
            s_out.append(out)
    return np.stack(perms), np.stack(s_in).astype(np.float32), np.stack(s_out).astype(np.float32)


class FocusEstimator:
    """Two-frame focus and astigmatism estimator: spectral features + a small ONNX MLP.

    `estimate(minus, plus, depth_of_field_m)` takes frames acquired at WD - delta and
    WD + delta (delta = `delta_m(dof)`, `record['delta_dof']` depths of field) and returns the
    correction for the centre WD. `focus_features` summarises the pair (any frame size with
    sides >= the window, `record['win']` px); the network maps them to (e, ax, ay) and is
    exactly antisymmetric under swapping the frames. `stigmator_gain_m`: metres of astigmatism
    per stigmator unit (default: the value recorded with the model, the twin's). `max_crops`
    is accepted for compatibility and unused (the Welch spectra average over the whole frame).
    """

    def __init__(self, model: str | os.PathLike | None = None, threads: int = 1, max_crops: int = 16,
                 stigmator_gain_m: float | None = None):
        self.model_path = resolve_model(model, "focus")
        self.record = load_record(self.model_path)
        if "features" not in self.record:
            raise PerceptionInputError(f"model = {self.model_path}: its JSON record has no 'features' entry "
                                       "(a pre-feature CNN model?); retrain with `emtwin train focus`")
        feat = self.record["features"]
        self.win = int(feat.get("win", 64))
        self.spectral_input = bool(feat.get("spectral", True))
        self.session = onnx_session(self.model_path, threads)
        self.max_crops = int(max_crops)
        self.delta_dof = float(self.record.get("delta_dof", 2.0))
        gain = stigmator_gain_m if stigmator_gain_m is not None else self.record.get("stigmator_gain_m", 2e-6)
        self.stigmator_gain_m = check_positive(gain, "stigmator_gain_m", 0.0, 1.0)

    def delta_m(self, depth_of_field_m: float) -> float:
        """The +/- working-distance step, in metres, that the model expects."""
        return self.delta_dof * check_positive(depth_of_field_m, "depth_of_field_m", 0.0, 1.0)

    def features(self, minus: np.ndarray, plus: np.ndarray) -> np.ndarray:
        """`focus_features` of the pair with this model's settings."""
        return focus_features(minus, plus, self.delta_dof, self.win, self.spectral_input)

    def predict_raw(self, minus: np.ndarray, plus: np.ndarray) -> np.ndarray:
        """Network output (wd_error_dof, astig_x_dof, astig_y_dof), float32 (3,)."""
        x = self.features(minus, plus)[None]
        return self.session.run(None, {self.session.get_inputs()[0].name: x})[0][0]

    def estimate(self, minus: np.ndarray, plus: np.ndarray, depth_of_field_m: float) -> FocusEstimate:
        """Correction for the centre working distance, from frames at WD -/+ delta."""
        dof = check_positive(depth_of_field_m, "depth_of_field_m", 0.0, 1.0)
        e, ax, ay = (float(v) for v in self.predict_raw(minus, plus))
        g = self.stigmator_gain_m
        # residual astigmatism = intrinsic - gain * stigmator, so adding a/gain cancels it
        return FocusEstimate(wd_error_dof=e, astig_dof=(ax, ay), wd_correction_m=-e * dof,
                             stigmator_correction=(ax * dof / g, ay * dof / g))


def _welch_power(img: np.ndarray, win: int) -> np.ndarray:
    win = min(win, *img.shape)
    win -= win % 2
    hann = np.outer(np.hanning(win), np.hanning(win))
    acc, n = 0.0, 0
    for y in range(0, img.shape[0] - win + 1, win // 2):
        for x in range(0, img.shape[1] - win + 1, win // 2):
            p = img[y:y + win, x:x + win]
            acc = acc + np.abs(np.fft.rfft2((p - p.mean()) * hann)) ** 2
            n += 1
    return acc / max(n, 1)


def spectral_focus_estimate(minus: np.ndarray, plus: np.ndarray, delta_dof: float = 2.0, win: int = 64,
                            snr_min: tuple[float, ...] = (3.0, 1.5, 0.7)) -> tuple[float, float, float]:
    """Classical two-frame estimate of (defocus e, astigmatism ax, ay), all in depths of field.

    Physics (geometric blur, DoF = pixel / alpha): at defocus e (DoF) with astigmatism A the blur
    is a uniform ellipse with semi-axes |e +/- A/2| px, whose second moments are (semi-axis)^2 / 4.
    Between the frames at e - delta and e + delta the blur covariance changes by
    D = delta [[e + ax/2, -ay/2], [-ay/2, e - ax/2]] (image columns, rows; rows point to -y), and
    log(P_plus / P_minus)(f) = c - 4 pi^2 f^T D f: the unknown scene spectrum cancels. D is fitted
    by least squares over frequencies where both noise-subtracted spectra exceed `snr_min` x noise
    (the first threshold of `snr_min` that leaves >= 12 frequencies). NaN when none does (a
    field without structure: move to another field).
    """
    a = check_image(minus, "minus").astype(np.float64)
    b = check_image(plus, "plus").astype(np.float64)
    if a.shape != b.shape:
        raise PerceptionInputError(f"plus shape = {b.shape}: must equal minus shape {a.shape}")
    d = check_positive(delta_dof, "delta_dof", 0.0, 100.0)
    scale = 0.5 * (a.mean() + b.mean()) or 1.0
    pa, pb = _welch_power(a / scale, win), _welch_power(b / scale, win)
    h = pa.shape[0]
    fy = np.fft.fftfreq(h)[:, None] * np.ones((1, pa.shape[1]))
    fx = np.fft.rfftfreq(h)[None, :] * np.ones((h, 1))
    f = np.hypot(fx, fy)
    hi = f > 0.42
    na, nb = np.median(pa[hi]), np.median(pb[hi])
    sa, sb = pa - na, pb - nb
    k = -4 * np.pi ** 2
    est = None
    f_max = 0.4
    for _ in range(4):  # refit inside the OTF main lobe of the more blurred frame
        band = (f > 1.5 / h) & (f < f_max)
        for thr in snr_min:
            sel = band & (sa > thr * na) & (sb > thr * nb)
            if sel.sum() >= 12:
                break
        else:
            break
        y = np.log(sb[sel] / sa[sel])
        design = np.stack([np.ones(sel.sum()), k * fx[sel] ** 2, k * 2 * fx[sel] * fy[sel], k * fy[sel] ** 2], 1)
        w = np.sqrt(np.minimum(sa[sel] / na, sb[sel] / nb))  # trust strong frequencies more
        coef, *_ = np.linalg.lstsq(design * w[:, None], y * w, rcond=None)
        dxx, dxy, dyy = coef[1:]
        est = ((dxx + dyy) / (2 * d), (dxx - dyy) / d, -2 * dxy / d)
        # 2 J1(x)/x ~ exp(-x^2/8) holds for x = 2 pi f R < ~2 (R = largest blur semi-axis, px)
        r_max = max(abs(est[0] - d), abs(est[0] + d)) + 0.5 * float(np.hypot(est[1], est[2]))
        new_max = min(0.4, 2.0 / (2 * np.pi * max(r_max, 1e-3)))
        if abs(new_max - f_max) < 0.01:
            break
        f_max = new_max
    if est is None:
        return float("nan"), float("nan"), float("nan")
    return tuple(float(v) for v in est)


class SpectralFocusEstimator:
    """`FocusEstimator`'s interface on top of `spectral_focus_estimate` (no model file).

    estimate() returns NaN corrections when the field has no usable structure.
    """

    def __init__(self, delta_dof: float = 2.0, stigmator_gain_m: float = 2e-6, win: int = 64):
        self.delta_dof = check_positive(delta_dof, "delta_dof", 0.0, 100.0)
        self.stigmator_gain_m = check_positive(stigmator_gain_m, "stigmator_gain_m", 0.0, 1.0)
        self.win = int(win)

    def delta_m(self, depth_of_field_m: float) -> float:
        return self.delta_dof * check_positive(depth_of_field_m, "depth_of_field_m", 0.0, 1.0)

    def estimate(self, minus: np.ndarray, plus: np.ndarray, depth_of_field_m: float) -> FocusEstimate:
        dof = check_positive(depth_of_field_m, "depth_of_field_m", 0.0, 1.0)
        e, ax, ay = spectral_focus_estimate(minus, plus, self.delta_dof, self.win)
        g = self.stigmator_gain_m
        return FocusEstimate(wd_error_dof=e, astig_dof=(ax, ay), wd_correction_m=-e * dof,
                             stigmator_correction=(ax * dof / g, ay * dof / g))
