"""Policies behind one interface: raster, spiral, expert, bayes (default) and oracle (benchmarks)."""
from __future__ import annotations

from typing import Any

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


def parse_policy_options(policy: str, items: list[str] | None) -> dict[str, Any]:
    """{name: value} from ``NAME=VALUE`` strings for `policy` (numbers become int or float);
    ValueError naming the option and the policy's options when malformed or unknown."""
    cls = policy_class(policy)
    allowed = cls.option_names
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, text = str(item).partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name or not text:
            raise ValueError(f"policy option {item!r}: must be NAME=VALUE")
        if name not in allowed:
            raise ValueError(f"policy option {name!r}: policy {policy} takes "
                             f"{', '.join(allowed) if allowed else 'no options'}")
        out[name] = cls.check_option(name, _number(text))
    return out


def _number(text: str) -> Any:
    """int or float when `text` is a finite number, else the text itself."""
    for kind in (int, float):
        try:
            v = kind(text)
        except ValueError:
            continue
        if v == v and abs(v) != float("inf"):
            return v
        raise ValueError(f"policy option value {text!r}: must be a finite number or a word")
    return text


def policy_class(name: str) -> type[Policy]:
    """The policy class for `name`; ValueError naming the choices otherwise."""
    try:
        return POLICIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"policy = {name!r}: must be one of {', '.join(POLICIES)}") from None
