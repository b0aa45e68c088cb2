"""Properties of the VICReg-style regularizers (DW-01..DW-04): the document's numpy code, its torch
code and the optimized twins agree, and each term has the invariances the claims state."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, strategies as st

from reprobench.registry import make_generator
from reprobench_documents.regularizers.covariance import (covariance_component_torch, covariance_regularization,
                                          covariance_regularization_numpy)
from reprobench_documents.regularizers.invariance import cosine_distance, invariance, invariance_numpy, invariance_reference
from reprobench_documents.regularizers.variance import (variance_component_torch, variance_regularization,
                                        variance_regularization_multi_dim_numpy)

F64 = torch.float64
samples = st.integers(1, 40)
dims = st.integers(1, 24)
seeds = st.integers(0, 2**31 - 1)
gammas = st.floats(0.0, 3.0)


def embeddings(n, d, seed, dtype=F64, scale=1.0):
    g = make_generator(seed)
    mixing = torch.randn(d, d, dtype=dtype, generator=g)
    return (torch.randn(n, d, dtype=dtype, generator=g) @ mixing) * scale


def close(a, b, rel=1e-9, abs_=1e-12):
    a, b = float(a), float(b)
    assert abs(a - b) <= abs_ + rel * max(abs(a), abs(b)), (a, b)


# --- variance ----------------------------------------------------------------------------------------

@given(samples, dims, seeds, gammas)
def test_variance_numpy_torch_optimized_agree(n, d, seed, gamma):
    E = embeddings(n, d, seed)
    expected = variance_regularization_multi_dim_numpy(E.numpy(), gamma)
    close(variance_component_torch(E, gamma), expected)
    close(variance_regularization(E, gamma), expected)


@given(st.integers(2, 40), dims, seeds, st.floats(0.01, 3.0), st.floats(1.0, 2.0))
def test_variance_zero_exactly_when_every_std_reaches_gamma(n, d, seed, gamma, factor):
    E = torch.randn(n, d, dtype=F64, generator=make_generator(seed))
    E = (E - E.mean(0)) / E.std(0, correction=0).clamp_min(1e-12)  # unit variance per dim
    wide = E * gamma * factor * 1.001
    assert variance_regularization(wide, gamma).item() == 0.0
    assert variance_component_torch(wide, gamma).item() == 0.0
    narrow = wide.clone()
    narrow[:, 0] = 0.5 * gamma * E[:, 0]  # one dim's std well below gamma
    assert variance_regularization(narrow, gamma).item() > 0.0


@given(samples, dims, seeds, gammas, st.floats(1e-8, 1e-2))
def test_variance_nonnegative_bounded(n, d, seed, gamma, epsilon):
    value = variance_regularization(embeddings(n, d, seed, scale=0.1), gamma, epsilon).item()
    assert 0.0 <= value <= d * gamma / n + 1e-12


@given(st.integers(2, 40), dims, seeds, gammas)
def test_variance_invariant_to_order_and_shift(n, d, seed, gamma):
    E = embeddings(n, d, seed)
    g = make_generator(seed + 1)
    perm = torch.randperm(n, generator=g)
    shift = torch.randn(1, d, dtype=F64, generator=g) * 5
    base = variance_regularization(E, gamma)
    close(variance_regularization(E[perm], gamma), base, abs_=1e-10)
    close(variance_regularization(E + shift, gamma), base, rel=1e-6, abs_=1e-8)


def test_variance_single_sample_and_constant_column_defined():
    E = torch.randn(1, 5, dtype=F64, requires_grad=True)
    value = variance_regularization(E, 1.0, 1e-8)
    assert value.item() == pytest.approx(5 * (1.0 - 1e-4))
    C = torch.cat([torch.randn(6, 3, dtype=F64), torch.full((6, 1), 2.0, dtype=F64)], 1).requires_grad_()
    for fn in (variance_component_torch, variance_regularization):
        (grad,) = torch.autograd.grad(fn(C, 1.0, 1e-8), C)
        assert torch.isfinite(grad).all()


# --- covariance --------------------------------------------------------------------------------------

@given(samples, dims, seeds)
def test_covariance_numpy_torch_optimized_agree(n, d, seed):
    E = embeddings(n, d, seed)
    expected = covariance_regularization_numpy(E.numpy())
    close(covariance_component_torch(E), expected)
    for method in ("auto", "gram", "columns"):
        close(covariance_regularization(E, method=method), expected, abs_=1e-9)


@given(samples, dims, seeds, st.sampled_from(["gram", "columns"]))
def test_covariance_chunked_equals_unchunked_for_every_chunk(n, d, seed, method):
    E = embeddings(n, d, seed)
    whole = covariance_regularization(E, chunk_size=d, method=method)
    for chunk in range(1, d + 1):
        close(covariance_regularization(E, chunk_size=chunk, method=method), whole, abs_=1e-9)


@given(st.integers(2, 30), st.integers(1, 30), seeds, st.sampled_from([torch.float32, F64]))
def test_covariance_zero_for_whitened_data(n, d, seed, dtype):
    X = torch.randn(n, d, dtype=F64, generator=make_generator(seed))
    rank = min(n - 1, d)
    Q, _ = torch.linalg.qr(X - X.mean(0))  # centered, orthonormal columns: covariance I/(n-1)
    W = torch.zeros(n, d, dtype=F64)
    W[:, :rank] = Q[:, :rank]  # with n <= d only n-1 directions exist; the rest stay constant
    W = W.to(dtype)
    diagonal = rank / (n - 1) ** 2  # Σ C_ii²: what the Gram identity subtracts from
    for method in ("gram", "columns"):
        value = covariance_regularization(W, method=method).item()
        assert abs(value) <= 1e-10 * diagonal + 1e-30, (method, value)
    assert covariance_component_torch(W).item() <= (1e-10 if dtype == F64 else 1e-6) * diagonal


@given(samples, dims, seeds, st.floats(0.1, 10.0))
def test_covariance_invariances_and_quartic_scaling(n, d, seed, s):
    E = embeddings(n, d, seed)
    g = make_generator(seed + 1)
    base = covariance_regularization(E)
    close(covariance_regularization(E[torch.randperm(n, generator=g)]), base, rel=1e-8, abs_=1e-9)
    close(covariance_regularization(E[:, torch.randperm(d, generator=g)]), base, rel=1e-8, abs_=1e-9)
    close(covariance_regularization(E + 3 * torch.randn(1, d, dtype=F64, generator=g)), base, rel=1e-6, abs_=1e-7)
    close(covariance_regularization(s * E), s ** 4 * base, rel=1e-8, abs_=1e-9)


def test_covariance_single_sample_and_constant_column_defined():
    one = torch.randn(1, 7, dtype=F64, requires_grad=True)
    for fn in (covariance_component_torch, covariance_regularization):
        value = fn(one)
        assert value.item() == 0.0
        (grad,) = torch.autograd.grad(value, one)
        assert torch.isfinite(grad).all()
    C = torch.cat([torch.randn(6, 3, dtype=F64), torch.full((6, 1), 2.0, dtype=F64)], 1).requires_grad_()
    for method in ("gram", "columns"):
        (grad,) = torch.autograd.grad(covariance_regularization(C, method=method), C)
        assert torch.isfinite(grad).all()


def test_covariance_gram_path_never_builds_dims_squared():
    from reprobench.measure import peak_tensor_bytes

    E = torch.randn(16, 512)
    reference = peak_tensor_bytes(lambda: covariance_component_torch(E)).peak_bytes
    optimized = peak_tensor_bytes(lambda: covariance_regularization(E, chunk_size=64)).peak_bytes
    assert reference >= 4 * 512 * 512 * 4  # cov, mask, product, square
    assert optimized < 512 * 512 * 4 / 8  # not even one d x d float32 matrix


# --- invariance --------------------------------------------------------------------------------------

@given(st.integers(1, 20), st.integers(1, 12), seeds, st.floats(0.1, 20.0))
def test_invariance_numpy_reference_optimized_agree(batch, classes, seed, scale):
    g = make_generator(seed)
    logits = torch.randn(batch, classes, dtype=F64, generator=g) * scale
    labels = torch.randint(0, classes, (batch,), generator=g)
    expected = torch.tensor([invariance_numpy(logits[i].numpy(), int(labels[i])) for i in range(batch)], dtype=F64)
    torch.testing.assert_close(invariance_reference(logits, labels), expected)
    torch.testing.assert_close(invariance(logits, labels), expected)
    torch.testing.assert_close(invariance(logits + 7.0, labels), expected)  # softmax shift invariance


def test_invariance_reference_underflows_where_cross_entropy_does_not():
    logits = torch.tensor([[0.0, 200.0]])
    assert invariance_reference(logits, torch.tensor([0])).isinf().all()  # -log(0): the formula as written
    assert invariance(logits, torch.tensor([0])).item() == pytest.approx(200.0)


def test_cosine_distance_is_not_the_cross_entropy():
    x, y = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0])
    assert cosine_distance(x, y).item() == pytest.approx(0.0, abs=1e-7)
    assert invariance(x, 0).item() > 0.3  # same vectors read as logits: CE = log(1 + e^-1)


# --- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [variance_component_torch, variance_regularization])
def test_variance_bad_input(fn):
    E = torch.randn(4, 3)
    with pytest.raises(ValueError, match="gamma must be a finite float >= 0"):
        fn(E, -0.5)
    with pytest.raises(ValueError, match=r"E: expected .* shape \(\.\.\., samples, dim\)"):
        fn(E[0], 1.0)
    with pytest.raises(ValueError, match="E: expected finite values"):
        fn(torch.full((4, 3), float("nan")), 1.0)


@pytest.mark.parametrize("fn", [covariance_component_torch, covariance_regularization])
def test_covariance_bad_input(fn):
    with pytest.raises(ValueError, match=r"E: expected .* shape \(\.\.\., samples, dim\)"):
        fn(torch.randn(3))
    with pytest.raises(ValueError, match="E: expected finite values"):
        fn(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(TypeError, match="E: expected a float32 or float64 tensor"):
        fn(torch.ones(3, 2, dtype=torch.long))


def test_covariance_bad_chunk_and_method():
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        covariance_regularization(torch.randn(3, 2), chunk_size=0)
    with pytest.raises(ValueError, match="method must be"):
        covariance_regularization(torch.randn(3, 2), method="svd")


@pytest.mark.parametrize("fn", [invariance_reference, lambda l, c: invariance(l, c, check_values=True)])
def test_invariance_bad_input(fn):
    logits = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"true_class: expected indices in \[0, 4\)"):
        fn(logits, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=r"true_class has shape \(2,\), expected \(3,\)"):
        fn(logits, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="logits: expected finite values"):
        fn(torch.full((3, 4), float("nan")), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"logits: expected .* shape"):
        fn(logits[None], torch.tensor([0, 1, 2]))
