"""Particle shapes: analytic projected areas and per-point surface functions.

Every particle lies on the substrate with its long axis in the stage plane, rotated by
``orientation`` (rad) about the beam axis. Two size parameters describe the outline:

* sphere    : a = b = radius r. Top surface r + sqrt(r² − ρ²) (centre at height r).
* ellipsoid : in-plane semi-axes a ≥ b, vertical semi-axis c = b (a prolate spheroid lying down).
* rod       : spherocylinder of radius b and half-length a (= b + half the cylinder length).
* faceted   : regular n-gon (n = 4…8) of inradius a with a flat top plateau of inradius b
              and sloped facets (slope ``facet_slope`` = tan α) down to a vertical side wall.

``evaluate`` returns, at local points (u along the long axis, v across):
signed distance to the outline (m, > 0 inside; exact for sphere and rod, first-order for the
ellipse, exact inside the polygon), surface height above the substrate (m), squared surface
slope |∇h|² (for the secant law) and the material thickness along the beam (m).
"""
from __future__ import annotations

import math

import numpy as np

SHAPE_NAMES: tuple[str, ...] = ("sphere", "ellipsoid", "faceted", "rod")
SPHERE, ELLIPSOID, FACETED, ROD = range(4)


def shape_code(name: str) -> int:
    """Index of ``name`` in ``SHAPE_NAMES`` (ValueError if unknown)."""
    if name not in SHAPE_NAMES:
        raise ValueError(f"shape = {name!r}: must be one of {', '.join(SHAPE_NAMES)}")
    return SHAPE_NAMES.index(name)


