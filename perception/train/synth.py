"""Procedural labelled scenes (no twin needed): used for tests, smoke training and as extra
domain randomisation next to twin frames (polarity, morphology and texture the twin may not
cover, e.g. TEM-like dark particles on a bright background).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def _shape_mask(rng: np.random.Generator, r: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A particle footprint in a (size x size) box centred on the box; returns (mask, rim distance)."""
    half = size // 2
    y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    th = np.arctan2(y, x)
    rr = np.hypot(x, y)
    kind = rng.choice(["ellipse", "blob", "polygon"], p=[0.5, 0.3, 0.2])
    aspect = rng.uniform(0.55, 1.0)
    rot = rng.uniform(0, np.pi)
    if kind == "polygon":
        n = int(rng.integers(3, 8))
        phase = rng.uniform(0, 2 * np.pi)
        # polygon radius: r cos(pi/n) / cos((theta - phase) mod (2pi/n) - pi/n)
        seg = np.mod(th - phase, 2 * np.pi / n) - np.pi / n
        rad = r * np.cos(np.pi / n) / np.cos(seg)
        mask = rr <= rad
    else:
        xr = x * np.cos(rot) + y * np.sin(rot)
        yr = -x * np.sin(rot) + y * np.cos(rot)
        re = np.hypot(xr, yr / aspect)
        rad = np.full_like(re, r)
        if kind == "blob":
            for k in range(2, 5):
                rad = rad * (1 + rng.uniform(0, 0.12) * np.cos(k * th + rng.uniform(0, 2 * np.pi)))
        mask = re <= rad
    dist = ndi.distance_transform_edt(mask).astype(np.float32)
    return mask, dist


def synth_scene(rng: np.random.Generator, shape: tuple[int, int] = (256, 256)) -> tuple[np.ndarray, np.ndarray]:
    """One random scene: (image float32 roughly in [0, 1], instance labels int32)."""
    h, w = shape
    labels = np.zeros(shape, np.int32)
    signal = np.zeros(shape, np.float32)
    r_med = float(np.exp(rng.uniform(np.log(3.0), np.log(min(45.0, min(shape) / 4)))))
    cover = rng.uniform(0.05, 0.5)
    n_target = int(cover * h * w / (np.pi * r_med ** 2)) + 1
    n_target = min(n_target, 600)
    clustered = rng.random() < 0.6
    centres: list[tuple[float, float, float]] = []
    bright = rng.uniform(0.4, 1.0)
    edge_gain = rng.uniform(0.0, 0.8)
    nid = 0
    for _ in range(n_target):
        r = float(np.clip(r_med * np.exp(rng.normal(0, 0.3)), 2.0, min(shape) / 3))
        if clustered and centres and rng.random() < 0.7:
            cy, cx, cr = centres[int(rng.integers(len(centres)))]
            ang = rng.uniform(0, 2 * np.pi)
            d = (cr + r) * rng.uniform(0.8, 1.05)
            cy, cx = cy + d * np.sin(ang), cx + d * np.cos(ang)
        else:
            cy, cx = rng.uniform(-r, h + r), rng.uniform(-r, w + r)
        size = int(2 * np.ceil(r * 1.5) + 1)
        mask, dist = _shape_mask(rng, r, size)
        half = size // 2
        y0, x0 = int(round(cy)) - half, int(round(cx)) - half
        ys, xs = slice(max(y0, 0), min(y0 + size, h)), slice(max(x0, 0), min(x0 + size, w))
        if ys.start >= ys.stop or xs.start >= xs.stop:
            continue
        my = slice(ys.start - y0, ys.stop - y0)
        mx = slice(xs.start - x0, xs.stop - x0)
        m = mask[my, mx]
        if m.sum() < 4:
            continue
        nid += 1
        centres.append((cy, cx, r))
        dn = dist[my, mx] / max(dist.max(), 1.0)
        # SE-like look: body brightness with a bright rim (edge effect) and a little shading
        val = bright * rng.uniform(0.8, 1.2) + edge_gain * np.exp(-dn * 6.0) - 0.15 * dn * rng.uniform(-1, 1)
        sub_l, sub_s = labels[ys, xs], signal[ys, xs]
        sub_l[m] = nid
        sub_s[m] = val[m]
    image = _background(rng, shape) + signal
    image = ndi.gaussian_filter(image, _blur(rng))
    if rng.random() < 0.3:
        image = 1.0 - image  # TEM-like: dark particles on bright background
    image = image * rng.uniform(0.3, 1.0) + rng.uniform(0.0, 0.4)
    image = _noise(rng, image)
    return image.astype(np.float32), _relabel(labels)


def _background(rng, shape) -> np.ndarray:
    base = rng.uniform(0.0, 0.35)
    tex = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), rng.uniform(1.0, 20.0))
    tex /= tex.std() + 1e-6
    return base + rng.uniform(0.0, 0.08) * tex


def _blur(rng) -> tuple[float, float]:
    s = rng.uniform(0.0, 2.0) if rng.random() < 0.8 else rng.uniform(2.0, 4.0)
    e = rng.uniform(0.6, 1.0)
    return (s, s * e) if rng.random() < 0.5 else (s * e, s)


def _noise(rng, image: np.ndarray) -> np.ndarray:
    counts = np.exp(rng.uniform(np.log(5.0), np.log(500.0)))  # electrons per pixel at level 1
    img = rng.poisson(np.clip(image, 0, None) * counts).astype(np.float32) / counts
    return img + rng.normal(0, rng.uniform(0, 0.03), image.shape).astype(np.float32)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive ids; occluded fragments that split keep their id (one instance)."""
    ids = np.unique(labels)
    lut = np.zeros(labels.max() + 1, np.int32)
    lut[ids] = np.arange(len(ids), dtype=np.int32)
    return lut[labels]
