"""Properties of the efficient-attention family (EFF-02..EFF-06, EFF-09, EFF-10), beyond the generic suite.

Local+global: the blocked path equals the masked dense reference for any window / global count /
block size, and equals plain dense attention when the window covers the sequence; its tensor peak
grows linearly in n. Cross-memory: invariant to the order of memory tokens; fuse_with_memory's
endpoints are exact. Performer: probabilities normalised; error against exact softmax falls like
1/√r; orthogonal features are no worse than i.i.d. ones (their unbiasedness: test_performer_features.py).
Mamba: causal; chunked scan == sequential scan for every chunk size, and on every path of the optimized
scan (one or several groups, partial chunks, training) in values and gradients; a float64 build is exact.
Blocks: every documented attention_type runs; memory passes through.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

from reprobench_documents.attention.base import explicit_attention
from reprobench_documents.attention.blocks import HierarchicalAttentionBlock, LinearAttentionBlock, get_attention
from reprobench_documents.attention.cross_memory import CrossMemoryAttention
from reprobench_documents.attention.local_global import LocalGlobalAttention, local_global_mask, local_global_sdpa
from reprobench_documents.attention.mamba import MambaLayer, chunked_scan, sequential_scan
from reprobench_documents.attention.performer import PerformerAttention, draw_features, favor_linear
from reprobench.measure import fake_peak_tensor_bytes
from reprobench import registry
from reprobench.registry import make_generator

F64 = torch.float64


def qkv(b, h, n, d, seed, dtype=F64):
    g = make_generator(seed)
    return [torch.randn(b, h, n, d, generator=g, dtype=dtype) for _ in range(3)]


# --- local + global ------------------------------------------------------------------------------

@given(n=st.integers(1, 40), window=st.integers(1, 20), g=st.integers(0, 5), block=st.integers(1, 16),
       seed=st.integers(0, 2**16))
def test_local_global_blocked_equals_masked_dense(n, window, g, block, seed):
    g = min(g, n)
    q, k, v = qkv(2, 2, n, 8, seed)
    expected = explicit_attention(q, k, v, local_global_mask(n, window, g))
    torch.testing.assert_close(local_global_sdpa(q, k, v, window, g, block), expected, atol=1e-10, rtol=1e-8)


@given(n=st.integers(1, 40), g=st.integers(0, 4), seed=st.integers(0, 2**16))
def test_local_global_is_dense_when_window_covers_sequence(n, g, seed):
    g = min(g, n)
    q, k, v = qkv(1, 3, n, 8, seed)
    torch.testing.assert_close(local_global_sdpa(q, k, v, 2 * n, g, block=7), F.scaled_dot_product_attention(q, k, v),
                               atol=1e-10, rtol=1e-8)


@given(n=st.integers(2, 30), window=st.integers(1, 12), g=st.integers(0, 4), seed=st.integers(0, 2**16))
def test_local_global_probabilities_normalised_and_masked(n, window, g, seed):
    layer = LocalGlobalAttention(window, min(g, n), 16, 2, path="reference").reset_parameters(make_generator(seed))
    x = torch.randn(1, n, 16, generator=make_generator(seed + 1))
    probs, allowed = layer.attention_probs(x)
    torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)))
    assert torch.equal(probs.masked_select(~allowed.expand_as(probs)), torch.zeros(0).new_zeros((~allowed.expand_as(probs)).sum()))
    # every query sees its own key, global keys are seen by every query, global queries see everything
    assert allowed.diagonal().all()


def test_local_global_rejects_more_global_tokens_than_tokens():
    layer = LocalGlobalAttention(4, 6, 16, 2)
    with pytest.raises(ValueError, match=r"num_global_tokens \(6\) must be <= the sequence length \(5\)"):
        layer(torch.randn(1, 5, 16))


def test_local_global_tensor_peak_is_linear_in_n():
    """Deterministic (FakeTensorMode) tensor peak: doubling n at most doubles it (+10%), unlike n²."""
    def peak(n):
        def make():
            q, k, v = [torch.empty(1, 4, n, 64) for _ in range(3)]
            return lambda: local_global_sdpa(q, k, v, 128, 4)
        return fake_peak_tensor_bytes(make).peak_bytes

    p1, p2, p4 = peak(2048), peak(4096), peak(8192)
    assert p2 / p1 <= 2.2 and p4 / p2 <= 2.2, (p1, p2, p4)


@pytest.mark.parametrize("path", ["reference", "optimized"])
def test_nan_input_propagates_and_is_not_rejected(path):
    """NaN inputs are not rejected (detecting them would cost a host sync per call): a NaN token
    poisons its own output and the global tokens' outputs. Masking does not contain it further:
    a masked key gets weight exactly 0, but 0 · NaN = NaN in P·V, so the reference (one n × n
    product) poisons every row and the blocked path every row of the NaN's query block."""
    layer = LocalGlobalAttention(2, 1, 16, 2, path=path, block=4).reset_parameters(make_generator(0)).eval()
    x = torch.randn(1, 12, 16, generator=make_generator(1))
    x[0, 8] = float("nan")
    out = layer(x)
    assert out[0, 8].isnan().all() and out[0, 0].isnan().all()  # itself, and the global token 0
    if path == "optimized":
        assert torch.isfinite(out[0, 1:4]).all()  # another query block: untouched


