"""Helpers shared by the DW experiments: float64 and MiB constants, relative difference, the seeded
dynamic-weighting layer of DW-05 / DW-06, and the float64 device check."""
from __future__ import annotations

import torch

from reprobench.attention.dynamic_weighting import Attention
from reprobench.claims.experiment import Outcome, RunContext
from reprobench.registry import make_generator

F64 = torch.float64
MiB = 1024 ** 2
FLOAT64_DEVICES_MISSING = ("mps",)  # devices without float64 kernels


def float64_unavailable(ctx: RunContext) -> str | None:
    """Why a float64 experiment cannot run on ctx.device (its tolerances assume float64), or None."""
    if ctx.device.type in FLOAT64_DEVICES_MISSING:
        return f"{ctx.device.type} has no float64; this check's tolerances assume float64"
    return None


def not_checkable(claimed: str, rule: str, reason: str) -> Outcome:
    return Outcome(verdict="not-checkable-here", claimed=claimed, measured={}, rule=rule,
                   evidence=f"Not run on this device: {reason}.")


def _rel(a, b) -> float:
    a, b = float(a), float(b)
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def _layer(seed, *, device: torch.device, dtype=torch.float32, **config):
    defaults = dict(dim=64, heads=8, dim_head=8, variant="cosine", dynamic_weight=True)
    defaults.update(config)
    return Attention(**defaults).reset_parameters(make_generator(seed)).to(device=device, dtype=dtype).eval()
