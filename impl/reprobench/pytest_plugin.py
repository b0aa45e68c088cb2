"""pytest plugin: reprobench's generic property suite for anyone's registered components.

Installed as the `pytest11` entry point `reprobench`, and inert unless asked (like pytest-benchmark):

    pytest --reprobench-components 'acme.*' [--reprobench-plugin acme_attention.reprobench_plugin]

adds reprobench/testing/generic_tests.py to the collection, parametrized over the registered components whose
name matches the pattern: matches_reference, gradients, finite outputs, attention probabilities,
state_dict sharing, host syncs, inputs left unchanged, declared and derived bad inputs, float64 builds,
with ids such as `test_matches_reference[acme.window_attention-cpu-float32-n=5]`. `--reprobench-plugin
MODULE` (repeatable) imports a reprobench plugin first; installed ones (entry-point group
`reprobench.plugins`) load without it. Loading this module imports nothing heavy (no torch), so every
other pytest run in the environment starts as fast as before.

Two tiers (reprobench.testing.hygiene): correctness problems fail; a plugin's input-hygiene problems
(derived bad inputs, declared error inputs) are findings, printed as a table at the end of the run, and
fail only with `--reprobench-strict-hygiene`. The generated module usually lies outside the rootdir, so
its short-summary ids do not rerun from your directory: the summary ends with one rerun command per
failed generated case.
"""
from __future__ import annotations

import fnmatch
import sys
import textwrap
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
    group.addoption("--reprobench-device", metavar="DEVICE", default=None,
                    help="run the device-dependent generated tests on this device only (e.g. cuda); default: the CPU, "
                         "plus CUDA where available")
    group.addoption("--reprobench-strict-hygiene", action="store_true", default=False,
                    help="fail on input-hygiene findings of plugin components (derived bad inputs, declared error "
                         "inputs) instead of listing them in a table; reprobench's own components are always strict")


def pytest_configure(config):
    from reprobench.testing.hygiene import COLLECTOR  # imports no torch

    # Always: findings can come from any run of the generated tests, and without this collector they fail.
    config.pluginmanager.register(_Findings(config), COLLECTOR)
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
    from reprobench.testing import checks, generic_tests

    checks.PYTEST_ROOTDIR = str(config.rootpath)
    device = config.getoption("reprobench_device")
    if device is not None:
        generic_tests.DEVICES[:] = [device]  # read when the tests are parametrized, after this hook
    loaded_as = config.pluginmanager.get_name(sys.modules[__name__])
    checks.RERUN_OPTIONS = (*(("-p", loaded_as) if loaded_as != ENTRY_POINT_NAME else ()),
                            "--reprobench-components", pattern,
                            *(arg for module in plugins for arg in ("--reprobench-plugin", module)),
                            *(("--reprobench-strict-hygiene",) if config.getoption("reprobench_strict_hygiene") else ()),
                            *(("--reprobench-device", device) if device is not None else ()))
    module = Path(generic_tests.__file__).resolve()
    if not any(Path(arg.split("::", 1)[0]).resolve() in (module, module.parent) for arg in config.args):
        # Its directory, not the file: a file outside the rootdir would get the node id '' (`::test_x[...]`),
        # a directory gives its files their names (`generic_tests.py::test_x[...]`).
        config.args.append(str(module.parent))
    config.pluginmanager.register(_GeneratedModule(module), "reprobench-generated-module")


class _Findings:
    """Collects input-hygiene findings from test reports and prints them, with rerun commands for failed
    generated cases, at the end of the run."""

    def __init__(self, config):
        self.config = config
        self.findings: list[dict] = []
        self.failed: list[str] = []

    def pytest_runtest_logreport(self, report):
        from reprobench.testing.hygiene import PROPERTY

        self.findings.extend(value for key, value in report.user_properties if key == PROPERTY and report.when == "call")
        if report.failed and _is_generated(report.nodeid):
            self.failed.append(report.nodeid)

    def pytest_terminal_summary(self, terminalreporter):
        write = terminalreporter.write_line
        if self.findings:
            terminalreporter.section("reprobench input hygiene: findings, not failures (--reprobench-strict-hygiene "
                                     "fails them)", sep="-")
            for line in findings_table(self.findings):
                write(line)
        if self.failed:
            from reprobench.testing.checks import rerun_command

            terminalreporter.section("reprobench: rerun a failed generated case from any directory", sep="-")
            for nodeid in self.failed:
                write(rerun_command(nodeid))


def _is_generated(nodeid: str) -> bool:
    """A test of the generated module collected through this plugin (its node id is not a path from here)."""
    checks = sys.modules.get("reprobench.testing.checks")  # not imported: nothing generated ran (and no torch)
    return checks is not None and nodeid.split("::", 1)[0] in checks.RERUN_PATHS


def findings_table(findings: list[dict], width: int = 100) -> list[str]:
    """One row per component and kind (`component  kind  finding  cases`), each followed by an indented
    line with the first case's detail; rows cut to `width` columns; then the counts per finding."""
    rows: dict[tuple[str, str], list[dict]] = {}
    for f in findings:
        rows.setdefault((f["component"], f["kind"]), []).append(f)
    verdicts = {key: " / ".join(dict.fromkeys(f["verdict"] for f in group)) for key, group in rows.items()}
    w_component = max([len("component")] + [len(c) for c, _ in rows])
    w_kind = max([len("kind")] + [len(k) for _, k in rows])

    def cut(text: str) -> str:
        return text if len(text) <= width else text[:width - 1] + "…"

    lines = [cut(f"{'component':<{w_component}}  {'kind':<{w_kind}}  finding (cases)")]
    for (component, kind), group in sorted(rows.items()):
        lines.append(cut(f"{component:<{w_component}}  {kind:<{w_kind}}  {verdicts[component, kind]} ({len(group)})"))
        lines.append(cut("    " + " ".join(group[0]["detail"].split())))
    counts: dict[str, int] = {}
    for verdict in verdicts.values():
        counts[verdict] = counts.get(verdict, 0) + 1
    summary = f"{len(rows)} findings: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return lines + textwrap.wrap(summary, width, subsequent_indent="    ")


class _GeneratedModule:
    """Collects the generated module from its directory, and records the node id under which it was collected,
    so a failure's rerun command names the module by its file path (the node id is not a path when the module
    lies outside the rootdir)."""

    def __init__(self, module: Path):
        self.module = module

    def pytest_collect_file(self, file_path, parent):
        # Its name is not a test file's (it is library code), so pytest's python_files patterns skip it when
        # its directory is collected; named on the command line (a rerun command), pytest collects it itself.
        if Path(file_path).resolve() != self.module or parent.session.isinitpath(file_path):
            return None
        if any(fnmatch.fnmatch(Path(file_path).name, pattern) for pattern in parent.config.getini("python_files")):
            return None  # a project whose python_files patterns match it: pytest collects it itself
        return pytest.Module.from_parent(parent, path=file_path)

    def pytest_collection_modifyitems(self, items):
        from reprobench.testing import checks

        for item in items:
            if Path(item.path).resolve() == self.module:
                checks.RERUN_PATHS[item.nodeid.split("::", 1)[0]] = str(self.module)
                return
