"""Named network sizes, the GRN-free block and whole-U-Net masked-image modelling."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from perception.train.convnext import ARCHS, NetConfig, UNet, UNetMIM, arch_config  # noqa: E402

TINY = NetConfig(dims=(8, 16, 16, 16), depths=(1, 1, 1, 1), dec_dims=(16, 8, 8, 8), fine_chans=4)


def test_arch_names():
    assert arch_config("standard") == NetConfig()
    assert arch_config("fast").grn is False
    lite = arch_config("lite")
    assert lite.grn is True and lite.sep_decoder is True and lite.dims == arch_config("fast").dims
    with pytest.raises(ValueError, match="standard, fast, lite"):
        arch_config("huge")
    assert set(ARCHS) == {"standard", "fast", "lite"}


def test_separable_decoder_is_cheaper_and_keeps_shapes():
    dense, sep = (UNet(NetConfig(**{**TINY.to_dict(), "sep_decoder": s})) for s in (False, True))
    x = torch.rand(2, 1, 64, 96)
    assert sep(x).shape == dense(x).shape == (2, 3, 64, 96)
    n = lambda m: sum(p.numel() for p in m.up2.conv.parameters())  # noqa: E731
    c = TINY.dec_dims[3]
    assert n(dense) == 9 * c * c + c and n(sep) == (9 * c + c) + (c * c + c)
    assert NetConfig.from_dict({k: v for k, v in TINY.to_dict().items() if k != "sep_decoder"}) == TINY  # old records


def test_grn_free_output_depends_only_on_the_receptive_field():
    """Without GRN, what lies far away cannot change a pixel's output (with GRN it does: its
    norm is taken over the whole input, which is why the standard model runs in tiles)."""
    torch.manual_seed(0)
    x = torch.rand(1, 1, 256, 512)
    y = x.clone()
    y[..., 384:] = torch.rand(1, 1, 256, 128) * 5  # change only the far right
    for grn, same in ((False, True), (True, False)):
        net = UNet(NetConfig(**{**TINY.to_dict(), "grn": grn})).eval()
        with torch.no_grad():
            if grn:  # GRN starts as the identity (gamma = beta = 0); make it act
                for m in net.modules():
                    if hasattr(m, "gamma"):
                        m.gamma.data.fill_(1.0)
            a, b = net(x)[..., :64], net(y)[..., :64]
        assert torch.allclose(a, b, atol=1e-6) is same


def test_unet_mim_loss_trains_the_decoder_and_hides_the_requested_share():
    torch.manual_seed(0)
    mim = UNetMIM(TINY, mask_ratio=0.5, patch=16)
    img = torch.rand(2, 1, 64, 64)
    loss = mim(img, gen=torch.Generator().manual_seed(1))
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert mim.unet.head.weight.grad.abs().sum() > 0 and mim.unet.up2.conv.weight.grad.abs().sum() > 0
    opt = torch.optim.Adam(mim.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(2)
    first = last = None
    for i in range(40):  # smooth images are predictable from their surroundings: the loss must drop
        smooth = torch.nn.functional.avg_pool2d(torch.rand(4, 1, 64, 64), 9, stride=1, padding=4)
        opt.zero_grad()
        val = mim(smooth, gen=g)
        val.backward()
        opt.step()
        first = val.item() if first is None else first
        last = val.item()
    assert last < 0.8 * first


@pytest.mark.parametrize("bad", [0, 3, 12])
def test_unet_mim_refuses_bad_patches(bad):
    with pytest.raises(ValueError, match="patch"):
        UNetMIM(TINY, patch=bad)


def test_pretrain_unet_method_writes_loadable_weights(tmp_path):
    from perception.train.convnext import UNet
    from perception.train.data import UnlabelledSampler
    from perception.train.pretrain import PretrainConfig, pretrain_encoder, save_unet
    from perception.train.weights import load_state

    rng = np.random.default_rng(0)
    sampler = UnlabelledSampler([rng.random((96, 96)).astype(np.float32) for _ in range(3)], 64, rng)
    model, rec = pretrain_encoder(sampler, PretrainConfig(steps=2, batch=2, crop=64, method="unet"), net=TINY)
    assert rec["kind"] == "mim_unet" and rec["steps_done"] == 2
    path = save_unet(model, tmp_path / "mim_weights.npz")
    load_state(UNet(TINY), path)  # strict: every U-Net weight is there
    with pytest.raises(ValueError, match="method"):
        pretrain_encoder(sampler, PretrainConfig(steps=1, batch=2, crop=64, method="simclr"), net=TINY)


def test_pretrain_unet_continues_from_a_whole_unet(tmp_path):
    import torch

    from perception.train.data import UnlabelledSampler
    from perception.train.pretrain import PretrainConfig, _init_target, pretrain_encoder, save_encoder, save_unet

    rng = np.random.default_rng(0)
    sampler = UnlabelledSampler([rng.random((96, 96)).astype(np.float32) for _ in range(3)], 64, rng)
    first, _ = pretrain_encoder(sampler, PretrainConfig(steps=1, batch=2, crop=64, method="unet", seed=3), net=TINY)
    whole, enc = save_unet(first, tmp_path / "w.npz"), save_encoder(first, tmp_path / "e.npz")
    fresh = UNetMIM(TINY)
    assert _init_target(fresh, whole) is fresh.unet and _init_target(fresh, enc) is fresh.unet.encoder
    second, rec = pretrain_encoder(sampler, PretrainConfig(steps=0, batch=2, crop=64, method="unet"), net=TINY,
                                   encoder_init=whole)
    assert rec["steps_done"] == 0
    a, b, c = first.unet.state_dict(), second.unet.state_dict(), UNetMIM(TINY).unet.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-2) for k in a)  # decoder too (float16 file)
    assert not torch.allclose(a["up2.conv.weight"], c["up2.conv.weight"], atol=1e-2)  # other seed, other init
