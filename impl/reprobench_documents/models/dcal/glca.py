"""Global-local cross-attention (GLCA) — DCAL-11.

Source: "Dual Cross-Attention Model Optimizations" (documents/001_128d0a2e45dbf7cd.txt) and the DCAL paper
(Zhu et al., CVPR 2022, eq. 2): take the CLS row of the attention rollout, keep the R = ⌈r·(N−1)⌉
patch tokens with the highest accumulated attention (r = `top_k_ratio`, 0.1 in the paper), and let
only their queries attend to all N keys and values:
    f_GLCA(Q, K, V) = softmax(Q_local Kᵀ / √d) V,   Q_local = the selected rows of Q.
The CLS query is always kept in front (row 0), so the GLCA branch classifies from its own CLS
output; GLCA has its own weights (the paper shares weights between SA and PWCA, not GLCA).

Reference: full self-attention over all N queries (explicit softmax), then the selected rows — the
"selected rows equal full attention's rows" property by construction.
Optimized: gather the 1 + R query rows first and run one SDPA: (1+R)·N scores instead of N², so
with r = 0.1 the attention costs about a tenth of a full layer.
Selection (`select_queries`) is shared: both twins attend with the same indices; ties in the
rollout are broken by torch.topk, identically for both.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from reprobench_documents.attention.base import check_tokens
from reprobench_documents.models.dcal.vit import Attention, init_vit_
from reprobench.registry import ComponentSpec, ErrorInput, Implementations, SampleInput, register
from reprobench.validation import check_tensor

PATHS = ("reference", "optimized")


def check_top_k_ratio(top_k_ratio) -> float:
    if isinstance(top_k_ratio, bool) or not isinstance(top_k_ratio, (int, float)) or not 0.0 < top_k_ratio <= 1.0:
        raise ValueError(f"top_k_ratio must be a float in (0, 1], got {top_k_ratio!r}")
    return float(top_k_ratio)


def num_selected(n_tokens: int, top_k_ratio: float) -> int:
    """R: patches kept out of the N − 1 non-CLS tokens (at least one when there is one)."""
    return min(n_tokens - 1, max(1, math.ceil(top_k_ratio * (n_tokens - 1))))


def select_queries(rollout_row: torch.Tensor, top_k_ratio: float) -> torch.Tensor:
    """Indices (B, 1 + R) of CLS followed by the top-R patches of the rollout's CLS row (B, N)."""
    b, n = rollout_row.shape
    r = num_selected(n, top_k_ratio)
    cls = torch.zeros(b, 1, dtype=torch.long, device=rollout_row.device)
    if r == 0:
        return cls
    top = rollout_row[:, 1:].topk(r, dim=-1).indices + 1  # (B, R), skip the CLS column
    return torch.cat([cls, top], dim=1)


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, N, D), index (B, M) -> (B, M, D)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class GlobalLocalCrossAttention(nn.Module):
    """GLCA(dim, num_heads, top_k_ratio). forward(x (B, N, D), rollout_row (B, N)) -> (B, 1 + R, D)."""

    def __init__(self, dim: int, num_heads: int, top_k_ratio: float = 0.1, path: str = "optimized"):
        super().__init__()
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        self.top_k_ratio, self.path = check_top_k_ratio(top_k_ratio), path
        self.attn = Attention(dim, num_heads)

    def check(self, x, rollout_row) -> None:
        check_tokens(x, "x", self.attn.dim, self.attn.qkv.weight)
        # the rollout's CLS row only ranks tokens, so any float dtype will do; it must match x's shape and device
        check_tensor("rollout_row", rollout_row, shape=tuple(x.shape[:2]), same_device_as=x, like_what="x")

    def forward(self, x: torch.Tensor, rollout_row: torch.Tensor) -> torch.Tensor:
        self.check(x, rollout_row)
        return self.attend(x, select_queries(rollout_row.detach(), self.top_k_ratio))

    def attend(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Queries at `index` (B, 1 + R) attend to all N tokens of x (B, N, D) -> (B, 1 + R, D)."""
        attn = self.attn
        if self.path == "reference":
            out, _ = attn(x)  # full N × N self-attention, then keep the selected rows
            return gather_tokens(out, index)
        q, k, v = attn.split_heads(x)  # (B, H, N, hd)
        q_local = q.gather(2, index[:, None, :, None].expand(-1, q.shape[1], -1, q.shape[-1]))  # (B, H, 1+R, hd)
        return attn.merge_heads(F.scaled_dot_product_attention(q_local, k, v))


def _build(config, device, dtype, generator):
    reference = GlobalLocalCrossAttention(**config, path="reference").to(dtype=dtype)  # drawn in the build's dtype
    init_vit_(reference, generator)
    reference = reference.to(device=device).eval()
    optimized = GlobalLocalCrossAttention(**config, path="optimized").to(device=device, dtype=dtype).eval()
    optimized.load_state_dict(reference.state_dict())
    return Implementations(reference=reference, optimized=optimized)


TEST_DIM = 16


def token_samples(dim: int):
    def sample_inputs(n, device, dtype, generator):
        def sample(b):
            x = torch.randn(b, n, dim, device=device, dtype=dtype, generator=generator)
            # a permutation per image gives distinct scores, so top-k has no ties
            row = torch.rand(b, n, device=device, dtype=dtype, generator=generator).argsort(dim=-1).to(dtype).softmax(-1)
            return SampleInput((x, row), name=f"batch{b}")

        return [sample(2), sample(1)]

    return sample_inputs


def _error_inputs(device, dtype, generator):
    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

    cfg = dict(dim=TEST_DIM, num_heads=2)
    return [
        ErrorInput(SampleInput((randn(2, 5, TEST_DIM), randn(2, 4)), name="row_shape"), ValueError,
                   r"rollout_row: expected .* shape \(2, 5\)"),
        ErrorInput(SampleInput((randn(2, 5, TEST_DIM + 1), randn(2, 5)), name="x_dim"), ValueError,
                   r"x: expected .* shape \(batch, seq, 16\)"),
        ErrorInput(SampleInput((randn(2, 5, TEST_DIM), randn(2, 5)), name="ratio_zero"), ValueError,
                   r"top_k_ratio must be a float in \(0, 1\]", config=dict(cfg, top_k_ratio=0.0)),
        ErrorInput(SampleInput((randn(2, 5, TEST_DIM), randn(2, 5)), name="ratio_above_one"), ValueError,
                   r"top_k_ratio must be a float in \(0, 1\]", config=dict(cfg, top_k_ratio=1.5)),
    ]


register(ComponentSpec(
    name="models.dcal_glca",
    claims=("DCAL-11",),
    description="global-local cross-attention: top-R queries by rollout; reference full attention rows, optimized gathered SDPA",
    build=_build,
    sample_inputs=token_samples(TEST_DIM),
    bench_inputs=token_samples(384),
    error_inputs=_error_inputs,
    default_config=dict(dim=TEST_DIM, num_heads=2, top_k_ratio=0.25),
    bench_config=dict(dim=384, num_heads=6, top_k_ratio=0.1),
    test_sizes=(1, 2, 9, 17),
    bench_sizes=(197, 785),
    size_name="N",
    time_exponent={"reference": 2.0, "optimized": 2.0},
    memory_exponent={"reference": 2.0, "optimized": 1.0},
))
