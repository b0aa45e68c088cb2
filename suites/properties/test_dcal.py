"""Properties of the DCAL family: rollout, PWCA, GLCA, uncertainty loss, the rollout caches
and the model — and proof that these checks fail on broken variants."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, find, given, settings, strategies as st

from reprobench_documents.models.dcal.glca import GlobalLocalCrossAttention, gather_tokens, select_queries
from reprobench_documents.models.dcal.model import TEST_CONFIG, DualAttentionModel
from reprobench_documents.models.dcal.pwca import PairwiseCrossAttention
from reprobench_documents.models.dcal.rollout import (attention_rollout_full, random_attentions, rollout_cls_optimized,
                                      rollout_cls_reference)
from reprobench_documents.models.dcal.rollout_cache import (TRANSFORMS, ExactRolloutCache, StatsHashRolloutCache, agrees,
                                            cached_vs_recomputed, derived_pair)
from reprobench_documents.models.dcal.uncertainty_loss import UncertaintyWeightedLoss
from reprobench_documents.models.dcal.vit import init_vit_
from reprobench.registry import make_generator

F64 = torch.float64
shapes = st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 12))  # L, B, H, N


def maps(shape, seed, dtype=F64):
    return random_attentions(*shape, dtype=dtype, generator=make_generator(seed))


# --- rollout ---------------------------------------------------------------------------------------

def check_rollout_row(fn, attentions):
    torch.testing.assert_close(fn(attentions), rollout_cls_reference(attentions), atol=1e-10, rtol=1e-8)


@given(shape=shapes, seed=st.integers(0, 10**6))
def test_rollout_rows_are_distributions(shape, seed):
    full = attention_rollout_full(maps(shape, seed))
    assert (full >= 0).all()
    torch.testing.assert_close(full.sum(-1), torch.ones_like(full.sum(-1)))


@given(depth=st.integers(1, 4), batch=st.integers(1, 3), heads=st.integers(1, 3), n=st.integers(1, 12))
def test_identity_attention_gives_identity_rollout(depth, batch, heads, n):
    eye = torch.eye(n, dtype=F64).expand(depth, batch, heads, n, n)
    torch.testing.assert_close(attention_rollout_full(eye), torch.eye(n, dtype=F64).expand(batch, n, n))
    torch.testing.assert_close(rollout_cls_optimized(eye), torch.eye(n, dtype=F64)[0].expand(batch, n))


@given(shape=shapes, seed=st.integers(0, 10**6))
def test_optimized_rollout_equals_full_product(shape, seed):
    check_rollout_row(rollout_cls_optimized, maps(shape, seed))


@given(shape=shapes, seed=st.integers(0, 10**6), zero_rows=st.booleans())
def test_optimized_rollout_equals_full_product_on_unnormalised_maps(shape, seed, zero_rows):
    """The reference renormalises rows, so any non-negative map is valid input: rows need not sum to 1
    (scaled rows, all-zero rows). An optimized chain that assumed row sums of 1 would pass on softmax maps."""
    g = make_generator(seed)
    attentions = maps(shape, seed) * torch.rand(*shape[:3], shape[3], 1, dtype=F64, generator=g) * 5
    if zero_rows:
        attentions[..., -1, :] = 0
    check_rollout_row(rollout_cls_optimized, attentions)
    check_rollout_row(rollout_cls_optimized, [a for a in attentions])  # per-layer list input


def test_rollout_check_catches_a_broken_chain():
    """Multiplying the layers in the wrong order (Ā_1 … Ā_L) is the classic rollout bug."""
    def wrong_order(attentions):
        return rollout_cls_optimized(attentions.flip(0))

    with pytest.raises(AssertionError):
        check_rollout_row(wrong_order, maps((3, 2, 2, 6), 0))


# --- PWCA ------------------------------------------------------------------------------------------

def pwca_module(weights, kernel, seed, dim=16, heads=2):
    module = PairwiseCrossAttention(dim, heads, weights=weights, kernel=kernel)
    init_vit_(module, make_generator(seed))
    return module.to(F64).eval()


pwca_variants = st.sampled_from([("copy", "explicit"), ("shared", "sdpa"), ("shared", "explicit")])


@given(variant=pwca_variants, n=st.integers(1, 10), seed=st.integers(0, 10**6))
def test_pwca_with_identical_pair_equals_self_attention(variant, n, seed):
    module = pwca_module(*variant, seed)
    x = torch.randn(2, n, 16, dtype=F64, generator=make_generator(seed + 1))
    torch.testing.assert_close(module(x, x.clone()), module.self_attention(x), atol=1e-12, rtol=1e-10)


@given(variant=pwca_variants, n=st.integers(1, 10), m=st.integers(1, 10), seed=st.integers(0, 10**6))
def test_pwca_invariant_to_permuting_image2_tokens(variant, n, m, seed):
    module = pwca_module(*variant, seed)
    g = make_generator(seed + 1)
    x1, x2 = torch.randn(2, n, 16, dtype=F64, generator=g), torch.randn(2, m, 16, dtype=F64, generator=g)
    perm = torch.randperm(m, generator=g)
    torch.testing.assert_close(module(x1, x2[:, perm]), module(x1, x2), atol=1e-12, rtol=1e-10)


def test_pwca_identity_check_catches_feature_axis_concat():
    """The document's snippet read literally (cat on the feature axis) is not cross-attention at all:
    the same-image property detects it (keys of width 2D cannot even multiply the queries)."""
    module = pwca_module("shared", "explicit", 0)
    x = torch.randn(1, 5, 16, dtype=F64)
    qkv = module.sa.qkv(x)
    q1, k1, v1 = qkv.chunk(3, dim=-1)
    k_combined = torch.cat([k1, k1], dim=2)  # as written: (B, N, 2D)
    assert k_combined.shape == (1, 5, 32), "dim=2 of the (B, N, D) chunks is the feature axis"


def test_pwca_after_trains_sa_weights_before_does_not():
    x1, x2 = torch.randn(1, 4, 16, dtype=F64), torch.randn(1, 4, 16, dtype=F64)
    grads = {}
    for weights in ("copy", "shared"):
        module = pwca_module(weights, "explicit", 3)
        module(x1, x2).sum().backward()
        grads[weights] = module.sa.qkv.weight.grad
    assert grads["copy"] is None, "the 'before' copy cuts SA's parameters out of the graph"
    assert grads["shared"] is not None and grads["shared"].abs().sum() > 0


# --- GLCA ------------------------------------------------------------------------------------------

@given(n=st.integers(2, 20), ratio=st.floats(0.01, 1.0), seed=st.integers(0, 10**6))
def test_glca_rows_equal_full_attention_rows(n, ratio, seed):
    g = make_generator(seed)
    glca = GlobalLocalCrossAttention(16, 2, ratio, path="optimized")
    init_vit_(glca, g)
    glca = glca.to(F64).eval()
    x = torch.randn(2, n, 16, dtype=F64, generator=g)
    row = torch.rand(2, n, dtype=F64, generator=g)
    index = select_queries(row, ratio)
    assert index.shape[1] == 1 + min(n - 1, max(1, math.ceil(ratio * (n - 1))))
    assert (index[:, 0] == 0).all(), "CLS query is kept first"
    full, _ = glca.attn(x)
    torch.testing.assert_close(glca(x, row), gather_tokens(full, index), atol=1e-12, rtol=1e-10)
    # the selected patches are the top-R of the rollout row
    chosen = row.gather(1, index[:, 1:]).min(dim=1).values
    rest = row[:, 1:].clone()
    rest.scatter_(1, index[:, 1:] - 1, -1.0)
    assert (rest.max(dim=1).values <= chosen).all()


# --- uncertainty loss ------------------------------------------------------------------------------

@given(losses=st.lists(st.floats(0.05, 20.0), min_size=1, max_size=5))
def test_uncertainty_loss_stationary_at_log_loss(losses):
    """∂/∂s_i of ½(exp(−s_i)L_i + s_i) vanishes at s_i = log L_i, and nowhere else."""
    values = torch.tensor(losses, dtype=F64)
    for path in ("reference", "optimized"):
        loss_fn = UncertaintyWeightedLoss(len(losses), path=path).to(F64)
        with torch.no_grad():
            loss_fn.log_vars.copy_(values.log())
        loss_fn(values).backward()
        torch.testing.assert_close(loss_fn.log_vars.grad, torch.zeros_like(values), atol=1e-12, rtol=0)
        with torch.no_grad():
            loss_fn.log_vars.add_(0.3)
        loss_fn.zero_grad()
        loss_fn(values).backward()
        assert (loss_fn.log_vars.grad > 0).all(), "above the stationary point the gradient pushes s back down"


def test_uncertainty_loss_weights_follow_inverse_loss():
    """Trained on fixed losses, the reported weight of each task converges to 1 / L_i."""
    values = torch.tensor([0.5, 2.0, 4.0], dtype=F64)
    loss_fn = UncertaintyWeightedLoss(3).to(F64)
    opt = torch.optim.SGD(loss_fn.parameters(), lr=0.5)
    for _ in range(400):
        opt.zero_grad()
        loss_fn({"sa_loss": values[0], "glca_loss": values[1], "pwca_loss": values[2]})["total_loss"].backward()
        opt.step()
    weights = loss_fn.get_current_weights()
    assert list(weights) == ["sa_loss_weight", "glca_loss_weight", "pwca_loss_weight"]
    for w, l in zip(weights.values(), values.tolist()):
        assert abs(w - 1.0 / l) < 1e-3


# --- caches ----------------------------------------------------------------------------------------

pairs = st.tuples(shapes, st.integers(0, 10**6), st.sampled_from(TRANSFORMS))


@given(case=pairs)
def test_exact_cache_always_equals_recomputation(case):
    first, second = derived_pair(*case)
    assert agrees(*cached_vs_recomputed(ExactRolloutCache, first, second))


def find_stats_cache_counterexample():
    """Hypothesis search for two inputs on which the documented cache differs from recomputation."""
    return find(pairs, lambda case: not agrees(*cached_vs_recomputed(StatsHashRolloutCache, *derived_pair(*case))),
                settings=settings(max_examples=300, database=None, derandomize=True,
                                  suppress_health_check=list(HealthCheck)))


def test_documented_stats_cache_admits_a_counterexample():
    """DCAL-07: the search finds one (the ledger shows it); the exact cache has none on the same space."""
    shape, seed, transform = find_stats_cache_counterexample()
    first, second = derived_pair(shape, seed, transform)
    assert not agrees(*cached_vs_recomputed(StatsHashRolloutCache, first, second))
    assert agrees(*cached_vs_recomputed(ExactRolloutCache, first, second))


@given(max_size=st.integers(1, 4), keys=st.lists(st.integers(0, 6), max_size=30),
       kind=st.sampled_from([StatsHashRolloutCache, ExactRolloutCache]))
def test_lru_bound_and_exact_counters(max_size, keys, kind):
    """Against a model LRU: size never exceeds max_size, hits/misses/evictions counted exactly."""
    pool = {k: maps((2, 1, 1, 4), 100 + k) for k in set(keys)}
    cache, model, expect = kind(max_size=max_size), [], dict(hits=0, misses=0, evictions=0)
    for k in keys:
        out = cache.get_or_compute(pool[k], rollout_cls_optimized)
        torch.testing.assert_close(out, rollout_cls_optimized(pool[k]))
        if k in model:
            expect["hits"] += 1
            model.remove(k)
        else:
            expect["misses"] += 1
            if len(model) == max_size:
                model.pop(0)
                expect["evictions"] += 1
        model.append(k)
        stats = cache.stats()
        assert stats["cache_size"] == len(model) <= max_size
        assert {key: stats[key] for key in expect} == expect
    assert cache.stats()["hit_rate"] == (expect["hits"] / len(keys) if keys else 0.0)
    cache.clear()
    assert cache.stats()["cache_size"] == cache.stats()["hits"] == cache.stats()["misses"] == 0


# --- model -----------------------------------------------------------------------------------------

def small_model(seed=0, **overrides):
    config = dict(TEST_CONFIG, return_dict=True, **overrides)
    return DualAttentionModel(**config).reset_parameters(make_generator(seed)).to(F64)


@settings(max_examples=6)
@given(order=st.lists(st.integers(0, 2), min_size=1, max_size=6))
def test_model_with_exact_cache_equals_uncached(order):
    images = [torch.randn(2, 3, 16, 16, dtype=F64, generator=make_generator(i)) for i in range(2)]
    images.append(images[0][[1, 0]])  # the same batch reordered
    plain = small_model().eval()
    cached = small_model(cache_attention_rollout=True, cache_kind="exact").eval()
    with torch.no_grad():
        for i in order:
            a, b = plain(images[i]), cached(images[i])
            for key in a:
                torch.testing.assert_close(b[key], a[key])
    assert cached.get_cache_stats()["hits"] + cached.get_cache_stats()["misses"] == len(order)


def test_model_with_documented_cache_gives_wrong_logits_on_reordered_batch():
    x = torch.randn(2, 3, 16, 16, dtype=F64, generator=make_generator(5))
    plain, cached = small_model().eval(), small_model(cache_attention_rollout=True, cache_kind="stats").eval()
    with torch.no_grad():
        cached(x)
        wrong, right = cached(x[[1, 0]])["glca_logits"], plain(x[[1, 0]])["glca_logits"]
    assert cached.get_cache_stats()["hits"] == 1
    assert not torch.allclose(wrong, right)


def test_pwca_branch_is_training_only():
    model = small_model()
    x, y = torch.randn(2, 3, 16, 16, dtype=F64), torch.randn(2, 3, 16, 16, dtype=F64)
    assert set(model.train()(x, y)) == {"sa_logits", "glca_logits", "pwca_logits"}
    assert set(model.eval()(x, y)) == {"sa_logits", "glca_logits"}
    assert set(model.train()(x)) == {"sa_logits", "glca_logits"}


def test_pwca_branch_with_identical_pair_equals_sa_logits():
    model = small_model().train()
    x = torch.randn(2, 3, 16, 16, dtype=F64)
    out = model(x, x.clone())
    torch.testing.assert_close(out["pwca_logits"], out["sa_logits"])


def test_before_and_after_models_share_checkpoints_and_logits():
    before, after = small_model(path="reference").train(), small_model(seed=9).train()
    after.load_state_dict(before.state_dict())  # strict
    x, y = torch.randn(2, 3, 16, 16, dtype=F64), torch.randn(2, 3, 16, 16, dtype=F64)
    a, b = before(x, y), after(x, y)
    for key in a:
        torch.testing.assert_close(b[key], a[key])


def test_cache_is_eval_only():
    model = small_model(cache_attention_rollout=True).train()
    x = torch.randn(1, 3, 16, 16, dtype=F64)
    model(x)
    model(x)
    assert model.get_cache_stats()["hits"] + model.get_cache_stats()["misses"] == 0
