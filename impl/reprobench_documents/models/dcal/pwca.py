"""Pair-wise cross-attention (PWCA), before and after the weight-sharing change — DCAL-01..04.

Source: "Dual Cross-Attention Model Optimizations" (documents/001_128d0a2e45dbf7cd.txt), §1. PWCA (Zhu et al.
2022): the queries of image 1 attend to the concatenated keys and values of images 1 and 2,
softmax(Q₁[K₁;K₂]ᵀ/√d)[V₁;V₂], with the SA block's projections (weights shared with SA).

"Before": "created new PWCA attention modules and copied weights from SA blocks at runtime". We do
exactly that: every call builds a new attention module and loads SA's state_dict into it (new
parameter tensors, a weight copy), then runs it. The copy is a fresh leaf, so no gradient reaches SA's parameters — the "potential
gradient flow issues" the document names; this twin keeps that defect on purpose (expected failure
of `gradients_match_reference`).
"After": SA's `qkv` and `proj` used directly, "no weight copying".

Deviation. The document's snippet chunks `qkv(x)` (B, N, 3D) into q, k, v of shape (B, N, D) and
then concatenates with `torch.cat([k1, k2], dim=2)`: on those shapes dim 2 is the *feature* axis,
which would give (B, N, 2D) keys and no cross-attention at all. We concatenate along the token axis
(dim 2 of the per-head layout (B, H, N, hd)), which is what the text and the paper describe.

Reference = before + explicit softmax; optimized = after + SDPA (one fused kernel over the 2N keys).
`kernel` is a separate switch so DCAL-02 can time the weight-sharing change alone.
Property (DCAL-04): with image 2 = image 1 every score appears twice, so the softmax weights halve
and the values double — PWCA equals SA exactly; permuting image-2 tokens changes nothing.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from reprobench_documents.attention.base import check_tokens
from reprobench_documents.models.dcal.vit import Attention
from reprobench.registry import ComponentSpec, ErrorInput, ExpectedFailure, Implementations, SampleInput, register

WEIGHTS = ("copy", "shared")
KERNELS = ("explicit", "sdpa")


def pwca_attend(attn: Attention, x1: torch.Tensor, x2: torch.Tensor, kernel: str) -> torch.Tensor:
    """Cross-attention of x1's queries over [x1; x2] with `attn`'s projections. (B, N1, D)."""
    q1, k1, v1 = attn.split_heads(x1)  # (B, H, N1, hd)
    _, k2, v2 = attn.split_heads(x2)  # (B, H, N2, hd)
    k = torch.cat([k1, k2], dim=2)  # token axis: (B, H, N1 + N2, hd)
    v = torch.cat([v1, v2], dim=2)
    if kernel == "sdpa":
        out = F.scaled_dot_product_attention(q1, k, v)
    else:
        probs = (q1 @ k.transpose(-2, -1) / math.sqrt(attn.head_dim)).softmax(dim=-1)  # (B, H, N1, N1+N2)
        out = probs @ v
    return attn.merge_heads(out)


def copy_attention(sa: Attention) -> Attention:
    """The "before": a new attention module with SA's weights copied into it (load_state_dict).
    Built on the meta device first, so making it draws nothing from the global RNG."""
    with torch.device("meta"):
        fresh = Attention(sa.dim, sa.num_heads)
    for name in ("qkv", "proj"):  # allocate real storage like SA's (Module.to/to_empty would swap tensors)
        source, target = getattr(sa, name), getattr(fresh, name)
        target.weight = nn.Parameter(torch.empty_like(source.weight))
        target.bias = nn.Parameter(torch.empty_like(source.bias))
    fresh.load_state_dict(sa.state_dict())  # state_dict() is detached: SA's parameters leave the graph
    return fresh


def check_pair(x1, x2, dim: int, like) -> None:
    """like: SA's parameter, whose dtype and device both token tensors must share."""
    check_tokens(x1, "x1", dim, like)
    check_tokens(x2, "x2", dim, like)
    if x1.shape[0] != x2.shape[0]:
        raise ValueError(f"image pair shape mismatch: x2: expected batch {x1.shape[0]} like x1 (PWCA pairs image i "
                         f"of x1 with image i of x2), got batch {x2.shape[0]}")


