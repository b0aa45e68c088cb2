"""The asv suite imports, covers every registered component, and its methods run."""
import importlib

from reprobench.registry import list_components


def test_every_component_has_an_asv_benchmark():
    benchmarks = importlib.import_module("suites.asv.benchmarks")
    names = {name for suite in benchmarks._SUITES for name in suite.params[0]}
    assert names == {spec.name for spec in list_components()}
    assert not hasattr(benchmarks, "FamilySuite"), "the shared base must not be collected as a benchmark"
    cache_lines = {suite.setup_cache.__code__.co_firstlineno for suite in benchmarks._SUITES}
    assert len(cache_lines) == len(benchmarks._SUITES), "asv keys setup_cache by line: one definition per suite"


def test_suite_methods_run_on_one_component():
    benchmarks = importlib.import_module("suites.asv.benchmarks")
    suite = benchmarks.AttentionSuite()
    suite.setup({"attention.strided": True}, "attention.strided", "optimized")
    suite.time_forward(None, "attention.strided", "optimized")
    assert suite.track_peak_tensor_bytes(None, "attention.strided", "optimized") > 0
    assert suite.track_flops(None, "attention.strided", "optimized") > 0
