"""Shared by the ROPE experiments: dtype and benchmark shape, the one-thread wrapper, an orthogonality
measure and the one-axes figure helper."""
from __future__ import annotations

import functools

import torch

from impl.claims.experiment import Outcome, RunContext


F64 = torch.float64
HEADS, HEAD_DIM = 8, 64  # the benchmark shape: 8 heads x 64


def _single_thread(fn):
    """Run an experiment on one thread (restored afterwards): the untimed checks call the document's
    dense loops, which on a shared 2-core machine are 30x slower with 2 contending threads."""

    @functools.wraps(fn)
    def wrapper(ctx: RunContext) -> Outcome:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(ctx)
        finally:
            torch.set_num_threads(threads)

    return wrapper


def _orthogonality(matrix: torch.Tensor) -> tuple[float, float]:
    """(max |QᵀQ − I|, det Q)."""
    eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype)
    return (matrix.T @ matrix - eye).abs().max().item(), torch.linalg.det(matrix).item()


def _figure(ctx: RunContext, name: str, draw) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    draw(ax)
    fig.tight_layout()
    fig.savefig(ctx.figure_path(name), dpi=110)
    plt.close(fig)
    return [name]
