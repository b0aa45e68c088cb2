"""Helpers shared by the EFF experiments: the head dim, FakeTensorMode costs, seeded q/k/v."""
from __future__ import annotations

import torch

from reprobench.measure import count_flops, fake_peak_tensor_bytes

HEAD_DIM = 64  # the document's examples: dim 768, 12 heads


def _fake(make_call, flops: bool = True):
    """(tensor peak bytes, FLOPs) of an inference call (no_grad) built inside FakeTensorMode."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    def no_grad_call():
        call = make_call()

        def run():
            with torch.no_grad():
                return call()
        return run

    peak = fake_peak_tensor_bytes(no_grad_call).peak_bytes
    if not flops:
        return peak, None
    with FakeTensorMode():
        count = count_flops(no_grad_call())
    return peak, count


def _qkv(n, heads, g, requires_grad=False):
    return [torch.randn(1, heads, n, HEAD_DIM, generator=g).requires_grad_(requires_grad) for _ in range(3)]
