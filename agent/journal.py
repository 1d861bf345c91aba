"""`journal.jsonl`: every command with instrument time and dose, appended and flushed at once.

`JournaledMicroscope` wraps any `drivers.Microscope` and writes one JSON line per call, so a
crash loses nothing already acquired and a run can be resumed from the journal.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from drivers import COMMANDS, Frame, Microscope


def _jsonable(value: Any) -> Any:
    if isinstance(value, Frame):
        return {"frame_id": value.meta.frame_id, "shape_px": list(value.image.shape)}
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "__dataclass_fields__"):
        return {k: _jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class Journal:
    """Append-only JSON-lines file; each record is flushed and fsynced before returning."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, kind: str, **fields: Any) -> None:
        record = {"kind": kind, "wall_time": time.time(), **{k: _jsonable(v) for k, v in fields.items()}}
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_journal(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a journal; a torn last line (crash mid-write) is skipped."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                return


class JournaledMicroscope:
    """Proxy that forwards every call to `driver` and journals the commands.

    Each command record has the method, arguments, result summary, instrument time after the
    call (s) and total electrons so far. Queries are not journaled.
    """

    def __init__(self, driver: Microscope, journal: Journal, on_frame: Callable[[Frame], None] | None = None):
        self._driver = driver
        self._journal = journal
        self._on_frame = on_frame

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._driver, name)
        if name not in COMMANDS or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = attr(*args, **kwargs)
            except Exception as exc:
                self._journal.write("error", method=name, args=args, kwargs=kwargs, error=f"{type(exc).__name__}: {exc}")
                raise
            if isinstance(result, Frame) and self._on_frame is not None:
                self._on_frame(result)
            st = self._driver.status()
            self._journal.write(
                "command",
                method=name,
                args=args,
                kwargs=kwargs,
                result=result,
                instrument_time_s=st.instrument_time_s,
                total_electrons=st.total_electrons,
            )
            return result

        return call

    @property
    def driver(self) -> Microscope:
        return self._driver
