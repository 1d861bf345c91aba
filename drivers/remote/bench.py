"""Benchmark of the remote layer over tcp loopback: call latency and frame throughput.

Used by ``emtwin bench remote``. The server wraps `FastFrameMicroscope`, which returns one
pre-made image, so the figures measure transport (and CurveZMQ encryption), not rendering.
"""
from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np

from .client import RemoteMicroscope
from .keys import generate_keys
from .server import MicroscopeServer
from .testing import FastFrameMicroscope

#: Goals from the issue: p50 no-op round trip and unencrypted frame throughput.
GOAL_P50_MS = 1.0
GOAL_FRAMES_MB_S = 200.0


def run_remote_benchmark(
    n_calls: int = 2000, n_frames: int = 50, shape: tuple[int, int] = (1024, 1024)
) -> dict[str, Any]:
    """Measure plain and CurveZMQ transport; returns figures in ms and MB/s (1 MB = 1e6 bytes)."""
    result: dict[str, Any] = {"shape": tuple(shape), "n_calls": n_calls, "n_frames": n_frames,
                              "frame_mb": shape[0] * shape[1] * 2 / 1e6}
    for label in ("plain", "curve"):
        with tempfile.TemporaryDirectory() as keys_dir:
            keys = None
            if label == "curve":
                generate_keys(keys_dir)
                keys = keys_dir
            driver = FastFrameMicroscope(shape)
            with MicroscopeServer(driver, control="tcp://127.0.0.1:*", stream=None, keys=keys) as server:
                with RemoteMicroscope(server.control_endpoint, timeout_s=30.0, client_keys=keys) as m:
                    result[label] = _measure(m, n_calls, n_frames)
    return result


def _measure(m: RemoteMicroscope, n_calls: int, n_frames: int) -> dict[str, float]:
    ping = _latencies_ms(lambda: m.call("ping"), n_calls)
    query = _latencies_ms(m.get_fov_m, n_calls)
    for _ in range(3):
        m.acquire()
    nbytes = 0
    t0 = time.perf_counter()
    for _ in range(n_frames):
        nbytes += m.acquire().image.nbytes
    elapsed = time.perf_counter() - t0
    return {
        "ping_p50_ms": float(np.percentile(ping, 50)), "ping_p99_ms": float(np.percentile(ping, 99)),
        "query_p50_ms": float(np.percentile(query, 50)), "query_p99_ms": float(np.percentile(query, 99)),
        "frames_mb_s": nbytes / elapsed / 1e6, "frames_per_s": n_frames / elapsed,
    }


def _latencies_ms(fn: Any, n: int) -> np.ndarray:
    for _ in range(min(100, n)):
        fn()
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return out * 1e3


def format_table(result: dict[str, Any]) -> str:
    """The benchmark as a small text table, with the goals."""
    rows, cols = result["shape"]
    lines = [
        f"remote transport over tcp loopback: {result['n_calls']} calls, {result['n_frames']} frames "
        f"of {rows}x{cols} uint16 ({result['frame_mb']:.2f} MB)",
        f"{'':8} {'ping p50':>9} {'ping p99':>9} {'query p50':>10} {'query p99':>10} {'frames':>9} {'frames':>8}",
        f"{'':8} {'ms':>9} {'ms':>9} {'ms':>10} {'ms':>10} {'MB/s':>9} {'1/s':>8}",
    ]
    for label in ("plain", "curve"):
        r = result[label]
        lines.append(f"{label:8} {r['ping_p50_ms']:9.3f} {r['ping_p99_ms']:9.3f} {r['query_p50_ms']:10.3f} "
                     f"{r['query_p99_ms']:10.3f} {r['frames_mb_s']:9.0f} {r['frames_per_s']:8.1f}")
    plain = result["plain"]
    lines.append(
        f"goals: ping p50 <= {GOAL_P50_MS} ms ({'met' if plain['ping_p50_ms'] <= GOAL_P50_MS else 'NOT met'}), "
        f"frames >= {GOAL_FRAMES_MB_S:.0f} MB/s without encryption "
        f"({'met' if plain['frames_mb_s'] >= GOAL_FRAMES_MB_S else 'NOT met'})"
    )
    lines.append("ping: answered by the server's socket thread; query: get_fov_m(), through the driver thread")
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_table(run_remote_benchmark()))
