"""Argument checks and the memory-derived chunk size shared by the VICReg-style regularizers.

Not a component (registers nothing). Source: "Dynamic Weighting Formula Implementation"
(documents/000_294012e263fd6301.txt), claims DW-02, DW-03, DW-04.
"""
from __future__ import annotations

import math

import torch

from reprobench import validation
from reprobench.measure import available_bytes
from reprobench.validation import check_tensor, describe

# Fraction of the memory available now that one chunk may use: "chunk size adapts based on available
# memory". A quarter leaves room for the caller's own tensors and the chunk's temporaries.
MEMORY_FRACTION = 0.25


def check_embeddings(E, name: str = "E") -> torch.Tensor:
    """E must be a float32/float64 tensor (..., samples, dim) with at least one sample and one dim;
    returns it as (samples, dim). Metadata only: no host sync."""
    check_tensor(name, E)  # a tensor, its dtype, not 'meta'
    if E.dim() < 2 or E.numel() == 0:
        raise ValueError(f"{name}: expected a float32 or float64 tensor of shape (..., samples, dim) with "
                         f"samples >= 1 and dim >= 1, got {describe(E)}")
    return E.reshape(-1, E.shape[-1])


def check_finite(E: torch.Tensor, name: str = "E") -> None:
    """Raise on NaN/inf. One host sync: for direct callers who ask for it (check_finite_values=True).
    The registered twins leave it off, so NaN/inf in gives NaN out in both."""
    validation.check_finite(name, E)


def check_gamma_epsilon(gamma, epsilon) -> tuple[float, float]:
    for value, name in ((gamma, "gamma"), (epsilon, "epsilon")):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a Python float >= 0, got {type(value).__name__} {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite float >= 0, got {value!r}")
    return float(gamma), float(epsilon)


def chunk_columns(rows: int, total: int, itemsize: int, device: torch.device,
                  budget_bytes: int | None = None) -> int:
    """How many of ``total`` columns fit a (rows x chunk) block of ``itemsize`` bytes in the budget.

    The budget is MEMORY_FRACTION of the device's available memory (reprobench's available_bytes) unless
    given; the answer is in [1, total].
    """
    if budget_bytes is None:
        budget_bytes = int(available_bytes(device) * MEMORY_FRACTION)
    return max(1, min(total, budget_bytes // max(1, rows * itemsize)))


def check_chunk_size(chunk_size, name: str = "chunk_size") -> int | None:
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError(f"{name} must be None or an int >= 1, got {type(chunk_size).__name__} {chunk_size!r}")
    if chunk_size < 1:
        raise ValueError(f"{name} must be >= 1, got {chunk_size}")
    return chunk_size

