"""Test doubles for the remote layer: drivers whose timing is controlled in wall-clock time."""
from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np

from ..errors import Aborted
from ..null import NullMicroscope
from ..types import Frame


class SlowMicroscope(NullMicroscope):
    """`NullMicroscope` whose `acquire()` takes `frame_wall_s` seconds of real time.

    It waits in small steps and raises `Aborted` as soon as `abort()` is called, like a real
    scan; `started` is set when an acquisition begins.
    """

    def __init__(self, frame_wall_s: float = 5.0, seed: int = 0):
        super().__init__(seed=seed)
        self.frame_wall_s = frame_wall_s
        self.started = threading.Event()

    def _acquire(self) -> Frame:
        self._abort_event.clear()
        self.started.set()
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.frame_wall_s:
            if self._abort_event.wait(0.01):
                raise Aborted(f"acquisition aborted after {time.monotonic() - t0:.2f} s")
        return super()._acquire()


class FastFrameMicroscope(NullMicroscope):
    """`NullMicroscope` that returns one pre-made uint16 image of `shape` at once (for benchmarks).

    The scan shape is ignored; the metadata comes from one real `NullMicroscope` frame with a
    new frame id each time, so the cost measured is transport, not rendering.
    """

    def __init__(self, shape: tuple[int, int] = (1024, 1024), seed: int = 0):
        super().__init__(seed=seed)
        rng = np.random.default_rng(seed)
        self._image = rng.integers(0, 65535, size=shape, dtype=np.uint16)
        self._meta = super()._acquire().meta
        self._meta = dataclasses.replace(self._meta, shape_px=tuple(shape), pixel_size_m=self._meta.fov_m / shape[1])
        self._count = 0

    def _acquire(self) -> Frame:
        self._count += 1
        return Frame(image=self._image, meta=dataclasses.replace(self._meta, frame_id=self._count))