# --- cross-memory --------------------------------------------------------------------------------

@given(n=st.integers(1, 12), m=st.integers(1, 12), seed=st.integers(0, 2**16), path=st.sampled_from(["reference", "optimized"]))
def test_cross_memory_invariant_to_memory_order(n, m, seed, path):
    layer = CrossMemoryAttention(16, 4, path=path).reset_parameters(make_generator(seed)).double()
    g = make_generator(seed + 1)
    local, memory = torch.randn(2, n, 16, generator=g, dtype=F64), torch.randn(2, m, 16, generator=g, dtype=F64)
    perm = torch.randperm(m, generator=g)
    torch.testing.assert_close(layer(local, memory[:, perm]), layer(local, memory), atol=1e-12, rtol=1e-10)


@given(n=st.integers(1, 12), m=st.integers(1, 12), seed=st.integers(0, 2**16), ratio=st.floats(0.0, 1.0))
def test_cross_memory_fusion_endpoints_exact(n, m, seed, ratio):
    layer = CrossMemoryAttention(16, 4).reset_parameters(make_generator(seed)).eval()
    g = make_generator(seed + 1)
    local, memory = torch.randn(1, n, 16, generator=g), torch.randn(1, m, 16, generator=g)
    attended = layer(local, memory, residual=False)
    assert torch.equal(layer.fuse_with_memory(local, memory, 0.0), local)
    assert torch.equal(layer.fuse_with_memory(local, memory, 1.0), attended)
    assert torch.equal(layer(local, memory, residual=True), local + attended)
    mid = layer.fuse_with_memory(local, memory, ratio)
    torch.testing.assert_close(mid, (1 - ratio) * local + ratio * attended, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("ratio", [-0.1, 1.5, float("nan"), True])
def test_cross_memory_fusion_ratio_out_of_range(ratio):
    layer = CrossMemoryAttention(16, 4)
    with pytest.raises(ValueError, match="fusion_ratio"):
        layer.fuse_with_memory(torch.randn(1, 3, 16), torch.randn(1, 2, 16), ratio)


# --- Performer -----------------------------------------------------------------------------------

def _favor_error(num_features, orthogonal, draws, n=64, d=16, seed=0):
    """Mean relative error (Frobenius) of FAVOR+ against exact softmax attention over `draws` feature draws."""
    q, k, v = [t * 0.5 for t in qkv(1, 1, n, d, seed)]
    exact = F.scaled_dot_product_attention(q, k, v)
    g = make_generator(seed + 7)
    errors = [((favor_linear(q, k, v, draw_features(num_features, d, g, orthogonal), "softmax") - exact).norm()
               / exact.norm()).item() for _ in range(draws)]
    return sum(errors) / len(errors)


def test_performer_error_falls_like_inverse_sqrt_features():
    """Fixed generator; 16x more features should cut the error ~4x. Tolerance: ratio in [2.5, 6.5]
    (the Monte-Carlo error of the mean over 8 draws is ~15%, the ε term adds a small floor)."""
    low, high = _favor_error(16, False, 8), _favor_error(256, False, 8)
    assert 2.5 <= low / high <= 6.5, (low, high)


def test_performer_orthogonal_no_worse_than_iid():
    """Fixed generator, 12 draws each at r = 32, 64: orthogonal mean error <= 1.05 x i.i.d."""
    for r in (32, 64):
        assert _favor_error(r, True, 12, seed=r) <= 1.05 * _favor_error(r, False, 12, seed=r)


@pytest.mark.parametrize("kernel", ["softmax", "elu", "relu"])
def test_performer_kernels_match_reference_and_normalise(kernel):
    g = make_generator(3)
    ref = PerformerAttention(16, 2, 24, kernel, path="reference").reset_parameters(g).double()
    opt = PerformerAttention(16, 2, 24, kernel).double()
    opt.load_state_dict(ref.state_dict())
    x = torch.randn(2, 9, 16, generator=g, dtype=F64) * 3
    torch.testing.assert_close(opt(x), ref(x), atol=1e-10, rtol=1e-8)
    probs, _ = ref.attention_probs(x)
    assert (probs >= 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)))


