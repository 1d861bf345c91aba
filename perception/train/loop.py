"""Shared training-loop pieces: seeding, optimiser with warm-up + cosine schedule, timing."""
from __future__ import annotations

import math
import os
import random
import sys
import time
from typing import Callable

import numpy as np
import torch


def torch_threads(default: int = 2) -> int:
    """CPU threads for torch: $EMTWIN_TORCH_THREADS or `default`. On a machine shared with other
    busy processes 1 thread is much faster than 2 (OpenMP barriers stall when a thread is
    descheduled)."""
    return max(1, int(os.environ.get("EMTWIN_TORCH_THREADS", default)))


def seed_everything(seed: int, threads: int = 2) -> torch.Generator:
    """Seed python, numpy and torch; set torch's CPU threads (see `torch_threads`); return a torch Generator."""
    torch.set_num_threads(torch_threads(threads))
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


class Schedule:
    """Linear warm-up then cosine decay to 5 % over the run's progress.

    Progress is max(step / steps, elapsed / time_budget_s), so a run cut short by its wall-time
    budget (e.g. on a busy machine) still ends with a fully decayed learning rate.
    """

    def __init__(self, opt, steps: int, time_budget_s: float | None = None, warmup: int = 100):
        self.opt, self.steps, self.budget = opt, max(1, steps), time_budget_s
        self.warmup = max(1, min(warmup, steps // 5 + 1))
        self.base = [g["lr"] for g in opt.param_groups]
        self.t0 = time.time()
        self.i = 0
        self._apply()

    def progress(self) -> float:
        p = self.i / self.steps
        if self.budget:
            p = max(p, (time.time() - self.t0) / self.budget)
        return min(p, 1.0)

    def _apply(self) -> None:
        if self.i < self.warmup:
            f = (self.i + 1) / self.warmup
        else:
            f = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * self.progress()))
        for g, b in zip(self.opt.param_groups, self.base):
            g["lr"] = b * f

    def step(self) -> None:
        self.i += 1
        self._apply()


def apply_step(loss: torch.Tensor, model: torch.nn.Module, opt: torch.optim.Optimizer, sched, clip: float = 1.0) -> float:
    """One optimiser step: backward, gradient-norm clipping at `clip`, step, schedule; returns the loss."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    sched.step()
    return loss.item()


def make_optimizer(params, lr: float, steps: int, warmup: int = 100, weight_decay: float = 0.05,
                   time_budget_s: float | None = None):
    """AdamW and its `Schedule` (call `.step()` after each optimiser step)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return opt, Schedule(opt, steps, time_budget_s, warmup)


def run_steps(steps: int, step_fn: Callable[[int], float], log_every: int = 50, name: str = "train",
              time_budget_s: float | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Call `step_fn(i)` for i < steps (stopping early at `time_budget_s`); return loss history + time."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    t0 = time.time()
    hist, run = [], []
    done = 0
    for i in range(steps):
        loss = float(step_fn(i))
        run.append(loss)
        done = i + 1
        if done % log_every == 0 or done == steps:
            hist.append((done, float(np.mean(run))))
            log(f"[{name}] step {done}/{steps} loss {np.mean(run):.4f} ({time.time() - t0:.0f} s)")
            run = []
        if time_budget_s is not None and time.time() - t0 > time_budget_s:
            log(f"[{name}] time budget {time_budget_s:.0f} s reached at step {done}")
            break
    return {"steps_done": done, "loss_history": hist, "train_time_s": round(time.time() - t0, 1),
            "torch_threads": torch.get_num_threads()}
