"""Benchmark cases generated from the registry, shared by `reprobench bench`, the pytest-benchmark
suite, the asv suite and `reprobench profile`.

A case is (component, size, implementation) on the spec's bench config and bench inputs. Before a
speed figure is reported for an optimized implementation, it is checked against its reference on
the same input (STYLE: no speedup from a wrong answer).
"""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch

from reprobench.registry import ComponentSpec, get, list_components, make_generator

log = logging.getLogger(__name__)
IMPLEMENTATIONS = ("reference", "optimized")
BENCH_SEED = 0


@dataclass
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
    sample = spec.inputs(size, device, dtype, generator, bench=True)[-1]
    return spec, impls, sample


def bench_case(name: str, size: int, implementation: str, device: str = "cpu",
               dtype: torch.dtype | None = None) -> BenchCase:
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    spec, impls, sample = _built(name, size, device, dtype)
    return BenchCase(spec, size, implementation, getattr(impls, implementation), sample)


@functools.lru_cache(maxsize=64)
def optimized_matches_reference(name: str, size: int, device: str = "cpu", dtype: torch.dtype | None = None) -> bool:
    """The pair check every benchmark leans on: optimized == reference on the bench input."""
    spec, impls, sample = _built(name, size, device, dtype)
    tol = spec.tolerances[dtype or bench_dtype(spec)]
    with torch.no_grad():
        ref = impls.reference(*sample.args, **sample.kwargs)
        opt = impls.optimized(*sample.args, **sample.kwargs)
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    opts = opt if isinstance(opt, (tuple, list)) else (opt,)
    try:
        for r, o in zip(refs, opts):
            if isinstance(r, torch.Tensor):
                # Bench sizes are larger than test sizes: allow 10x the test tolerance for fp32 accumulation.
                torch.testing.assert_close(o, r, atol=tol.atol * 10, rtol=tol.rtol * 10)
    except AssertionError as exc:
        log.error("%s at %s=%d: optimized differs from reference: %s", name, spec.size_name, size, exc)
        return False
    return True


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
    """Deterministic measures of a case: FLOPs, peak tensor bytes and host syncs of one forward."""
    return {"flops": case_flops(case), "peak_tensor_bytes": case_peak_bytes(case), "host_syncs": case_host_syncs(case)}


def run_bench(pattern: str, sizes: list[int] | None = None, device: str = "cpu", out: str | None = None) -> int:
    """`reprobench bench`: reference vs optimized, timed interleaved, with FLOPs and tensor peaks."""
    from rich.console import Console
    from rich.table import Table

    from reprobench.measure import compare_interleaved

    specs = list_components(pattern)
    if not specs:
        print(f"no component matches {pattern!r}; see `reprobench list`")
        return 2
    table = Table(title=f"reference vs optimized ({device}, fp32 where supported, 1 thread)")
    for column in ("component", "size", "ref ms", "opt ms", "speedup", "ref peak MiB", "opt peak MiB", "opt GFLOP", "match"):
        table.add_column(column)
    rows = []
    for spec in specs:
        for size in sizes or spec.bench_sizes:
            ref, opt = bench_case(spec.name, size, "reference", device), bench_case(spec.name, size, "optimized", device)
            ok = optimized_matches_reference(spec.name, size, device)
            cmp = compare_interleaved(ref.forward(), opt.forward(), rounds=3, min_run_time=0.05, device=device)
            mr, mo = measure_case(ref), measure_case(opt)
            row = {"component": spec.name, "size": size, "reference_ms": cmp.baseline.median_ms,
                   "optimized_ms": cmp.candidate.median_ms, "speedup": cmp.speedup if ok else None,
                   "reference_peak_bytes": mr["peak_tensor_bytes"], "optimized_peak_bytes": mo["peak_tensor_bytes"],
                   "optimized_flops": mo["flops"], "optimized_host_syncs": mo["host_syncs"], "matches_reference": ok}
            rows.append(row)
            table.add_row(spec.name, str(size), f"{row['reference_ms']:.2f}", f"{row['optimized_ms']:.2f}",
                          f"{cmp.speedup:.2f}x" if ok else "n/a (mismatch)", f"{mr['peak_tensor_bytes'] / 2**20:.1f}",
                          f"{mo['peak_tensor_bytes'] / 2**20:.1f}", f"{mo['flops'] / 1e9:.3f}", "yes" if ok else "NO")
    Console().print(table)
    if out:
        from reprobench.claims.report import atomic_write_text
        from reprobench.measure import fingerprint
        from pathlib import Path

        atomic_write_text(Path(out), json.dumps({"environment": fingerprint(device), "rows": rows}, indent=2))
    return 0 if all(r["matches_reference"] for r in rows) else 1
