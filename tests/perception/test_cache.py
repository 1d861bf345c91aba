"""Training-data caches: atomic writes; a truncated cache is regenerated, not fatal."""
import numpy as np

from perception.train.cache import load_npz, save_npz
from perception.train.sources import labelled_scenes


def test_save_then_load_round_trips_and_leaves_no_temporary_file(tmp_path):
    path = save_npz(tmp_path / "c" / "a.npz", x=np.arange(5.0), n=3)
    z = load_npz(path)
    assert np.array_equal(z["x"], np.arange(5.0)) and int(z["n"]) == 3
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.npz"]
    assert load_npz(tmp_path / "missing.npz") is None


def test_truncated_scene_cache_is_regenerated_with_a_warning(tmp_path, capsys):
    ims, labs = labelled_scenes("synth", 2, 0, (64, 64), tmp_path)
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(path.read_bytes()[:100])  # as left by a run killed mid-write before atomic saves
    ims2, labs2 = labelled_scenes("synth", 2, 0, (64, 64), tmp_path)
    assert "unreadable" in capsys.readouterr().err
    assert all(np.array_equal(a, b) for a, b in zip(ims + labs, ims2 + labs2))
    assert load_npz(path) is not None  # rewritten whole
