"""A float64 build is a float64 oracle: every parameter and buffer is created in float64, not drawn in
float32 and cast (issue 14: RoPE frequencies were 7.8e-8 relative off, Performer's features and
Mamba's A_log were float32 values).

A tensor drawn in float32 and cast up holds only float32-representable values; a tensor drawn or
computed in float64 almost never does. Simple constants (zeros, ones, small dyadic fractions such as
0.5 or 1/1024) are representable either way, so only a tensor with several values that are *not*
simple dyadic numbers counts as evidence of a float32 draw.
"""
from __future__ import annotations

import pytest
import torch

from reprobench.registry import list_components
from suites.properties.checks import build

SEED = 1234


def _float64_specs():
    return [pytest.param(spec, id=spec.name) for spec in list_components() if torch.float64 in spec.dtypes]


def _float32_valued(tensor: torch.Tensor) -> bool:
    """All values survive a round trip through float32, and at least 4 of them are not dyadic simple values."""
    values = tensor.detach().reshape(-1)
    if values.numel() < 4 or values.dtype != torch.float64 or not torch.isfinite(values).all():
        return False
    representable = bool((values.to(torch.float32).to(torch.float64) == values).all())
    scaled = values * 1024
    not_simple = int((scaled != scaled.round()).sum())
    return representable and not_simple >= 4


def _tensors(module: torch.nn.Module):
    yield from module.named_parameters()
    yield from ((name, b) for name, b in module.named_buffers() if b is not None and b.is_floating_point())


@pytest.mark.parametrize("spec", _float64_specs())
def test_float64_build_creates_every_tensor_in_float64(spec):
    impls, _ = build(spec, torch.float64, SEED)
    offenders = []
    for label, twin in (("reference", impls.reference), ("optimized", impls.optimized)):
        if not isinstance(twin, torch.nn.Module):
            continue
        for name, tensor in _tensors(twin):
            if tensor.dtype != torch.float64 and tensor.is_floating_point():
                offenders.append(f"{label}.{name} is {tensor.dtype}")
            elif _float32_valued(tensor):
                offenders.append(f"{label}.{name} holds float32 values cast to float64")
    assert not offenders, f"{spec.name}: " + "; ".join(offenders)


def test_the_check_tells_a_float32_draw_from_a_float64_one():
    g = torch.Generator().manual_seed(0)
    assert _float32_valued(torch.randn(16, generator=g).to(torch.float64))
    assert not _float32_valued(torch.randn(16, generator=g, dtype=torch.float64))
    assert not _float32_valued(torch.zeros(16, dtype=torch.float64))  # constants are representable either way
    assert not _float32_valued(torch.arange(16, dtype=torch.float64) / 4)
