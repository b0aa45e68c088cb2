"""Properties of the attention cores behind attention.dense and attention.strided, and proof that
the equivalence checks can fail."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, strategies as st

from reprobench_documents.attention.base import explicit_attention, sdpa_attention
from reprobench_documents.attention.strided import StridedAttention, strided_mask, strided_sdpa
from reprobench.registry import Implementations, get, make_generator
from reprobench.testing.checks import assert_gradients_match, assert_matches_reference


def qkv(b, h, n, d, seed, dtype=torch.float64, m=None):
    g = make_generator(seed)
    q = torch.randn(b, h, n, d, generator=g, dtype=dtype)
    k = torch.randn(b, h, m or n, d, generator=g, dtype=dtype)
    v = torch.randn(b, h, m or n, d, generator=g, dtype=dtype)
    return q, k, v


@given(n=st.integers(1, 40), stride=st.integers(1, 9), heads=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_strided_sdpa_equals_masked_dense(n, stride, heads, seed):
    q, k, v = qkv(2, heads, n, 8, seed)
    torch.testing.assert_close(strided_sdpa(q, k, v, stride), explicit_attention(q, k, v, strided_mask(n, stride)))


@given(n=st.integers(1, 40), stride=st.integers(1, 9))
def test_strided_mask_pattern(n, stride):
    mask = strided_mask(n, stride)
    assert mask.diagonal().all(), "every token attends to itself"
    assert (mask == mask.T).all(), "the pattern is symmetric (bidirectional)"
    # each query sees exactly the keys of its residue class: ceil((n - r) / stride) of them
    expected = torch.tensor([len(range(i % stride, n, stride)) for i in range(n)])
    assert torch.equal(mask.sum(-1), expected)


@given(n=st.integers(1, 33), seed=st.integers(0, 10**6))
def test_stride_one_is_dense_attention(n, seed):
    q, k, v = qkv(1, 2, n, 4, seed)
    torch.testing.assert_close(strided_sdpa(q, k, v, 1), explicit_attention(q, k, v))


@given(n=st.integers(1, 33), seed=st.integers(0, 10**6))
def test_sdpa_equals_explicit(n, seed):
    q, k, v = qkv(2, 2, n, 8, seed)
    torch.testing.assert_close(sdpa_attention(q, k, v), explicit_attention(q, k, v))


@given(n=st.integers(2, 24), stride=st.integers(2, 5), seed=st.integers(0, 10**6))
def test_strided_output_ignores_other_residue_classes(n, stride, seed):
    """Changing a key/value outside a query's residue class leaves that query's output unchanged."""
    q, k, v = qkv(1, 1, n, 4, seed)
    out = strided_sdpa(q, k, v, stride)
    j = n - 1
    k2, v2 = k.clone(), v.clone()
    k2[..., j, :] += 5.0
    v2[..., j, :] -= 3.0
    out2 = strided_sdpa(q, k2, v2, stride)
    untouched = torch.tensor([(i - j) % stride != 0 for i in range(n)])
    torch.testing.assert_close(out2[..., untouched, :], out[..., untouched, :])


def test_core_rejects_head_dim_mismatch():
    q, _, v = qkv(1, 2, 5, 8, 0)
    k = torch.randn(1, 2, 5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="head dim mismatch"):
        from reprobench_documents.attention.base import check_qkv
        check_qkv(q, k, v)


# --- the equivalence checks can fail ---------------------------------------------------------------

class OffByOneStride(StridedAttention):
    """A plausible bug: the optimized path folds with stride + 1."""

    def attend_optimized(self, q, k, v):
        return strided_sdpa(q, k, v, self.stride + 1)


class NoPaddingMask(StridedAttention):
    """A plausible bug: forgetting the key padding mask by running SDPA on the padded fold."""

    def attend_optimized(self, q, k, v):
        n = q.shape[2]
        pad = (-n) % self.stride
        padded = [torch.nn.functional.pad(t, (0, 0, 0, pad)) for t in (q, k, v)]
        return strided_sdpa(*padded, self.stride)[:, :, :n]


@pytest.mark.parametrize("broken_cls", [OffByOneStride, NoPaddingMask])
def test_equivalence_check_catches_a_broken_optimized_variant(broken_cls):
    spec = get("attention.strided")
    g = make_generator(0)
    config = spec.config()
    reference = StridedAttention(**config, path="reference").reset_parameters(g).double().eval()
    broken = broken_cls(**config, path="optimized").double().eval()
    broken.load_state_dict(reference.state_dict())
    impls = Implementations(reference=reference, optimized=broken)
    sample = spec.sample_inputs(7, torch.device("cpu"), torch.float64, g)[0]  # 7: not divisible by stride 3
    with pytest.raises(AssertionError):
        assert_matches_reference(spec, impls, sample, torch.float64)
    with pytest.raises(AssertionError):
        assert_gradients_match(spec, impls, sample, torch.float64, g)
