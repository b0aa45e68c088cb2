"""Top-k sparse attention with scores tied at the k-th largest.

The documented mask ``scores < threshold`` keeps every key tied at the threshold, so a row can
attend to more than k keys. Ties are not a measure-zero event here: ReLU features send distinct
examples to identical rows (the shared encoder at grid 1, seed 600). The generic suite samples
continuous features and never produced a tie; this suite builds them on purpose.
"""
from __future__ import annotations

import torch
from hypothesis import given, strategies as st

from reprobench_documents.equivariant.sparse_attention import SparseAttention
from reprobench.registry import make_generator

F64 = torch.float64
DIM = 4


def _duplicated_features(rows: int, batch: tuple[int, ...], seed: int) -> torch.Tensor:
    """Every feature row twice: sorted scores come in equal pairs, so with odd k the k-th largest
    score of every query ties with its duplicate's. Integer features (and integer query/key weights,
    see `_integer_scores`) make every score exact: a BLAS kernel may round the same dot product
    differently in different output columns, which would break the ties by one ulp."""
    base = torch.randint(-3, 4, (*batch, rows, DIM), generator=make_generator(seed)).to(F64)
    return torch.cat([base, base], dim=-2)


def _integer_scores(attn: SparseAttention) -> SparseAttention:
    with torch.no_grad():
        for linear in (attn.query, attn.key):
            linear.weight.copy_(linear.weight.mul(4).round())
            linear.bias.copy_(linear.bias.mul(4).round())
    return attn


@given(rows=st.integers(1, 6), k_pairs=st.integers(0, 5), chunk=st.integers(1, 12), batched=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_optimized_keeps_keys_tied_at_the_threshold(rows, k_pairs, chunk, batched, seed):
    k = 2 * min(k_pairs, rows - 1) + 1  # odd and <= 2·rows - 1
    reference = _integer_scores(SparseAttention(DIM, k, path="reference").reset_parameters(make_generator(seed)).double())
    optimized = SparseAttention(DIM, k, path="optimized", chunk_size=chunk).double()
    optimized.load_state_dict(reference.state_dict())
    x = _duplicated_features(rows, (2,) if batched else (), seed + 1)
    _, allowed = reference.attention_probs(x)
    assert (allowed.sum(-1) > k).all(), "construction failed: a query has no tie at its k-th score"

    outputs, grads = [], []
    for module in (reference, optimized):
        xi = x.clone().requires_grad_(True)
        out = module(xi)
        out.backward(torch.ones_like(out))
        outputs.append(out.detach())
        grads.append([xi.grad] + [p.grad for p in module.parameters()])
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-12, rtol=1e-10)
    for expected, actual in zip(grads[0], grads[1]):
        torch.testing.assert_close(actual, expected, atol=1e-12, rtol=1e-10)
