"""`emtwin serve` and `emtwin keys`."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

from agent.cli import main
from drivers.remote import RemoteMicroscope

ROOT = Path(__file__).resolve().parents[2]


def test_keys_command_writes_a_usable_folder(tmp_path, capsys) -> None:
    assert main(["keys", str(tmp_path / "k"), "--client", "alice", "--client", "bob"]) == 0
    names = sorted(p.name for p in (tmp_path / "k").iterdir())
    assert names == ["alice.key", "alice.key_secret", "authorized", "bob.key", "bob.key_secret",
                     "server.key", "server.key_secret"]
    assert "emtwin serve --keys" in capsys.readouterr().out
    assert main(["keys", str(tmp_path / "k"), "--client", "alice"]) == 2  # no silent overwrite
    assert "--force" in capsys.readouterr().err


def test_serve_refuses_an_open_bind_without_keys(capsys) -> None:
    assert main(["serve", "--driver", "null", "--bind", "tcp://0.0.0.0:5555"]) == 2
    assert "without CurveZMQ keys" in capsys.readouterr().err
    assert main(["serve", "--driver", "null", "--stream", "tcp://*:5556"]) == 2
    assert main(["serve", "--driver", "null", "--keys", "/no/such/folder"]) == 2


def test_serve_runs_until_ctrl_c(tmp_path) -> None:
    control, stream = f"ipc://{tmp_path}/c", f"ipc://{tmp_path}/s"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "serve", "--driver", "null", "--seed", "4",
         "--bind", control, "--stream", stream],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30.0)
        assert ready and f"on {control}" in proc.stdout.readline()
        with RemoteMicroscope(control, timeout_s=5.0) as m:
            assert m.status().backend == "null"
            assert m.set_fov_m(3e-6) == 3e-6
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:  # hung: SIGABRT makes faulthandler print every thread's stack
            proc.send_signal(signal.SIGABRT)
            raise AssertionError("serve did not stop within 30 s of SIGINT:\n" + proc.communicate(timeout=10)[1])
        assert code == 0
        assert "stopped" in proc.stdout.read()
    finally:
        proc.kill()
        proc.wait(10)
