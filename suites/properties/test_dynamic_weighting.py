"""Properties of attention.dynamic_weighting (DW-05, DW-06, DW-07): the pairwise terms are the
document's regularizers on [q_i; k_j], reference == optimized for any chunking, dynamic weights are a
distribution that depends on the input, and the out-of-memory fallback is basic attention."""
from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, strategies as st

from reprobench_documents.attention.dynamic_weighting import (Attention, pairwise_covariance, pairwise_terms_reference,
                                              pairwise_variance)
from reprobench.registry import make_generator
from reprobench_documents.regularizers.covariance import covariance_component_torch
from reprobench_documents.regularizers.variance import variance_component_torch

F64 = torch.float64
seeds = st.integers(0, 2**31 - 1)


def pair(seed, n, m, d, dtype=F64, batch=2, heads=2):
    g = make_generator(seed)
    return (torch.randn(batch, heads, n, d, dtype=dtype, generator=g),
            torch.randn(batch, heads, m, d, dtype=dtype, generator=g))


def layer_pair(seed, **config):
    g = make_generator(seed)
    reference = Attention(**config, path="reference").reset_parameters(g).to(F64).eval()
    optimized = Attention(**config, path="optimized").to(F64).eval()
    optimized.load_state_dict(reference.state_dict())
    return reference, optimized


def tokens(seed, batch, n, dim):
    return torch.randn(batch, n, dim, dtype=F64, generator=make_generator(seed))


@given(seeds, st.integers(1, 6), st.integers(1, 6), st.integers(1, 6), st.floats(0.0, 2.0))
def test_pair_terms_are_the_documented_regularizers_on_two_samples(seed, n, m, d, gamma):
    q, k = pair(seed, n, m, d, batch=1, heads=1)
    cov, var = pairwise_terms_reference(q, k, gamma, 1e-8)
    for i in range(n):
        for j in range(m):
            E = torch.stack([q[0, 0, i], k[0, 0, j]])  # the two-sample embedding set [q_i; k_j]
            torch.testing.assert_close(cov[0, 0, i, j], covariance_component_torch(E))
            torch.testing.assert_close(var[0, 0, i, j], variance_component_torch(E, gamma, 1e-8))


@given(seeds, st.integers(1, 9), st.integers(1, 9), st.integers(1, 10), st.floats(0.0, 2.0))
def test_closed_forms_equal_reference_for_every_chunk(seed, n, m, d, gamma):
    q, k = pair(seed, n, m, d)
    cov, var = pairwise_terms_reference(q, k, gamma, 1e-8)
    torch.testing.assert_close(pairwise_covariance(q, k), cov)
    for rows in range(1, n + 1):
        torch.testing.assert_close(pairwise_variance(q, k, gamma, 1e-8, rows), var)


@given(seeds, st.integers(1, 8), st.integers(1, 8), st.sampled_from(["cosine", "dot"]), st.booleans(),
       st.sampled_from([None, 64, 2048]))
def test_layer_reference_equals_optimized(seed, n, m, variant, dynamic, budget):
    config = dict(dim=12, heads=3, dim_head=4, variant=variant, dynamic_weight=dynamic, memory_budget_bytes=budget)
    reference, optimized = layer_pair(seed, **config)
    q, k = tokens(seed, 2, n, 12), tokens(seed + 1, 2, m, 12)
    torch.testing.assert_close(optimized(q, k, k, gamma=0.7), reference(q, k, k, gamma=0.7))


@given(seeds, st.integers(2, 8), st.sampled_from([64, 4096]))
def test_gradients_match_through_checkpointed_chunks(seed, n, budget):
    reference, optimized = layer_pair(seed, dim=12, heads=3, dim_head=4, memory_budget_bytes=budget)
    x = tokens(seed, 2, n, 12)
    grads = []
    for layer in (reference, optimized):
        inputs = x.clone().requires_grad_()
        layer(inputs, inputs, inputs).square().sum().backward()
        grads.append([inputs.grad] + [p.grad for p in layer.parameters()])
    for ref, opt in zip(*grads):
        torch.testing.assert_close(opt, ref)


