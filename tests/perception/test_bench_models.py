"""`emtwin bench perception --model NAME=PATH`: score your own segmenter next to the shipped one."""
import json

import pytest

from agent.commands.bench import parse_models


def test_parse_models_names_and_defaults(tiny_model):
    path = tiny_model[0]
    assert parse_models(None) is None and parse_models([]) is None
    from perception._common import shipped_segmenters

    shipped = list(shipped_segmenters())  # standard, and lite when shipped
    assert shipped[0] == "standard"
    models = parse_models([f"mine={path}"])
    assert list(models) == shipped + ["mine"] and models["mine"] == path
    assert list(parse_models([str(path)])) == shipped + [path.stem]


@pytest.mark.parametrize("spec, words", [("standard={p}", "taken"), ("={p}", "empty"),
                                          ("x={missing}", "no such file"), ("x={json}", "not an .onnx")])
def test_parse_models_refuses_bad_specs(tiny_model, spec, words):
    p = tiny_model[0]
    spec = spec.format(p=p, missing=p.with_name("nope.onnx"), json=p.with_suffix(".json"))
    with pytest.raises((ValueError, FileNotFoundError), match=words):
        parse_models([spec])


def test_bench_scores_the_extra_model(tiny_model, tmp_path, capsys):
    from agent.cli import main

    out = tmp_path / "res"
    assert main(["bench", "perception", "--quick", "--sections", "scenarios", "--model", f"mine={tiny_model[0]}",
                 "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())["scenarios"]
    assert {"standard", "mine"} <= set(res)
    assert 0.0 <= res["mine"]["aji_plus"] <= 1.0 and res["standard"]["aji_plus"] > res["mine"]["aji_plus"]
    assert "mine" in capsys.readouterr().out


def test_speed_variants_time_the_extra_model_and_its_int8_sibling(tiny_model, tmp_path):
    import shutil

    from perception.bench import speed_variants

    shipped = speed_variants(256)
    assert shipped and all(not label.startswith("mine") for label, _ in shipped)
    mine = tmp_path / "mine.onnx"
    shutil.copy(tiny_model[0], mine)
    labels = [label for label, _ in speed_variants(256, {"standard": tiny_model[0], "mine": mine})]
    assert "mine fp32 tile256" in labels and "fp32 tile256" in labels and "mine int8 tile256" not in labels
    shutil.copy(tiny_model[0], tmp_path / "mine_int8.onnx")
    labels = [label for label, kw in speed_variants(256, {"mine": mine})]
    assert labels == ["mine fp32 tile256", "mine fp32 one pass", "mine int8 tile256", "mine int8 one pass"]


def test_twin_section_splits_aji_by_particle_size():
    import numpy as np

    from perception.bench import _by_size, median_diameter_px

    lab = np.zeros((40, 40), np.int32)
    lab[2:8, 2:8] = 1  # 36 px: d = 6.8 px
    lab[20:26, 20:26] = 2
    assert abs(median_diameter_px(lab) - np.sqrt(4 * 36 / np.pi)) < 1e-9
    assert np.isnan(median_diameter_px(np.zeros((5, 5), np.int32)))
    rows = [{"aji_plus": a} for a in (0.2, 0.4, 0.9, 0.5)]
    out = _by_size(rows, [6.0, 8.0, 40.0, float("nan")])
    assert abs(out["aji_plus_d5-10px"] - 0.3) < 1e-12
    assert (out["n_d5-10px"], out["n_d10-30px"], out["n_d30-70px"]) == (2, 0, 1)
    assert np.isnan(out["aji_plus_d10-30px"]) and out["aji_plus_d30-70px"] == 0.9
