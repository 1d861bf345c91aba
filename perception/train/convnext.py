"""ConvNeXt-V2 encoder, FCMAE masked pretraining and a light U-Net decoder (torch).

Architecture after Woo et al., "ConvNeXt V2: Co-designing and Scaling ConvNets with Masked
Autoencoders", CVPR 2023 (arXiv:2301.00808): depthwise 7x7 conv, LayerNorm, pointwise MLP with
Global Response Normalisation (GRN), 4x4 patchify stem, 2x2 strided downsampling. Everything
is channels-first so that the ONNX graph is plain Conv/ReduceMean ops.
"""
from __future__ import annotations

import math

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NetConfig:
    """Sizes of the encoder (`dims`, `depths`) and the decoder (`dec_dims`, strides 16..2)."""

    in_chans: int = 1
    dims: tuple[int, ...] = (24, 48, 96, 192)
    depths: tuple[int, ...] = (2, 2, 4, 2)
    dec_dims: tuple[int, ...] = (96, 48, 32, 24)
    out_chans: int = 3
    fine_chans: int = 8
    grn: bool = True
    sep_decoder: bool = False  # depthwise-separable 3x3 convs in the decoder's up blocks

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        x = (x - mu) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class GRN(nn.Module):
    """Global Response Normalisation (ConvNeXt-V2, eq. 1-3), channels-first."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.sqrt((x * x).sum(dim=(2, 3), keepdim=True) + 1e-6)
        nx = gx / (gx.mean(dim=1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class Block(nn.Module):
    """ConvNeXt-V2 block: dw7x7 -> LN -> 1x1 (4x) -> GELU -> GRN -> 1x1 -> residual.

    grn=False leaves GRN out (a ConvNeXt-V1 block): the output at a pixel then depends only on
    its receptive field, so one pass over a large frame equals tiled inference.
    """

    def __init__(self, dim: int, grn: bool = True):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pw1 = nn.Conv2d(dim, 4 * dim, 1)
        self.grn = GRN(4 * dim) if grn else nn.Identity()
        self.pw2 = nn.Conv2d(4 * dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw2(self.grn(F.gelu(self.pw1(self.norm(self.dw(x))), approximate="tanh")))
        return x + y


class Encoder(nn.Module):
    """Four stages at strides 4, 8, 16, 32; `forward` returns the feature of every stage.

    `mask` (N,1,h,w of 0/1, 1 = hidden) emulates FCMAE's sparse convolution by zeroing the
    hidden positions after the stem and after every block, so hidden patches never leak.
    """

    def __init__(self, cfg: NetConfig):
        super().__init__()
        d = cfg.dims
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_chans, d[0], 4, stride=4), LayerNorm2d(d[0]))
        self.down = nn.ModuleList(
            nn.Sequential(LayerNorm2d(d[i - 1]), nn.Conv2d(d[i - 1], d[i], 2, stride=2))
            for i in range(1, len(d))
        )
        self.stages = nn.ModuleList(
            nn.Sequential(*[Block(d[i], cfg.grn) for _ in range(cfg.depths[i])]) for i in range(len(d))
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        feats = []
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.down[i - 1](x)
            keep = None if mask is None else 1.0 - F.interpolate(mask, size=x.shape[-2:], mode="nearest")
            if keep is not None:
                x = x * keep
            for blk in stage:
                x = blk(x)
                if keep is not None:
                    x = x * keep
            feats.append(x)
        return feats


def gaussian_blur(img: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of (n, c, h, w) with reflect padding; identity for sigma <= 0."""
    if sigma_px <= 0:
        return img
    r = max(1, int(math.ceil(3 * sigma_px)))
    x = torch.arange(-r, r + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-0.5 * (x / sigma_px) ** 2)
    k = k / k.sum()
    c = img.shape[1]
    out = F.conv2d(F.pad(img, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


class FCMAE(nn.Module):
    """Fully-convolutional masked autoencoder: hide random patches, reconstruct their pixels.

    Loss: mean-squared error on hidden patches only, targets normalised per patch (MAE's
    "norm_pix_loss"). The patch size equals the encoder's total stride (32 px).
    `target_sigma_px` > 0 smooths the target with a Gaussian first: in shot-noise-limited
    SEM frames most per-pixel variance is unpredictable noise, so a raw-pixel target teaches
    little (MaskFeat, Wei et al. CVPR 2022, likewise replaces raw pixels by a less noisy target).
    """

    def __init__(self, cfg: NetConfig, mask_ratio: float = 0.6, dec_dim: int = 128, target_sigma_px: float = 0.0):
        super().__init__()
        self.cfg = cfg
        if not (isinstance(target_sigma_px, (int, float)) and math.isfinite(target_sigma_px) and target_sigma_px >= 0):
            raise ValueError(f"target_sigma_px = {target_sigma_px!r}: must be a finite number >= 0 (px)")
        self.target_sigma_px = float(target_sigma_px)
        self.encoder = Encoder(cfg)
        self.patch = 32
        self.mask_ratio = mask_ratio
        self.proj = nn.Conv2d(cfg.dims[-1], dec_dim, 1)
        self.mask_token = nn.Parameter(torch.zeros(1, dec_dim, 1, 1))
        self.dec = Block(dec_dim)
        self.pred = nn.Conv2d(dec_dim, self.patch * self.patch * cfg.in_chans, 1)

    def random_mask(self, n: int, h: int, w: int, gen: torch.Generator | None = None) -> torch.Tensor:
        """(n,1,h,w) 0/1 mask hiding round(mask_ratio*h*w) random patches per sample."""
        k = int(round(self.mask_ratio * h * w))
        noise = torch.rand(n, h * w, generator=gen)
        order = noise.argsort(dim=1)
        mask = torch.zeros(n, h * w)
        mask.scatter_(1, order[:, :k], 1.0)
        return mask.view(n, 1, h, w)

    def forward(self, img: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        n, c, hh, ww = img.shape
        h, w = hh // self.patch, ww // self.patch
        mask = self.random_mask(n, h, w, gen).to(img.device)
        feats = self.encoder(img, F.interpolate(mask, scale_factor=self.patch, mode="nearest"))
        z = self.proj(feats[-1])
        z = z * (1 - mask) + self.mask_token * mask
        pred = self.pred(self.dec(z))  # n, p*p*c, h, w
        target = F.unfold(gaussian_blur(img, self.target_sigma_px), self.patch, stride=self.patch)  # n, c*p*p, h*w
        target = target.view(n, -1, h, w)
        mu = target.mean(1, keepdim=True)
        var = target.var(1, keepdim=True)
        target = (target - mu) / torch.sqrt(var + 1e-6)
        err = (pred - target).pow(2).mean(1, keepdim=True)
        return (err * mask).sum() / mask.sum().clamp(min=1.0)


class UpBlock(nn.Module):
    """Upsample x2, add the projected skip, refine with a 3x3 conv + BatchNorm + ReLU.

    BatchNorm folds into the conv at export, so the decoder costs only convs at inference.
    `sep`: the 3x3 conv is depthwise followed by a 1x1 conv (1/9 + 1/cout of its multiply-adds).
    """

    def __init__(self, cin: int, cskip: int, cout: int, sep: bool = False):
        super().__init__()
        self.reduce = nn.Conv2d(cin, cout, 1)
        self.skip = nn.Conv2d(cskip, cout, 1)
        self.conv = (nn.Sequential(nn.Conv2d(cout, cout, 3, padding=1, groups=cout), nn.Conv2d(cout, cout, 1))
                     if sep else nn.Conv2d(cout, cout, 3, padding=1))
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.reduce(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = x + self.skip(skip)
        return F.relu(self.norm(self.conv(x)))


class UNet(nn.Module):
    """ConvNeXt-V2 encoder + light U-Net decoder; output at full resolution, `out_chans` maps.

    A shallow full-resolution path (3x3 convs on the image at strides 1 and 2) supplies edges
    that the 4x4 patchify stem cannot.
    """

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        d, dd = cfg.dims, cfg.dec_dims
        self.encoder = Encoder(cfg)
        self.shallow2 = nn.Sequential(nn.Conv2d(cfg.in_chans, dd[3], 3, stride=2, padding=1), nn.ReLU())
        sep = cfg.sep_decoder
        self.up16 = UpBlock(d[3], d[2], dd[0], sep)
        self.up8 = UpBlock(dd[0], d[1], dd[1], sep)
        self.up4 = UpBlock(dd[1], d[0], dd[2], sep)
        self.up2 = UpBlock(dd[2], dd[3], dd[3], sep)
        self.to_fine = nn.Conv2d(dd[3], cfg.fine_chans, 1)
        self.fine = nn.Conv2d(cfg.fine_chans + cfg.in_chans, cfg.fine_chans, 3, padding=1)
        self.head = nn.Conv2d(cfg.fine_chans, cfg.out_chans, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        f4, f8, f16, f32 = self.encoder(img)
        s2 = self.shallow2(img)
        x = self.up16(f32, f16)
        x = self.up8(x, f8)
        x = self.up4(x, f4)
        x = self.up2(x, s2)
        x = F.interpolate(self.to_fine(x), size=img.shape[-2:], mode="bilinear", align_corners=False)
        x = F.relu(self.fine(torch.cat([x, img], dim=1)))
        return self.head(x)


class UNetMIM(nn.Module):
    """Masked-image modelling of the whole U-Net (SimMIM-style: Xie et al., CVPR 2022): hide
    random `patch`-px squares of the input (filled with the image mean), reconstruct them in
    the first output map; loss = MSE on hidden pixels of the per-patch normalised target,
    smoothed first by `target_sigma_px` (see FCMAE). Unlike FCMAE, which trains the encoder
    only, the decoder learns full-resolution structure too, so fine-tuning starts from it all.
    """

    def __init__(self, cfg: NetConfig, mask_ratio: float = 0.6, patch: int = 16, target_sigma_px: float = 1.5):
        super().__init__()
        if patch < 2 or patch & (patch - 1):
            raise ValueError(f"patch = {patch!r}: must be a power of two >= 2 (px)")
        self.unet = UNet(cfg)
        self.mask_ratio, self.patch, self.target_sigma_px = mask_ratio, patch, float(target_sigma_px)

    def forward(self, img: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        n, c, hh, ww = img.shape
        p = self.patch
        h, w = hh // p, ww // p
        k = int(round(self.mask_ratio * h * w))
        order = torch.rand(n, h * w, generator=gen).argsort(dim=1)
        mask = torch.zeros(n, h * w).scatter_(1, order[:, :k], 1.0).view(n, 1, h, w)
        full = F.interpolate(mask, scale_factor=p, mode="nearest")
        fill = img.mean(dim=(2, 3), keepdim=True)
        pred = self.unet(img * (1 - full) + fill * full)[:, :1]
        target = gaussian_blur(img, self.target_sigma_px)[:, :1]
        t = target.view(n, 1, h, p, w, p)
        t = (t - t.mean(dim=(3, 5), keepdim=True)) / torch.sqrt(t.var(dim=(3, 5), keepdim=True) + 1e-6)
        err = (pred.view(n, 1, h, p, w, p) - t).pow(2).mean(dim=(3, 5))  # n, 1, h, w
        return (err * mask).sum() / mask.sum().clamp(min=1.0)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Named sizes. "standard": the shipped segmenter. "fast": ~3x less compute per pixel and no
# GRN, so a whole 1920x1200 frame is segmented in one pass (no tiles). "lite": as cheap as
# "fast" but with GRN (so tiled like "standard") and a depthwise-separable decoder.
ARCHS: dict[str, NetConfig] = {
    "standard": NetConfig(),
    "fast": NetConfig(dims=(16, 32, 64, 128), depths=(1, 1, 3, 1), dec_dims=(64, 32, 16, 8), fine_chans=4, grn=False),
    "lite": NetConfig(dims=(16, 32, 64, 128), depths=(1, 1, 3, 1), dec_dims=(64, 32, 24, 16), fine_chans=4,
                      sep_decoder=True),
}


def arch_config(name: str) -> NetConfig:
    """The `NetConfig` of a named architecture (see `ARCHS`)."""
    if name not in ARCHS:
        raise ValueError(f"architecture {name!r}: must be one of {', '.join(ARCHS)}")
    return ARCHS[name]


def default_config(**overrides) -> NetConfig:
    base = NetConfig()
    return NetConfig(**{**asdict(base), **overrides}) if overrides else base


__all__ = ["ARCHS", "arch_config", "NetConfig", "Encoder", "FCMAE", "UNet", "UNetMIM", "Block", "GRN", "LayerNorm2d", "count_params", "default_config"]
