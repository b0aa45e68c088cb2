"""Helpers shared by the DCAL experiments: model names, seeded models and images."""
from __future__ import annotations

import torch

from reprobench.claims import RunContext
from reprobench.registry import make_generator

DEIT_S = "deit_small_patch16_224"
MINI = "vit_mini_patch16"


def seeded_model(ctx: RunContext, seed_offset: int = 0, dtype=torch.float32, **config):
    """A DualAttentionModel seeded from ctx.seed (+ seed_offset), on ctx.device in `dtype`."""
    from reprobench_documents.models.dcal.model import DualAttentionModel

    model = DualAttentionModel(**config).reset_parameters(make_generator(ctx.seed + seed_offset))
    return model.to(device=ctx.device, dtype=dtype)


def seeded_images(ctx: RunContext, batch: int, side: int, seed_offset: int = 0, dtype=torch.float32):
    """(batch, 3, side, side) Gaussian images drawn on the CPU from a seed, then moved to ctx.device."""
    g = make_generator(ctx.seed + 100 + seed_offset)
    return torch.randn(batch, 3, side, side, generator=g, dtype=dtype).to(ctx.device)
