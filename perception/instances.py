"""From network maps to instances: seeded watershed, and the particle table.

Network outputs (after sigmoid): foreground probability, boundary probability (the instance
rim, thick where particles touch) and a centre map (distance to the instance edge divided by
the instance's maximum distance: 1 at the centre, 0 at the rim). Seeds are the cores
(centre > `seed_thr`, not boundary); a watershed on the negated centre map grows them within
the foreground mask, which splits touching particles along their contact line.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import regionprops
from skimage.segmentation import watershed


def crops_pay(slices: list, shape: tuple[int, ...], margin_px: int, overhead_px: float = 2000.0) -> bool:
    """True when working object by object in boxes grown by `margin_px` costs less than one
    pass over the frame: the boxes' total area plus a fixed cost per object (the Python loop,
    worth about `overhead_px` pixels of filtering) is below the frame's area."""
    area = overhead_px * len(slices)
    for sl in slices:
        if sl is not None:
            area += np.prod([min(n, s.stop + margin_px) - max(0, s.start - margin_px) for s, n in zip(sl, shape)])
    return area < np.prod(shape)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function as float32, 0.5 (1 + tanh(x / 2)), computed in place on one copy."""
    y = np.multiply(x, 0.5, dtype=np.float32)
    np.tanh(y, out=y)
    y += 1.0
    y *= 0.5
    return y


def maps_to_instances(fg: np.ndarray, boundary: np.ndarray, centre: np.ndarray, fg_thr: float = 0.5,
                      seed_thr: float = 0.3, min_area_px: int = 8, min_seed_px: int = 3,
                      smooth: float = 0.0, rel_seed: float = 0.2, split_solidity: float = 0.0,
                      merge_solidity: float = 0.0) -> np.ndarray:
    """Instance labels (int32, 0 = background) from probability maps in [0, 1].

    smooth: Gaussian sigma (px) applied to the centre map before seeding; rel_seed: seeds
    smaller than this fraction of the median seed area are dropped (spurious fragments);
    split_solidity: instances less solid than this are split by `split_concave` (0: never);
    merge_solidity: fragments of one particle are merged by `merge_fragments` (0: never).
    """
    mask = fg > fg_thr
    if not mask.any():
        return np.zeros(fg.shape, np.int32)
    if smooth > 0:
        centre = ndi.gaussian_filter(centre, smooth)
    seeds = mask & (centre > seed_thr) & (boundary < 0.5)
    markers, n = ndi.label(seeds)
    if n:
        sizes = np.bincount(markers.ravel(), minlength=n + 1)
        limit = max(min_seed_px, rel_seed * float(np.median(sizes[1:])))
        small = sizes < limit
        small[0] = False
        if small.any():  # a pass over the frame, so only when there is something to drop
            markers[small[markers]] = 0
    labels = seeded_watershed(-centre, markers, mask)
    if split_solidity > 0:
        labels = split_concave(labels, split_solidity)
    if merge_solidity > 0:
        labels = merge_fragments(labels, merge_solidity)
    return remove_small(labels, min_area_px)


def seeded_watershed(surface: np.ndarray, markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Watershed of `surface` from `markers` within `mask`, run on each 4-connected component of
    the mask in its own box (the flood cannot leave a component, so this equals one watershed
    over the frame, at the cost of the foreground only). Components without a marker become
    instances of their own, numbered after the largest marker in raster order."""
    comp, n = ndi.label(mask)
    boxes = ndi.find_objects(comp)
    if not crops_pay(boxes, mask.shape, 0):
        labels = watershed(surface, markers, mask=mask) if markers.any() else np.zeros(mask.shape, np.int32)
        orphan, k = ndi.label(mask & (labels == 0))
        return np.where(orphan > 0, orphan + labels.max(), labels) if k else labels
    labels = np.zeros(mask.shape, np.int32)
    top = int(markers.max()) if markers.size else 0
    for c, sl in enumerate(boxes, start=1):
        here = comp[sl] == c
        seeds = np.where(here, markers[sl], 0)
        if seeds.any():
            grown = watershed(surface[sl], seeds, mask=here)
            labels[sl][here] = grown[here]
        else:
            top += 1
            labels[sl][here] = top
    return labels


def octagon_px(coords: np.ndarray) -> int:
    """Pixel centres inside the octagon bounding a region's pixels (rows, columns and both
    diagonals, each widened by half a pixel): an upper bound of the convex-hull area that
    `regionprops` counts (its hull spans the pixels' edge midpoints), so area / octagon_px is a
    lower bound of the solidity at a fraction of the cost of the hull."""
    r, c = coords[:, 0], coords[:, 1]
    s, d = r + c, r - c
    rows = np.arange(r.min(), r.max() + 1)
    lo = np.maximum(np.maximum(c.min(), s.min() - rows), rows - d.max())
    hi = np.minimum(np.minimum(c.max(), s.max() - rows), rows - d.min())
    return int(np.maximum(hi - lo + 1, 0).sum())


