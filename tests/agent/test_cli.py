"""Command line: render, run errors, frame files readable by tifffile and RosettaSciIO."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from agent.cli import main
from agent.frames_io import read_frame, write_frame
from twin import TwinMicroscope


def test_render_writes_tiff_with_scale_and_labels(tmp_path):
    out, lab = tmp_path / "f.tif", tmp_path / "l.tif"
    assert main(["render", "default", "--x-m", "1e-5", "--fov-m", "3e-6", "--shape", "96x128",
                 "--out", str(out), "--labels", str(lab)]) == 0
    frame = read_frame(out)
    assert frame.image.shape == (96, 128) and frame.meta.pixel_size_m == pytest.approx(3e-6 / 128)
    labels = tifffile.imread(lab)
    assert labels.shape == (96, 128) and labels.dtype == np.int32


def test_frames_open_in_rosettasciio_with_the_right_scale(tmp_path):
    from rsciio.tiff import file_reader

    tm = TwinMicroscope("default")
    tm.set_scan(shape_px=(64, 80))
    frame = tm.acquire()
    path = write_frame(tmp_path / "f.tif", frame)
    d = file_reader(str(path))[0]
    axes = {a["name"]: a for a in d["axes"]}
    assert axes["width"]["units"] == "µm"
    assert axes["width"]["scale"] == pytest.approx(frame.meta.pixel_size_m * 1e6, rel=1e-6)
    assert np.array_equal(d["data"], frame.image)
    back = read_frame(path)
    assert back.meta == frame.meta


@pytest.mark.parametrize("argv, message", [
    (["run", "--policy", "nope"], "policy = 'nope'"),
    (["run", "no-such-scenario", "--no-frames"], "no-such-scenario"),
    (["render", "default", "--fov-m", "-1", "--out", "x.tif"], "fov_m"),
    (["run", "--driver", "bogus://x"], "driver = 'bogus://x'"),
    (["run", "--policy-option", "field_choice=largest"], "must be one of yield, size_blind"),
    (["run", "--policy", "spiral", "--policy-option", "frame_scale=1"], "spiral takes no options"),
    (["run", "--resume", "x.tif", "--policy-option", "frame_scale=1"], "keeps the options it started with"),
    (["bench", "agent", "--policies", "raster", "--policy-option", "field_choice=size_blind"], "taken by none"),
])
def test_bad_arguments_give_one_line_errors(argv, message, tmp_path, capsys):
    argv = [a.replace("x.tif", str(tmp_path / "x.tif")) for a in argv]
    if argv[0] == "run":
        argv += ["--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_unreachable_remote_driver_fails_fast(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "run", "--driver", "tcp://127.0.0.1:9",
                           "--timeout-s", "1", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "emtwin run: error" in lines[0]
