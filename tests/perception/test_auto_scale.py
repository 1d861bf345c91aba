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

    def _probe_diameter_px(self, image, invert=None):
        return self.probe_px

    def _labels_at(self, image, scale, invert=None):
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


def test_invert_setting_is_validated(tiny_model):
    with pytest.raises(PerceptionInputError, match="invert"):
        Segmenter(tiny_model[0], invert="yes")


class _Polar(Segmenter):
    """One disk; the network is sure of it (p = 0.99) only in the `sure_when_inverted` polarity."""

    def __init__(self, model, sure_when_inverted):
        super().__init__(model, invert="auto", min_contrast_snr=0.0)
        self.sure = sure_when_inverted

    def predict_maps(self, image, invert=None):
        yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
        r2 = (yy - 32) ** 2 + (xx - 32) ** 2
        p = 0.99 if bool(invert) == self.sure else 0.6
        fg = np.where(r2 <= 100, p, 0.01).astype(np.float32)
        return np.stack([fg, np.zeros_like(fg), np.where(r2 <= 9, 0.9, 0.0).astype(np.float32)])


@pytest.mark.parametrize("sure_when_inverted", [False, True])
def test_invert_auto_keeps_the_more_confident_polarity(tiny_model, sure_when_inverted):
    seg = _Polar(tiny_model[0], sure_when_inverted)
    _, table = seg.segment(np.zeros((64, 64), np.uint8), 1e-9)
    assert len(table) == 1 and table["confidence"][0] > 0.9


def test_weighted_confidence_weights_by_area():
    from perception.instances import particle_table
    from perception.segment import weighted_confidence

    lab = np.zeros((10, 10), np.int32)
    lab[:2, :2], lab[5:9, 5:9] = 1, 2  # 4 px and 16 px
    conf = np.where(lab == 1, 0.5, np.where(lab == 2, 1.0, 0.0))
    t = particle_table(lab, 1e-9, confidence_map=conf)
    assert weighted_confidence(t) == pytest.approx((4 * 0.5 + 16 * 1.0) / 20)
    assert weighted_confidence(particle_table(np.zeros((4, 4), np.int32), 1e-9)) == 0.0


class _EmptyOrDisk(_Polar):
    """Plain polarity: the network is sure there is nothing; inverted: a doubtful disk."""

    def predict_maps(self, image, invert=None):
        maps = super().predict_maps(image, invert)
        if not invert:
            maps[0] = 0.01
            maps[2] = 0.0
        return maps


def test_invert_auto_keeps_a_confidently_empty_result(tiny_model):
    seg = _EmptyOrDisk(tiny_model[0], sure_when_inverted=False)  # inverted disk at p = 0.6
    labels, table = seg.segment(np.zeros((64, 64), np.uint8), 1e-9)
    assert len(table) == 0 and labels.max() == 0


def test_upsampled_labels_follow_the_interpolated_outline():
    from scipy import ndimage as ndi

    from perception.segment import upsample_labels

    yy, xx = np.mgrid[:256, :240]
    disk = (yy - 100.3) ** 2 + (xx - 120.7) ** 2 <= 40 ** 2
    fg_small = ndi.zoom(ndi.gaussian_filter(disk.astype(float), 2.0), 0.25, order=1, prefilter=False)
    lab_small = ndi.label(fg_small > 0.5)[0]
    lab, fg = upsample_labels(lab_small, fg_small, disk.shape)
    assert lab.shape == fg.shape == disk.shape and lab.max() == 1
    iou = (disk & (lab == 1)).sum() / (disk | (lab == 1)).sum()
    assert iou > 0.97
    cy, cx = ndi.center_of_mass(lab == 1)
    assert abs(cy - 100.3) < 0.7 and abs(cx - 120.7) < 0.7
