"""Shared by the ROPE experiments: dtype and benchmark shape, an orthogonality measure and the one-axes figure
helper."""
from __future__ import annotations

import torch

from reprobench.claims import RunContext, pyplot


F64 = torch.float64
HEADS, HEAD_DIM = 8, 64  # the benchmark shape every ROPE timing uses: 8 heads x 64


def orthogonality(matrix: torch.Tensor) -> tuple[float, float]:
    """(max |QᵀQ − I|, det Q)."""
    eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    return (matrix.T @ matrix - eye).abs().max().item(), torch.linalg.det(matrix).item()


def save_figure(ctx: RunContext, name: str, draw) -> list[str]:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    draw(ax)
    fig.tight_layout()
    fig.savefig(ctx.figure_path(name), dpi=110)
    plt.close(fig)
    return [name]
