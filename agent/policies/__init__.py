"""Policies behind one interface: raster, spiral, expert, bayes (default) and oracle (benchmarks)."""
from __future__ import annotations

from .base import Policy
from .bayes import BayesPolicy
from .expert import ExpertPolicy
from .oracle import OraclePolicy
from .raster import RasterPolicy
from .spiral import SpiralPolicy

POLICIES: dict[str, type[Policy]] = {
    p.name: p for p in (BayesPolicy, ExpertPolicy, SpiralPolicy, RasterPolicy, OraclePolicy)
}
DEFAULT_POLICY = "bayes"


def policy_class(name: str) -> type[Policy]:
    """The policy class for `name`; ValueError naming the choices otherwise."""
    try:
        return POLICIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"policy = {name!r}: must be one of {', '.join(POLICIES)}") from None
