"""pytest plugin: reprobench's generic property suite for anyone's registered components.

Installed as the `pytest11` entry point `reprobench`, and inert unless asked (like pytest-benchmark):

    pytest --reprobench-components 'acme.*' [--reprobench-plugin acme_attention.reprobench_plugin]

adds reprobench/testing/test_components.py to the collection, parametrized over the registered components whose
name matches the pattern: matches_reference, gradients, finite outputs, attention probabilities,
state_dict sharing, host syncs, inputs left unchanged, declared and derived bad inputs, float64 builds,
with ids such as `test_matches_reference[acme.window_attention-cpu-float32-n=5]`. `--reprobench-plugin
MODULE` (repeatable) imports a reprobench plugin first; installed ones (entry-point group
`reprobench.plugins`) load without it. Loading this module imports nothing heavy (no torch), so every
other pytest run in the environment starts as fast as before.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ENTRY_POINT_NAME = "reprobench"  # [project.entry-points.pytest11] reprobench = "reprobench.pytest_plugin"


def pytest_addoption(parser):
    group = parser.getgroup("reprobench", "reprobench: generic property tests of registered components")
    group.addoption("--reprobench-components", metavar="PATTERN", default=None,
                    help="run reprobench's generic property tests over the registered components matching this "
                         "shell pattern, e.g. 'acme.*' (off unless given)")
    group.addoption("--reprobench-plugin", action="append", default=[], metavar="MODULE",
                    help="import this reprobench plugin module first; it registers its components (repeatable)")


def pytest_configure(config):
    pattern, plugins = config.getoption("reprobench_components"), config.getoption("reprobench_plugin")
    if pattern is None and not plugins:
        return
    from reprobench.plugins import PluginError, load_plugins
    from reprobench.registry import list_components

    try:
        load_plugins(plugins)
    except PluginError as exc:
        raise pytest.UsageError(str(exc)) from None
    if pattern is None:
        return  # plugins loaded for the project's own tests, no generated suite asked for
    if not list_components(pattern):
        raise pytest.UsageError(f"--reprobench-components {pattern!r} matches no registered component; load its "
                                "plugin with --reprobench-plugin MODULE, or see `reprobench list`")
    from reprobench.testing import checks, test_components

    checks.PYTEST_ROOTDIR = str(config.rootpath)
    loaded_as = config.pluginmanager.get_name(sys.modules[__name__])
    checks.RERUN_OPTIONS = (*(("-p", loaded_as) if loaded_as != ENTRY_POINT_NAME else ()),
                            "--reprobench-components", pattern,
                            *(arg for module in plugins for arg in ("--reprobench-plugin", module)))
    module = Path(test_components.__file__).resolve()
    if not any(Path(arg.split("::", 1)[0]).resolve() in (module, module.parent) for arg in config.args):
        # Its directory, not the file: a file outside the rootdir would get the node id '' (`::test_x[...]`),
        # a directory gives its files their names (`test_components.py::test_x[...]`).
        config.args.append(str(module.parent))
    config.pluginmanager.register(_RerunPaths(module), "reprobench-rerun-paths")


class _RerunPaths:
    """Records the node id under which the generated module was collected, so a failure's rerun command
    names the module by its file path (the node id is not a path when the module lies outside the rootdir)."""

    def __init__(self, module: Path):
        self.module = module

    def pytest_collection_modifyitems(self, items):
        from reprobench.testing import checks

        for item in items:
            if Path(item.path).resolve() == self.module:
                checks.RERUN_PATHS[item.nodeid.split("::", 1)[0]] = str(self.module)
                return
