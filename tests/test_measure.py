"""Tests of the measurement core: tensor peaks (real and fake), FLOPs, host syncs, scaling fits."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reprobench_documents.attention.base import explicit_attention
from reprobench.measure import (allocator_peak_bytes, count_flops, count_host_syncs, fake_peak_tensor_bytes, fit_exponent,
                          peak_tensor_bytes)

SWEEP = (256, 512, 1024, 2048)


def _qkv(n, heads=4, head_dim=32):
    return [torch.randn(1, heads, n, head_dim) for _ in range(3)]


def test_peak_counts_exactly_the_new_storages():
    a = torch.ones(1000)  # exists before: not counted
    result = peak_tensor_bytes(lambda: (a * 2) + 1)  # a*2 (4000 B) and +1 (4000 B) coexist at the peak
    assert result.peak_bytes == 8000
    assert result.retained_bytes == 4000


def test_views_do_not_count_twice():
    a = torch.ones(1000)
    assert peak_tensor_bytes(lambda: (a + 0).view(10, 100).t()).peak_bytes == 4000


def _peaks(attend):
    peaks = []
    for n in SWEEP:
        q, k, v = _qkv(n)  # inputs exist before the call: the peak is the attention's own
        peaks.append(peak_tensor_bytes(lambda: attend(q, k, v)).peak_bytes)
    return peaks


def test_naive_attention_peak_grows_as_n_squared():
    peaks = _peaks(explicit_attention)
    fit = fit_exponent(SWEEP, peaks)
    assert abs(fit.exponent - 2.0) <= 0.1, fit


def test_sdpa_peak_grows_linearly():
    peaks = _peaks(F.scaled_dot_product_attention)
    fit = fit_exponent(SWEEP, peaks)
    assert abs(fit.exponent - 1.0) <= 0.1, fit


@pytest.mark.parametrize("n", [16, 100, 256])
@pytest.mark.parametrize("which", ["explicit", "sdpa"])
def test_fake_and_real_peaks_agree(n, which):
    attend = explicit_attention if which == "explicit" else F.scaled_dot_product_attention
    q, k, v = _qkv(n)
    real = peak_tensor_bytes(lambda: attend(q, k, v))

    def make_call():
        fq, fk, fv = _qkv(n)  # created inside FakeTensorMode: fake tensors, nothing allocated
        return lambda: attend(fq, fk, fv)

    fake = fake_peak_tensor_bytes(make_call)
    assert fake.peak_bytes == real.peak_bytes
    assert fake.retained_bytes == real.retained_bytes


def test_fake_mode_measures_sizes_that_do_not_fit():
    n = 1 << 17  # scores alone would be 4 * 1 * 2**34 bytes = 64 GiB

    def make_call():
        q, k, v = [torch.empty(1, 1, n, 16) for _ in range(3)]
        return lambda: explicit_attention(q, k, v)

    peak = fake_peak_tensor_bytes(make_call).peak_bytes
    assert peak >= 4 * n * n


def test_allocator_view_agrees_with_tensor_tracker_for_plain_ops():
    q, k, v = _qkv(512)
    tracked = peak_tensor_bytes(lambda: explicit_attention(q, k, v)).peak_bytes
    allocator = allocator_peak_bytes(lambda: explicit_attention(q, k, v))
    assert allocator == pytest.approx(tracked, rel=0.05)


@pytest.mark.parametrize("n,m,d", [(64, 64, 16), (33, 17, 8)])
def test_sdpa_flops_equal_explicit_flops(n, m, d):
    q = torch.randn(2, 3, n, d)
    k, v = torch.randn(2, 3, m, d), torch.randn(2, 3, m, d)
    explicit = count_flops(lambda: (q @ k.transpose(-2, -1)).softmax(-1) @ v)
    sdpa = count_flops(lambda: F.scaled_dot_product_attention(q, k, v))
    assert explicit == 2 * (2 * 3 * n * m * d) * 2
    assert sdpa == explicit


def test_host_sync_counter_sees_item_and_bool():
    x = torch.randn(10)
    assert count_host_syncs(lambda: x.sum().item()) == 1
    assert count_host_syncs(lambda: bool((x > 0).any())) == 1
    assert count_host_syncs(lambda: torch.where(x > 0, x, 0).sum()) == 0


def test_fit_exponent_recovers_power_law():
    sizes = [10, 20, 40, 80]
    fit = fit_exponent(sizes, [3 * s ** 1.5 for s in sizes])
    assert fit.exponent == pytest.approx(1.5)
    assert fit.r_squared == pytest.approx(1.0)
    assert fit.predict(160) == pytest.approx(3 * 160 ** 1.5)


@pytest.mark.parametrize("sizes,values,match", [([1], [1], "at least two"), ([1, 2], [1, 0], "positive"),
                                                 ([1, 2], [1], "same length"), ([2, 2], [1, 2], "distinct")])
def test_fit_exponent_rejects_bad_input(sizes, values, match):
    with pytest.raises(ValueError, match=match):
        fit_exponent(sizes, values)


def test_fit_reports_poor_quality_for_non_power_law():
    sizes = [1, 2, 4, 8, 16]
    fit = fit_exponent(sizes, [1, 100, 1, 100, 1])
    assert fit.r_squared < 0.5 and math.isfinite(fit.exponent)
