"""Self-supervised pretraining on unlabelled images: FCMAE of the ConvNeXt-V2 encoder, or masked-image
modelling of the whole U-Net."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .convnext import FCMAE, NetConfig, UNetMIM, count_params
from .loop import apply_step, make_optimizer, run_steps, seed_everything
from .weights import load_state, save_state


@dataclass(frozen=True)
class PretrainConfig:
    """FCMAE hyper-parameters (crop in px, a multiple of 32)."""

    steps: int = 2000
    batch: int = 16
    crop: int = 128
    lr: float = 1.5e-3
    mask_ratio: float = 0.6
    target_sigma_px: float = 1.5  # Gaussian smoothing of the reconstruction target (px)
    method: str = "fcmae"  # "fcmae": encoder only; "unet": the whole U-Net (UNetMIM, 16-px patches)
    seed: int = 0
    time_budget_s: float | None = None


def pretrain_encoder(sampler, cfg: PretrainConfig, net: NetConfig | None = None,
                     encoder_init: str | Path | None = None) -> tuple[FCMAE, dict]:
    """Run FCMAE (`cfg.method` "fcmae") or whole-U-Net MIM ("unet") on crops from `sampler`
    (`.batch(n)` -> (n,1,c,c) float32); return the model and a record of the run."""
    g = seed_everything(cfg.seed)
    net = net or NetConfig()
    if cfg.method not in ("fcmae", "unet"):
        raise ValueError(f"method = {cfg.method!r}: must be 'fcmae' or 'unet'")
    if cfg.method == "unet":
        model = UNetMIM(net, mask_ratio=cfg.mask_ratio, target_sigma_px=cfg.target_sigma_px)
    else:
        model = FCMAE(net, mask_ratio=cfg.mask_ratio, target_sigma_px=cfg.target_sigma_px)
    if encoder_init is not None:
        load_state(_init_target(model, encoder_init), encoder_init)
    opt, sched = make_optimizer(model.parameters(), lr=cfg.lr, steps=cfg.steps, time_budget_s=cfg.time_budget_s)
    model.train()

    def step(i: int) -> float:
        x = torch.from_numpy(sampler.batch(cfg.batch))
        loss = model(x, gen=g)
        return apply_step(loss, model, opt, sched)

    info = run_steps(cfg.steps, step, name="pretrain", time_budget_s=cfg.time_budget_s)
    record = {"kind": "fcmae_encoder" if cfg.method == "fcmae" else "mim_unet", "net": net.to_dict(),
              "train": asdict(cfg), "params_encoder": count_params(_encoder(model)),
              "encoder_init": str(encoder_init) if encoder_init else None, **info}
    return model, record


def _init_target(model: FCMAE | UNetMIM, path: str | Path):
    """The module the weights in `path` belong to: for MIM, the whole U-Net when they are one
    (`save_unet`, keys "encoder.*", "up16.*", ...), so a run continues another; else the encoder."""
    if isinstance(model, UNetMIM):
        with np.load(path) as z:
            if any(k.startswith("encoder.") for k in z.files):
                return model.unet
    return _encoder(model)


def _encoder(model: FCMAE | UNetMIM):
    return model.unet.encoder if isinstance(model, UNetMIM) else model.encoder


def save_encoder(model: FCMAE | UNetMIM, path: str | Path) -> Path:
    """Encoder weights only (float16 .npz)."""
    return save_state(_encoder(model), path)


def save_unet(model: UNetMIM, path: str | Path) -> Path:
    """All U-Net weights of a `UNetMIM` (float16 .npz), for `train segment --init-weights`."""
    return save_state(model.unet, path)