class PairwiseCrossAttention(nn.Module):
    """PWCA around one SA attention module `sa`. forward(x1, x2) -> (B, N1, D).

    weights="copy": the documented "before" (fresh module + weight copy every call);
    weights="shared": the "after" (SA's parameters used directly).
    """

    def __init__(self, dim: int, num_heads: int, weights: str = "shared", kernel: str = "sdpa",
                 sa: Attention | None = None):
        super().__init__()
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.weights, self.kernel = weights, kernel
        self.sa = sa if sa is not None else Attention(dim, num_heads)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        check_pair(x1, x2, self.sa.dim, self.sa.qkv.weight)
        if self.weights == "copy":
            return pwca_attend(copy_attention(self.sa), x1, x2, self.kernel)
        return pwca_attend(self.sa, x1, x2, self.kernel)

    def self_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Plain SA of the shared block, for the x2 = x1 property."""
        return self.sa(x)[0]


def _build(config, device, dtype, generator):
    from reprobench_documents.models.dcal.vit import init_vit_

    reference = PairwiseCrossAttention(**config, weights="copy", kernel="explicit").to(dtype=dtype)  # drawn in the build's dtype
    init_vit_(reference, generator)
    reference = reference.to(device=device).eval()
    optimized = PairwiseCrossAttention(**config, weights="shared", kernel="sdpa").to(device=device, dtype=dtype).eval()
    optimized.load_state_dict(reference.state_dict())
    return Implementations(reference=reference, optimized=optimized)


TEST_DIM = 16


def pair_samples(dim: int):
    def sample_inputs(n, device, dtype, generator):
        def randn(*shape):
            return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

        x1 = randn(2, n, dim)
        return [
            SampleInput((x1, x1.clone()), name="same_image"),
            SampleInput((randn(1, n, dim), randn(1, n + 3, dim)), name="unequal_lengths"),
            SampleInput((x1, randn(2, n, dim)), name="pair"),
        ]

    return sample_inputs


def _error_inputs(device, dtype, generator):
    def randn(*shape, dt=dtype):
        return torch.randn(*shape, device=device, dtype=dt, generator=generator)

    other = torch.float64 if dtype != torch.float64 else torch.float32
    cfg = dict(dim=TEST_DIM, num_heads=2)
    return [
        ErrorInput(SampleInput((randn(2, 5, TEST_DIM), randn(3, 5, TEST_DIM)), name="batch_mismatch"), ValueError,
                   r"image pair shape mismatch"),
        ErrorInput(SampleInput((randn(2, 5, TEST_DIM), randn(2, 5, TEST_DIM + 1)), name="x2_dim"), ValueError,
                   r"x2: expected .* shape \(batch, seq, 16\)"),
        ErrorInput(SampleInput((randn(5, TEST_DIM), randn(2, 5, TEST_DIM)), name="x1_rank2"), ValueError,
                   r"x1: expected .* shape \(batch, seq, 16\)"),
        ErrorInput(SampleInput((randn(2, 5, TEST_DIM), randn(2, 5, TEST_DIM, dt=other)), name="x2_dtype"), TypeError,
                   r"x2: expected float\d+ like the layer's parameters"),
        ErrorInput(SampleInput((randn(2, 5, TEST_DIM), randn(2, 5, TEST_DIM)), name="bad_heads"), ValueError,
                   r"divisible by num_heads", config=dict(cfg, num_heads=3)),
    ]


register(ComponentSpec(
    name="models.dcal_pwca",
    claims=("DCAL-01", "DCAL-02", "DCAL-03", "DCAL-04"),
    description="pair-wise cross-attention; reference copies SA weights per call (before), optimized shares them (after)",
    build=_build,
    sample_inputs=pair_samples(TEST_DIM),
    bench_inputs=pair_samples(384),
    error_inputs=_error_inputs,
    default_config=dict(dim=TEST_DIM, num_heads=2),
    bench_config=dict(dim=384, num_heads=6),
    test_sizes=(1, 4, 9),
    bench_sizes=(197, 785),
    size_name="N",
    time_exponent={"reference": 2.0, "optimized": 2.0},
    memory_exponent={"reference": 2.0, "optimized": 1.0},
    expected_failures=(ExpectedFailure(
        "gradients_match_reference",
        "DCAL-01/02: the documented 'before' PWCA loads the SA weights into a fresh module every call, so "
        "no gradient reaches SA's parameters (the document's 'gradient flow issues'); the 'after' twin trains them"),),
))
