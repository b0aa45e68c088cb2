"""Variance regularization (VICReg's variance hinge) — DW-02.

Source: "Dynamic Weighting Formula Implementation" (documents/000_294012e263fd6301.txt), section 2:

    V(E) = Σ_dims max(0, γ - sqrt(Var_samples(E)[dim] + ε)) / m

Three versions, all returning the same number:
- ``variance_regularization_multi_dim_numpy`` — the document's numpy code as written. The code
  divides by ``m``, which it never defines. We resolve ``m`` as the number of samples (rows of E
  after flattening the leading dims), because that is what the document's own torch version divides
  by (``E_reshaped.shape[0]``, commented "normalize by number of samples"). VICReg divides by the
  number of *dims* instead (a mean over dims); that is a different scale, recorded as a deviation.
- ``variance_component_torch`` — the document's torch version as written (the registry reference).
- ``variance_regularization`` — the optimized twin. There is nothing asymptotic to win: the
  documented code is already one fused variance reduction (torch.var is single-pass Welford, no
  centered copy) plus an O(d) hinge, so the optimized version is the same ops, without the host
  sync of the finite-value check. It is registered so the generic suites cover it.

Properties (suites/properties/test_regularizers.py): exactly 0 when every per-dim variance
>= γ² - ε (the clamp returns an exact 0.0), non-negative, bounded by dims·γ/m, invariant to sample
order and to per-feature shifts. One sample: the variance is 0, the value is dims·(γ - √ε)/1,
finite; a constant column has a finite gradient (0) as long as ε > 0.
"""
from __future__ import annotations

import numpy as np
import torch

from reprobench_documents.regularizers._common import check_embeddings, check_finite, check_gamma_epsilon
from reprobench.registry import ComponentSpec, ErrorInput, Implementations, SampleInput, Tolerance, register


def variance_regularization_multi_dim_numpy(E, gamma=0.1, epsilon=1e-8):
    """The document's numpy code; ``m`` resolved as the number of samples (see module docstring)."""
    E = np.asarray(E)
    E = E.reshape(-1, E.shape[-1])
    m = E.shape[0]  # undefined in the document; resolved as the sample count
    variance_per_dim = np.var(E, axis=0, ddof=0)
    regularized_std = np.sqrt(variance_per_dim + epsilon)
    hinge_values = np.maximum(0.0, gamma - regularized_std)
    V_E = np.sum(hinge_values) / m
    return V_E


def variance_component_torch(E, gamma=0.1, epsilon=1e-8, *, check_finite_values=True):
    """The document's torch version, line for line, behind the argument checks."""
    E_reshaped = check_embeddings(E)  # (batch*seq, dim)
    gamma, epsilon = check_gamma_epsilon(gamma, epsilon)
    if check_finite_values:
        check_finite(E_reshaped)
    variance_per_dim = torch.var(E_reshaped, dim=0, unbiased=False)
    regularized_std = torch.sqrt(variance_per_dim + epsilon)
    hinge_values = torch.clamp(gamma - regularized_std, min=0.0)
    V_E = torch.sum(hinge_values) / E_reshaped.shape[0]
    return V_E


def variance_regularization(E, gamma=0.1, epsilon=1e-8, *, check_finite_values=True):
    """Optimized twin: same value, no host sync when check_finite_values=False."""
    flat = check_embeddings(E)
    gamma, epsilon = check_gamma_epsilon(gamma, epsilon)
    if check_finite_values:
        check_finite(flat)
    std = (flat.var(dim=0, correction=0) + epsilon).sqrt()  # (dim,)
    return (gamma - std).relu().sum() / flat.shape[0]


# --- registry ---------------------------------------------------------------------------------------

class _Bound:
    """A regularizer with its (gamma, epsilon) fixed, called as fn(E)."""

    def __init__(self, fn, gamma, epsilon, check_finite_values):
        self.fn, self.gamma, self.epsilon, self.check = fn, gamma, epsilon, check_finite_values

    def __call__(self, E):
        return self.fn(E, self.gamma, self.epsilon, check_finite_values=self.check)


def _build(config, device, dtype, generator):
    gamma, epsilon = check_gamma_epsilon(config.get("gamma", 0.1), config.get("epsilon", 1e-8))
    # Neither twin checks finiteness (a host sync the optimized may not make): NaN/inf in, NaN out, in both.
    return Implementations(reference=_Bound(variance_component_torch, gamma, epsilon, False),
                           optimized=_Bound(variance_regularization, gamma, epsilon, False))


DIM = 12


def _sample_inputs(n, device, dtype, generator):
    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

    return [
        SampleInput((randn(n, DIM) * 0.5,), name="half_scale"),  # some dims below gamma=1
        SampleInput((randn(2, n, DIM) * 2.0,), name="rank3_wide"),  # mostly above gamma: zero hinge
        SampleInput((torch.cat([randn(n, DIM - 1), torch.full((n, 1), 3.0, device=device, dtype=dtype)], 1),),
                    name="constant_column"),
    ]


def _error_inputs(device, dtype, generator):
    E = torch.randn(8, DIM, device=device, dtype=dtype, generator=generator)
    return [
        ErrorInput(SampleInput((E[0],), name="rank1"), ValueError, r"E: expected .* shape \(\.\.\., samples, dim\)"),
        ErrorInput(SampleInput((E.long(),), name="int"), TypeError, r"E: expected a float32 or float64 tensor"),
        ErrorInput(SampleInput((E[:0],), name="empty"), ValueError, r"E: expected .*samples >= 1 and dim >= 1"),
        ErrorInput(SampleInput((E,), name="gamma_negative"), ValueError, r"gamma must be a finite float >= 0",
                   config=dict(gamma=-1.0, epsilon=1e-8)),
        ErrorInput(SampleInput((E,), name="epsilon_nan"), ValueError, r"epsilon must be a finite float >= 0",
                   config=dict(gamma=1.0, epsilon=float("nan"))),
    ]


register(ComponentSpec(
    name="regularizers.variance",
    claims=("DW-02",),
    description="VICReg variance hinge Σ max(0, γ - √(var+ε)) / samples; reference = document's torch code",
    build=_build,
    sample_inputs=_sample_inputs,
    error_inputs=_error_inputs,
    default_config=dict(gamma=1.0, epsilon=1e-8),
    bench_config=dict(gamma=1.0, epsilon=1e-8),
    test_sizes=(1, 7, 16),
    bench_sizes=(256, 1024, 4096, 16384),
    size_name="samples",
    tolerances={torch.float64: Tolerance(atol=1e-10, rtol=1e-8), torch.float32: Tolerance(atol=1e-5, rtol=1e-4)},
    time_exponent={"reference": 1.0, "optimized": 1.0},
    memory_exponent={"reference": 0.0, "optimized": 0.0},
))
