"""Train the restorer: a residual ConvNeXt-V2 U-Net mapping a defocused/astigmatic frame to the
in-focus, low-noise frame of the same field (pairs rendered by a 'quiet' twin: no drift, so
the two frames align pixel for pixel)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .convnext import NetConfig, UNet, count_params
from .data import _augment_geom
from .export import export_onnx, write_record
from .loop import apply_step, make_optimizer, run_steps, seed_everything

RESTORER_NET = NetConfig(dims=(24, 48, 96, 192), depths=(1, 1, 3, 1), dec_dims=(96, 48, 32, 24),
                         out_chans=1, fine_chans=16)


class ResidualRestorer(nn.Module):
    """output = input + U-Net(input)."""

    def __init__(self, cfg: NetConfig = RESTORER_NET):
        super().__init__()
        self.net = UNet(cfg)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return img + self.net(img)


def pair_norm(degraded: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalise both with the degraded frame's 0.5/99.5 percentiles (what inference can see)."""
    lo, hi = np.percentile(degraded, [0.5, 99.5])
    s = max(hi - lo, 1e-6)
    return ((degraded - lo) / s).astype(np.float32), ((clean - lo) / s).astype(np.float32)


def twin_pairs(n: int, seed: int, shape: tuple[int, int] = (256, 256), max_defocus_dof: float = 6.0,
               target_dwell_factor: float = 16.0, with_labels: bool = False) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """`n` (degraded, clean, info) triples from quiet randomised twins (info['labels'] if asked)."""
    from twin import truth

    from .twin_data import TwinSceneGenerator

    gen = TwinSceneGenerator(seed=seed, shape_px=shape, quiet=True, frames_per_scenario=2)
    rng = gen.rng

    def one():
        m = gen.twin()
        dof = gen.setup(m)
        dwell = m.get_scan().dwell_s
        gen.set_focus(m, dof, 0.0, (0.0, 0.0))
        m.set_scan(dwell_s=min(dwell * target_dwell_factor, 1e-4))
        clean = m.acquire().image.astype(np.float32)
        m.set_scan(dwell_s=dwell)
        dz = float(rng.uniform(-max_defocus_dof, max_defocus_dof))
        ast = tuple(float(a) for a in rng.normal(0, 1.0, 2))
        gen.set_focus(m, dof, dz, ast)
        f = m.acquire()
        deg = f.image.astype(np.float32)
        info = {"defocus_dof": dz, "astig_dof": ast}
        if with_labels:
            info["labels"] = truth.label_image(m, f)
        # the detector reports a dwell-normalised rate: only noise differs; blur keeps the mean
        return deg, _match_levels(clean, deg), info

    return [gen.attempt(one) for _ in range(n)]


def _match_levels(clean: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Shift `clean` to the mean of `ref` (a blur preserves the mean; a gain fit would not)."""
    return (clean + np.float32(ref.mean() - clean.mean())).astype(np.float32)


@dataclass(frozen=True)
class RestoreTrainConfig:
    steps: int = 2000
    batch: int = 8
    crop: int = 128
    lr: float = 2e-3
    seed: int = 0
    time_budget_s: float | None = None


def train_restorer(pairs, cfg: RestoreTrainConfig) -> tuple[ResidualRestorer, dict]:
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    data = [pair_norm(d, c) for d, c, _ in pairs]
    model = ResidualRestorer()
    opt, sched = make_optimizer(model.parameters(), lr=cfg.lr, steps=cfg.steps, time_budget_s=cfg.time_budget_s)
    model.train()
    c = cfg.crop

    def sample():
        d, t = data[int(rng.integers(len(data)))]
        y = int(rng.integers(d.shape[0] - c + 1))
        x = int(rng.integers(d.shape[1] - c + 1))
        a, b = _augment_geom(rng, d[y:y + c, x:x + c], t[y:y + c, x:x + c])
        if rng.random() < 0.2:
            a, b = 1.0 - a, 1.0 - b
        return a, b

    def step(i: int) -> float:
        xs, ts = zip(*(sample() for _ in range(cfg.batch)))
        x = torch.from_numpy(np.stack(xs)[:, None])
        t = torch.from_numpy(np.stack(ts)[:, None])
        loss = F.l1_loss(model(x), t)
        return apply_step(loss, model, opt, sched)

    info = run_steps(cfg.steps, step, name="restore", time_budget_s=cfg.time_budget_s)
    model.eval()
    return model, {"kind": "restorer", "net": RESTORER_NET.to_dict(), "train": asdict(cfg),
                   "params": count_params(model), **info}


def run_restore_training(args, command: str) -> dict:
    t0 = time.time()
    pairs = twin_pairs(args.n_scenes, args.seed, (args.scene_px, args.scene_px))
    t_data = time.time() - t0
    cfg = RestoreTrainConfig(steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr, seed=args.seed,
                             time_budget_s=args.time_budget_s)
    model, rec = train_restorer(pairs, cfg)
    out = Path(args.out)
    export_onnx(model, out / f"{args.name}.onnx", output_names=("restored",))
    rec.update(command=command, n_pairs=len(pairs), scene_px=args.scene_px, data_time_s=round(t_data, 1),
               files=[f"{args.name}.onnx"], total_time_s=round(time.time() - t0, 1),
               input="image (N,1,H,W) float32 normalised by its 0.5/99.5 percentiles; output in the same units")
    write_record(out / f"{args.name}.json", rec)
    return rec
