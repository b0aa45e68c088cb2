"""Top-k sparse attention over example features — EQ-06.

Source: "Sparse Attention + Group-Aware Homotopy" (documents/003_cfb6f10add0ba6bf.txt), `SparseAttention
(k_neighbors=5)`: "each example attends to k nearest neighbors (sparse!)", "O(N·k) vs O(N²)".

The documented forward, which the reference follows line by line:

    scores = Q @ K.T / (temperature * sqrt(D))
    topk_values = torch.topk(scores, k)
    mask = scores < threshold            # threshold = k-th largest score of the row
    scores.masked_fill_(mask, -1e9)
    attn = softmax(scores) @ V

Deviations (smallest changes that let it run): ``torch.topk`` returns (values, indices), so the
threshold is ``topk(scores, k).values[..., -1:]``; softmax is over the key axis. With ties at the
threshold the documented mask keeps every tied key, more than k. Ties do occur: ReLU features map
distinct examples to identical rows (the shared encoder at grid 1), so both twins keep them.
``k_neighbors > N`` makes ``torch.topk`` fail inside torch; we raise a ValueError naming both.

Complexity. The documented forward forms the full N × N score matrix, runs top-k on it and a dense
N × N softmax and matmul: O(N²·D) time and O(N²) memory. Only the attention that *survives* is
O(N·k). The optimized path is exact (same values, same gradients, ties included) but never holds
more than ``chunk_size`` × N scores: per block of queries it scores all keys, finds the k-th largest
score and softmaxes over the keys at or above it, so memory is O(chunk·N). Gathering exactly k value
rows instead would drop keys tied at the threshold. Finding the k nearest neighbours exactly still
needs every score, so time stays O(N²·D) — measured in EQ-06. Inputs may carry leading batch dims.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from reprobench_documents.attention.base import check_path, check_positive_int, init_linear_
from reprobench.registry import ComponentSpec, ErrorInput, Implementations, SampleInput, register
from reprobench.validation import check_tensor, describe


def check_features(x, dim: int, k: int, like: torch.Tensor) -> torch.Tensor:
    """x (..., N, dim) with N >= k, in the dtype and on the device of like (the module's parameters)."""
    check_tensor("example_features", x, like=like, like_what="the module's parameters")
    if x.dim() < 2 or x.shape[-1] != dim:
        raise ValueError(f"example_features: expected a tensor of shape (..., N, {dim}), got {describe(x)}")
    if x.shape[-2] < k:
        raise ValueError(f"k_neighbors ({k}) must be <= the number of examples N={x.shape[-2]} in example_features")
    return x


class SparseAttention(nn.Module):
    """SparseAttention(feature_dim, k_neighbors, temperature): (..., N, D) -> (..., N, D)."""

    def __init__(self, feature_dim: int, k_neighbors: int = 5, temperature: float = 1.0, path: str = "optimized",
                 chunk_size: int = 512):
        super().__init__()
        self.feature_dim = check_positive_int(feature_dim, "feature_dim")
        self.k_neighbors = check_positive_int(k_neighbors, "k_neighbors")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        self.temperature = float(temperature)
        self.path = check_path(path)
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")
        self.query, self.key, self.value = (nn.Linear(feature_dim, feature_dim) for _ in range(3))

    def reset_parameters(self, generator: torch.Generator) -> "SparseAttention":
        for linear in (self.query, self.key, self.value):
            init_linear_(linear, generator)
        return self

    @property
    def scale(self) -> float:
        return 1.0 / (self.temperature * math.sqrt(self.feature_dim))

    def forward(self, example_features: torch.Tensor) -> torch.Tensor:
        check_features(example_features, self.feature_dim, self.k_neighbors, self.query.weight)
        q, k, v = self.query(example_features), self.key(example_features), self.value(example_features)
        return self.attend_reference(q, k, v) if self.path == "reference" else self.attend_optimized(q, k, v)

    def scores_and_mask(self, q, k):
        """Documented scores (..., N, N) and the mask of keys that receive no weight."""
        scores = q @ k.transpose(-2, -1) * self.scale
        topk_values = torch.topk(scores, self.k_neighbors, dim=-1).values
        threshold = topk_values[..., -1:]
        return scores, scores < threshold

    def attend_reference(self, q, k, v):
        scores, mask = self.scores_and_mask(q, k)
        scores.masked_fill_(mask, -1e9)
        return torch.softmax(scores, dim=-1) @ v

    def attend_optimized(self, q, k, v):
        outs = []
        for start in range(0, q.shape[-2], self.chunk_size):  # blocks of queries, never single tokens
            scores = q[..., start:start + self.chunk_size, :] @ k.transpose(-2, -1) * self.scale  # (..., c, N)
            threshold = torch.topk(scores, self.k_neighbors, dim=-1).values[..., -1:]  # (..., c, 1)
            # every key at or above the threshold, as the documented mask: ties keep more than k
            weights = torch.softmax(scores.masked_fill(scores < threshold, float("-inf")), dim=-1)
            outs.append(weights @ v)
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-2)

    def attention_probs(self, example_features: torch.Tensor):
        """(probabilities (..., N, N), allowed) as the documented forward forms them."""
        check_features(example_features, self.feature_dim, self.k_neighbors, self.query.weight)
        scores, mask = self.scores_and_mask(self.query(example_features), self.key(example_features))
        return torch.softmax(scores.masked_fill(mask, -1e9), dim=-1), ~mask

    def extra_repr(self) -> str:
        return f"feature_dim={self.feature_dim}, k_neighbors={self.k_neighbors}, temperature={self.temperature}, path={self.path}"


