"""scale="auto": keep scale 1 for particles the network resolves, else shrink them to ~24 px."""
import numpy as np
import pytest

from perception import PerceptionInputError, Segmenter
from perception.segment import auto_scale


def test_particles_in_the_training_range_keep_scale_1():
    assert auto_scale(40.0, float("nan"), (512, 512)) == 1.0
    assert auto_scale(0.0, float("nan"), (512, 512)) == 1.0  # nothing found by the coarse pass


def test_large_particles_resolved_at_scale_1_keep_it():
    assert auto_scale(120.0, 110.0, (512, 512)) == 1.0  # the passes agree within 20 %


def test_large_particles_not_resolved_at_scale_1_are_shrunk_to_the_target():
    assert auto_scale(240.0, 30.0, (2048, 2048)) == pytest.approx(24.0 / 240.0)
    assert auto_scale(240.0, 0.0, (2048, 2048), target_px=48.0) == pytest.approx(0.2)
    assert auto_scale(240.0, 30.0, (256, 512)) == pytest.approx(0.25)  # >= 64 px on the short side
    assert auto_scale(75.0, 10.0, (512, 512), target_px=200.0) == 1.0  # never enlarges


@pytest.mark.parametrize("bad", [float("nan"), -1.0, float("inf")])
def test_auto_scale_rejects_bad_diameters(bad):
    with pytest.raises(PerceptionInputError, match="d_probe_px"):
        auto_scale(bad, 10.0, (64, 64))


@pytest.mark.parametrize("kw", [{"auto_probe": 0.0}, {"auto_probe": 1.5}, {"auto_agree": -0.1},
                                {"auto_max_px": float("nan")}, {"auto_target_px": "big"}])
def test_segmenter_rejects_bad_auto_settings(tiny_model, kw):
    with pytest.raises(PerceptionInputError, match=next(iter(kw))):
        Segmenter(tiny_model[0], **kw)


class _Spy(Segmenter):
    """Segmenter whose passes are recorded; the coarse pass sees `probe_px`, scale 1 `one_px`."""

    def __init__(self, model, probe_px, one_px):
        super().__init__(model)
        self.probe_px, self.one_px, self.scales = probe_px, one_px, []

    def _probe_diameter_px(self, image):
        return self.probe_px

    def _labels_at(self, image, scale):
        self.scales.append(scale)
        fg = np.zeros(image.shape, np.float32)
        r = self.one_px / 2
        yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
        fg[(yy - image.shape[0] / 2) ** 2 + (xx - image.shape[1] / 2) ** 2 <= r * r] = 1.0
        return np.zeros(image.shape, np.int32), fg


@pytest.mark.parametrize("probe_px, one_px, scales", [(30.0, 30.0, [1.0]), (100.0, 100.0, [1.0]),
                                                      (200.0, 40.0, [1.0, 24.0 / 200.0])])
def test_segment_auto_runs_the_passes_the_rule_needs(tiny_model, probe_px, one_px, scales):
    seg = _Spy(tiny_model[0], probe_px, one_px)
    seg.segment(np.zeros((600, 600), np.uint8), 1e-9, scale="auto")
    assert seg.scales == pytest.approx(scales, rel=0.02)