def test_performer_redraw_is_driven_by_the_generator():
    layer = PerformerAttention(16, 2, 8)
    layer.redraw_features(make_generator(5))
    first = layer.omega.clone()
    layer.redraw_features(make_generator(5))
    assert torch.equal(layer.omega, first)
    layer.redraw_features(make_generator(6))
    assert not torch.equal(layer.omega, first)


# --- Mamba ---------------------------------------------------------------------------------------

def _scan_inputs(L, seed, D=6, N=4):
    g = make_generator(seed)
    x, delta = torch.randn(2, L, D, generator=g, dtype=F64), torch.rand(2, L, D, generator=g, dtype=F64)
    A = -torch.rand(D, N, generator=g, dtype=F64) * 4
    return x, delta, A, torch.randn(2, L, N, generator=g, dtype=F64), torch.randn(2, L, N, generator=g, dtype=F64)


@given(L=st.integers(1, 40), chunk=st.integers(1, 16), group=st.integers(1, 24), seed=st.integers(0, 2**16),
       grad=st.booleans())
def test_chunked_scan_equals_sequential_scan(L, chunk, group, seed, grad):
    # group < chunk, = chunk, and several chunks per group; grad=True takes the autograd path.
    x, delta, A, B, C = _scan_inputs(L, seed)
    torch.testing.assert_close(chunked_scan(x.requires_grad_(grad), delta, A, B, C, chunk, group),
                               sequential_scan(x, delta, A, B, C), atol=1e-11, rtol=1e-9)


# Every path of chunked_scan, whatever hypothesis happens to draw above: (L, chunk_size, group_len).
SCAN_PATHS = {
    "one_step": (1, 4, 8),
    "one_chunk": (4, 4, 8),
    "one_group_last_chunk_partial": (7, 4, 8),
    "two_full_groups": (16, 4, 8),
    "last_group_one_partial_chunk": (17, 4, 8),
    "last_group_shorter": (20, 4, 12),
    "one_chunk_per_group": (10, 4, 3),
}


