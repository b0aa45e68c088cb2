"""Shared by the FAM experiments: the deviations every outcome lists, and the float64 device check."""
from __future__ import annotations

from reprobench.claims import Outcome

DEVIATIONS = [
    "FAM sampling draws from an explicit torch.Generator held by the optimizer (state saved in state_dict) "
    "instead of the global RNG.",
    "print -> logging; arguments are validated up front (ValueError/TypeError naming the argument); an unknown "
    "handler name fails at construction, not as a KeyError inside step().",
    "Sparse gradients raise SparseGradientError, a RuntimeError (as written) that is also a TypeError.",
]

from reprobench.claims import float64_unavailable  # noqa: F401  (the family imports it from here)
from reprobench.claims import not_checkable as _not_checkable


def not_checkable(claimed: str, rule: str, reason: str) -> Outcome:
    return _not_checkable(claimed, rule, reason, deviations=DEVIATIONS)

