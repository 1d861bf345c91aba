"""abTEM reference images (PRISM or multislice HAADF) and their comparison with the fast renderer.

abTEM (``pip install "abtem==1.0.11"``, the ``stem`` extra) is imported lazily, only when a
reference is computed; the comparison reads cached ``.npz`` files, so it runs without abTEM.

A case is a small metal cluster (atoms cut from the fcc lattice, random orientation) on an
amorphous carbon slab (random atoms, minimum distance 1.2 Å), in a periodic cell, scanned
over its central region. All cases of one structure share one PRISM scattering matrix and
differ only in the probe (defocus, Cs), so three defocus values cost about one run.
Each cache file holds the image (rows, columns in the twin's convention: +column = +x,
+row = −y), the atom positions and atomic numbers used, and the case parameters.

Run ``python -m twin.stem.abtem_ref --help``. Units: metres and radians in `RefCase`; abTEM
takes Å, eV and mrad, converted here.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import StemDetectorConfig
from .haadf import render_points
from .optics import Aberrations, otf
from .specimen import METALS, cluster_atoms, random_rotation

DEFAULT_CACHE = Path.home() / ".cache" / "emtwin" / "abtem"
#: Reference images shipped with the tests (small; see tests/data/stem/README.md).
SHIPPED = Path(__file__).resolve().parents[2] / "tests" / "data" / "stem"


@dataclass(frozen=True)
class RefCase:
    """One reference image: structure, probe, detector and scan (SI units)."""

    name: str
    element: str = "Au"
    cluster_diameter_m: float = 2.0e-9
    carbon_thickness_m: float = 2.0e-9
    cell_m: float = 3.0e-9
    hv_v: float = 200e3
    alpha_rad: float = 20e-3
    defocus_m: float = 0.0
    c30_m: float = 0.0
    inner_rad: float = 60e-3
    outer_rad: float = 150e-3
    scan_px: int = 80
    scan_fov_m: float = 2.4e-9
    sampling_m: float = 0.05e-10
    slice_m: float = 2e-10
    interpolation: int = 2
    seed: int = 0
    method: str = "prism"

    def structure_key(self) -> tuple:
        """Fields that fix the potential and the scattering matrix (not the probe or scan)."""
        return (self.element, self.cluster_diameter_m, self.carbon_thickness_m, self.cell_m, self.hv_v,
                self.alpha_rad, self.sampling_m, self.slice_m, self.interpolation, self.seed, self.method)

    def digest(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def detector(self) -> StemDetectorConfig:
        return StemDetectorConfig(name="HAADF", kind="annular", inner_rad=self.inner_rad,
                                  outer_rad=self.outer_rad, z_exponent=1.7)


def _au(name: str, df: float, **kw: object) -> RefCase:
    return RefCase(name=name, defocus_m=df, **kw)  # type: ignore[arg-type]


#: The validation set: a ~2 nm Au cluster on 2 nm of carbon at three defocus values (200 kV,
#: 20 mrad, Cs = 0), and one small case cheap enough for CI (1.2 nm cluster, 32×32 scan).
CASES: dict[str, RefCase] = {c.name: c for c in (
    _au("au2nm-df0", 0.0),
    _au("au2nm-df5", 5e-9),
    _au("au2nm-df10", 10e-9),
    RefCase(name="au1nm-small", cluster_diameter_m=1.2e-9, carbon_thickness_m=1.0e-9, cell_m=2.0e-9,
            scan_px=32, scan_fov_m=1.6e-9, sampling_m=0.06e-10),
)}
VALIDATION = ("au2nm-df0", "au2nm-df5", "au2nm-df10")
SMALL = ("au1nm-small",)


# ---- structure ------------------------------------------------------------------------------------
def _carbon(rng: np.random.Generator, cell_m: float, z0_m: float, thickness_m: float,
            density_per_m3: float = 1.0e29, dmin_m: float = 1.2e-10) -> np.ndarray:
    """Amorphous carbon: random sequential addition with a minimum distance (periodic in x, y)."""
    n = int(round(density_per_m3 * cell_m * cell_m * thickness_m))
    out = np.zeros((0, 3))
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        p = np.array([rng.uniform(0, cell_m), rng.uniform(0, cell_m), rng.uniform(z0_m, z0_m + thickness_m)])
        if len(out):
            d = out - p
            d[:, :2] -= cell_m * np.round(d[:, :2] / cell_m)
            if np.min(np.einsum("ij,ij->i", d, d)) < dmin_m * dmin_m:
                continue
        out = np.vstack([out, p])
    return out


def build_atoms(case: RefCase) -> tuple[np.ndarray, np.ndarray]:
    """Atom positions (N, 3) in m in abTEM's frame (z along the beam, cluster at the entrance)
    and atomic numbers (N,)."""
    rng = np.random.default_rng(case.seed)
    rot = random_rotation(rng)
    clus = cluster_atoms(case.element, case.cluster_diameter_m, 0.0, rot)
    r = 0.5 * case.cluster_diameter_m
    top = 2e-10
    clus_abtem = np.column_stack([clus[:, 0] + 0.5 * case.cell_m, clus[:, 1] + 0.5 * case.cell_m,
                                  top + r - clus[:, 2]])
    carbon = _carbon(rng, case.cell_m, top + 2 * r + 1.5e-10, case.carbon_thickness_m)
    pos = np.vstack([clus_abtem, carbon])
    z = np.concatenate([np.full(len(clus_abtem), METALS[case.element][0]), np.full(len(carbon), 6)])
    return pos, z


def scan_geometry(case: RefCase) -> tuple[tuple[float, float], float, tuple[int, int]]:
    """(centre (m), fov (m), shape) of the scan in stage coordinates (= abTEM x, y)."""
    n = case.scan_px
    p = case.scan_fov_m / n
    x0 = 0.5 * (case.cell_m - case.scan_fov_m)
    c = x0 + 0.5 * (n - 1) * p
    return (c, c), case.scan_fov_m, (n, n)


# ---- abTEM ------------------------------------------------------------------------------------------
def _configure_abtem():
    import abtem  # noqa: PLC0415  (optional dependency, imported lazily)
    import dask

    abtem.config.set({"dask.lazy": False, "diagnostics.progress_bar": False, "fftw.threads": 1,
                      "fftw.planning_effort": "FFTW_ESTIMATE"})
    dask.config.set(scheduler="threads", num_workers=2)
    return abtem


def compute_abtem(cases: list[RefCase]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """Reference images of cases sharing one structure: name -> (image, positions, Z, seconds).

    PRISM builds the scattering matrix once (``SMatrix.build``) and reduces it per probe
    (``SMatrixArray.reduce``; abTEM 1.0.11's ``SMatrixArray.scan`` fails)."""
    keys = {c.structure_key() for c in cases}
    if len(keys) != 1:
        raise ValueError(f"cases = {[c.name for c in cases]}: must share one structure")
    abtem = _configure_abtem()
    from ase import Atoms  # noqa: PLC0415

    first = cases[0]
    pos, z = build_atoms(first)
    depth = float(pos[:, 2].max()) + 2e-10
    atoms = Atoms(numbers=z, positions=pos * 1e10, cell=[first.cell_m * 1e10, first.cell_m * 1e10, depth * 1e10],
                  pbc=True)
    t0 = time.perf_counter()
    potential = abtem.Potential(atoms, sampling=first.sampling_m * 1e10, slice_thickness=first.slice_m * 1e10,
                                projection="infinite", parametrization="lobato")
    energy = first.hv_v
    alpha_mrad = first.alpha_rad * 1e3
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, float]] = {}
    if first.method == "prism":
        smatrix = abtem.SMatrix(potential=potential, energy=energy, semiangle_cutoff=alpha_mrad,
                                interpolation=first.interpolation, downsample=False)
        s_array = smatrix.build(lazy=False)
        t_build = time.perf_counter() - t0
    for case in cases:
        t1 = time.perf_counter()
        (cx, cy), fov, (n, _) = scan_geometry(case)
        p = fov / n
        x0 = cx - 0.5 * (n - 1) * p
        scan = abtem.GridScan(start=(x0 * 1e10, x0 * 1e10), end=((x0 + fov) * 1e10, (x0 + fov) * 1e10),
                              gpts=(n, n), endpoint=False)
        detector = abtem.AnnularDetector(inner=case.inner_rad * 1e3, outer=case.outer_rad * 1e3)
        ab = Aberrations(c10_m=-case.defocus_m, c30_m=case.c30_m).to_abtem()
        ctf = abtem.CTF(semiangle_cutoff=alpha_mrad, energy=energy, aberration_coefficients=ab)
        if case.method == "prism":
            meas = s_array.reduce(scan=scan, detectors=detector, ctf=ctf)
            secs = time.perf_counter() - t1 + t_build / len(cases)
        else:
            probe = abtem.Probe(semiangle_cutoff=alpha_mrad, energy=energy, aberrations=ab)
            probe.grid.match(potential)
            meas = probe.scan(potential, scan=scan, detectors=detector, lazy=False)
            secs = time.perf_counter() - t1
        arr = np.asarray(meas.array if not hasattr(meas.array, "compute") else meas.array.compute(), dtype=np.float64)
        image = arr.T[::-1, :].copy()  # abTEM [ix, iy] -> twin [row, col] (row 0 = largest y)
        out[case.name] = (image, pos, z, secs)
    return out


