"""Seeded benchmark cases from the registry: (component, size, implementation) on the spec's bench config
and bench inputs, drawn with BENCH_SEED on a CPU generator (registry.draw_inputs), and the deterministic
measures of one forward. `reprobench bench`, suites/bench, suites/asv, `reprobench profile` and the
declarative claim kinds all build their inputs here, so they measure the same case.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import torch

from reprobench.registry import ComponentSpec, draw_inputs, get, make_generator

IMPLEMENTATIONS = ("reference", "optimized")
BENCH_SEED = 0


@dataclasses.dataclass
class BenchCase:
    spec: ComponentSpec
    size: int
    implementation: str  # "reference" or "optimized"
    fn: Any  # the callable under test
    sample: Any  # its SampleInput

    def forward(self) -> Callable[[], Any]:
        fn, sample = self.fn, self.sample

        def call():
            with torch.no_grad():
                return fn(*sample.args, **sample.kwargs)
        return call

    def forward_backward(self) -> Callable[[], Any]:
        fn, sample = self.fn, self.sample
        args = tuple(a.detach().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                     for a in sample.args)

        def call():
            out = fn(*args, **sample.kwargs)
            out = out[0] if isinstance(out, (tuple, list)) else out
            out.sum().backward()
        return call

    @property
    def label(self) -> str:
        return f"{self.spec.name}[{self.implementation}, {self.spec.size_name}={self.size}]"


def bench_dtype(spec: ComponentSpec) -> torch.dtype:
    """float32 where the component supports it (what users run), else its first declared dtype."""
    return torch.float32 if torch.float32 in spec.dtypes else spec.dtypes[0]


@functools.lru_cache(maxsize=8)
def _built(name: str, size: int, device: str, dtype: torch.dtype | None):
    spec = get(name)
    dtype = dtype or bench_dtype(spec)
    generator = make_generator(BENCH_SEED, "cpu")
    impls = spec.build(spec.config(bench=True), torch.device(device), dtype, generator)
    sample = draw_inputs(spec, size, device, dtype, generator, bench=True)[-1]
    return spec, impls, sample


def bench_case(name: str, size: int, implementation: str, device: str = "cpu",
               dtype: torch.dtype | None = None) -> BenchCase:
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    spec, impls, sample = _built(name, size, device, dtype)
    return BenchCase(spec, size, implementation, getattr(impls, implementation), sample)


def case_flops(case: BenchCase) -> int:
    from reprobench.measure import count_flops

    return count_flops(case.forward())


def case_peak_bytes(case: BenchCase) -> int:
    from reprobench.measure import peak_tensor_bytes

    return peak_tensor_bytes(case.forward()).peak_bytes


def case_host_syncs(case: BenchCase) -> int:
    from reprobench.measure import count_host_syncs

    return count_host_syncs(case.forward())


def measure_case(case: BenchCase) -> dict:
    """Deterministic measures of a case: FLOPs, peak tensor bytes and host syncs of one forward.

    The three counters are nested around a single call (each is a dispatch mode that passes ops on),
    which gives the same figures as three separate calls at a third of the cost of a large case.
    """
    from reprobench.measure import count_flops, count_host_syncs, peak_tensor_bytes

    call, measured = case.forward(), {}

    def tracked_call() -> None:
        measured["peak_tensor_bytes"] = peak_tensor_bytes(call).peak_bytes

    def counted_call() -> None:
        measured["host_syncs"] = count_host_syncs(tracked_call)

    measured["flops"] = count_flops(counted_call)
    return {key: measured[key] for key in ("flops", "peak_tensor_bytes", "host_syncs")}
