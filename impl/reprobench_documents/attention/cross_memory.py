"""Cross-memory attention: local tokens query a memory of past tokens — EFF-03, EFF-10.

Source: "Efficient Attention Mechanisms" (documents/004_7701952726fa4164.txt), `CrossMemoryAttention(dim, num_heads,
dropout)`, called as `cross_attn(local_features, memory_tokens, residual=True)` and
`cross_attn.fuse_with_memory(local, memory, fusion_ratio)` ("0 = local only, 1 = memory-only"),
complexity O(n·m) for n local tokens and m memory tokens.

What it computes. Queries come from the local features, keys and values from the memory:
attended = proj(softmax(Q_local K_memᵀ / √d) V_mem). With residual=True the output is
local + attended, otherwise attended. fuse_with_memory returns torch.lerp(local, attended, ratio):
lerp is exact at its endpoints (ratio 0 returns `local`, ratio 1 returns `attended`, bit for bit),
which a hand-written (1 - r)·local + r·attended is not when either side holds inf or NaN.
No positional information enters the keys, so the output does not depend on the order of the
memory tokens (a property test checks it).

Reference: explicit softmax over the (n × m) scores. Optimized: SDPA (fused, no n × m
probability tensor kept alive); both O(n·m) in time, the optimized one O((n + m)·d) in memory.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from reprobench_documents.attention.base import build_module_pair, check_dropout, check_heads, check_path, check_tokens, \
    explicit_attention, init_linear_, sdpa_attention
from reprobench.registry import ComponentSpec, ErrorInput, InputSupport, SampleInput, register


class CrossMemoryAttention(nn.Module):
    """CrossMemoryAttention(dim, num_heads, dropout). (local (B, n, dim), memory (B, m, dim)) -> (B, n, dim)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, path: str = "optimized"):
        super().__init__()
        self.head_dim = check_heads(dim, num_heads)
        self.dim, self.num_heads = dim, num_heads
        self.dropout_p = check_dropout(dropout)
        self.path = check_path(path)
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(self.dropout_p)

    def reset_parameters(self, generator: torch.Generator) -> "CrossMemoryAttention":
        for linear in (self.q_proj, self.kv_proj, self.proj):
            init_linear_(linear, generator)
        return self

    def _heads(self, local_features, memory_tokens):
        check_tokens(local_features, "local_features", self.dim, self.q_proj.weight, empty_batch=True)
        check_tokens(memory_tokens, "memory_tokens", self.dim, self.q_proj.weight, empty_batch=True)
        if memory_tokens.shape[0] != local_features.shape[0]:
            raise ValueError(f"memory_tokens has batch {memory_tokens.shape[0]} but local_features has batch "
                             f"{local_features.shape[0]}; they must match")
        b, n, _ = local_features.shape
        m = memory_tokens.shape[1]
        q = self.q_proj(local_features).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, n, hd)
        kv = self.kv_proj(memory_tokens).view(b, m, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return q, kv[0], kv[1]  # k, v (B, H, m, hd)

    def attend(self, local_features, memory_tokens):
        """proj(softmax(Q Kᵀ/√d) V): the memory read, without the residual."""
        q, k, v = self._heads(local_features, memory_tokens)
        if self.path == "optimized":
            out = sdpa_attention(q, k, v, dropout_p=self.dropout_p if self.training else 0.0)
        else:
            out = explicit_attention(q, k, v, dropout=self.attn_drop)
        b, h, n, hd = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, n, h * hd))

    def forward(self, local_features, memory_tokens, residual: bool = True):
        if not isinstance(residual, bool):
            raise TypeError(f"residual must be a bool, got {type(residual).__name__}")
        attended = self.attend(local_features, memory_tokens)
        return local_features + attended if residual else attended

    def fuse_with_memory(self, local_features, memory_tokens, fusion_ratio: float = 0.5):
        """lerp(local, attended, fusion_ratio): 0 -> local exactly, 1 -> attended exactly."""
        if isinstance(fusion_ratio, bool) or not isinstance(fusion_ratio, (int, float)) \
                or not 0.0 <= fusion_ratio <= 1.0 or math.isnan(fusion_ratio):
            raise ValueError(f"fusion_ratio must be a float in [0, 1], got {fusion_ratio!r}")
        attended = self.attend(local_features, memory_tokens)
        return torch.lerp(local_features, attended, float(fusion_ratio))

    def attention_probs(self, local_features, memory_tokens, *_, **__):
        q, k, _ = self._heads(local_features, memory_tokens)
        _, probs = explicit_attention(q, k, k, return_probs=True)
        return probs, torch.ones(1, dtype=torch.bool, device=q.device)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, path={self.path}"


