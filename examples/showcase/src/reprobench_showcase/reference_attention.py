"""Plain softmax attention, written from the formula, as the oracle for both attention packages.

softmax(q k^T / sqrt(d) + mask) v over the full n x n score matrix: quadratic in time and memory,
float64-safe, and nothing in it comes from the packages under test.
"""
from __future__ import annotations

import math

import torch


def masked_softmax_attention(q, k, v, allowed: torch.Tensor):
    """Attention of q (..., i, d) over k, v (..., j, d) where `allowed` (broadcastable to (..., i, j)) is True.

    Returns (output (..., i, d), probabilities (..., i, j)). A row with no allowed key is an error of the
    caller: its softmax would be NaN, and no sample here builds one.
    """
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # (..., i, j)
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = scores.softmax(dim=-1)
    return probs @ v, probs


def key_padding_mask(batch: int, n: int, device) -> torch.Tensor:
    """(batch, n) bool, True = a real token: batch row b has its last b * n // 4 tokens padded, the first kept."""
    lengths = [max(1, n - b * n // 4) for b in range(batch)]
    return torch.arange(n, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]


def uniform_init_(module: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    """Every parameter drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (nn.Linear's scale) with `generator`,
    in the parameter's own dtype, so a float64 build is float64 throughout."""
    with torch.no_grad():
        for p in module.parameters():
            bound = 1.0 / math.sqrt(p.shape[-1])
            draw = torch.rand(p.shape, dtype=p.dtype, generator=generator)
            p.copy_((draw * 2 - 1) * bound)
    return module