def split_concave(labels: np.ndarray, min_solidity: float = 0.85, h_px: float = 0.5,
                  min_area_px: int = 16) -> np.ndarray:
    """Split instances that are two or more particles merged into one: an instance whose
    solidity (area / convex-hull area) is below `min_solidity` and whose distance transform has
    two or more maxima deeper than `h_px` is cut by a watershed on that distance transform
    (binary watershed separation of touching particles, Beucher & Lantuejoul 1979). Convex
    particles (spheres, ellipses, rods, polygons) have solidity near 1 and are never touched.
    Higher thresholds also cut single particles (0.9 split elongated ones on the default
    scenario: mean diameter -2.9 %), so 0.85 only catches merges through a clear neck."""
    from skimage.morphology import h_maxima

    out = labels.astype(np.int32, copy=True)
    nxt = int(out.max()) + 1
    for p in regionprops(out):
        if p.area < min_area_px or p.area >= min_solidity * octagon_px(p.coords) or p.solidity >= min_solidity:
            continue
        mask = np.pad(p.image, 1)
        dist = ndi.distance_transform_edt(mask)
        markers, n = ndi.label(h_maxima(dist, h_px) & mask)
        if n < 2:
            continue
        parts = watershed(-dist, markers, mask=mask)[1:-1, 1:-1]
        r0, c0 = p.bbox[0], p.bbox[1]
        sub = out[r0:r0 + parts.shape[0], c0:c0 + parts.shape[1]]
        for k in range(2, n + 1):
            sub[(parts == k) & p.image] = nxt
            nxt += 1
    return out


def merge_fragments(labels: np.ndarray, min_union_solidity: float = 0.88, min_enclosed: float = 0.5) -> np.ndarray:
    """Merge instances that are fragments of one particle: a group of touching instances whose
    union is convex (solidity >= `min_union_solidity`) and holds an instance enclosed by the
    others (>= `min_enclosed` of its edge on other instances, not substrate) becomes one. A
    faceted particle with a flat top and bright facets comes out of the network as a core plus
    rim pieces; a real cluster of particles has necks in its outline and no such core."""
    from .occlusion import free_edge_points, grown_box

    out = labels.astype(np.int32, copy=True)
    groups, n = ndi.label(out > 0, structure=np.ones((3, 3), bool))
    for g, sl in enumerate(ndi.find_objects(groups), start=1):
        win = out[sl]
        ids = np.unique(win[groups[sl] == g])
        if ids.size < 2:
            continue
        union = regionprops((groups[sl] == g).astype(np.uint8))[0]
        if union.area < min_union_solidity * octagon_px(union.coords) and union.solidity < min_union_solidity:
            continue
        box = grown_box(sl, out.shape)
        for k in ids:
            rr, _, contact = free_edge_points(out, int(k), box)
            if contact >= min_enclosed * (contact + rr.size):
                win[np.isin(win, ids)] = ids[0]
                break
    return out


def remove_small(labels: np.ndarray, min_area_px: int) -> np.ndarray:
    """Drop instances smaller than `min_area_px` (and unused label values); renumber the rest
    1..N in their order; a new int32 array."""
    if labels.max() == 0:
        return labels.astype(np.int32)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_area_px
    keep[0] = False
    lut = np.zeros(len(sizes), np.int32)
    lut[keep] = np.arange(1, keep.sum() + 1, dtype=np.int32)
    if keep[1:].all():  # lut is the identity: skip a pass over the frame
        return labels.astype(np.int32)
    return lut[labels]


COLUMNS = ("id", "centroid_x_m", "centroid_y_m", "centroid_row_px", "centroid_col_px", "area_m2",
           "area_px", "occluded_px", "equivalent_diameter_m", "extent_px", "eccentricity", "solidity", "touches_border",
           "touches_other", "confidence", "contrast_snr")


@dataclass(frozen=True, eq=False)
class ParticleTable:
    """One row per particle; columns are 1-D numpy arrays (see `COLUMNS`). Lengths in metres.

    Centroids: x along columns, y along rows, from the image's top-left pixel corner.
    """

    columns: dict

    def __len__(self) -> int:
        return len(self.columns["id"])

    def __getitem__(self, key: str) -> np.ndarray:
        return self.columns[key]

    def rows(self) -> list[dict]:
        return [{k: self.columns[k][i].item() for k in COLUMNS} for i in range(len(self))]

    def to_csv(self, path: str | Path) -> None:
        with open(path, "w", newline="") as fh:
            wr = csv.writer(fh)
            wr.writerow(COLUMNS)
            for r in self.rows():
                wr.writerow([_fmt(r[k]) for k in COLUMNS])


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def border_labels(labels: np.ndarray) -> np.ndarray:
    """Sorted nonzero label values of instances cut by the image edge."""
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return edge[edge > 0]


