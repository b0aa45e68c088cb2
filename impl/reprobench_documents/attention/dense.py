"""Standard (dense) multi-head self-attention: the "Standard" row of EFF-06/07/08 and the baseline
every efficient variant is compared with.

Source: "Efficient Attention Mechanisms" (documents/004_7701952726fa4164.txt), efficiency table and benchmarks.
Reference: explicit softmax(QKᵀ/√d)V, which materialises the (n × n) score and probability
matrices. Optimized: torch's scaled_dot_product_attention, a fused kernel (flash attention on CPU
and CUDA) that streams over key blocks and keeps only O(n·d) tensors alive.
"""
from __future__ import annotations

from reprobench_documents.attention.base import (SelfAttentionLayer, build_module_pair, sdpa_attention, token_error_inputs,
                                 token_samples)
from reprobench.registry import ComponentSpec, InputSupport, register


class DenseAttention(SelfAttentionLayer):
    """Multi-head self-attention over all n keys. x (B, n, dim) -> (B, n, dim)."""

    accepts_empty_batch = True  # batch 0 gives an empty output, as torch layers do

    def attend_optimized(self, q, k, v):
        return sdpa_attention(q, k, v, dropout_p=self.dropout_p if self.training else 0.0)


def _build(config, device, dtype, generator):
    return build_module_pair(DenseAttention, config, device, dtype, generator)


TEST_DIM = 32

register(ComponentSpec(
    name="attention.dense",
    input_support=InputSupport(empty_batch=True),  # batch 0 gives an empty output, as torch layers do
    claims=("EFF-06", "EFF-07", "EFF-08", "EFF-09"),
    description="standard multi-head self-attention; reference explicit softmax, optimized SDPA",
    build=_build,
    sample_inputs=token_samples(TEST_DIM),
    error_inputs=token_error_inputs(TEST_DIM, {
        "dim_not_divisible": (dict(dim=TEST_DIM, num_heads=5), ValueError, r"dim \(32\) must be divisible by num_heads"),
        "heads_zero": (dict(dim=TEST_DIM, num_heads=0), ValueError, r"num_heads must be >= 1"),
        "dropout_range": (dict(dim=TEST_DIM, num_heads=4, dropout=1.5), ValueError, r"dropout must be"),
    }),
    default_config=dict(dim=TEST_DIM, num_heads=4, dropout=0.0),
    bench_inputs=token_samples(768),
    bench_config=dict(dim=768, num_heads=12, dropout=0.0),
    bench_sizes=(256, 512, 1024, 2048),
    time_exponent={"reference": 2.0, "optimized": 2.0},
    memory_exponent={"reference": 2.0, "optimized": 1.0},
))
