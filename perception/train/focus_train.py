"""Train the two-frame focus/astigmatism estimator (DeepFocus idea) on twin frame pairs.

A sample: at the centre working distance WD = WD_focus + e (e in depths of field, DoF) with
residual astigmatism (ax, ay) (DoF), two frames at WD - delta and WD + delta. Target:
(e, ax, ay).

Design: `perception.focus.focus_features` turns the pair into ~100 scene-independent numbers
(ring-binned log SNR and quadrupole moments of each frame's Welch spectrum, the noise level,
and the classical spectral fit); `FocusMLP` regresses (e, ax, ay) from them, averaged over the
exact symmetries of the problem (`perception.focus.symmetry_group`), so that swapping the two
frames flips the sign of every output, and gated by the classical fit's validity flag (no
structure, no correction). An end-to-end CNN on 128-px crops (the first design) never left the
loss of predicting zero, likely because the scene dominates the pixels while the focus
information is a small change of the spectrum between the two frames, and because its
astigmatism targets ignored the stigmator's clipping (see `residual_astig_dof`).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..focus import RING_EDGES, feature_layout, focus_features, symmetry_group
from .cache import load_npz, save_npz
from .export import _inline_external, write_record
from .loop import apply_step, make_optimizer, run_steps, seed_everything

FEATURES_VERSION = 2
DATA_VERSION = 2  # 1: astigmatism target not corrected for stigmator clipping


def twin_focus_pairs(n: int, seed: int, shape=(256, 256), delta_dof: float = 2.0, max_err_dof: float = 8.0,
                     astig_sd_dof: float = 1.5, near_fraction: float = 0.4, frames_per_scenario: int = 4):
    """`n` (minus, plus, target(3,)) triples; frames as float32.

    e ~ U(-max_err_dof, max_err_dof), or N(0, 1) DoF for a share `near_fraction` (the second and
    third autofocus iterations start near focus); astigmatism N(0, astig_sd_dof) on 70 % of pairs,
    clipped by the stigmator's range (the target is the astigmatism actually applied).
    """
    from .twin_data import TwinSceneGenerator

    gen = TwinSceneGenerator(seed=seed, shape_px=shape, frames_per_scenario=frames_per_scenario)
    rng = gen.rng

    def one():
        m = gen.twin()
        dof = gen.setup(m, d_px_range=(5.0, 40.0))
        near = rng.random() < near_fraction
        e = float(rng.normal(0, 1.0) if near else rng.uniform(-max_err_dof, max_err_dof))
        ast = rng.normal(0, astig_sd_dof, 2) if rng.random() < 0.7 else np.zeros(2)
        frames = []
        for s in (-1.0, 1.0):
            gen.set_focus(m, dof, e + s * delta_dof, (float(ast[0]), float(ast[1])))
            frames.append(m.acquire().image.astype(np.float32))
        return frames[0], frames[1], np.array([e, *residual_astig_dof(m, dof)], np.float32)

    return [gen.attempt(one) for _ in range(n)]


def residual_astig_dof(m, dof_m: float) -> tuple[float, float]:
    """The twin's residual astigmatism (x, y) in DoF from its actual stigmator setting.

    `set_focus` clips the stigmator at its limit (+/- 1 unit = 2 um of astigmatism, often < 1 DoF
    at low magnification), so the requested astigmatism is not always the one applied.
    """
    from twin import truth

    s0, s = truth.stigmator_correction(m), m.get_stigmator()
    g = m.scenario.optics.stigmator_gain_m
    return (s0[0] - s[0]) * g / dof_m, (s0[1] - s[1]) * g / dof_m


def pair_features(pairs, delta_dof: float = 2.0, win: int = 64, spectral: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, F) float32, targets (N, 3) float32) of (minus, plus, target) triples."""
    x = np.stack([focus_features(a, b, delta_dof, win, spectral) for a, b, _ in pairs])
    t = np.stack([np.asarray(tt, np.float32) for _, _, tt in pairs])
    return x, t


