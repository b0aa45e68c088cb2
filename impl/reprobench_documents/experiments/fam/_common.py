"""Shared by the FAM experiments: the deviations every outcome lists."""
from __future__ import annotations

DEVIATIONS = [
    "FAM sampling draws from an explicit torch.Generator held by the optimizer (state saved in state_dict) "
    "instead of the global RNG.",
    "print -> logging; arguments are validated up front (ValueError/TypeError naming the argument); an unknown "
    "handler name fails at construction, not as a KeyError inside step().",
    "Sparse gradients raise SparseGradientError, a RuntimeError (as written) that is also a TypeError.",
]