@given(seeds, st.integers(1, 8))
def test_dynamic_weights_sum_to_one_and_follow_the_input(seed, n):
    layer, _ = layer_pair(seed, dim=12, heads=3, dim_head=4)
    q1, k1, _ = layer.split_heads(*(tokens(seed, 2, n, 12),) * 3)
    q2, k2, _ = layer.split_heads(*(tokens(seed + 7, 2, n, 12) * 3,) * 3)
    w1, w2 = layer.component_weights(q1, k1), layer.component_weights(q2, k2)
    assert w1.shape == (2, 3, 3)
    assert (w1 >= 0).all()
    torch.testing.assert_close(w1.sum(-1), torch.ones(2, 3, dtype=F64))
    assert (w1 - w2).abs().max() > 1e-6


def test_scalar_regularizer_broadcast_would_be_a_softmax_no_op():
    """Why the terms are pairwise: adding one number per (batch, head) leaves softmax unchanged."""
    scores = torch.randn(2, 3, 5, 7, dtype=F64)
    per_head = torch.randn(2, 3, 1, 1, dtype=F64) * 100
    torch.testing.assert_close((scores + per_head).softmax(-1), scores.softmax(-1))


@given(seeds, st.integers(1, 6))
def test_probabilities_normalised_batch_of_one_and_constant_features(seed, n):
    layer, optimized = layer_pair(seed, dim=12, heads=3, dim_head=4, memory_budget_bytes=128)
    x = tokens(seed, 1, n, 12)
    probs, _ = layer.attention_probs(x, x, x)
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 3, n, dtype=F64))
    constant = torch.ones(1, n, 12, dtype=F64, requires_grad=True)  # identical tokens, δ = 0 for every pair
    out = optimized(constant, constant, constant)
    (grad,) = torch.autograd.grad(out.sum(), constant)
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1")])
def test_out_of_memory_falls_back_to_basic_attention_with_warning(monkeypatch, error):
    _, layer = layer_pair(3, dim=12, heads=3, dim_head=4)
    x = tokens(3, 2, 5, 12)
    basic = layer(x, x, x, use_advanced=False)

    def explode(*args, **kwargs):
        raise error

    monkeypatch.setattr(layer, "advanced_scores", explode)
    with pytest.warns(RuntimeWarning, match="falling back to basic cosine attention"):
        out = layer(x, x, x, use_advanced=True)
    torch.testing.assert_close(out, basic, rtol=0, atol=0)


def test_other_errors_are_not_swallowed(monkeypatch):
    _, layer = layer_pair(3, dim=12, heads=3, dim_head=4)
    x = tokens(3, 2, 5, 12)
    monkeypatch.setattr(layer, "advanced_scores", lambda *a, **k: (_ for _ in ()).throw(IndexError("a bug")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(IndexError, match="a bug"):
            layer(x, x, x)


def test_chunk_rows_follow_the_memory_budget():
    from reprobench.measure import peak_tensor_bytes

    _, layer = layer_pair(0, dim=32, heads=2, dim_head=16)
    x = tokens(0, 1, 64, 32)
    peaks = {}
    for budget in (None, 1 << 20, 1 << 13):
        layer.memory_budget_bytes = budget
        peaks[budget] = peak_tensor_bytes(lambda: layer(x, x, x)).peak_bytes
    assert peaks[1 << 13] < peaks[1 << 20] < peaks[None]


def test_optimized_layer_lighter_than_reference():
    from reprobench.measure import peak_tensor_bytes

    reference, optimized = layer_pair(0, dim=32, heads=2, dim_head=16)
    x = tokens(0, 1, 32, 32)
    ref = peak_tensor_bytes(lambda: reference(x, x, x)).peak_bytes
    opt = peak_tensor_bytes(lambda: optimized(x, x, x)).peak_bytes
    assert ref >= 2 * 32 * 32 * 16 * 16 * 8  # one d x d covariance per (i, j) and head
    assert opt * 10 < ref


def test_bad_input():
    _, layer = layer_pair(0, dim=12, heads=3, dim_head=4)
    x = tokens(0, 2, 5, 12)
    with pytest.raises(ValueError, match="gamma must be a finite float >= 0"):
        layer(x, x, x, gamma=-0.1)
    with pytest.raises(ValueError, match=r"q: expected .* shape \(batch, seq, 12\)"):
        layer(x[0], x, x)
    with pytest.raises(ValueError, match="variant must be one of"):
        Attention(12, 3, 4, variant="euclid")