def touching_labels(labels: np.ndarray) -> np.ndarray:
    """Sorted label values of instances with a pixel 8-adjacent to another instance (not background)."""
    lab = np.asarray(labels)
    if lab.max() == 0:
        return np.zeros(0, lab.dtype)
    boxes = ndi.find_objects(lab)
    if not crops_pay(boxes, lab.shape, 1):
        big = np.iinfo(lab.dtype).max if np.issubdtype(lab.dtype, np.integer) else np.inf
        hi = ndi.maximum_filter(lab, size=3)
        lo = ndi.minimum_filter(np.where(lab == 0, big, lab), size=3)
        return np.unique(lab[(lab > 0) & ((hi > lab) | (lo < lab))])
    eight = np.ones((3, 3), bool)
    out = []
    for k, sl in enumerate(boxes, start=1):
        if sl is None:
            continue
        box = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in sl)
        sub = lab[box]
        other = (sub != k) & (sub > 0)
        if other.any() and (ndi.binary_dilation(other, eight) & (sub == k)).any():
            out.append(k)
    return np.asarray(out, lab.dtype)


def _moments(labels: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, ...]:
    """Area (px), centroid row and column (px) and eccentricity of the instances `ids`, from
    the second central moments (the ellipse with the same moments, as `regionprops`)."""
    flat = labels.ravel()
    on = np.flatnonzero(flat)
    lab = flat[on]
    rr, cc = np.divmod(on, labels.shape[1])
    m = int(ids.max()) + 1
    a = np.bincount(lab, minlength=m).astype(np.float64)
    mr = np.bincount(lab, rr, m) / np.maximum(a, 1)
    mc = np.bincount(lab, cc, m) / np.maximum(a, 1)
    dr, dc = rr - mr[lab], cc - mc[lab]
    vr, vc = (np.bincount(lab, x, m) / np.maximum(a, 1) for x in (dr * dr, dc * dc))
    cov = np.bincount(lab, dr * dc, m) / np.maximum(a, 1)
    half = np.sqrt(0.25 * (vr - vc) ** 2 + cov ** 2)
    l1, l2 = 0.5 * (vr + vc) + half, 0.5 * (vr + vc) - half
    with np.errstate(divide="ignore", invalid="ignore"):
        ecc = np.where(l1 > 0, np.sqrt(np.clip(1.0 - l2 / l1, 0.0, 1.0)), 0.0)
    return a[ids].astype(np.int64), mr[ids], mc[ids], ecc[ids]


def particle_table(labels: np.ndarray, pixel_size_m: float, confidence_map: np.ndarray | None = None,
                   contrast_snr: np.ndarray | None = None, occluded_px: np.ndarray | None = None) -> ParticleTable:
    """Measure every instance of `labels` (regionprops); `confidence_map` in [0,1] is averaged per
    instance; `contrast_snr` (one value per label 1..N, `perception.significance`) fills that
    column, else NaN. `occluded_px` (one value per label 1..N, `perception.occlusion`) is the
    area hidden under neighbours: `area_px` counts visible pixels only, while `area_m2` and
    `equivalent_diameter_m` include the hidden ones (the projected-area-equivalent diameter)."""
    h, w = labels.shape
    props = regionprops(labels)
    ids = np.array([p.label for p in props], np.int64)
    n = ids.size
    col = {k: np.zeros(n, np.float64) for k in COLUMNS}
    col["id"] = ids
    if n == 0:
        col.update(area_px=np.zeros(0, np.int64), extent_px=np.zeros(0, np.int64), occluded_px=np.zeros(0, np.int64),
                   touches_border=np.zeros(0, bool), touches_other=np.zeros(0, bool), contrast_snr=np.zeros(0))
        return ParticleTable(col)
    area, cr, cc, ecc = _moments(labels, ids)
    hidden = np.rint(np.asarray(occluded_px, float)[ids - 1]).astype(np.int64) if occluded_px is not None else np.zeros(n, np.int64)
    r0, c0, r1, c1 = np.array([p.bbox for p in props]).T
    col.update(centroid_row_px=cr, centroid_col_px=cc, centroid_x_m=(cc + 0.5) * pixel_size_m,
               centroid_y_m=(cr + 0.5) * pixel_size_m, area_px=area, occluded_px=hidden,
               area_m2=(area + hidden) * pixel_size_m ** 2,
               equivalent_diameter_m=np.sqrt(4.0 * (area + hidden) / np.pi) * pixel_size_m,
               extent_px=np.maximum(r1 - r0, c1 - c0),  # bounding-box side, for guard frames
               eccentricity=np.where(area > 1, ecc, 0.0),
               solidity=np.array([p.solidity if p.area > 2 else 1.0 for p in props]),
               touches_border=(r0 == 0) | (c0 == 0) | (r1 == h) | (c1 == w),
               touches_other=np.isin(ids, touching_labels(labels)))
    if confidence_map is not None:  # labelled pixels only: the same sums, a fraction of the frame
        on = np.flatnonzero(labels)
        conf = np.asarray(confidence_map).ravel()[on].astype(np.float64)
        col["confidence"] = np.bincount(labels.ravel()[on], conf, ids.max() + 1)[ids] / area
    else:
        col["confidence"] = np.ones(n)
    col["contrast_snr"] = (np.asarray(contrast_snr, np.float64)[ids - 1] if contrast_snr is not None else np.full(n, np.nan))
    return ParticleTable(col)