def _build(config, device, dtype, generator):
    reference = SparseAttention(**config, path="reference").to(dtype=dtype).reset_parameters(generator).to(device).eval()
    optimized = SparseAttention(**config, path="optimized").to(device, dtype).eval()
    optimized.load_state_dict(reference.state_dict())
    return Implementations(reference=reference, optimized=optimized,
                           probabilities=lambda sample: reference.attention_probs(*sample.args))


TEST_DIM = 8


def _sample_inputs(n, device, dtype, generator):
    return [SampleInput((torch.randn(n, TEST_DIM, device=device, dtype=dtype, generator=generator),), name="examples"),
            SampleInput((torch.randn(2, n, TEST_DIM, device=device, dtype=dtype, generator=generator),), name="batched")]


BENCH_DIM = 32


def _bench_inputs(n, device, dtype, generator):
    return [SampleInput((torch.randn(n, BENCH_DIM, device=device, dtype=dtype, generator=generator),), name="examples")]


def _error_inputs(device, dtype, generator):
    other = torch.float64 if dtype != torch.float64 else torch.float32

    def randn(*shape, dt=dtype):
        return torch.randn(*shape, device=device, dtype=dt, generator=generator)

    cfg = dict(feature_dim=TEST_DIM, k_neighbors=3)
    return [
        ErrorInput(SampleInput((randn(2, TEST_DIM),), name="k_gt_n"), ValueError, r"k_neighbors \(3\) must be <= .*N=2"),
        ErrorInput(SampleInput((randn(TEST_DIM),), name="rank1"), ValueError,
                   r"example_features: expected a tensor of shape \(\.\.\., N, 8\)"),
        ErrorInput(SampleInput((randn(5, TEST_DIM + 1),), name="wrong_dim"), ValueError,
                   r"example_features: expected a tensor of shape \(\.\.\., N, 8\)"),
        ErrorInput(SampleInput((randn(5, TEST_DIM, dt=other),), name="dtype_mix"), TypeError,
                   r"example_features: expected float\d+ like the module's parameters"),
        ErrorInput(SampleInput((randn(5, TEST_DIM),), name="k_zero"), ValueError, r"k_neighbors must be >= 1",
                   config={**cfg, "k_neighbors": 0}),
        ErrorInput(SampleInput((randn(5, TEST_DIM),), name="k_float"), TypeError, r"k_neighbors must be an int",
                   config={**cfg, "k_neighbors": 2.5}),
        ErrorInput(SampleInput((randn(5, TEST_DIM),), name="temperature"), ValueError, r"temperature must be a positive number",
                   config={**cfg, "temperature": 0.0}),
    ]


register(ComponentSpec(
    name="equivariant.sparse_attention",
    claims=("EQ-06",),
    description="top-k (k_neighbors) attention over N example features; reference dense N×N as documented, optimized chunked top-k gather",
    build=_build,
    sample_inputs=_sample_inputs,
    error_inputs=_error_inputs,
    default_config=dict(feature_dim=TEST_DIM, k_neighbors=3, temperature=1.0, chunk_size=4),
    bench_config=dict(feature_dim=BENCH_DIM, k_neighbors=5, temperature=1.0, chunk_size=512),
    bench_inputs=_bench_inputs,
    test_sizes=(3, 7, 16),
    bench_sizes=(512, 1024, 2048, 4096),
    size_name="N",
    time_exponent={"reference": 2.0, "optimized": 2.0},
    memory_exponent={"reference": 2.0, "optimized": 1.0},
))
