"""Remote control over ZeroMQ: serve any `drivers.Microscope`, drive it from another process.

    server = MicroscopeServer(driver, control="tcp://127.0.0.1:5555").start()
    m = RemoteMicroscope("tcp://127.0.0.1:5555")   # a full drivers.Microscope

Wire protocol: docs/protocol.md. Keys for CurveZMQ: `generate_keys` (``emtwin keys DIR``).
"""
from .client import FrameSubscriber, RemoteMicroscope
from .keys import generate_keys, load_client_keys, load_server_keys
from .protocol import PROTOCOL_VERSION
from .server import MicroscopeServer

__all__ = [
    "MicroscopeServer", "RemoteMicroscope", "FrameSubscriber", "PROTOCOL_VERSION",
    "generate_keys", "load_client_keys", "load_server_keys",
]