# ---- sizes from the projected-area-equivalent diameter --------------------------------------
def dimensions(code: np.ndarray, diameter: np.ndarray, aspect: np.ndarray,
               sides: np.ndarray, plateau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Semi-axes (a, b) in metres so that the projected area is exactly π d²/4.

    ``aspect`` is a/b for ellipses and total length / width for rods; ``plateau`` is the
    plateau-to-outline inradius ratio of faceted particles.
    """
    area = 0.25 * math.pi * diameter**2
    k = np.maximum(aspect, 1.0)
    # Ellipse: π a b = area, a = k b.
    b_ell = np.sqrt(area / (math.pi * k))
    # Rod: area = π r² + 2r·L with L = 2r(k − 1)  ->  r² (π + 4(k − 1)) = area.
    r_rod = np.sqrt(area / (math.pi + 4.0 * (k - 1.0)))
    # Regular n-gon of inradius R: area = n R² tan(π/n).
    n = np.maximum(sides, 3).astype(np.float64)
    r_poly = np.sqrt(area / (n * np.tan(math.pi / n)))
    r = 0.5 * diameter
    a = np.select([code == ELLIPSOID, code == ROD, code == FACETED], [k * b_ell, k * r_rod, r_poly], r)
    b = np.select([code == ELLIPSOID, code == ROD, code == FACETED], [b_ell, r_rod, plateau * r_poly], r)
    return a, b


def area(code: np.ndarray, a: np.ndarray, b: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """Projected area (m²) from the semi-axes."""
    n = np.maximum(sides, 3).astype(np.float64)
    return np.select(
        [code == ELLIPSOID, code == ROD, code == FACETED],
        [math.pi * a * b, math.pi * b**2 + 4.0 * b * (a - b), n * a**2 * np.tan(math.pi / n)],
        math.pi * a * b)


def perimeter(code: np.ndarray, a: np.ndarray, b: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """Outline length (m); Ramanujan's approximation for the ellipse."""
    n = np.maximum(sides, 3).astype(np.float64)
    h = ((a - b) / np.maximum(a + b, 1e-300)) ** 2
    ellipse = math.pi * (a + b) * (1.0 + 3.0 * h / (10.0 + np.sqrt(4.0 - 3.0 * h)))
    return np.select(
        [code == ELLIPSOID, code == ROD, code == FACETED],
        [ellipse, 2.0 * math.pi * b + 4.0 * (a - b), 2.0 * n * a * np.tan(math.pi / n)],
        2.0 * math.pi * a)


def bounding_radius(code: np.ndarray, a: np.ndarray, b: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """Radius (m) of the smallest centred circle containing the outline."""
    n = np.maximum(sides, 3).astype(np.float64)
    return np.where(code == FACETED, a / np.cos(math.pi / n), a)


def support(code: np.ndarray, a: np.ndarray, b: np.ndarray, sides: np.ndarray, phi: np.ndarray,
            wx: float, wy: float) -> np.ndarray:
    """max over the outline of w·p for the stage vector w = (wx, wy); p relative to the centre."""
    c, s = np.cos(phi), np.sin(phi)
    wu, wv = c * wx + s * wy, -s * wx + c * wy      # w in the particle frame
    wn = math.hypot(wx, wy)
    ellipse = np.sqrt((a * wu) ** 2 + (b * wv) ** 2)
    rod = (a - b) * np.abs(wu) + b * wn
    return np.select([code == ELLIPSOID, code == ROD, code == FACETED],
                     [ellipse, rod, bounding_radius(code, a, b, sides) * wn], a * wn)


def radius_along(code: np.ndarray, a: np.ndarray, b: np.ndarray, sides: np.ndarray,
                 phi: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Distance (m) from the centre to the outline along stage direction ``theta`` (rad)."""
    code, a, b, sides, phi, theta = np.broadcast_arrays(code, a, b, sides, phi, theta)
    out = np.array(a, dtype=np.float64)                 # spheres: the radius
    for kind in (ELLIPSOID, ROD, FACETED):
        sel = code == kind
        if not sel.any():
            continue
        aa, bb, psi = a[sel], b[sel], theta[sel] - phi[sel]
        cu, sv = np.abs(np.cos(psi)), np.abs(np.sin(psi))
        if kind == ELLIPSOID:
            out[sel] = aa * bb / np.sqrt((bb * cu) ** 2 + (aa * sv) ** 2)
        elif kind == ROD:
            # Exit of the central rectangle or of the far cap circle, whichever is later.
            half = aa - bb
            rect = np.minimum(half / np.maximum(cu, 1e-12), bb / np.maximum(sv, 1e-12))
            disc = bb**2 - (sv * half) ** 2
            cap = np.where(disc >= 0.0, cu * half + np.sqrt(np.maximum(disc, 0.0)), 0.0)
            out[sel] = np.maximum(rect, cap)
        else:
            # Polygon: inradius / cos(angle to the nearest face normal).
            sector = 2.0 * math.pi / np.maximum(sides[sel], 3)
            off = np.mod(psi + 0.5 * sector, sector) - 0.5 * sector
            out[sel] = aa / np.cos(off)
    return out


# ---- surface functions at local points --------------------------------------------------------
def _round_top(radius_sq: np.ndarray, r: np.ndarray, r_sq: np.ndarray):
    """Sphere / rod cross-section of radius r at in-plane distance² radius_sq from the axis."""
    sd = r - np.sqrt(radius_sq)
    rest = np.maximum(r_sq - radius_sq, 0.0)
    root = np.sqrt(rest)
    h = r + root
    slope2 = np.minimum(radius_sq, r_sq) / np.maximum(rest, 1e-6 * r_sq)
    return sd, h, slope2, 2.0 * root


def eval_sphere(u, v, a, b):
    """Sphere of radius a; see module docstring for the returned tuple."""
    return _round_top(u * u + v * v, a, a * a)


def eval_rod(u, v, a, b):
    """Spherocylinder of half-length a and radius b."""
    du = np.maximum(np.abs(u) - (a - b), 0.0)
    return _round_top(du * du + v * v, b, b * b)


def eval_ellipsoid(u, v, a, b):
    """Spheroid with in-plane semi-axes a, b and vertical semi-axis b (computed in units of the
    semi-axes, so float32 never over- or underflows)."""
    un, vn = u / a, v / b
    r = b / a
    q = un * un + vn * vn
    sq = np.sqrt(q)
    gb = np.sqrt((un * r) ** 2 + vn * vn)                  # b·|∇q|/2
    # Distance ≈ (1 − √q) / |∇√q| with |∇√q| = g/√q; at the centre use b.
    ratio = np.where(gb > 0, b * sq / np.where(gb > 0, gb, 1.0), b)
    sd = (1.0 - sq) * ratio
    rest = np.maximum(1.0 - q, 0.0)
    root = np.sqrt(rest)
    h = b + b * root
    slope2 = gb * gb / np.maximum(rest, 1e-6)
    return sd, h, slope2, 2.0 * b * root


def eval_faceted(u, v, a, b, sides: int, slope: np.ndarray, height: np.ndarray):
    """Regular ``sides``-gon of inradius a, plateau inradius b, facet slope tan α, height H."""
    m = u.copy()
    for k in range(1, sides):
        t = 2.0 * math.pi * k / sides
        np.maximum(m, u * math.cos(t) + v * math.sin(t), out=m)
    sd = a - m
    on_facet = np.clip(m, b, a) - b
    h = height - on_facet * slope
    slope2 = np.where(m > b, slope * slope, 0.0)
    return sd, h, slope2, h
