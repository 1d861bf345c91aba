"""CurveZMQ key pairs for the remote server and its clients (files written by `zmq.auth`).

Layout of a key directory, as written by `generate_keys` (``emtwin keys DIR``)::

    DIR/server.key  DIR/server.key_secret      the server's pair (give server.key to clients)
    DIR/client.key  DIR/client.key_secret      a client's pair (keep the secret on the client)
    DIR/authorized/client.key                  public keys the server accepts (its allow-list)
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import zmq.auth

from ..errors import InvalidArgumentError

KeyPair = tuple[bytes, bytes]


def generate_keys(directory: str | os.PathLike, clients: tuple[str, ...] = ("client",),
                  force: bool = False) -> dict[str, Path]:
    """Write a server pair and one pair per client name; authorise every client.

    Refuses to overwrite existing key files unless `force`. Secret files are made
    readable by their owner only. Returns the paths written, by role.
    """
    d = Path(directory).expanduser()
    names = ("server", *clients)
    for name in names:
        if not name or not name.replace("-", "").replace("_", "").isalnum() or name == "authorized":
            raise InvalidArgumentError(f"client name = {name!r}: must be letters, digits, - or _")
    existing = [d / f"{n}{ext}" for n in names for ext in (".key", ".key_secret") if (d / f"{n}{ext}").exists()]
    if existing and not force:
        raise FileExistsError(f"{existing[0]} exists; pass force=True (--force) to replace the keys")
    authorized = d / "authorized"
    authorized.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {"authorized": authorized}
    for name in names:
        public, secret = zmq.auth.create_certificates(d, name)
        os.chmod(secret, 0o600)
        written[name] = Path(secret)
        if name != "server":
            shutil.copyfile(public, authorized / f"{name}.key")
    return written


def load_server_keys(directory: str | os.PathLike) -> tuple[bytes, bytes, Path]:
    """(public, secret, allow-list folder) from a key directory."""
    d = Path(directory).expanduser()
    secret_file, authorized = d / "server.key_secret", d / "authorized"
    if not secret_file.is_file():
        raise FileNotFoundError(f"{secret_file} not found; create keys with `emtwin keys {d}`")
    if not authorized.is_dir():
        raise FileNotFoundError(f"{authorized} not found: the folder of client public keys the server accepts")
    public, secret = zmq.auth.load_certificate(secret_file)
    if secret is None:
        raise InvalidArgumentError(f"{secret_file} holds no secret key")
    return public, secret, authorized


def load_client_keys(client_keys: object, server_public_key: object) -> tuple[bytes, bytes, bytes] | None:
    """(client public, client secret, server public) for a client, or None without keys.

    `client_keys` is a (public, secret) pair of Z85 keys, a ``*.key_secret`` file or a key
    directory (its ``client.key_secret``). `server_public_key` is a Z85 key or a ``server.key``
    file; it defaults to ``server.key`` in the client key directory.
    """
    if client_keys is None:
        if server_public_key is not None:
            raise InvalidArgumentError("server_public_key needs client_keys as well (a client key pair)")
        return None
    key_dir: Path | None = None
    if isinstance(client_keys, tuple):
        if len(client_keys) != 2:
            raise InvalidArgumentError("client_keys = (public, secret): needs exactly two Z85 keys")
        public, secret = (_z85("client_keys", k) for k in client_keys)
    else:
        path = Path(os.fspath(client_keys)).expanduser()  # type: ignore[arg-type]
        if path.is_dir():
            key_dir, path = path, path / "client.key_secret"
        if not path.is_file():
            raise FileNotFoundError(f"client key file {path} not found")
        public, secret = zmq.auth.load_certificate(path)
        if secret is None:
            raise InvalidArgumentError(f"{path} holds no secret key (use the .key_secret file)")
    if server_public_key is None:
        if key_dir is None or not (key_dir / "server.key").is_file():
            raise InvalidArgumentError("server_public_key is needed with client_keys (a Z85 key or server.key)")
        server_public_key = key_dir / "server.key"
    if isinstance(server_public_key, (str, bytes)) and len(server_public_key) == 40:
        server = _z85("server_public_key", server_public_key)
    else:
        server, _ = zmq.auth.load_certificate(Path(os.fspath(server_public_key)).expanduser())  # type: ignore
    return public, secret, server


def _z85(name: str, key: object) -> bytes:
    if isinstance(key, str):
        key = key.encode("ascii", "replace")
    if not isinstance(key, bytes) or len(key) != 40:
        raise InvalidArgumentError(f"{name}: a CurveZMQ key must be 40 Z85 characters, got {key!r:.50}")
    return key
