"""Benchmark cases generated from the registry, shared by `reprobench bench`, the pytest-benchmark suite,
the asv suite, `reprobench profile` and the declarative claim kinds. One module per job:

- cases.py: seeded cases (component, size, implementation) on the spec's bench config and inputs, and the
  deterministic measures of one forward;
- pair_check.py: the optimized implementation against its reference before any speed figure;
- cost.py: what a forward would cost (memory, time), found before it runs, and the rules that skip it;
- table.py: `reprobench bench` itself, the streamed table and its JSON.

The names below are re-exported so `from reprobench.bench import bench_case` keeps working; a test that
replaces a function must replace it in the module that calls it.
"""
from reprobench.bench.cases import (BENCH_SEED, IMPLEMENTATIONS, BenchCase, bench_case, bench_dtype, case_flops,
                                    case_host_syncs, case_peak_bytes, measure_case)
from reprobench.bench.cost import (FAKE_SECONDS, MAX_CALL_SECONDS, MEMORY_FRACTION, PROBE_SECONDS, UNDECLARED_EXPONENT,
                                   CostEstimate, FakeTooSlow, estimate_call_seconds, estimate_case, estimate_peak_bytes,
                                   fake_case_peak_bytes, fake_forward, fits_in_memory, input_bytes, memory_reason,
                                   skip_reason)
from reprobench.bench.pair_check import TOLERANCE_FACTOR, optimized_matches_reference, pair_tolerance
from reprobench.bench.table import COLUMNS, SLOW_CALL_SECONDS, run_bench, unwritable_reason

__all__ = [
    "BENCH_SEED", "IMPLEMENTATIONS", "BenchCase", "bench_case", "bench_dtype", "case_flops", "case_host_syncs",
    "case_peak_bytes", "measure_case",
    "FAKE_SECONDS", "MAX_CALL_SECONDS", "MEMORY_FRACTION", "PROBE_SECONDS", "UNDECLARED_EXPONENT", "CostEstimate",
    "FakeTooSlow", "estimate_call_seconds", "estimate_case", "estimate_peak_bytes", "fake_case_peak_bytes",
    "fake_forward", "fits_in_memory", "input_bytes", "memory_reason", "skip_reason",
    "TOLERANCE_FACTOR", "optimized_matches_reference", "pair_tolerance",
    "COLUMNS", "SLOW_CALL_SECONDS", "run_bench", "unwritable_reason",
]