def _build(config, device, dtype, generator):
    return build_module_pair(CrossMemoryAttention, config, device, dtype, generator)


TEST_DIM = 32
MEMORY_LEN = 5  # m fixed in property tests; the size sweeps n


def _samples(n, device, dtype, generator, dim=TEST_DIM, memory_len=MEMORY_LEN):
    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

    return [
        SampleInput((randn(2, n, dim), randn(2, memory_len, dim)), name="residual"),
        SampleInput((randn(1, n, dim), randn(1, 2 * n + 1, dim)), {"residual": False}, name="no_residual"),
    ]


def _bench_samples(n, device, dtype, generator):
    """dim 768, memory of 64 tokens (the document's example); batch-1 sample last."""
    return _samples(n, device, dtype, generator, dim=768, memory_len=64)[:1] + [
        SampleInput((torch.randn(1, n, 768, device=device, dtype=dtype, generator=generator),
                     torch.randn(1, 64, 768, device=device, dtype=dtype, generator=generator)), name="batch1")]


def _errors(device, dtype, generator):
    def randn(*shape, dt=dtype):
        return torch.randn(*shape, device=device, dtype=dt, generator=generator)

    local = randn(2, 4, TEST_DIM)
    cases = [
        ((local, randn(2, 3, TEST_DIM + 1)), {}, ValueError, r"memory_tokens: expected .* shape \(batch, seq, 32\)", "memory_dim"),
        ((local, randn(3, 3, TEST_DIM)), {}, ValueError, r"memory_tokens has batch 3", "memory_batch"),
        ((local, randn(2, 0, TEST_DIM)), {}, ValueError, r"memory_tokens: expected .*seq >= 1", "memory_empty"),
        ((randn(2, 0, TEST_DIM), randn(2, 3, TEST_DIM)), {}, ValueError, r"local_features: expected .*seq >= 1", "local_empty"),
        ((randn(4, TEST_DIM), randn(2, 3, TEST_DIM)), {}, ValueError, r"local_features: expected .* shape \(batch, seq, 32\)", "rank2"),
        ((local, randn(2, 3, TEST_DIM, dt=torch.float16)), {}, TypeError, r"memory_tokens: expected a float32 or float64 tensor", "dtype_mix"),
        ((local, randn(2, 3, TEST_DIM)), {"residual": 1}, TypeError, r"residual must be a bool", "residual_int"),
    ]
    errors = [ErrorInput(SampleInput(args, kwargs, name=name), et, match) for args, kwargs, et, match, name in cases]
    errors.append(ErrorInput(SampleInput((local, randn(2, 3, TEST_DIM)), name="heads_not_dividing"), ValueError,
                             r"divisible by num_heads", config=dict(dim=TEST_DIM, num_heads=5)))
    return errors


register(ComponentSpec(
    name="attention.cross_memory",
    input_support=InputSupport(empty_batch=True),  # batch 0 gives an empty output, as torch layers do
    claims=("EFF-03", "EFF-10"),
    description="cross-attention from local tokens to memory tokens, residual / lerp fusion; explicit vs SDPA",
    build=_build,
    sample_inputs=_samples,
    error_inputs=_errors,
    bench_inputs=_bench_samples,
    default_config=dict(dim=TEST_DIM, num_heads=4, dropout=0.0),
    bench_config=dict(dim=768, num_heads=12, dropout=0.0),
    test_sizes=(1, 2, 7, 16),
    bench_sizes=(256, 512, 1024, 2048),
    time_exponent={"reference": 1.0, "optimized": 1.0},
    memory_exponent={"reference": 1.0, "optimized": 1.0},
))