class FocusMLP(nn.Module):
    """MLP on standardised focus features, averaged over a symmetry group.

    forward(x) = mean_g s_out(g) * mlp((x[perm_g] * s_in(g) - mu) / sd): exactly equivariant
    (group averaging, e.g. Cohen & Welling, ICML 2016, for the finite-group case).
    `spectral`: indices of the classical fit (e, ax, ay) and its validity flag in x. With
    `residual` the fit is added to the output (the MLP learns a correction); with `gate` the
    output is multiplied by the flag (no structure -> no correction).
    """

    def __init__(self, n_features: int, perm: np.ndarray, s_in: np.ndarray, s_out: np.ndarray,
                 mu: np.ndarray, sd: np.ndarray, hidden: int = 128, dropout: float = 0.1,
                 spectral: np.ndarray | None = None, residual: bool = False, gate: bool = False):
        super().__init__()
        self.residual, self.gate = spectral is not None and residual, spectral is not None and gate
        self.register_buffer("sp", torch.as_tensor(spectral if spectral is not None else np.zeros(4), dtype=torch.long))
        self.register_buffer("perm", torch.as_tensor(perm, dtype=torch.long))
        self.register_buffer("s_in", torch.as_tensor(s_in, dtype=torch.float32))
        self.register_buffer("s_out", torch.as_tensor(s_out, dtype=torch.float32))
        self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float32))
        self.register_buffer("sd", torch.as_tensor(sd, dtype=torch.float32))
        self.mlp = nn.Sequential(nn.Linear(n_features, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 3))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        xg = features[:, self.perm] * self.s_in  # (N, G, F)
        y = (self.mlp((xg - self.mu) / self.sd) * self.s_out).mean(dim=1)  # (N, 3)
        if self.residual:
            y = y + features[:, self.sp[:3]]
        if self.gate:
            y = y * features[:, self.sp[3:]]
        return y


def feature_stats(x: np.ndarray, perm: np.ndarray, s_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the features over the data and its symmetric images (so the group sees one scale)."""
    xg = x[:, perm] * s_in
    xg = xg.reshape(-1, x.shape[1])
    return xg.mean(0).astype(np.float32), np.maximum(xg.std(0), 1e-3).astype(np.float32)


@dataclass(frozen=True)
class FocusTrainConfig:
    steps: int = 4000
    batch: int = 128
    lr: float = 2e-3
    seed: int = 0
    delta_dof: float = 2.0
    win: int = 64
    spectral: bool = True
    full_symmetry: bool = True
    hidden: int = 128
    dropout: float = 0.1
    loss: str = "l1"  # "l1" or "huber" (delta 1 DoF)
    residual: bool = False
    gate: bool = True
    weight_decay: float = 1e-3
    val_fraction: float = 0.1
    time_budget_s: float | None = None


def _split(n: int, frac: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    idx = rng.permutation(n)
    k = int(round(n * frac)) if n >= 10 else 0
    return idx[k:], idx[:k]


def val_metrics(model: nn.Module, x: np.ndarray, t: np.ndarray) -> dict:
    """Median and p95 absolute errors (DoF) of e and |astigmatism| on held-out pairs."""
    if len(x) == 0:
        return {}
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    de = np.abs(y[:, 0] - t[:, 0])
    da = np.hypot(y[:, 1] - t[:, 1], y[:, 2] - t[:, 2])
    r = lambda v: round(float(v), 4)  # noqa: E731
    return {"n": len(x), "wd_err_p50_dof": r(np.median(de)), "wd_err_p95_dof": r(np.percentile(de, 95)),
            "astig_err_p50_dof": r(np.median(da)), "astig_err_p95_dof": r(np.percentile(da, 95))}


def train_focus(x: np.ndarray, t: np.ndarray, cfg: FocusTrainConfig) -> tuple[FocusMLP, dict]:
    """Fit `FocusMLP` to features `x` (N, F) and targets `t` (N, 3) (loss `cfg.loss`); hold out `val_fraction`."""
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tr, va = _split(len(x), cfg.val_fraction, rng)
    layout = feature_layout(len(RING_EDGES) - 1, cfg.spectral)
    perm, s_in, s_out = symmetry_group(layout, cfg.full_symmetry)
    mu, sd = feature_stats(x[tr], perm, s_in)
    sp = np.append(layout["spectral"], layout["spectral"][-1] + 1) if cfg.spectral else None
    model = FocusMLP(x.shape[1], perm, s_in, s_out, mu, sd, cfg.hidden, cfg.dropout, sp, cfg.residual, cfg.gate)
    loss_fn = F.l1_loss if cfg.loss == "l1" else F.smooth_l1_loss
    opt, sched = make_optimizer(model.parameters(), lr=cfg.lr, steps=cfg.steps, weight_decay=cfg.weight_decay,
                                time_budget_s=cfg.time_budget_s)
    xt, tt = torch.from_numpy(x[tr]), torch.from_numpy(t[tr])
    model.train()

    def step(i: int) -> float:
        b = torch.from_numpy(rng.integers(len(tr), size=min(cfg.batch, len(tr))))
        return apply_step(loss_fn(model(xt[b]), tt[b]), model, opt, sched)

    info = run_steps(cfg.steps, step, name="focus", time_budget_s=cfg.time_budget_s, log_every=500)
    model.eval()
    info["val"] = val_metrics(model, x[va], t[va])
    info["train_fit"] = val_metrics(model, x[tr][:2000], t[tr][:2000])
    n_par = sum(p.numel() for p in model.parameters())
    return model, {"kind": "focus", "train": asdict(cfg), "params": n_par, "group_size": len(perm), **info}


def export_focus_onnx(model: nn.Module, path: str | Path, n_features: int) -> Path:
    """ONNX with input ``features`` (N, n_features) float32 and output ``focus`` (N, 3); dynamic batch."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(2, n_features)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(model.eval(), (example,), dynamo=True, input_names=["features"],
                                 output_names=["focus"], dynamic_shapes=({0: batch},), verbose=False)
        prog.optimize()
        prog.save(str(path))
    _inline_external(path)
    return path


