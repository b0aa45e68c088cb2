"""Attention blocks and the document's dynamic selection — EFF-10 (and EFF-09's guidance).

Source: "Efficient Attention Mechanisms" (documents/004_7701952726fa4164.txt):
`HierarchicalAttentionBlock(dim, num_heads, attention_type='strided'|'local_global'|'cross_memory', ...)`
"complete attention block with layer normalization and feed-forward network", called as `block(x)` or
`block(x, memory=memory)`; `LinearAttentionBlock(attention_type='performer'|'mamba', ...)`; and
`get_attention(seq_len, dim=768)`: local_global below 512 tokens, strided (stride 4) below 4096,
Performer above.

Block layout (pre-norm, as in ViT / GPT-2; the document says only "layer normalization and FFN"):
  x = x + attention(norm1(x)[, memory])      cross_memory: memory passes through unnormalised,
  x = x + ffn(norm2(x))                      ffn = Linear(dim, 4·dim) -> GELU -> Linear(4·dim, dim).
The document's calls omit dim/num_heads in places (`HierarchicalAttentionBlock(attention_type=
'local_global')`), so they default to its example values 768 and 12; the local_global defaults
(window 64, 4 global tokens) and the Performer/Mamba defaults are the document's examples.
`path` selects reference or optimized attention inside the block, so the registered pair shares
every parameter and differs only in the attention core.
"""
from __future__ import annotations

import torch
from torch import nn

from reprobench_documents.attention.base import check_dropout, check_path, check_tokens, init_linear_, token_error_inputs, \
    token_samples
from reprobench_documents.attention.cross_memory import CrossMemoryAttention
from reprobench_documents.attention.local_global import LocalGlobalAttention
from reprobench_documents.attention.mamba import MambaLayer
from reprobench_documents.attention.performer import PerformerAttention
from reprobench_documents.attention.strided import StridedAttention
from reprobench.registry import ComponentSpec, Implementations, InputSupport, register

HIERARCHICAL_TYPES = ("strided", "local_global", "cross_memory")
LINEAR_TYPES = ("performer", "mamba")


