"""The pair check every speed figure leans on: the optimized implementation against its reference on the
same bench input, with the component's test tolerance widened by TOLERANCE_FACTOR (STYLE: no speedup from
a wrong answer). The declarative claim kinds' match checks default to the same tolerance.
"""
from __future__ import annotations

import functools
import logging

import torch

from reprobench.bench.cases import _built, bench_dtype
from reprobench.registry import ComponentSpec

log = logging.getLogger(__name__)
# Bench sizes are larger than test sizes, so float32 sums accumulate more rounding error than the
# component's test tolerance was set for.
TOLERANCE_FACTOR = 10


def pair_tolerance(spec: ComponentSpec, dtype: torch.dtype | None = None) -> tuple[float, float]:
    """(atol, rtol) of the pair check: TOLERANCE_FACTOR times the component's test tolerance at `dtype`
    (its bench dtype where None or undeclared)."""
    tol = spec.tolerances.get(dtype, spec.tolerances[bench_dtype(spec)])
    return tol.atol * TOLERANCE_FACTOR, tol.rtol * TOLERANCE_FACTOR


@functools.lru_cache(maxsize=64)
def optimized_matches_reference(name: str, size: int, device: str = "cpu", dtype: torch.dtype | None = None) -> bool:
    """The pair check: optimized == reference on the bench input, within pair_tolerance."""
    spec, impls, sample = _built(name, size, device, dtype)
    atol, rtol = pair_tolerance(spec, dtype)
    with torch.no_grad():
        ref = impls.reference(*sample.args, **sample.kwargs)
        opt = impls.optimized(*sample.args, **sample.kwargs)
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    opts = opt if isinstance(opt, (tuple, list)) else (opt,)
    try:
        for r, o in zip(refs, opts):
            if isinstance(r, torch.Tensor):
                torch.testing.assert_close(o, r, atol=atol, rtol=rtol)
    except AssertionError as exc:
        log.error("%s at %s=%d: optimized differs from reference: %s", name, spec.size_name, size, exc)
        return False
    return True
