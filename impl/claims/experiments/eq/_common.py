"""Helpers shared by the EQ experiments: the ARC colour count and one-thread measurement."""
from __future__ import annotations

import functools

import torch

from impl.claims.experiment import Outcome, RunContext

ARC_COLORS = 10  # ARC grids: 10 colours as input channels, the document's setting


def _single_thread(fn):
    """Run an experiment on one thread (restored after): the runner does not pin threads, and on a shared
    2-core machine two threads per op made the training loops ~10x slower."""
    @functools.wraps(fn)
    def run(ctx: RunContext) -> Outcome:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(ctx)
        finally:
            torch.set_num_threads(previous)
    return run
