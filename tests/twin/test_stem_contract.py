"""The driver contract suite, run against the STEM twin."""
from __future__ import annotations

import pytest

from tests.drivers.contract import MicroscopeContract
from twin.stem.microscope import StemTwinMicroscope


class TestStemTwinContract(MicroscopeContract):
    @pytest.fixture
    def microscope(self):
        with StemTwinMicroscope("stem-catalyst", seed=3) as m:
            yield m


def test_limits_say_stem() -> None:
    lim = StemTwinMicroscope("stem-catalyst").limits()
    assert lim.mode == "stem" and lim.defocus_m is not None
    assert lim.defocus_m[0] < 0 < lim.defocus_m[1]
    assert {"HAADF", "ADF", "BF"} <= set(lim.detectors)
    assert lim.fov_m == pytest.approx((2e-9, 2e-6))
    assert lim.high_voltage_v == pytest.approx((60e3, 300e3))
