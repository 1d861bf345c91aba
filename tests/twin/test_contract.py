"""The SEM twin passes the driver contract suite."""
import pytest

from tests.drivers.contract import MicroscopeContract
from twin import TwinMicroscope


class TestTwinContract(MicroscopeContract):
    @pytest.fixture
    def microscope(self):
        with TwinMicroscope("default", seed=11) as m:
            yield m