def cached_features(args, delta_dof: float, win: int, spectral: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    """Features of `args.n_scenes` twin pairs (seed `args.seed`), from `args.cache` when present.

    Returns (x, t, info); info: the generation time (s) and whether the cache was used.
    """
    t0 = time.time()
    key = (f"focus_v{FEATURES_VERSION}.{DATA_VERSION}_n{args.n_scenes}_s{args.seed}_px{args.scene_px}_d{delta_dof:g}"
           f"_w{win}_sp{int(spectral)}.npz")
    path = Path(args.cache) / key if args.cache else None
    z = load_npz(path) if path is not None else None
    if z is not None:
        return z["x"], z["t"], {"data_time_s": round(float(z["time_s"]), 1), "data_cached": str(path)}
    x, t = [], []
    for i in range(0, args.n_scenes, 200):  # chunks: never hold more than 200 frame pairs
        pairs = twin_focus_pairs(min(200, args.n_scenes - i), args.seed * 100_003 + i,
                                 (args.scene_px, args.scene_px), delta_dof=delta_dof)
        xi, ti = pair_features(pairs, delta_dof, win, spectral)
        x.append(xi)
        t.append(ti)
    x, t, dt = np.concatenate(x), np.concatenate(t), time.time() - t0
    if path is not None:
        save_npz(path, compressed=False, x=x, t=t, time_s=dt)
    return x, t, {"data_time_s": round(dt, 1), "data_cached": False}


def run_focus_training(args, command: str) -> dict:
    t0 = time.time()
    cfg = FocusTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed, delta_dof=args.delta_dof,
                           win=args.win, spectral=not args.no_spectral_input, full_symmetry=not args.swap_only,
                           hidden=args.hidden, time_budget_s=args.time_budget_s)
    x, t, data_info = cached_features(args, cfg.delta_dof, cfg.win, cfg.spectral)
    model, rec = train_focus(x, t, cfg)
    out = Path(args.out)
    export_focus_onnx(model, out / f"{args.name}.onnx", x.shape[1])
    from twin.config import Scenario

    features = {"version": FEATURES_VERSION, "win": cfg.win, "ring_edges": list(RING_EDGES),
                "spectral": cfg.spectral, "n_features": int(x.shape[1])}
    rec.update(command=command, n_pairs=len(x), scene_px=args.scene_px, data_seed=args.seed, **data_info,
               data_version=DATA_VERSION, delta_dof=cfg.delta_dof, features=features,
               stigmator_gain_m=Scenario().optics.stigmator_gain_m,
               outputs=["wd_error_dof (WD - WD_focus)", "astig_x_dof", "astig_y_dof (residual astigmatism)"],
               files=[f"{args.name}.onnx"], total_time_s=round(time.time() - t0, 1))
    write_record(out / f"{args.name}.json", rec)
    return rec
