"""Shipped model variants by name: `Segmenter("lite")`, `emtwin segment --model lite`."""
import pytest

import perception._common as common
from perception._common import resolve_model, shipped_variants


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    for name in ("segmenter", "segmenter_int8", "segmenter_lite", "focus"):
        (tmp_path / f"{name}.onnx").write_bytes(b"")
    monkeypatch.setattr(common, "MODELS_DIR", tmp_path)
    return tmp_path


def test_variants_are_listed_without_int8_copies(models_dir):
    assert shipped_variants("segmenter") == ["standard", "lite"]
    assert shipped_variants("focus") == ["standard"]
    assert shipped_variants("restorer") == []


def test_names_resolve_to_shipped_files(models_dir):
    assert resolve_model(None, "segmenter") == models_dir / "segmenter.onnx"
    assert resolve_model("standard", "segmenter", int8=True) == models_dir / "segmenter_int8.onnx"
    assert resolve_model("lite", "segmenter") == models_dir / "segmenter_lite.onnx"
    assert resolve_model("lite", "segmenter", int8=True) == models_dir / "segmenter_lite.onnx"  # no int8 copy
    path = models_dir / "mine.onnx"
    path.write_bytes(b"")
    assert resolve_model(str(path), "segmenter") == path


def test_unknown_name_lists_the_shipped_ones(models_dir):
    with pytest.raises(FileNotFoundError, match="shipped: standard, lite"):
        resolve_model("huge", "segmenter")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(str(models_dir / "nope.onnx"), "segmenter")
