"""Covariance regularization (VICReg's off-diagonal covariance penalty) — DW-03, DW-04.

Source: "Dynamic Weighting Formula Implementation" (documents/000_294012e263fd6301.txt), section 3:

    C = E_cᵀ E_c / (K - 1),   value = Σ_{i≠j} C_ij²      (E_c: E centered over samples)

Versions, all returning the same number:
- ``covariance_regularization_numpy`` — the document's numpy code as written. ``K`` is never defined
  (neither in the numpy nor in the torch code); we resolve it as the number of samples, which makes
  C the unbiased sample covariance (the claim text DW-03 calls it "the (K-1)-normalised
  covariance"). With one sample K - 1 = 0 and the code divides 0 by 0 (NaN); the smallest change
  that gives a defined value is dividing by max(K - 1, 1): one sample has zero covariance, value 0.
- ``covariance_component_torch`` — the document's torch code (the registry reference). It builds the
  d x d covariance, a d x d mask, their product and its square: four d x d tensors. ``torch.eye(dim)``
  is created on the CPU in the document; we create it on E's device and dtype (the smallest change
  that runs on a GPU).
- ``covariance_regularization`` — the optimized twin, which never builds a d x d matrix when there
  are fewer samples than dims. Σ_{i≠j} C_ij² = ||C||_F² - Σ_i C_ii², and ||E_cᵀE_c||_F² = ||E_cE_cᵀ||_F²
  (same nonzero singular values), so with n < d the n x n Gram matrix G = E_cE_cᵀ suffices: O(n²d)
  work and O(n²) memory instead of O(nd²) and O(d²). The subtraction cancels badly exactly when the
  answer is small (decorrelated features), so G and the diagonal term are accumulated in float64.
  G is summed over column chunks of E_c, so no float64 copy of all of E_c exists. With n >= d the
  d x d covariance is computed in column blocks C[:, j:j+c] (d x c), diagonal entries zeroed in
  place, squares summed in float64: no cancellation, peak d·c instead of 4·d². The chunk size c
  comes from the free memory (``chunk_columns``) unless given.
"""
from __future__ import annotations

import numpy as np
import torch

from reprobench_documents.regularizers._common import check_chunk_size, check_embeddings, check_finite, chunk_columns
from reprobench.registry import ComponentSpec, ErrorInput, Implementations, SampleInput, Tolerance, register


def covariance_regularization_numpy(E):
    """The document's numpy code; K resolved as the sample count, K - 1 floored at 1."""
    E = np.asarray(E)
    E = E.reshape(-1, E.shape[-1])
    K = E.shape[0]  # undefined in the document; resolved as the sample count
    E_mean = np.mean(E, axis=0, keepdims=True)
    E_centered = E - E_mean
    cov_matrix = np.dot(E_centered.T, E_centered) / max(K - 1, 1)
    mask = np.ones_like(cov_matrix) - np.eye(cov_matrix.shape[0])
    off_diagonal_squared = np.sum((cov_matrix * mask) ** 2)
    return off_diagonal_squared


def covariance_component_torch(E, *, check_finite_values=True):
    """The document's torch code, line for line: builds the d x d covariance and mask."""
    E_reshaped = check_embeddings(E)
    if check_finite_values:
        check_finite(E_reshaped)
    dim = E_reshaped.shape[-1]
    K = E_reshaped.shape[0]
    E_mean = torch.mean(E_reshaped, dim=0, keepdim=True)
    E_centered = E_reshaped - E_mean
    cov_matrix = torch.matmul(E_centered.T, E_centered) / max(K - 1, 1)
    mask = torch.ones_like(cov_matrix) - torch.eye(dim, device=E.device, dtype=E.dtype)
    off_diagonal_squared = torch.sum((cov_matrix * mask) ** 2)
    return off_diagonal_squared


