"""Benchmark scenarios: every file loads and validates; the issue's nine situations are all present."""
from __future__ import annotations

import math
import tomllib

import pytest

from agent.bench.cli import sem_scenarios
from twin import load_scenario
from twin.config import Scenario, scenarios_dir

BENCHMARK = ("sparse", "dense", "bimodal", "drift", "astigmatism", "charging", "lowdose", "tilted", "shifted")
NEW = ("bimodal", "drift", "astigmatism", "charging", "lowdose", "tilted", "shifted")
DEFAULT = Scenario()


def raw(name: str) -> dict:
    return tomllib.loads((scenarios_dir() / f"{name}.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sem_scenarios())
def test_every_sem_scenario_loads_with_disjoint_seed_lists(name):
    sc = load_scenario(name)
    assert sc.name == name
    assert sc.description
    assert sc.train_seeds and sc.test_seeds and not set(sc.train_seeds) & set(sc.test_seeds)
    data = raw(name)
    assert "train_seeds" in data and "test_seeds" in data  # explicit, not the defaults
    assert sc.specimen.populations and sc.task.target_rel_precision > 0


@pytest.mark.parametrize("name", NEW)
def test_new_scenarios_state_task_and_budget(name):
    data = raw(name)
    assert {"specimen", "task", "budget"} <= set(data)
    assert "target_rel_precision" in data["task"]


def test_the_nine_benchmark_situations_are_what_they_claim():
    sc = {n: load_scenario(n) for n in BENCHMARK}
    assert sc["sparse"].specimen.empty_fraction >= 0.5
    assert sc["dense"].specimen.density_per_m2 >= 3 * DEFAULT.specimen.density_per_m2
    assert sc["dense"].specimen.cluster_fraction >= 0.5
    pop = sc["bimodal"].specimen.populations[0]
    assert pop.distribution == "bimodal" and pop.median2_diameter_m > 2.5 * pop.median_diameter_m
    assert sc["bimodal"].task.per_mode
    assert math.hypot(*sc["drift"].drift.velocity_m_per_s) >= 10 * math.hypot(*DEFAULT.drift.velocity_m_per_s)
    assert sc["drift"].drift.settle_amplitude_m >= 5 * DEFAULT.drift.settle_amplitude_m
    opt = sc["astigmatism"].optics
    ax, ay = opt.intrinsic_astigmatism_m
    assert math.hypot(ax, ay) > 1.5e-6 and ax * ay < 0  # large, oblique
    assert sc["astigmatism"].initial.stigmator == (0.0, 0.0)  # uncorrected at start
    assert max(abs(ax), abs(ay)) < opt.stigmator_gain_m * opt.stigmator_limit  # but correctable
    from twin.materials import get_material

    ch = sc["charging"]
    assert get_material(ch.specimen.substrate).insulator
    assert all(get_material(p.material).insulator for p in ch.specimen.populations)
    assert ch.charging.enabled and ch.charging.deflection_m > DEFAULT.charging.deflection_m
    assert sc["lowdose"].budget.max_electrons <= 1e-4 * DEFAULT.budget.max_electrons
    assert sc["lowdose"].initial.beam_current_a < DEFAULT.initial.beam_current_a
    tilt = sc["tilted"].specimen
    assert math.hypot(*tilt.height_tilt_rad) >= 20 * math.hypot(*DEFAULT.specimen.height_tilt_rad)
    assert tilt.height_warp_m > DEFAULT.specimen.height_warp_m


def test_shifted_scenario_lies_outside_the_training_defaults():
    s = load_scenario("shifted")
    d = {det.name: det for det in DEFAULT.detectors}
    for det in s.detectors:
        assert det.read_noise >= 3 * d[det.name].read_noise
        assert det.gain >= 1.3 * d[det.name].gain and det.offset != d[det.name].offset
    o, od = s.optics, DEFAULT.optics
    assert o.aperture_diameter_m > od.aperture_diameter_m and o.energy_spread_ev > 2 * od.energy_spread_ev
    assert o.cc_m > 2 * od.cc_m and o.reduced_brightness < od.reduced_brightness
    assert s.specimen.texture_rms > 2 * DEFAULT.specimen.texture_rms
    trained = {p.material for p in load_scenario("default").specimen.populations}
    assert s.specimen.populations[0].material not in trained and s.specimen.substrate != DEFAULT.specimen.substrate


def test_readme_table_lists_every_scenario_file():
    text = (scenarios_dir() / "README.md").read_text(encoding="utf-8")
    table = text.split("## Keys and defaults")[0]
    for name in sem_scenarios():
        assert f"`{name}.toml`" in table, name
