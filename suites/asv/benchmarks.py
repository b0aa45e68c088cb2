"""asv benchmarks generated from the registry: one class per family (numpy's asv style).

Parameters: component and implementation, at the middle of the component's bench sizes (asv tracks
a component over commits; scaling in n is the claims report's job, and every extra parameter costs
asv one more forked process per benchmark). `setup_cache` checks every optimized implementation of
the family against its reference once, and a pair that disagrees is skipped rather than timed.
Each family class spells out its own one-line `setup_cache`: asv keys that cache by module and line
number, so a shared definition would hand one family's cache to every other. Bodies are one line;
data comes from reprobench.bench's seeded, cached builders. track_* report deterministic measures with
units (tensor bytes, FLOPs), so a memory regression shows without timing noise.
"""
import torch

from reprobench.bench import IMPLEMENTATIONS, bench_case, case_flops, case_peak_bytes, optimized_matches_reference
from reprobench.registry import list_components

torch.set_num_threads(1)


def asv_size(spec):
    return spec.bench_sizes[len(spec.bench_sizes) // 2]


class FamilySuite:
    """Shared body; subclasses name their family (and their own setup_cache, see above)."""

    family = ""
    param_names = ["component", "implementation"]
    timeout = 600

    @classmethod
    def specs(cls):
        return list_components(f"{cls.family}.*")

    @classmethod
    def check_pairs(cls):
        return {spec.name: optimized_matches_reference(spec.name, asv_size(spec)) for spec in cls.specs()}

    def setup(self, matches, component, implementation):
        if implementation == "optimized" and not matches[component]:
            raise NotImplementedError(f"{component}: optimized differs from reference")
        size = next(asv_size(spec) for spec in self.specs() if spec.name == component)
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


def _params(family):
    return [[spec.name for spec in list_components(f"{family}.*")] or ["none"], list(IMPLEMENTATIONS)]


class AttentionSuite(FamilySuite):
    family, params = "attention", _params("attention")

    def setup_cache(self):
        return self.check_pairs()


class RotarySuite(FamilySuite):
    family, params = "rotary", _params("rotary")

    def setup_cache(self):
        return self.check_pairs()


class RegularizersSuite(FamilySuite):
    family, params = "regularizers", _params("regularizers")

    def setup_cache(self):
        return self.check_pairs()


class OptimSuite(FamilySuite):
    family, params = "optim", _params("optim")

    def setup_cache(self):
        return self.check_pairs()


class EquivariantSuite(FamilySuite):
    family, params = "equivariant", _params("equivariant")

    def setup_cache(self):
        return self.check_pairs()


class ModelsSuite(FamilySuite):
    family, params = "models", _params("models")

    def setup_cache(self):
        return self.check_pairs()


# Every registered component must have a benchmark (numpy's import-time check).
_SUITES = [AttentionSuite, RotarySuite, RegularizersSuite, OptimSuite, EquivariantSuite, ModelsSuite]
_missing = {spec.name for spec in list_components()} - {name for suite in _SUITES for name in suite.params[0]}
_families = {spec.family for spec in list_components()}
if _missing or not _families <= {suite.family for suite in _SUITES}:
    raise RuntimeError(f"components or families without an asv benchmark: {sorted(_missing)}")
del FamilySuite  # the base class is not a benchmark
