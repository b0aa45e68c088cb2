"""reprobench: reference and optimized ML building blocks, measured against their documents.

The public surface is what a plugin package may use (README, "Bring your own component and claims"):
every name in ``__all__`` below, importable as ``from reprobench import peak_tensor_bytes``, and the
``__all__`` of the modules in ``PUBLIC_MODULES``. tests/test_public_surface.py fails when the example
packages import anything else. Names are resolved on first use, so ``import reprobench`` (which pytest does
for the plugin entry point in every run) does not import torch.
"""
from __future__ import annotations

import importlib

# name -> the module that defines it, grouped as the README lists them
_PUBLIC = {
    # declaring a component
    "register": "reprobench.registry",
    "ComponentSpec": "reprobench.registry",
    "Implementations": "reprobench.registry",
    "SampleInput": "reprobench.registry",
    "ErrorInput": "reprobench.registry",
    "Tolerance": "reprobench.registry",
    "InputSupport": "reprobench.registry",
    "ExpectedFailure": "reprobench.registry",
    "CacheUse": "reprobench.registry",
    "get": "reprobench.registry",
    "list_components": "reprobench.registry",
    "make_generator": "reprobench.registry",
    "draw_inputs": "reprobench.registry",
    "hold_to_strict_hygiene": "reprobench.registry",
    # declaring a claim and its experiment
    "claim": "reprobench.claims.ledger",
    "experiment": "reprobench.claims.experiment",
    "Outcome": "reprobench.claims.experiment",
    "RunContext": "reprobench.claims.experiment",
    # deciding
    "decide": "reprobench.measure.stats",
    "Decision": "reprobench.measure.stats",
    "Estimate": "reprobench.measure.stats",
    "exact": "reprobench.measure.stats",
    "mean_interval": "reprobench.measure.stats",
    "median_interval": "reprobench.measure.stats",
    "proportion_estimate": "reprobench.measure.stats",
    "ratio_from_rounds": "reprobench.measure.stats",
    "fit_exponent_estimate": "reprobench.measure.stats",
    "min_estimate": "reprobench.measure.stats",
    "max_estimate": "reprobench.measure.stats",
    "decide_speedup": "reprobench.measure.timing",
    # measuring
    "peak_tensor_bytes": "reprobench.measure.memory",
    "fake_peak_tensor_bytes": "reprobench.measure.memory",
    "PeakMemory": "reprobench.measure.memory",
    "optimizer_state_bytes": "reprobench.measure.memory",
    "allocator_peak_bytes": "reprobench.measure.memory",
    "available_bytes": "reprobench.measure.memory",
    "count_flops": "reprobench.measure.flops",
    "count_host_syncs": "reprobench.measure.syncs",
    "count_device_syncs": "reprobench.measure.syncs",
    "time_callable": "reprobench.measure.timing",
    "compare_interleaved": "reprobench.measure.timing",
}

# Modules a plugin may import from: their `__all__`, or (registry, which has none) the names above that
# come from it, so `from reprobench.registry import register` stays as public as `from reprobench import register`.
PUBLIC_MODULES = ("reprobench", "reprobench.claims", "reprobench.measure", "reprobench.registry",
                  "reprobench.measure.stats", "reprobench.validation")

__all__ = list(_PUBLIC)


def _public_names(module: str) -> set[str]:
    """The names a plugin may import from `module` (one of PUBLIC_MODULES)."""
    if module == "reprobench":
        return set(__all__)
    names = getattr(importlib.import_module(module), "__all__", None)
    return set(names) if names is not None else {name for name, where in _PUBLIC.items() if where == module}


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'reprobench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
