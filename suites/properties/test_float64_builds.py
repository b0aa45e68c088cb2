"""A float64 build is a float64 oracle: every parameter and buffer is created in float64, not drawn in
float32 and cast (this once left RoPE's frequencies 7.8e-8 relative off, and Performer's features and
Mamba's A_log holding float32 values).

A tensor drawn in float32 and cast up holds only float32-representable values; a tensor drawn or
computed in float64 almost never does. Simple constants (zeros, ones, small dyadic fractions such as
0.5 or 1/1024) are representable either way, so only a tensor with several values that are *not*
simple dyadic numbers counts as evidence of a float32 draw.
"""
from __future__ import annotations

import torch

# The test lives in reprobench.testing.generic_tests (the pytest plugin offers it to anyone's components);
# importing it with its parametrizing hook runs it over every float64-capable component here.
from reprobench.testing.generic_tests import (  # noqa: F401
    float32_valued, pytest_generate_tests, test_float64_build_creates_every_tensor_in_float64)


def test_the_check_tells_a_float32_draw_from_a_float64_one():
    g = torch.Generator().manual_seed(0)
    assert float32_valued(torch.randn(16, generator=g).to(torch.float64))
    assert not float32_valued(torch.randn(16, generator=g, dtype=torch.float64))
    assert not float32_valued(torch.zeros(16, dtype=torch.float64))  # constants are representable either way
    assert not float32_valued(torch.arange(16, dtype=torch.float64) / 4)
