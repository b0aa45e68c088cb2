"""Properties of the attention zoo (claims ZOO-01..07): attention rows sum to 1 over the keys
their masks allow and masked keys get exactly 0 — and every mask argument really masks (changing what
a masked key holds changes nothing); windows covering the sequence and a full span are plain full
attention; the span mask is differentiable; Refiner converges on a toy reward with a fixed generator;
the sync-free twins' gradients equal the reference's (None read as zeros)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, strategies as st

from reprobench_documents.attention.base import explicit_attention
from reprobench_documents.attention.zoo.adaptive_span import AdaptiveSpan
from reprobench_documents.attention.zoo.base_attention import BaseAttention, calculate_attention
from reprobench_documents.attention.zoo.integrated import IntegratedAttention
from reprobench_documents.attention.zoo.myelinated import MyelinatedLayer
from reprobench_documents.attention.zoo.refiner import RefinerRun, span_environment
from reprobench_documents.attention.zoo.relative_force import RelativeForce
from reprobench.measure import peak_tensor_bytes
from reprobench.registry import make_generator

D64 = torch.float64


def pair(cls, seed=0, **config):
    g = make_generator(seed)
    ref = cls(**config, path="reference").reset_parameters(g).to(D64).eval()
    opt = cls(**config, path="optimized").to(D64).eval()
    opt.load_state_dict(ref.state_dict())
    return ref, opt, g


def assert_rows_normalised(probs, allowed):
    """Masked keys get exactly 0 and a row sums to 1 over the keys it may attend to; a row with every
    key masked is defined as all zeros (zero output, zero gradients), never 0/0 = NaN."""
    allowed = allowed.expand_as(probs)
    assert (probs[~allowed] == 0).all(), "a masked key received weight (or a fully masked row is NaN)"
    has_key = allowed.any(-1)
    torch.testing.assert_close(probs.sum(-1)[has_key], torch.ones_like(probs.sum(-1)[has_key]))


@given(n=st.integers(1, 12), density=st.floats(0.0, 0.9), seed=st.integers(0, 2**16), causal=st.booleans(),
       kind=st.sampled_from(["bool", "additive"]), empty_item=st.booleans())
def test_calculate_attention_masks_mask(n, density, seed, causal, kind, empty_item):
    g = make_generator(seed)
    q, k, v = (torch.randn(2, 3, n, 4, generator=g, dtype=D64) for _ in range(3))
    keep = (torch.rand(2, 1, n, generator=g) >= density)
    keep[..., 0] = True  # every query keeps key 0, which causality also allows
    if empty_item:
        keep[1] = False  # batch item 1: every key masked, every row fully masked
    mask = keep if kind == "bool" else torch.zeros(2, 1, n, dtype=D64).masked_fill(~keep, float("-inf"))
    out, probs = calculate_attention(q, k, v, mask, use_sdpa=False, is_causal=causal)
    allowed = keep[:, None] & (torch.ones(n, n, dtype=torch.bool).tril() if causal else True)
    assert_rows_normalised(probs, allowed)
    v2 = v.masked_fill(~keep[:, :, :, None].expand_as(v), 1e3)  # change what masked keys hold
    for use_sdpa in (False, True):
        out2, _ = calculate_attention(q, k, v2, mask, use_sdpa=use_sdpa, is_causal=causal)
        torch.testing.assert_close(out2, out)


def _fully_masked_cases():
    """(module class, config, x -> mask, which query rows have every key masked) per component."""
    def bool_padding(x):  # batch item 1 pads every key
        keep = torch.ones(2, 1, x.shape[1], dtype=torch.bool)
        keep[1] = False
        return keep

    def additive_row(x):  # query 2 may attend to no key
        mask = torch.zeros(x.shape[1], x.shape[1], dtype=D64)
        mask[2] = float("-inf")
        return mask

    def padding_2d(x):
        keep = torch.ones(2, x.shape[1], dtype=torch.bool)
        keep[1] = False
        return keep

    return [
        pytest.param(BaseAttention, dict(dims=16, head=2, max_dist=8), bool_padding, (1, slice(None)), id="base-bool"),
        pytest.param(BaseAttention, dict(dims=16, head=2, max_dist=8),
                     lambda x: torch.zeros(2, 1, x.shape[1], dtype=D64).masked_fill(~bool_padding(x), float("-inf")),
                     (1, slice(None)), id="base-additive"),
        pytest.param(IntegratedAttention, dict(dims=16, head=2, max_dist=6, win_size=3, max_span=4, ramp=3),
                     padding_2d, None, id="integrated"),
        pytest.param(RelativeForce, dict(dims=16, heads=2), additive_row, (slice(None), 2), id="relative_force"),
        pytest.param(RelativeForce, dict(dims=16, heads=2, directional=True), additive_row, (slice(None), 2),
                     id="relative_force_directional"),
    ]


@pytest.mark.parametrize("cls,config,make_mask,empty_rows", _fully_masked_cases())
def test_fully_masked_rows_give_zero_attention_and_finite_gradients(cls, config, make_mask, empty_rows):
    """A query whose every key is masked attends to nothing: both twins return the output projection of
    a zero attention output (its bias) for it, agree everywhere, and every gradient is finite and equal."""
    ref, opt, g = pair(cls, **config)
    x = torch.randn(2, 6, 16, generator=g, dtype=D64)
    weight = torch.randn(2, 6, 16, generator=g, dtype=D64)
    mask = make_mask(x)
    results = []
    for module in (ref, opt):
        xi = x.clone().requires_grad_(True)
        out = module(xi, mask=mask)
        (out * weight).sum().backward()
        grads = {"x": xi.grad, **{n: p.grad for n, p in module.named_parameters() if p.grad is not None}}
        assert torch.isfinite(out).all(), f"{module.path}: non-finite output for a fully masked row"
        bad = [n for n, grad in grads.items() if not torch.isfinite(grad).all()]
        assert not bad, f"{module.path}: non-finite gradients {bad}"
        if empty_rows is not None:  # attention output 0, so the layer's output is its output bias
            bias = (module.out if cls is BaseAttention else module.output).bias
            torch.testing.assert_close(out[empty_rows], bias.expand_as(out[empty_rows]))
        results.append((out, grads))
    (out_ref, grads_ref), (out_opt, grads_opt) = results
    torch.testing.assert_close(out_opt, out_ref)
    for name, expected in grads_ref.items():
        torch.testing.assert_close(grads_opt.get(name, torch.zeros_like(expected)), expected,
                                   msg=lambda m, name=name: f"gradient {name}: {m}")
    if hasattr(ref, "attention_probs") and cls is not IntegratedAttention:
        probs, allowed = ref.attention_probs(x, mask=mask)
        assert_rows_normalised(probs, allowed)


def test_a_float_zero_one_mask_does_not_mask():
    """calculate_attention follows SDPA: a float 0/1 'mask' is added to the scores (ZOO-03's defect)."""
    g = make_generator(0)
    q, k, v = (torch.randn(1, 1, 5, 4, generator=g, dtype=D64) for _ in range(3))
    zero_one = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0], dtype=D64).view(1, 1, 5)
    _, probs = calculate_attention(q, k, v, zero_one, use_sdpa=False)
    assert (probs[..., 2:4] > 0).all()


