"""Helpers shared by the DCAL experiments: model names, seeded models and images, and the float64 device check."""
from __future__ import annotations

import torch

from reprobench.claims.experiment import Outcome, RunContext
from reprobench.registry import make_generator

DEIT_S = "deit_small_patch16_224"
MINI = "vit_mini_patch16"
FLOAT64_DEVICES_MISSING = ("mps",)  # devices without float64 kernels


def float64_unavailable(ctx: RunContext) -> str | None:
    """Why a float64 experiment cannot run on ctx.device (its tolerances assume float64), or None."""
    if ctx.device.type in FLOAT64_DEVICES_MISSING:
        return f"{ctx.device.type} has no float64; this check's tolerances assume float64"
    return None


def not_checkable(claimed: str, rule: str, reason: str) -> Outcome:
    return Outcome(verdict="not-checkable-here", claimed=claimed, measured={}, rule=rule,
                   evidence=f"Not run on this device: {reason}.")


def _model(ctx: RunContext, seed_offset: int = 0, dtype=torch.float32, **config):
    from reprobench.models.dcal.model import DualAttentionModel

    model = DualAttentionModel(**config).reset_parameters(make_generator(ctx.seed + seed_offset))
    return model.to(device=ctx.device, dtype=dtype)


def _images(ctx: RunContext, batch: int, side: int, seed_offset: int = 0, dtype=torch.float32):
    g = make_generator(ctx.seed + 100 + seed_offset)
    return torch.randn(batch, 3, side, side, generator=g, dtype=dtype).to(ctx.device)
