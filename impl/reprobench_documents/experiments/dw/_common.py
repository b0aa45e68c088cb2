"""Helpers shared by the DW experiments: float64 and MiB constants, relative difference, and the seeded
dynamic-weighting layer of DW-05 / DW-06."""
from __future__ import annotations

import torch

from reprobench_documents.attention.dynamic_weighting import Attention
from reprobench.registry import make_generator

F64 = torch.float64
MiB = 1024 ** 2


def rel_diff(a, b) -> float:
    """|a - b| / max(|a|, |b|) as Python floats (0 when both are 0)."""
    a, b = float(a), float(b)
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def seeded_layer(seed, *, device: torch.device, dtype=torch.float32, **config):
    """The DW attention layer (cosine, dynamic weights unless `config` says otherwise), seeded, in eval mode."""
    defaults = dict(dim=64, heads=8, dim_head=8, variant="cosine", dynamic_weight=True)
    defaults.update(config)
    return Attention(**defaults).reset_parameters(make_generator(seed)).to(device=device, dtype=dtype).eval()
