"""The null backend passes the driver contract (it is the reference for remote tests)."""
import pytest

from drivers.null import NullMicroscope
from tests.drivers.contract import MicroscopeContract


class TestNullContract(MicroscopeContract):
    @pytest.fixture
    def microscope(self):
        with NullMicroscope(seed=3) as m:
            yield m