# ---- cache --------------------------------------------------------------------------------------------
def cache_path(case: RefCase, cache_dir: Path | str) -> Path:
    return Path(cache_dir) / f"{case.name}-{case.digest()}.npz"


def save(case: RefCase, image: np.ndarray, pos: np.ndarray, z: np.ndarray, seconds: float,
         cache_dir: Path | str) -> Path:
    path = cache_path(case, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, image=image.astype(np.float32), positions_m=pos.astype(np.float64),
                        z=z.astype(np.int16), seconds=np.float64(seconds),
                        case=json.dumps(dataclasses.asdict(case)))
    return path


def load(case: RefCase, cache_dirs: tuple[Path | str, ...] = (SHIPPED, DEFAULT_CACHE)) -> dict | None:
    """The cached reference of ``case`` (first found in ``cache_dirs``), or None."""
    for d in cache_dirs:
        path = cache_path(case, d)
        if path.is_file():
            with np.load(path) as f:
                return {"image": f["image"].astype(np.float64), "positions_m": f["positions_m"], "z": f["z"],
                        "seconds": float(f["seconds"]), "path": str(path)}
    return None


def ensure(cases: list[RefCase], cache_dir: Path | str = DEFAULT_CACHE,
           read_dirs: tuple[Path | str, ...] | None = None) -> dict[str, dict]:
    """Load cached references, computing (with abTEM) and caching the missing ones."""
    dirs = read_dirs if read_dirs is not None else (SHIPPED, cache_dir)
    found = {c.name: load(c, dirs) for c in cases}
    missing = [c for c in cases if found[c.name] is None]
    groups: dict[tuple, list[RefCase]] = {}
    for c in missing:
        groups.setdefault(c.structure_key(), []).append(c)
    for group in groups.values():
        for name, (img, pos, z, secs) in compute_abtem(group).items():
            save(CASES.get(name) or next(c for c in group if c.name == name), img, pos, z, secs, cache_dir)
        for c in group:
            found[c.name] = load(c, (cache_dir,))
    return found  # type: ignore[return-value]


