"""Fine-tune the ConvNeXt-V2 U-Net segmenter on labelled scenes; export ONNX (+ QDQ int8)."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .convnext import NetConfig, UNet, count_params
from .data import LabelledSampler
from .export import export_onnx, quantize_qdq, write_record
from .loop import apply_step, make_optimizer, run_steps, seed_everything
from .weights import load_state, save_state


@dataclass(frozen=True)
class SegTrainConfig:
    """Fine-tuning hyper-parameters (sizes in px)."""

    steps: int = 3000
    batch: int = 8
    crop: int = 128
    lr: float = 2e-3
    encoder_lr_scale: float | None = None  # None: 0.5 from an FCMAE encoder (encoder_init), else 1
    boundary_pos_weight: float = 3.0
    centre_weight: float = 2.0
    seed: int = 0
    time_budget_s: float | None = None
    int8: bool = True


def seg_loss(logits: torch.Tensor, t: torch.Tensor, cfg: SegTrainConfig,
             boundary_pos_weight: float | None = None) -> torch.Tensor:
    """BCE on foreground, weighted BCE on boundary (pos_weight `cfg.boundary_pos_weight` unless
    given), soft-target BCE on the centre map."""
    pw = torch.tensor(cfg.boundary_pos_weight if boundary_pos_weight is None else boundary_pos_weight)
    l_fg = F.binary_cross_entropy_with_logits(logits[:, 0], t[:, 0])
    l_bd = F.binary_cross_entropy_with_logits(logits[:, 1], t[:, 1], pos_weight=pw)
    l_ct = F.binary_cross_entropy_with_logits(logits[:, 2], t[:, 2])
    return l_fg + l_bd + cfg.centre_weight * l_ct


def soft_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, cfg: SegTrainConfig) -> torch.Tensor:
    """`seg_loss` against the teacher's sigmoid maps with no boundary pos_weight, so that its
    minimum is the teacher's output itself."""
    return seg_loss(logits, torch.sigmoid(teacher_logits), cfg, boundary_pos_weight=1.0)


def distil_loss(logits: torch.Tensor, t: torch.Tensor, teacher_logits: torch.Tensor | None,
                cfg: SegTrainConfig, weight: float) -> torch.Tensor:
    """(1 - weight) x label loss + weight x `soft_loss` against the teacher (knowledge
    distillation with soft targets: Hinton et al. 2015, arXiv:1503.02531)."""
    if teacher_logits is None or weight == 0.0:
        return seg_loss(logits, t, cfg)
    soft = soft_loss(logits, teacher_logits, cfg)
    return soft if weight == 1.0 else (1.0 - weight) * seg_loss(logits, t, cfg) + weight * soft


def check_lr_scale(option: str, value: float) -> float:
    """`value` if it is a learning-rate factor in (0, 1], else a ValueError naming `option`."""
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ValueError(f"{option} {value!r}: must be in (0, 1]")
    return value


def encoder_lr_factor(cfg: SegTrainConfig, from_fcmae: bool) -> float:
    """The encoder's learning rate over the decoder's: `cfg.encoder_lr_scale` when set, else
    0.5 for an encoder starting from FCMAE weights and 1 otherwise."""
    if cfg.encoder_lr_scale is not None:
        return cfg.encoder_lr_scale
    return 0.5 if from_fcmae else 1.0


def train_segmenter(sampler: LabelledSampler, cfg: SegTrainConfig, net: NetConfig | None = None,
                    encoder_init: str | Path | None = None, model: UNet | None = None,
                    teacher: UNet | None = None, distil_weight: float = 0.5) -> tuple[UNet, dict]:
    """Train (or continue training `model`), with `teacher`'s maps as soft targets if given
    (see `distil_loss`); return the model and a record of the run."""
    seed_everything(cfg.seed)
    net = net or NetConfig()
    if model is None:
        model = UNet(net)
        if encoder_init is not None:
            load_state(model.encoder, encoder_init)
    enc = list(model.encoder.parameters())
    enc_ids = {id(p) for p in enc}
    rest = [p for p in model.parameters() if id(p) not in enc_ids]
    factor = encoder_lr_factor(cfg, encoder_init is not None)
    lr_enc = cfg.lr * factor
    opt, sched = make_optimizer([{"params": enc, "lr": lr_enc}, {"params": rest, "lr": cfg.lr}],
                                lr=cfg.lr, steps=cfg.steps, time_budget_s=cfg.time_budget_s)
    model.train()
    if teacher is not None:
        teacher.eval().requires_grad_(False)

    def step(i: int) -> float:
        x, t = sampler.batch(cfg.batch)
        x = torch.from_numpy(x)
        with torch.no_grad():
            tl = teacher(x) if teacher is not None else None
        loss = distil_loss(model(x), torch.from_numpy(t), tl, cfg, distil_weight)
        return apply_step(loss, model, opt, sched)

    info = run_steps(cfg.steps, step, name="segment", time_budget_s=cfg.time_budget_s)
    model.eval()
    record = {"kind": "segmenter", "net": net.to_dict(), "train": asdict(cfg), "params": count_params(model),
              "encoder_init": str(encoder_init) if encoder_init else None, "encoder_lr_factor": factor, **info}
    return model, record


def export_segmenter(model: UNet, out_dir: str | Path, record: dict, calib: list[np.ndarray] | None = None,
                     stem: str = "segmenter", int8: bool = True) -> dict:
    """Write `<stem>.onnx`, optionally `<stem>_int8.onnx`, the torch weights (.npz) and `<stem>.json`."""
    out_dir = Path(out_dir)
    t0 = time.time()
    path = export_onnx(model, out_dir / f"{stem}.onnx", output_names=("maps",))
    files = [path.name]
    if int8 and calib:
        quantize_qdq(path, out_dir / f"{stem}_int8.onnx", calib)
        files.append(f"{stem}_int8.onnx")
    save_state(model, out_dir / f"{stem}_weights.npz")
    files.append(f"{stem}_weights.npz")
    record = {**record, "files": files, "export_time_s": round(time.time() - t0, 1),
              "outputs": ["foreground_logit", "boundary_logit", "centre_logit"],
              "input": "image (N,1,H,W) float32, percentile-normalised (0.5 %->0, 99.5 %->1); H, W multiples of 32"}
    write_record(out_dir / f"{stem}.json", record)
    return record


def calibration_batches(sampler, n: int = 8, size: int = 256) -> list[np.ndarray]:
    """A few (1,1,size,size) float32 crops for int8 calibration."""
    old = sampler.crop
    sampler.crop = size
    try:
        return [sampler.batch(1)[0].astype(np.float32) for _ in range(n)]
    finally:
        sampler.crop = old
