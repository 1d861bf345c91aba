"""Train the two-frame focus/astigmatism estimator (DeepFocus idea) on twin frame pairs.

A sample: at the centre working distance WD = WD_focus + e (e in depths of field, DoF) with
residual astigmatism (ax, ay) (DoF), two frames at WD - delta and WD + delta. Target:
(e, ax, ay). The network is a small ConvNeXt-V2 encoder on the 2-channel crop, global
average pooling and a linear head.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .convnext import Encoder, NetConfig, count_params
from .export import export_onnx, write_record
from .loop import apply_step, make_optimizer, run_steps, seed_everything

FOCUS_NET = NetConfig(in_chans=2, dims=(16, 32, 64, 128), depths=(1, 1, 2, 1))


class FocusNet(nn.Module):
    def __init__(self, cfg: NetConfig = FOCUS_NET):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.head = nn.Sequential(nn.Linear(cfg.dims[-1] + cfg.dims[-2], 64), nn.GELU(), nn.Linear(64, 3))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        f = self.encoder(img)
        z = torch.cat([f[-1].mean(dim=(2, 3)), f[-2].mean(dim=(2, 3))], dim=1)
        return self.head(z)


def twin_focus_pairs(n: int, seed: int, shape=(256, 256), delta_dof: float = 2.0, max_err_dof: float = 8.0,
                     astig_sd_dof: float = 1.5):
    """`n` (minus, plus, target(3,)) triples; frames as float32."""
    from .twin_data import TwinSceneGenerator

    gen = TwinSceneGenerator(seed=seed, shape_px=shape, frames_per_scenario=4)
    rng = gen.rng

    def one():
        m = gen.twin()
        dof = gen.setup(m, d_px_range=(5.0, 40.0))
        e = float(rng.uniform(-max_err_dof, max_err_dof))
        ast = rng.normal(0, astig_sd_dof, 2) if rng.random() < 0.7 else np.zeros(2)
        frames = []
        for s in (-1.0, 1.0):
            gen.set_focus(m, dof, e + s * delta_dof, (float(ast[0]), float(ast[1])))
            frames.append(m.acquire().image.astype(np.float32))
        return frames[0], frames[1], np.array([e, ast[0], ast[1]], np.float32)

    return [gen.attempt(one) for _ in range(n)]


def joint_norm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    both = np.stack([a, b]).astype(np.float32)
    lo, hi = np.percentile(both[:, ::2, ::2], [0.5, 99.5])
    return (both - lo) / max(hi - lo, 1e-6)


@dataclass(frozen=True)
class FocusTrainConfig:
    steps: int = 2000
    batch: int = 16
    crop: int = 128
    lr: float = 2e-3
    seed: int = 0
    delta_dof: float = 2.0
    time_budget_s: float | None = None


def train_focus(pairs, cfg: FocusTrainConfig) -> tuple[FocusNet, dict]:
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    data = [(joint_norm(a, b), t) for a, b, t in pairs]
    model = FocusNet()
    opt, sched = make_optimizer(model.parameters(), lr=cfg.lr, steps=cfg.steps, time_budget_s=cfg.time_budget_s)
    c = cfg.crop

    def sample():
        x, t = data[int(rng.integers(len(data)))]
        y0 = int(rng.integers(x.shape[1] - c + 1))
        x0 = int(rng.integers(x.shape[2] - c + 1))
        crop = x[:, y0:y0 + c, x0:x0 + c]
        # only flips/rotations that keep the astigmatism orientation label valid are used:
        # a 180-degree rotation leaves an ellipse unchanged.
        if rng.random() < 0.5:
            crop = crop[:, ::-1, ::-1]
        gain = rng.uniform(0.8, 1.2)
        return np.ascontiguousarray(crop * gain), t

    model.train()

    def step(i: int) -> float:
        xs, ts = zip(*(sample() for _ in range(cfg.batch)))
        x = torch.from_numpy(np.stack(xs).astype(np.float32))
        t = torch.from_numpy(np.stack(ts))
        loss = F.smooth_l1_loss(model(x), t)
        return apply_step(loss, model, opt, sched)

    info = run_steps(cfg.steps, step, name="focus", time_budget_s=cfg.time_budget_s)
    model.eval()
    return model, {"kind": "focus", "net": FOCUS_NET.to_dict(), "train": asdict(cfg), "params": count_params(model),
                   **info}


def run_focus_training(args, command: str) -> dict:
    t0 = time.time()
    pairs = twin_focus_pairs(args.n_scenes, args.seed, (args.scene_px, args.scene_px), delta_dof=args.delta_dof)
    t_data = time.time() - t0
    cfg = FocusTrainConfig(steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr, seed=args.seed,
                           delta_dof=args.delta_dof, time_budget_s=args.time_budget_s)
    model, rec = train_focus(pairs, cfg)
    out = Path(args.out)
    export_onnx(model, out / f"{args.name}.onnx", in_chans=2, size=cfg.crop, output_names=("focus",),
                spatial_dynamic=False)
    from twin.config import Scenario

    rec.update(command=command, n_pairs=len(pairs), scene_px=args.scene_px, data_time_s=round(t_data, 1),
               crop=cfg.crop, delta_dof=cfg.delta_dof, stig_scale=1.0,
               stigmator_gain_m=Scenario().optics.stigmator_gain_m,
               outputs=["wd_error_dof (WD - WD_focus)", "astig_x_dof", "astig_y_dof (residual astigmatism)"],
               files=[f"{args.name}.onnx"], total_time_s=round(time.time() - t0, 1))
    write_record(out / f"{args.name}.json", rec)
    return rec
