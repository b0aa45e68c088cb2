"""pytest-benchmark cases generated from the registry.

With benchmarks enabled (`pytest suites/bench --benchmark-enable`) every size of every spec's
bench_sizes is collected; with `--benchmark-disable` (the default in pyproject, and CI) only the
smallest size runs, once, as a plain test. REPROBENCH_BENCH_SIZES=all|smallest overrides.
"""
import os

import pytest

from reprobench.bench import IMPLEMENTATIONS
from reprobench.registry import list_components


def pytest_generate_tests(metafunc):
    if "bench_params" not in metafunc.fixturenames:
        return
    disabled = (metafunc.config.getoption("benchmark_disable", default=False)
                and not metafunc.config.getoption("benchmark_enable", default=False))
    mode = os.environ.get("REPROBENCH_BENCH_SIZES", "smallest" if disabled else "all")
    params = []
    for spec in list_components():
        sizes = spec.bench_sizes if mode == "all" else spec.bench_sizes[:1]
        for size in sizes:
            for implementation in IMPLEMENTATIONS:
                params.append(pytest.param((spec.name, size, implementation),
                                           id=f"{spec.name}-{implementation}-{spec.size_name}={size}"))
    metafunc.parametrize("bench_params", params)
