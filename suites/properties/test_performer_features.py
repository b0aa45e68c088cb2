"""Performer's random features are unbiased, and a float64 build draws them in float64.

FAVOR+ estimates exp(q·k) by the mean over features of exp(ω·q - |q|²/2) exp(ω·k - |k|²/2); this is unbiased
only if every row ω of the projection is marginally N(0, I_d). That is equivalent to the moment-generating
identity E[exp(ω·z - |z|²/2)] = 1 for every z, which these tests check statistically: the sample mean must lie
within Z_BOUND standard errors of 1, the standard error estimated from independent replicates (feature draws,
or the independent orthogonal blocks of one large draw). Var = exp(|z|²) - 1 for a Gaussian row, so |z| <= 1
keeps the estimator's tails light enough for the normal bound.
"""
from __future__ import annotations

from statistics import NormalDist

import pytest
import torch
from hypothesis import example, given, strategies as st

from reprobench import registry
from reprobench_documents.attention.performer import draw_features
from reprobench.registry import make_generator

F64 = torch.float64
# A correct draw fails a test with probability FALSE_ALARM (two-sided normal bound, Bonferroni over the
# features tested at once): small enough for the thorough profile's hundreds of examples.
FALSE_ALARM = 1e-7


def z_bound(comparisons: int = 1) -> float:
    return NormalDist().inv_cdf(1 - FALSE_ALARM / (2 * comparisons))


def positive_feature(omega: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """exp(ω·z - |z|²/2) per feature: FAVOR+'s positive random feature, expectation 1 for Gaussian ω."""
    return torch.exp(omega.to(F64) @ z - z @ z / 2)


def assert_mean_is_one(samples: torch.Tensor, what: str) -> None:
    """samples (replicates, k): each of the k columns' mean is 1 within Z_BOUND standard errors."""
    mean = samples.mean(0)
    stderr = samples.std(0) / samples.shape[0] ** 0.5
    score = ((mean - 1) / stderr).abs()
    bound = z_bound(samples.shape[1])
    assert (score <= bound).all(), (f"{what}: mean {mean.tolist()} is {score.max():.1f} standard errors from 1 "
                                    f"(bound {bound:.1f})")


def gaussian_z(d: int, norm: float, seed: int) -> torch.Tensor:
    z = torch.randn(d, generator=make_generator(seed), dtype=F64)
    return z * (norm / z.norm())


@given(d=st.integers(1, 12), extra=st.integers(0, 11), norm=st.floats(0.1, 1.0), seed=st.integers(0, 2**16))
@example(d=4, extra=2, norm=0.6, seed=0).via("a partial last block")
def test_every_feature_is_unbiased_over_draws(d, extra, norm, seed):
    """Each of the r features, across 2000 independent draws: E[exp(ω_f·z - |z|²/2)] = 1 (r = 2d + extra,
    so the cut last block is covered too)."""
    r = 2 * d + min(extra, d - 1)
    z = gaussian_z(d, norm, seed)
    g = make_generator(seed + 1)
    samples = torch.stack([positive_feature(draw_features(r, d, g), z) for _ in range(2000)])
    assert_mean_is_one(samples, f"features of ω ({r} x {d})")


@given(d=st.integers(2, 32), norm=st.floats(0.1, 1.0), along_ones=st.booleans(), seed=st.integers(0, 2**16))
@example(d=16, norm=1.2, along_ones=True, seed=11).via("the draw that showed the sign bias: z = 0.3·ones(16), |z| = 1.2")
def test_one_large_draw_is_unbiased(d, norm, along_ones, seed):
    """One draw of 2000 orthogonal blocks: the pooled mean is 1 within the standard error of the block means
    (blocks are independent; rows within a block are not)."""
    z = torch.full((d,), norm / d ** 0.5, dtype=F64) if along_ones else gaussian_z(d, norm, seed)
    omega = draw_features(2000 * d, d, make_generator(seed))
    block_means = positive_feature(omega, z).view(2000, d).mean(1, keepdim=True)
    assert_mean_is_one(block_means, f"pooled features, d={d}, |z|={norm:.2f}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_registered_component_features_are_unbiased_and_shared(dtype):
    """The sign-bias reproduction through the registry: dim 16, one head, 64000 features, seed 11,
    z = 0.3·ones (the defective draw gave 0.826). Both twins use the same features."""
    spec = registry.get("attention.performer")
    config = spec.config(dict(dim=16, num_heads=1, num_random_features=64000))
    pair = spec.build(config, torch.device("cpu"), dtype, make_generator(11))
    assert torch.equal(pair.reference.omega, pair.optimized.omega)
    z = torch.full((16,), 0.3, dtype=F64)
    block_means = positive_feature(pair.reference.omega, z).view(-1, 16).mean(1, keepdim=True)
    assert_mean_is_one(block_means, f"{dtype} build")


def test_every_feature_has_mean_zero():
    """First moments, feature by feature over 4000 draws of 16 x 8 ω (the defect put -0.58 on each block's
    diagonal). Each coordinate has unit variance, so the standard error of its mean is 1/√draws."""
    g = make_generator(3)
    draws = torch.stack([draw_features(16, 8, g) for _ in range(4000)])  # (draws, 16, 8)
    score = draws.mean(0).abs() * draws.shape[0] ** 0.5
    assert score.max() <= z_bound(16 * 8), score.max()


# --- float64 builds are float64 oracles ----------------------------------------------------------

def test_float64_build_draws_every_parameter_in_float64():
    """A float64 build's ω blocks are orthogonal to float64 precision, and no random parameter is a float32
    value cast up (casting after a float32 draw left them orthogonal only to ~1e-7)."""
    spec = registry.get("attention.performer")
    config = spec.config(dict(dim=16, num_heads=2, num_random_features=20))  # head dim 8: 2 full blocks + 4 rows
    layer = spec.build(config, torch.device("cpu"), F64, make_generator(5)).reference
    directions = torch.nn.functional.normalize(layer.omega, dim=1)
    for block in directions.split(8):
        gram = block @ block.T
        torch.testing.assert_close(gram, torch.eye(len(block), dtype=F64), atol=1e-14, rtol=0)
    for name, tensor in [*layer.named_parameters(), ("omega", layer.omega)]:
        assert tensor.dtype == F64 and not torch.equal(tensor, tensor.float().to(F64)), name
