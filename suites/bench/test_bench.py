"""Forward time of every registered component, reference and optimized, at its bench sizes.

Run: `pytest suites/bench --benchmark-enable --benchmark-autosave`, then compare runs with
`pytest-benchmark compare` or `pytest suites/bench --benchmark-enable --benchmark-compare`.
extra_info carries FLOPs and peak tensor bytes, so a saved run has them next to the times.
"""
import pytest
import torch

from reprobench.bench import bench_case, measure_case, optimized_matches_reference


def test_forward(benchmark, bench_params):
    name, size, implementation = bench_params
    torch.set_num_threads(1)  # fixed threads: comparable across machines and runs
    case = bench_case(name, size, implementation)
    if implementation == "optimized":
        xf = case.spec.expected_failure("matches_reference")
        if xf is not None:  # a documented defect reproduced on purpose: no speed figure for a wrong answer
            pytest.xfail(xf.reason)
        # No speed figure for an optimized path that has not matched its reference.
        assert optimized_matches_reference(name, size), f"{case.label}: optimized differs from reference"
    benchmark.extra_info.update(measure_case(case))
    benchmark.extra_info.update(component=name, size=size, implementation=implementation)
    benchmark.group = f"{name}-{size}"
    # One warm-up round (first-call allocations), then 5 timed rounds; disabled mode runs it once.
    benchmark.pedantic(case.forward(), warmup_rounds=1, rounds=5, iterations=1)
