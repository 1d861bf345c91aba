"""Training-data caches (.npz): written atomically, and regenerated when a file is unreadable."""
from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import numpy as np


def save_npz(path: str | Path, compressed: bool = True, **arrays) -> Path:
    """Write `arrays` to `path` via a temporary file in the same folder, renamed into place, so
    an interrupted run never leaves a truncated cache behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compressed else np.savez)(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_npz(path: str | Path) -> dict[str, np.ndarray] | None:
    """All arrays of the cache `path`, or None if it is missing or unreadable (a warning names
    it; the caller regenerates the data and overwrites it)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        print(f"[cache] {path} is unreadable ({type(exc).__name__}); generating its data again", file=sys.stderr)
        return None
