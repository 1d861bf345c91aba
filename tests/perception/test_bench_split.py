"""`emtwin bench perception --split dev`: hyper-parameters are chosen on other seeds than the test sets."""
import json

import numpy as np
import pytest

from perception.bench import DEV_SEED, TEST_SEED, run_perception_benchmark, scenario_test_frames, twin_test_scenes


def test_dev_scenes_and_frames_are_not_the_test_ones():
    dev, test = twin_test_scenes(1, (96, 96), seed=DEV_SEED), twin_test_scenes(1, (96, 96))
    assert DEV_SEED != TEST_SEED and not np.array_equal(dev[0][0], test[0][0])
    f_dev = scenario_test_frames(1, (96, 96), seed=DEV_SEED + 3, specimens="train")
    f_test = scenario_test_frames(1, (96, 96))
    assert not np.array_equal(f_dev[0][0], f_test[0][0])


@pytest.mark.parametrize("kw, msg", [({"split": "val"}, "split = 'val'"),
                                     ({"split": "dev", "sections": ("speed",)}, "only for twin, scenarios, ablation")])
def test_bad_split_requests_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        run_perception_benchmark(**kw)


def test_cli_dev_split_is_recorded_and_refuses_thresholds(tmp_path, capsys):
    from agent.cli import main

    out = tmp_path / "dev"
    assert main(["bench", "perception", "--quick", "--split", "dev", "--sections", "scenarios", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["split"] == "dev" and 0.0 <= res["scenarios"]["standard"]["aji_plus"] <= 1.0
    assert "(split: dev)" in capsys.readouterr().out
    th = tmp_path / "th.toml"
    th.write_text("")
    assert main(["bench", "perception", "--split", "dev", "--check", str(th)]) == 2
    assert "--split dev" in capsys.readouterr().err