@pytest.mark.parametrize("L,chunk,group", SCAN_PATHS.values(), ids=SCAN_PATHS.keys())
def test_chunked_scan_paths_equal_sequential_scan(L, chunk, group):
    """Inference (groups of chunks, in place) and training (autograd) paths: values and gradients."""
    inputs = _scan_inputs(L, seed=L)
    expected = sequential_scan(*inputs)
    with torch.no_grad():
        torch.testing.assert_close(chunked_scan(*inputs, chunk, group), expected, atol=1e-11, rtol=1e-9)
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    actual = chunked_scan(*leaves, chunk, group)
    torch.testing.assert_close(actual, expected, atol=1e-11, rtol=1e-9)
    weights = torch.randn(expected.shape, generator=make_generator(0), dtype=F64)
    reference_leaves = [t.clone().requires_grad_(True) for t in inputs]
    for got, want in zip(torch.autograd.grad((actual * weights).sum(), leaves),
                         torch.autograd.grad((sequential_scan(*reference_leaves) * weights).sum(), reference_leaves)):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-8)


def test_mamba_float64_build_is_exact():
    """A float64 build computes A_log = log(1..N) in float64 (log in float32 cast up is ~1e-8 off) and
    draws every random parameter in float64 (no float32 value cast up)."""
    spec = registry.get("attention.mamba")
    layer = spec.build(spec.config(), torch.device("cpu"), F64, make_generator(2)).reference
    n = torch.arange(1, layer.state_size + 1, dtype=F64)
    assert torch.equal(layer.A_log, torch.log(n).expand(layer.d_inner, -1))
    assert torch.equal(layer.D, torch.ones(layer.d_inner, dtype=F64))
    for name, p in layer.named_parameters():
        assert p.dtype == F64, name
        if name not in ("A_log", "D"):
            assert not torch.equal(p, p.float().to(F64)), f"{name} holds float32 values"


@given(L=st.integers(2, 24), t=st.integers(0, 22), chunk=st.integers(1, 8), seed=st.integers(0, 2**16),
       path=st.sampled_from(["reference", "optimized"]))
def test_mamba_is_causal(L, t, chunk, seed, path):
    t = min(t, L - 2)
    layer = MambaLayer(8, 4, chunk_size=chunk, path=path).reset_parameters(make_generator(seed)).eval()
    g = make_generator(seed + 1)
    x = torch.randn(1, L, 8, generator=g)
    y = x.clone()
    y[:, t + 1:] += torch.randn(1, L - t - 1, 8, generator=g) * 3
    assert torch.equal(layer(x)[:, : t + 1], layer(y)[:, : t + 1])


# --- blocks --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["strided", "local_global", "cross_memory", "performer", "mamba"])
def test_every_documented_attention_type_builds_and_runs(kind):
    g = make_generator(0)
    cls = LinearAttentionBlock if kind in ("performer", "mamba") else HierarchicalAttentionBlock
    block = cls(dim=32, num_heads=4, attention_type=kind, dropout=0.0).reset_parameters(g).eval()
    x = torch.randn(2, 10, 32, generator=g)
    memory = torch.randn(2, 6, 32, generator=g) if kind == "cross_memory" else None
    out = block(x, memory=memory)
    assert out.shape == x.shape and torch.isfinite(out).all()
    if kind == "cross_memory":  # memory passes through: it changes the output; omitting it is an error
        assert not torch.allclose(block(x, memory=memory * 2), out)
        with pytest.raises(ValueError, match="memory is required"):
            block(x)
    else:
        with pytest.raises(ValueError, match="memory is only used"):
            block(x, memory=torch.randn(2, 6, 32))


@pytest.mark.parametrize("cls,kind", [(HierarchicalAttentionBlock, "performer"), (LinearAttentionBlock, "strided")])
def test_blocks_reject_unknown_attention_type(cls, kind):
    with pytest.raises(ValueError, match="attention_type must be one of"):
        cls(dim=32, num_heads=4, attention_type=kind)


@pytest.mark.parametrize("seq_len,kind", [(1, "local_global"), (511, "local_global"), (512, "strided"),
                                          (4095, "strided"), (4096, "performer"), (16384, "performer")])
def test_get_attention_thresholds(seq_len, kind):
    block = get_attention(seq_len, dim=48, num_heads=4)
    assert block.attention_type == kind
    with pytest.raises(ValueError, match="seq_len"):
        get_attention(0)
