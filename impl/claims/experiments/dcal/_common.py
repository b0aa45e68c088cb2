"""Helpers shared by the DCAL experiments: model names, the one-thread wrapper, seeded models and images."""
from __future__ import annotations

import functools

import torch

from impl.claims.experiment import Outcome, RunContext
from impl.registry import make_generator

DEIT_S = "deit_small_patch16_224"
MINI = "vit_mini_patch16"


def one_thread(fn):
    """Run the experiment on one intra-op thread (restored afterwards): the budgets are for one core, and
    on a shared machine tiny ops with several OpenMP threads spend their time waiting for each other."""
    @functools.wraps(fn)
    def run(ctx: RunContext) -> Outcome:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(ctx)
        finally:
            torch.set_num_threads(threads)

    return run


def _model(ctx: RunContext, seed_offset: int = 0, dtype=torch.float32, **config):
    from impl.models.dcal.model import DualAttentionModel

    model = DualAttentionModel(**config).reset_parameters(make_generator(ctx.seed + seed_offset))
    return model.to(device=ctx.device, dtype=dtype)


def _images(ctx: RunContext, batch: int, side: int, seed_offset: int = 0, dtype=torch.float32):
    g = make_generator(ctx.seed + 100 + seed_offset)
    return torch.randn(batch, 3, side, side, generator=g, dtype=dtype).to(ctx.device)