class _PreNormBlock(nn.Module):
    """x + attn(norm1(x)), then x + ffn(norm2(x)). Subclasses build self.attn."""

    def __init__(self, dim: int, dropout: float, mlp_ratio: float):
        super().__init__()
        self.dim = dim
        hidden = int(mlp_ratio * dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(check_dropout(dropout)),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def reset_parameters(self, generator: torch.Generator):
        self.attn.reset_parameters(generator)
        init_linear_(self.ffn[0], generator)
        init_linear_(self.ffn[3], generator)
        return self

    def mix(self, h: torch.Tensor, memory) -> torch.Tensor:
        return self.attn(h)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        check_tokens(x, "x", self.dim, self.norm1.weight, empty_batch=True)  # the attention layer decides batch 0
        x = x + self.mix(self.norm1(x), memory)
        return x + self.ffn(self.norm2(x))


class HierarchicalAttentionBlock(_PreNormBlock):
    """Pre-norm block around strided, local+global or cross-memory attention. x (B, n, dim) -> (B, n, dim)."""

    def __init__(self, dim: int = 768, num_heads: int = 12, attention_type: str = "strided", stride: int = 4,
                 local_window: int = 64, num_global_tokens: int = 4, dropout: float = 0.1, mlp_ratio: float = 4.0,
                 path: str = "optimized"):
        if attention_type not in HIERARCHICAL_TYPES:
            raise ValueError(f"attention_type must be one of {HIERARCHICAL_TYPES}, got {attention_type!r}")
        super().__init__(dim, dropout, mlp_ratio)
        self.attention_type, path = attention_type, check_path(path)
        if attention_type == "strided":
            self.attn = StridedAttention(stride, dim, num_heads, dropout, path=path)
        elif attention_type == "local_global":
            self.attn = LocalGlobalAttention(local_window, num_global_tokens, dim, num_heads, dropout, path=path)
        else:
            self.attn = CrossMemoryAttention(dim, num_heads, dropout, path=path)

    def mix(self, h, memory):
        if self.attention_type == "cross_memory":
            if memory is None:
                raise ValueError("memory is required for attention_type='cross_memory': pass block(x, memory=...)")
            return self.attn(h, memory, residual=False)
        if memory is not None:
            raise ValueError(f"memory is only used by attention_type='cross_memory', not {self.attention_type!r}")
        return self.attn(h)


class LinearAttentionBlock(_PreNormBlock):
    """Pre-norm block around Performer attention or a Mamba layer. x (B, n, dim) -> (B, n, dim)."""

    def __init__(self, dim: int = 768, num_heads: int = 12, attention_type: str = "performer",
                 num_random_features: int = 256, kernel_type: str = "softmax", state_size: int = 16,
                 expand_factor: float = 2.0, dropout: float = 0.1, mlp_ratio: float = 4.0, path: str = "optimized"):
        if attention_type not in LINEAR_TYPES:
            raise ValueError(f"attention_type must be one of {LINEAR_TYPES}, got {attention_type!r}")
        super().__init__(dim, dropout, mlp_ratio)
        self.attention_type, path = attention_type, check_path(path)
        if attention_type == "performer":
            self.attn = PerformerAttention(dim, num_heads, num_random_features, kernel_type, dropout, path=path)
        else:
            self.attn = MambaLayer(dim, state_size, expand_factor, dropout, path=path)

    def mix(self, h, memory):
        if memory is not None:
            raise ValueError(f"memory is only used by attention_type='cross_memory', not {self.attention_type!r}")
        return self.attn(h)


def get_attention(seq_len: int, dim: int = 768, num_heads: int = 12) -> nn.Module:
    """The document's dynamic selection: local_global < 512 <= strided (stride 4) < 4096 <= performer."""
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be an int >= 1, got {seq_len!r}")
    if seq_len < 512:
        return HierarchicalAttentionBlock(dim=dim, num_heads=num_heads, attention_type="local_global")
    if seq_len < 4096:
        return HierarchicalAttentionBlock(dim=dim, num_heads=num_heads, attention_type="strided", stride=4)
    return LinearAttentionBlock(dim=dim, num_heads=num_heads, attention_type="performer")


def _block_pair(cls):
    def build(config, device, dtype, generator):
        reference = cls(**config, path="reference").to(dtype=dtype).reset_parameters(generator).to(device=device).eval()
        optimized = cls(**config, path="optimized").to(device=device, dtype=dtype).eval()
        optimized.load_state_dict(reference.state_dict())
        return Implementations(reference=reference, optimized=optimized)
    return build


TEST_DIM = 32
_COMMON = dict(dim=TEST_DIM, num_heads=4, dropout=0.0)

register(ComponentSpec(
    name="attention.hierarchical_block",
    input_support=InputSupport(empty_batch=True),  # batch 0 gives an empty output, as torch layers do
    claims=("EFF-10",),
    description="pre-norm block (LayerNorm, attention, FFN) around local+global attention; reference vs optimized core",
    build=_block_pair(HierarchicalAttentionBlock),
    sample_inputs=token_samples(TEST_DIM),
    bench_inputs=token_samples(768),
    error_inputs=token_error_inputs(TEST_DIM, {
        "unknown_type": (dict(_COMMON, attention_type="dense"), ValueError, r"attention_type must be one of"),
        "window_zero": (dict(_COMMON, attention_type="local_global", local_window=0), ValueError,
                        r"local_window must be >= 1"),
    }),
    default_config=dict(_COMMON, attention_type="local_global", local_window=4, num_global_tokens=1),
    bench_config=dict(dim=768, num_heads=12, attention_type="local_global", local_window=64, num_global_tokens=4,
                      dropout=0.0),
    test_sizes=(1, 7, 16),
    time_exponent={"reference": 2.0, "optimized": 1.0},
    memory_exponent={"reference": 2.0, "optimized": 1.0},
))

register(ComponentSpec(
    name="attention.linear_block",
    claims=("EFF-10",),
    description="pre-norm block (LayerNorm, attention, FFN) around Performer attention; reference vs optimized core",
    build=_block_pair(LinearAttentionBlock),
    sample_inputs=token_samples(TEST_DIM),
    bench_inputs=token_samples(768),
    error_inputs=token_error_inputs(TEST_DIM, {
        "unknown_type": (dict(_COMMON, attention_type="strided"), ValueError, r"attention_type must be one of"),
        "unknown_kernel": (dict(_COMMON, kernel_type="gelu"), ValueError, r"kernel_type must be one of"),
    }),
    default_config=dict(_COMMON, attention_type="performer", num_random_features=16),
    bench_config=dict(dim=768, num_heads=12, attention_type="performer", num_random_features=256, dropout=0.0),
    test_sizes=(1, 7, 16),
    time_exponent={"reference": 2.0, "optimized": 1.0},
    memory_exponent={"reference": 2.0, "optimized": 1.0},
))
