"""Open a `drivers.Microscope` from a short spec string used by the CLI.

Specs: ``twin`` (the embedded twin, with a scenario), ``null``, ``tcp://HOST:PORT`` or
``ipc://PATH`` (a remote server), ``autoscript`` or ``tescan`` (vendor adapters, with
``host``/``port`` options).
"""
from __future__ import annotations

from typing import Any

from drivers import Microscope

DRIVER_NAMES = ("twin", "null", "autoscript", "tescan", "tcp://HOST:PORT", "ipc://PATH")


def open_driver(spec: str, scenario: str | None = None, seed: int | None = None, **options: Any) -> Microscope:
    """Return a connected microscope for `spec` (see module docstring)."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"driver = {spec!r}: must be one of {', '.join(DRIVER_NAMES)}")
    if spec == "twin":
        from twin import TwinMicroscope

        return TwinMicroscope(scenario or "default", seed=seed)
    if spec == "null":
        from drivers.null import NullMicroscope

        return NullMicroscope(seed=0 if seed is None else seed)
    if spec.startswith(("tcp://", "ipc://")):
        from drivers.remote import RemoteMicroscope

        return RemoteMicroscope(spec, **options)
    if spec == "autoscript":
        from drivers.autoscript import AutoScriptMicroscope

        return AutoScriptMicroscope(**options)
    if spec == "tescan":
        from drivers.tescan import TescanMicroscope

        return TescanMicroscope(**options)
    raise ValueError(f"driver = {spec!r}: must be one of {', '.join(DRIVER_NAMES)}")
