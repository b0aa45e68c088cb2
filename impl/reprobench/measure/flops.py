"""FLOPs from torch.utils.flop_counter, with the fused CPU attention ops it does not count.

FlopCounterMode knows the CUDA SDPA kernels (flash, efficient, cudnn) but not
``aten._scaled_dot_product_flash_attention_for_cpu``, which is what SDPA runs on a CPU: without
registering it, SDPA would count 0 FLOPs and any "optimized" attention would look free. We count it
with the same formula as the other SDPA kernels, so SDPA and explicit softmax(QKᵀ)V count the same.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    # Two batched matmuls: QKᵀ ([b,h,n,d]x[b,h,d,m]) and PV ([b,h,n,m]x[b,h,m,dv]).
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _shape(t):
    return t.shape if isinstance(t, torch.Tensor) else t


def _register_cpu_sdpa() -> dict:
    extra = {}
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if fwd is not None:
        extra[fwd] = lambda query, key, value, *a, out_val=None, **k: _sdpa_cpu_flops(
            _shape(query), _shape(key), _shape(value))
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if bwd is not None:
        extra[bwd] = lambda grad_out, query, key, value, *a, out_val=None, **k: _sdpa_cpu_backward_flops(
            _shape(grad_out), _shape(query), _shape(key), _shape(value))
    return extra


CPU_SDPA_FORMULAS = _register_cpu_sdpa()


def flop_counter_mode() -> FlopCounterMode:
    """A FlopCounterMode that also counts the fused CPU SDPA kernels."""
    return FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FORMULAS)


def count_flops(fn: Callable[[], Any]) -> int:
    """Total FLOPs of ``fn()`` (matmul-like ops, as torch counts them: 2 per multiply-add)."""
    with flop_counter_mode() as counter:
        fn()
    return int(counter.get_total_flops())