@pytest.mark.parametrize("bool_mask", [False, True])
def test_myelinated_node_mask_masks_only_when_boolean(bool_mask):
    ref, _, g = pair(MyelinatedLayer, dims=16, head=2, layerA=3, sparsity_threshold=0.5, bool_mask=bool_mask)
    x = torch.randn(2, 12, 16, generator=g, dtype=D64)
    probs, allowed = ref.attention_probs(x)
    allowed = allowed.expand_as(probs)
    assert (~allowed).any(), "the node mask masked nothing: the test would be vacuous"
    if bool_mask:
        assert_rows_normalised(probs, allowed)
    else:
        assert (probs[~allowed & torch.ones(12, 12, dtype=torch.bool).tril()] > 0).all()


@given(n=st.integers(2, 20), pad=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_adaptive_span_rows_and_padding_mask(n, pad, seed):
    ref, opt, g = pair(AdaptiveSpan, seed, dims=16, head=2, max_dist=6, ramp=3, span_init=0.5)
    x = torch.randn(2, n, 16, generator=g, dtype=D64)
    keep = torch.ones(2, n, dtype=torch.bool)
    keep[1, n - min(pad, n - 1):] = False
    probs, allowed = ref.attention_probs(x, keep)
    assert_rows_normalised(probs, allowed)
    x2 = x.clone()
    x2[~keep] = 50.0  # padded tokens change; every real token's output must not
    for module in (ref, opt):
        torch.testing.assert_close(module(x2, keep)[keep], module(x, keep)[keep])


@given(n=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_adaptive_span_at_max_span_is_full_attention(n, seed):
    ref, opt, g = pair(AdaptiveSpan, seed, dims=16, head=2, max_dist=20, ramp=4, span_init=1.0)
    x = torch.randn(2, n, 16, generator=g, dtype=D64)
    q, k, v = ref.project(x)
    full = ref.out(ref.merge(explicit_attention(q, k, v)))
    torch.testing.assert_close(ref(x), full)
    torch.testing.assert_close(opt(x), full)


def test_span_mask_is_differentiable_and_trim_keeps_values():
    ref, opt, g = pair(AdaptiveSpan, dims=16, head=2, max_dist=8, ramp=4, span_init=0.5)
    x = torch.randn(2, 24, 16, generator=g, dtype=D64)
    for module in (ref, opt):
        module(x).square().sum().backward()
        grad = module.span_scale.grad
        assert torch.isfinite(grad) and grad.abs() > 0, f"{module.path}: span_scale gradient {grad}"
    assert opt.trim_to_span() == 7  # z = 4, ramp 4: keys with |i - j| < 8 have weight
    torch.testing.assert_close(opt(x), ref(x))


@given(n=st.integers(1, 16), seed=st.integers(0, 2**16), win=st.integers(1, 6), span=st.integers(1, 6))
def test_integrated_windows(n, seed, win, span):
    ref, opt, g = pair(IntegratedAttention, seed, dims=16, head=2, max_dist=6, win_size=win, max_span=span, ramp=3,
                       span_init=0.6)
    x = torch.randn(2, n, 16, generator=g, dtype=D64)
    probs, allowed = ref.attention_probs(x)
    assert_rows_normalised(probs, allowed)
    s = ref.local_attn.span_scale
    torch.testing.assert_close(opt.slide_win(x, win, span, s), ref.slide_win(x, win, span, s))


@given(n=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_integrated_window_covering_sequence_is_full_attention(n, seed):
    ref, opt, g = pair(IntegratedAttention, seed, dims=16, head=2, max_dist=16, win_size=16, max_span=4, ramp=2)
    x = torch.randn(2, n, 16, generator=g, dtype=D64)
    local = ref.local_attn
    q, k, v = local.project(x)
    full = local.out(local.merge(explicit_attention(q, k, v)))
    for module in (ref, opt):
        torch.testing.assert_close(module.slide_win(x, n, 4, module.local_attn.span_scale), full)


@given(n=st.integers(2, 12), seed=st.integers(0, 2**16))
def test_relative_force_mask_and_values(n, seed):
    ref, opt, g = pair(RelativeForce, seed, dims=16, heads=2, hop_levels=3)
    x = torch.randn(2, n, 16, generator=g, dtype=D64)
    blocked = torch.rand(n, n, generator=g) < 0.4
    blocked.fill_diagonal_(False)
    mask = torch.zeros(n, n, dtype=D64).masked_fill(blocked, float("-inf"))
    probs, allowed = ref.attention_probs(x, mask)
    assert_rows_normalised(probs, allowed)
    torch.testing.assert_close(opt(x, mask), ref(x, mask))


def test_relative_force_optimized_never_holds_pairwise_feature_tensors():
    ref, opt, g = pair(RelativeForce, dims=64, heads=2)
    x = torch.randn(1, 48, 64, generator=g, dtype=D64)
    with torch.no_grad():
        ref_peak = peak_tensor_bytes(lambda: ref(x)).peak_bytes
        opt_peak = peak_tensor_bytes(lambda: opt(x)).peak_bytes
    pairwise = 48 * 48 * 64 * 8  # one (1, n, n, dims) float64 tensor
    assert opt_peak < pairwise < ref_peak


@pytest.mark.parametrize("directional", [False, True])
def test_relative_force_direction_sensitivity(directional):
    """As written, each head's modulator enters only through Σ_d M[h, d]: its gradient is the same for
    every d. The corrected variant's is not."""
    ref, opt, g = pair(RelativeForce, dims=16, heads=2, directional=directional)
    x = torch.randn(2, 6, 16, generator=g, dtype=D64)
    for module in (ref, opt):
        module(x).sum().backward()
        grad = module.direction_modulator.grad
        spread = (grad - grad.mean(1, keepdim=True)).abs().max() / grad.abs().max()
        assert (spread > 1e-6) == directional, f"{module.path}: spread {spread}"


@pytest.mark.parametrize("cls,config", [
    (MyelinatedLayer, dict(dims=16, head=2, layerA=4, sparsity_threshold=0.5)),
    (IntegratedAttention, dict(dims=16, head=2, max_dist=6, win_size=3, max_span=4, ramp=3, span_init=0.5)),
])
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_sync_free_twin_gradients_match(cls, config, seed):
    ref, opt, g = pair(cls, **config)
    x = torch.randn(2, 9, 16, generator=g, dtype=D64)
    weight = torch.randn(2, 9, 16, generator=g, dtype=D64)
    grads = []
    for module in (ref, opt):
        xi = x.clone().requires_grad_(True)
        (module(xi, seed=seed) * weight).sum().backward()
        grads.append({"x": xi.grad, **{n: p.grad for n, p in module.named_parameters()}})
    for name, expected in grads[0].items():
        actual = grads[1][name]
        expected = torch.zeros_like(actual) if expected is None and actual is not None else expected
        actual = torch.zeros_like(expected) if actual is None and expected is not None else actual
        if expected is not None:
            torch.testing.assert_close(actual, expected, msg=lambda m: f"{cls.__name__} seed={seed} {name}: {m}")


def test_myelinated_paths_vary_and_are_seeded():
    ref, opt, g = pair(MyelinatedLayer, dims=16, head=2, layerA=4, sparsity_threshold=0.5)
    x = torch.randn(2, 9, 16, generator=g, dtype=D64)
    traces = set()
    for seed in range(12):
        out = ref(x, seed=seed)
        traces.add(tuple(ref.last_trace))
        torch.testing.assert_close(ref(x, seed=seed), out)  # same seed, same path
        torch.testing.assert_close(opt(x, seed=seed), out)
    assert len(traces) > 1 and any("jumped-over" in t for t in traces), traces


def test_refiner_converges_to_optimal_spans():
    states, target = 7, 4
    rewards, next_state, optimal = span_environment(states, target)
    uniforms = torch.rand(4, 3000, 3, generator=make_generator(7), dtype=D64)
    config = dict(states=states, actions=3, alpha=0.3, gamma=0.9, epsilon=0.2, episode_len=10)
    q_opt = RefinerRun(**config, path="optimized")(rewards, next_state, uniforms)
    q_ref = RefinerRun(**config, path="reference")(rewards, next_state, uniforms[:1])
    torch.testing.assert_close(q_opt[:1], q_ref)
    assert (q_opt.argmax(-1) == optimal).all(), f"greedy {q_opt.argmax(-1)} vs optimal {optimal}"
