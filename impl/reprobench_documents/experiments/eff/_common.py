"""Helpers shared by the EFF experiments: the head dim, FakeTensorMode costs, seeded q/k/v, and the
decisions several of them need (a ratio between the fastest of two groups of callables, the smallest of
several estimates, a rule's slope drawn on a log-log figure)."""
from __future__ import annotations

from typing import Sequence

import torch

from reprobench.measure import count_flops, fake_peak_tensor_bytes
from reprobench.measure import decide_time_ratio, seconds_per_call  # noqa: F401  (the family imports them from here)
from reprobench.measure.stats import min_estimate  # noqa: F401  (the family imports it from here)

HEAD_DIM = 64  # the document's examples: dim 768, 12 heads


def fake_costs(make_call, flops: bool = True):
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


def qkv(n, heads, g, requires_grad=False, device=None):
    """Seeded (1, heads, n, HEAD_DIM) q, k, v: drawn from the CPU generator `g`, then moved to `device`, so
    every device sees the same values."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    return [torch.randn(1, heads, n, HEAD_DIM, generator=g).to(device).requires_grad_(requires_grad) for _ in range(3)]


# --- decisions ---------------------------------------------------------------------------------------
# The group ratio and the per-call sweep timing are generic: they live in reprobench.measure (timing).

def draw_rule_slope(ax, sizes: Sequence[float], first_value: float, slope: float, label: str) -> None:
    """Draw the rule's exponent as a dotted line through a series' first point on log-log axes, so a series
    steeper than the line breaks the rule."""
    ax.loglog([sizes[0], sizes[-1]], [first_value, first_value * (sizes[-1] / sizes[0]) ** slope], "k:", lw=1,
              label=label)
