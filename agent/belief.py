"""Posterior over the particle size distribution and the Bayesian stopping rule.

Model: log-diameters ~ Normal(μ, σ²) (a lognormal size distribution) with a conjugate
Normal-Inverse-Gamma prior (Murphy 2007, "Conjugate Bayesian analysis of the Gaussian
distribution", §6), sampled with pyro distributions. The quantity of interest is the
population mean diameter E[d] = exp(μ + σ²/2). When a two-component mixture explains the
log-diameters clearly better (BIC), a Gibbs sampler of a two-component lognormal mixture
(pyro distributions) gives the posterior instead, with a credible interval per mode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """Posterior summary of the mean diameter (m) at a credibility level."""

    n: int
    mean_m: float
    lo_m: float
    hi_m: float
    credibility: float
    model: str = "lognormal"
    modes: tuple[tuple[float, float, float, float], ...] = ()  # (weight, mean, lo, hi) per mode

    @property
    def rel_half_width(self) -> float:
        """Half-width of the credible interval relative to the posterior mean."""
        if not math.isfinite(self.mean_m) or self.mean_m <= 0:
            return math.inf
        return 0.5 * (self.hi_m - self.lo_m) / self.mean_m


def _validated(diameters_m: np.ndarray) -> np.ndarray:
    d = np.asarray(diameters_m, dtype=float).ravel()
    if d.size and (not np.all(np.isfinite(d)) or np.any(d <= 0)):
        raise ValueError("diameters_m: every diameter must be finite and > 0 (metres)")
    return d


def lognormal_posterior_samples(diameters_m: np.ndarray, n_samples: int = 4000, seed: int = 0,
                                prior_median_m: float = 100e-9) -> np.ndarray:
    """Posterior samples of the population mean diameter (m) under the lognormal model."""
    import pyro.distributions as dist
    import torch

    x = np.log(_validated(diameters_m))
    # weak prior: μ0 = log(prior median), κ0 = 0.01 pseudo-observations, σ² ~ IG(1, 0.1)
    mu0, k0, a0, b0 = math.log(prior_median_m), 0.01, 1.0, 0.1
    n = x.size
    xbar = float(x.mean()) if n else 0.0
    ss = float(((x - xbar) ** 2).sum()) if n else 0.0
    kn = k0 + n
    mun = (k0 * mu0 + n * xbar) / kn
    an = a0 + n / 2
    bn = b0 + 0.5 * ss + k0 * n * (xbar - mu0) ** 2 / (2 * kn)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        sigma2 = dist.InverseGamma(torch.tensor(an, dtype=torch.float64), torch.tensor(bn, dtype=torch.float64)).sample((n_samples,))
        mu = dist.Normal(torch.tensor(mun, dtype=torch.float64), torch.sqrt(sigma2 / kn)).sample()
    return torch.exp(mu + sigma2 / 2).numpy()


def prefers_mixture(diameters_m: np.ndarray) -> bool:
    """True when two Gaussian components on log-diameter beat one by BIC (needs ≥ 40 particles)."""
    x = np.log(_validated(diameters_m))
    if x.size < 40:
        return False
    bic1 = _bic_one(x)
    bic2 = _bic_two(x)
    return bic2 + 10.0 < bic1  # strong evidence (ΔBIC > 10, Kass & Raftery 1995)


def _bic_one(x: np.ndarray) -> float:
    var = max(float(x.var()), 1e-12)
    ll = -0.5 * x.size * (math.log(2 * math.pi * var) + 1)
    return -2 * ll + 2 * math.log(x.size)


def _bic_two(x: np.ndarray, iters: int = 200) -> float:
    """BIC of a 2-component Gaussian mixture fitted by EM (Dempster et al. 1977)."""
    w, m, v = _em_two(x, iters)
    ll = float(np.log(_mix_pdf(x, w, m, v)).sum())
    return -2 * ll + 5 * math.log(x.size)


def _mix_pdf(x: np.ndarray, w: np.ndarray, m: np.ndarray, v: np.ndarray) -> np.ndarray:
    comps = w / np.sqrt(2 * math.pi * v) * np.exp(-0.5 * (x[:, None] - m) ** 2 / v)
    return comps.sum(axis=1) + 1e-300


def _em_two(x: np.ndarray, iters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = np.quantile(x, [0.25, 0.75])
    v = np.full(2, max(float(x.var()), 1e-6))
    w = np.array([0.5, 0.5])
    for _ in range(iters):
        comps = w / np.sqrt(2 * math.pi * v) * np.exp(-0.5 * (x[:, None] - m) ** 2 / v) + 1e-300
        r = comps / comps.sum(axis=1, keepdims=True)
        nk = r.sum(axis=0) + 1e-9
        w = nk / x.size
        m = (r * x[:, None]).sum(axis=0) / nk
        v = np.maximum((r * (x[:, None] - m) ** 2).sum(axis=0) / nk, 1e-4)
    return w, m, v


def mixture_posterior(diameters_m: np.ndarray, seed: int = 0, sweeps: int = 250, burn: int = 50) -> dict[str, np.ndarray]:
    """Posterior of a two-component lognormal mixture by Gibbs sampling (pyro distributions).

    Conjugate updates per sweep (Diebolt & Robert 1994): component labels given the
    parameters, Dirichlet(1 + counts) weights, and Normal-Inverse-Gamma means/variances of
    the log-diameters per component. Initialised from EM; components ordered by size.
    Returns samples of the overall mean diameter and of each mode's mean and weight.
    """
    import pyro.distributions as dist
    import torch

    x_np = np.log(_validated(diameters_m))
    w0, m0, v0 = _em_two(x_np, 100)
    order = np.argsort(m0)
    x = torch.tensor(x_np, dtype=torch.float64)
    w = torch.tensor(w0[order], dtype=torch.float64)
    mu = torch.tensor(m0[order], dtype=torch.float64)
    var = torch.tensor(v0[order], dtype=torch.float64)
    mu0, k0, a0, b0 = float(x_np.mean()), 0.01, 1.0, 0.01
    keep: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for sweep in range(sweeps):
            logp = torch.log(w) - 0.5 * torch.log(var) - 0.5 * (x[:, None] - mu) ** 2 / var
            z = dist.Categorical(logits=logp).sample()
            onehot = torch.nn.functional.one_hot(z, 2).to(torch.float64)
            n = onehot.sum(0)
            w = dist.Dirichlet(1.0 + n).sample()
            xbar = (onehot * x[:, None]).sum(0) / n.clamp(min=1)
            ss = (onehot * (x[:, None] - xbar) ** 2).sum(0)
            kn = k0 + n
            mun = (k0 * mu0 + n * xbar) / kn
            bn = b0 + 0.5 * ss + k0 * n * (xbar - mu0) ** 2 / (2 * kn)
            var = dist.InverseGamma(a0 + n / 2, bn).sample()
            mu = dist.Normal(mun, torch.sqrt(var / kn)).sample()
            if sweep >= burn:
                keep.append((w.clone(), mu.clone(), var.clone()))
    ws = torch.stack([k[0] for k in keep]).numpy()
    mus = torch.stack([k[1] for k in keep]).numpy()
    vs = torch.stack([k[2] for k in keep]).numpy()
    idx = np.argsort(mus, axis=1)  # label switching: order components by size per draw
    rows = np.arange(len(keep))[:, None]
    ws, mus, vs = ws[rows, idx], mus[rows, idx], vs[rows, idx]
    mode_means = np.exp(mus + vs / 2)
    return {"mean_m": (ws * mode_means).sum(axis=1), "mode_means_m": mode_means, "mode_weights": ws}


def estimate(diameters_m: np.ndarray, credibility: float = 0.95, seed: int = 0, allow_mixture: bool = True) -> Estimate:
    """Posterior mean and equal-tailed credible interval of the mean diameter (m)."""
    if not 0.5 <= credibility < 1.0:
        raise ValueError(f"credibility = {credibility}: must be in [0.5, 1)")
    d = _validated(diameters_m)
    if d.size < 2:
        return Estimate(int(d.size), math.nan, 0.0, math.inf, credibility)
    q = ((1 - credibility) / 2, (1 + credibility) / 2)
    if allow_mixture and prefers_mixture(d):
        post = mixture_posterior(d, seed=seed)
        lo, hi = np.quantile(post["mean_m"], q)
        modes = tuple(
            (float(post["mode_weights"][:, k].mean()), float(post["mode_means_m"][:, k].mean()),
             *map(float, np.quantile(post["mode_means_m"][:, k], q)))
            for k in range(2)
        )
        return Estimate(int(d.size), float(post["mean_m"].mean()), float(lo), float(hi), credibility, "mixture2", modes)
    samples = lognormal_posterior_samples(d, seed=seed, prior_median_m=float(np.median(d)))
    lo, hi = np.quantile(samples, q)
    return Estimate(int(d.size), float(samples.mean()), float(lo), float(hi), credibility)


@dataclass(frozen=True)
class StoppingRule:
    """Stop when the credible interval's relative half-width reaches the target."""

    target_rel_precision: float = 0.02
    credibility: float = 0.95
    min_particles: int = 30
    per_mode: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.target_rel_precision < 1:
            raise ValueError(f"target_rel_precision = {self.target_rel_precision}: must be in (0, 1)")
        if not 0.5 <= self.credibility < 1:
            raise ValueError(f"credibility = {self.credibility}: must be in [0.5, 1)")

    def reached(self, est: Estimate) -> bool:
        if est.n < self.min_particles or est.rel_half_width > self.target_rel_precision:
            return False
        if self.per_mode and est.modes:
            return all(0.5 * (hi - lo) / mean <= self.target_rel_precision for _, mean, lo, hi in est.modes)
        return True

    def particles_needed(self, est: Estimate) -> int:
        """Rough count still needed: half-width shrinks as 1/√n."""
        if est.n < 2 or not math.isfinite(est.rel_half_width):
            return self.min_particles
        ratio = est.rel_half_width / self.target_rel_precision
        return max(0, int(math.ceil(est.n * ratio * ratio)) - est.n, self.min_particles - est.n)
