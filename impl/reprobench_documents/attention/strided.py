"""Strided attention: each token attends only to every stride-th token — EFF-01, EFF-06/07/08.

Source: "Efficient Attention Mechanisms" (documents/004_7701952726fa4164.txt), `StridedAttention(stride, dim,
num_heads, dropout)`, "each token attends only to every k-th token", complexity O(n²/stride).

Which pattern. "Every k-th token" is read relative to the token itself: query i attends to keys
j with (i - j) mod stride == 0, i.e. i, i ± stride, i ± 2·stride, ... — the strided pattern of the
Sparse Transformer (Child et al., 2019), bidirectional because the document's example has no causal
mask. This is the reading under which the stated cost holds exactly (each query sees ⌈n/stride⌉
keys, n²/stride pairs in all) and every token still contributes to some output. The other reading,
a fixed set of keys at absolute positions 0, k, 2k, ..., has the same cost but makes (k-1)/k of the
tokens invisible to every query; we do not take it.

Reference: dense (n × n) scores with the strided mask (masked keys -> -inf -> exactly 0 weight).
Optimized: exact and O(n²/stride) — positions of one residue class r = i mod stride only ever
meet each other, so we pad n up to a multiple of stride, fold the sequence into (stride, n/stride)
and run one SDPA with the residue classes as extra heads. Padded keys (when stride does not
divide n) are masked with a (heads·stride, 1, m) key mask, never an n × n one; padded queries are dropped.
Forward and backward go through SDPA, so the optimized path trains.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reprobench_documents.attention.base import SelfAttentionLayer, build_module_pair, check_positive_int, token_error_inputs, \
    token_samples
from reprobench.registry import ComponentSpec, InputSupport, register


def strided_mask(n: int, stride: int, device=None) -> torch.Tensor:
    """(n, n) bool: True where query i may attend key j, i.e. (i - j) % stride == 0."""
    idx = torch.arange(n, device=device)
    return (idx[:, None] - idx[None, :]).remainder(stride) == 0


def strided_sdpa(q, k, v, stride: int, dropout_p: float = 0.0):
    """Exact strided attention in O(n²/stride) work. q, k, v (B, H, n, hd) -> (B, H, n, hd)."""
    b, h, n, hd = q.shape
    m = -(-n // stride)  # ceil(n / stride): length of each residue class after padding
    pad = m * stride - n

    def fold(t):  # (B, H, n, hd) -> (B, H*stride, m, hd); position t*stride + r -> [h*stride + r, t]
        t = F.pad(t, (0, 0, 0, pad)) if pad else t
        # 4-D and contiguous: the fused CPU/CUDA kernels take (batch, heads, seq, dim) only; a 5-D
        # input silently falls back to the math path, which materialises the scores.
        return t.view(b, h, m, stride, t.shape[-1]).transpose(2, 3).reshape(b, h * stride, m, t.shape[-1])

    key_mask = None
    if pad:
        positions = torch.arange(m * stride, device=q.device).view(m, stride).T  # (stride, m)
        # (1, H*stride, 1, m): padded keys never receive weight; O(n) elements, not n × n.
        key_mask = (positions < n).repeat(h, 1).view(1, h * stride, 1, m)
    out = F.scaled_dot_product_attention(fold(q), fold(k), fold(v), attn_mask=key_mask, dropout_p=dropout_p)
    # unfold: (B, H*stride, m, hd) -> (B, H, m*stride, hd)
    out = out.view(b, h, stride, m, v.shape[-1]).transpose(2, 3).reshape(b, h, m * stride, v.shape[-1])
    return out[:, :, :n] if pad else out


class StridedAttention(SelfAttentionLayer):
    """StridedAttention(stride, dim, num_heads, dropout). x (B, n, dim) -> (B, n, dim)."""

    accepts_empty_batch = True  # batch 0 gives an empty output, as torch layers do

    def __init__(self, stride: int, dim: int, num_heads: int, dropout: float = 0.0, path: str = "optimized"):
        self.stride = check_positive_int(stride, "stride")
        super().__init__(dim, num_heads, dropout, path)

    def allowed_mask(self, n: int, device) -> torch.Tensor:
        return strided_mask(n, self.stride, device)

    def attend_optimized(self, q, k, v):
        return strided_sdpa(q, k, v, self.stride, dropout_p=self.dropout_p if self.training else 0.0)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, dim={self.dim}, num_heads={self.num_heads}, path={self.path}"


def _build(config, device, dtype, generator):
    return build_module_pair(StridedAttention, config, device, dtype, generator)


TEST_DIM = 32

register(ComponentSpec(
    name="attention.strided",
    input_support=InputSupport(empty_batch=True),  # batch 0 gives an empty output, as torch layers do
    claims=("EFF-01", "EFF-06", "EFF-07", "EFF-08", "EFF-09", "EFF-10"),
    description="strided self-attention (i-j ≡ 0 mod stride); reference masked dense, optimized folded SDPA",
    build=_build,
    sample_inputs=token_samples(TEST_DIM),
    error_inputs=token_error_inputs(TEST_DIM, {
        "stride_zero": (dict(stride=0, dim=TEST_DIM, num_heads=4), ValueError, r"stride must be >= 1"),
        "stride_float": (dict(stride=2.0, dim=TEST_DIM, num_heads=4), TypeError, r"stride must be an int"),
        "dim_not_divisible": (dict(stride=2, dim=TEST_DIM, num_heads=3), ValueError, r"divisible by num_heads"),
    }),
    default_config=dict(stride=3, dim=TEST_DIM, num_heads=4, dropout=0.0),
    bench_inputs=token_samples(768),
    bench_config=dict(stride=4, dim=768, num_heads=12, dropout=0.0),
    test_sizes=(1, 2, 7, 12, 16),
    bench_sizes=(256, 512, 1024, 2048),
    time_exponent={"reference": 2.0, "optimized": 2.0},
    memory_exponent={"reference": 2.0, "optimized": 1.0},
))