def covariance_regularization(E, *, chunk_size=None, memory_budget_bytes=None, method="auto",
                              check_finite_values=True):
    """Optimized Σ_{i≠j} C_ij²: Gram identity when samples < dims, column blocks otherwise.

    chunk_size: columns per block (None: from ``memory_budget_bytes`` or the free memory).
    method: "auto", "gram" (n x n Gram matrix) or "columns" (d x chunk blocks of C).
    """
    X = check_embeddings(E)
    chunk_size = check_chunk_size(chunk_size)
    if method not in ("auto", "gram", "columns"):
        raise ValueError(f"method must be 'auto', 'gram' or 'columns', got {method!r}")
    if check_finite_values:
        check_finite(X)
    n, d = X.shape
    Xc = X - X.mean(dim=0, keepdim=True)  # (n, d)
    scale = float(max(n - 1, 1)) ** 2
    if method == "gram" or (method == "auto" and n < d):
        # Per block: a float64 copy (n x c) and its square; the n x n Gram matrix is kept.
        c = chunk_size or chunk_columns(2 * n, d, 8, X.device, memory_budget_bytes)
        gram = torch.zeros(n, n, device=X.device, dtype=torch.float64)
        diagonal_sq = torch.zeros((), device=X.device, dtype=torch.float64)
        for start in range(0, d, c):
            block = Xc[:, start:start + c].to(torch.float64)  # (n, c)
            gram = torch.addmm(gram, block, block.T)
            diagonal_sq = diagonal_sq + block.square().sum(dim=0).square().sum()  # Σ_i (C_ii·(K-1))²
        return ((gram.square().sum() - diagonal_sq) / scale).to(X.dtype)
    c = chunk_size or chunk_columns(2 * d, d, X.element_size(), X.device, memory_budget_bytes)
    total = torch.zeros((), device=X.device, dtype=torch.float64)
    for start in range(0, d, c):
        block = Xc.T @ Xc[:, start:start + c]  # (d, c): columns start..start+c of (K-1)·C
        block.diagonal(offset=-start).zero_()  # entries (start+i, i): the diagonal of C
        total = total + block.square().sum(dtype=torch.float64)
    return (total / scale).to(X.dtype)


# --- registry ---------------------------------------------------------------------------------------

class _Reference:
    def __call__(self, E):
        # no finiteness check (a host sync the optimized may not make): NaN/inf in, NaN out, in both
        return covariance_component_torch(E, check_finite_values=False)


class _Optimized:
    def __init__(self, chunk_size):
        self.chunk_size = chunk_size

    def __call__(self, E):
        return covariance_regularization(E, chunk_size=self.chunk_size, check_finite_values=False)


def _build(config, device, dtype, generator):
    return Implementations(reference=_Reference(), optimized=_Optimized(check_chunk_size(config.get("chunk_size"))))


DIM = 12


def _sample_inputs(n, device, dtype, generator):
    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

    mixing = randn(DIM, DIM)  # correlated features, so the off-diagonal terms are not ~0
    return [
        SampleInput((randn(n, DIM) @ mixing,), name="correlated"),  # n < 12: Gram path; 16: columns
        SampleInput((randn(2, n, 2 * DIM),), name="rank3_wide"),  # 2n samples vs 24 dims
        SampleInput((torch.cat([randn(n, DIM - 1), torch.full((n, 1), 3.0, device=device, dtype=dtype)], 1),),
                    name="constant_column"),
    ]


def _error_inputs(device, dtype, generator):
    E = torch.randn(8, DIM, device=device, dtype=dtype, generator=generator)
    return [
        ErrorInput(SampleInput((E[0],), name="rank1"), ValueError, r"E: expected .* shape \(\.\.\., samples, dim\)"),
        ErrorInput(SampleInput((E.long(),), name="int"), TypeError, r"E: expected a float32 or float64 tensor"),
        ErrorInput(SampleInput((E[:0],), name="empty"), ValueError, r"E: expected .*samples >= 1 and dim >= 1"),
        ErrorInput(SampleInput(([[1.0, 2.0]],), name="list"), TypeError, r"E: expected a float32 or float64 tensor"),
    ]


register(ComponentSpec(
    name="regularizers.covariance",
    claims=("DW-03", "DW-04"),
    description="VICReg off-diagonal covariance Σ_{i≠j} C_ij²; reference d×d, optimized Gram/chunked float64",
    build=_build,
    sample_inputs=_sample_inputs,
    error_inputs=_error_inputs,
    default_config=dict(chunk_size=5),  # small, so the tests cross chunk boundaries
    bench_config=dict(chunk_size=None),
    test_sizes=(1, 7, 16),
    bench_sizes=(256, 1024, 4096, 16384),
    size_name="samples",
    tolerances={torch.float64: Tolerance(atol=1e-9, rtol=1e-7), torch.float32: Tolerance(atol=1e-4, rtol=1e-4)},
    # At a fixed 12 dims both are linear in the sample count (the centered copy); the d x d
    # against n x n trade-off is measured over dims in DW-03/DW-04.
    time_exponent={"reference": 1.0, "optimized": 1.0},
    memory_exponent={"reference": 1.0, "optimized": 1.0},
))
