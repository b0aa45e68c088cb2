"""asv benchmarks generated from the registry: one class per family (numpy's asv style).

Parameters: component and implementation, at the middle of the component's bench sizes (asv tracks
a component over commits; scaling in n is the claims report's job, and every extra parameter costs
asv one more forked process per benchmark). `setup_cache` checks every optimized implementation
against its reference once per family, and a pair that disagrees is skipped rather than timed.
Bodies are one line;
data comes from impl.bench's seeded, cached builders. track_* report deterministic measures with
units (tensor bytes, FLOPs), so a regression in memory shows up without timing noise.
"""
import torch

from impl.bench import IMPLEMENTATIONS, bench_case, case_flops, case_peak_bytes, optimized_matches_reference
from impl.registry import FAMILIES, list_components

torch.set_num_threads(1)


def asv_size(spec):
    return spec.bench_sizes[len(spec.bench_sizes) // 2]


def _family_benchmark(family, specs):
    sizes = {spec.name: asv_size(spec) for spec in specs}

    class FamilyBenchmark:
        params = [[spec.name for spec in specs], list(IMPLEMENTATIONS)]
        param_names = ["component", "implementation"]
        timeout = 600

        def setup_cache(self):
            return {name: optimized_matches_reference(name, size) for name, size in sizes.items()}

        def setup(self, matches, component, implementation):
            size = sizes[component]
            if implementation == "optimized" and not matches[component]:
                raise NotImplementedError(f"{component}: optimized differs from reference at size {size}")
            self.case = bench_case(component, size, implementation)
            self.call = self.case.forward()

        def time_forward(self, matches, component, implementation):
            self.call()

        def track_peak_tensor_bytes(self, matches, component, implementation):
            return case_peak_bytes(self.case)

        track_peak_tensor_bytes.unit = "bytes"

        def track_flops(self, matches, component, implementation):
            return case_flops(self.case)

        track_flops.unit = "flops"

    FamilyBenchmark.__name__ = FamilyBenchmark.__qualname__ = f"{family.capitalize()}Suite"
    return FamilyBenchmark


for _family in FAMILIES:
    _specs = list_components(f"{_family}.*")
    if _specs:
        _cls = _family_benchmark(_family, _specs)
        globals()[_cls.__name__] = _cls

# Every registered component must have a benchmark (numpy's import-time check).
_benchmarked = {name for cls in list(globals().values()) if isinstance(cls, type) and hasattr(cls, "params")
                for name in cls.params[0]}
_missing = {spec.name for spec in list_components()} - _benchmarked
if _missing:
    raise RuntimeError(f"components without an asv benchmark: {sorted(_missing)}")