# ---- fast renderer on the same atoms, and the comparison -------------------------------------------
def fast_image(case: RefCase, positions_m: np.ndarray, z: np.ndarray, atom_sigma_m: float = 0.1e-10) -> np.ndarray:
    """The fast incoherent renderer's noise-free HAADF fraction for a case's atoms."""
    centre, fov, shape = scan_geometry(case)
    ab = Aberrations(c10_m=-case.defocus_m, c30_m=case.c30_m)

    def otf_fn(render_shape: tuple[int, int], pixel_m: float) -> np.ndarray:
        return otf(render_shape, pixel_m, case.hv_v, case.alpha_rad, ab, 0.0, atom_sigma_m)

    return render_points(positions_m[:, 0], positions_m[:, 1], z, centre, fov, shape, case.hv_v, otf_fn,
                         case.detector()).astype(np.float64)


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised (zero-mean) cross-correlation of two equally shaped images."""
    a = np.asarray(a, dtype=np.float64) - np.mean(a)
    b = np.asarray(b, dtype=np.float64) - np.mean(b)
    return float(np.sum(a * b) / math.sqrt(np.sum(a * a) * np.sum(b * b)))


def contrast(img: np.ndarray) -> float:
    """Sharpness figure: rms of the image gradient over its mean (falls with |defocus|)."""
    gy, gx = np.gradient(np.asarray(img, dtype=np.float64))
    return float(np.sqrt(np.mean(gx * gx + gy * gy)) / np.mean(img))


def compare(names: tuple[str, ...] = VALIDATION, cache_dir: Path | str = DEFAULT_CACHE,
            compute_missing: bool = True) -> list[dict]:
    """One row per case: NCC, contrast of both images, abTEM seconds."""
    cases = [CASES[n] for n in names]
    refs = ensure(cases, cache_dir) if compute_missing else {c.name: load(c, (SHIPPED, cache_dir)) for c in cases}
    rows = []
    for c in cases:
        ref = refs[c.name]
        if ref is None:
            raise FileNotFoundError(f"no cached abTEM reference for case {c.name!r} in {SHIPPED} or {cache_dir}")
        fast = fast_image(c, ref["positions_m"], ref["z"])
        rows.append({"case": c.name, "defocus_m": c.defocus_m, "ncc": ncc(fast, ref["image"]),
                     "contrast_fast": contrast(fast), "contrast_abtem": contrast(ref["image"]),
                     "mean_fast": float(fast.mean()), "mean_abtem": float(ref["image"].mean()),
                     "abtem_s": ref["seconds"], "path": ref["path"]})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = ["| case | defocus nm | NCC | contrast fast | contrast abTEM | mean fast | mean abTEM | abTEM s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['defocus_m'] * 1e9:.1f} | {r['ncc']:.3f} | {r['contrast_fast']:.3f} | "
                     f"{r['contrast_abtem']:.3f} | {r['mean_fast']:.4f} | {r['mean_abtem']:.4f} | {r['abtem_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m twin.stem.abtem_ref",
                                 description="Pre-compute abTEM HAADF references and compare the fast renderer.")
    ap.add_argument("--cases", default="validation", help="validation, small, all, or comma-separated case names")
    ap.add_argument("--cache", default=str(DEFAULT_CACHE), help="cache directory (written)")
    ap.add_argument("--no-compute", action="store_true", help="only compare cached references")
    args = ap.parse_args(argv)
    sets = {"validation": VALIDATION, "small": SMALL, "all": tuple(CASES)}
    names = sets.get(args.cases) or tuple(n.strip() for n in args.cases.split(","))
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"unknown case(s) {unknown}; known: {', '.join(CASES)}", file=sys.stderr)
        return 2
    rows = compare(names, args.cache, compute_missing=not args.no_compute)
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
