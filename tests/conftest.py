"""The harness's own tests run over reprobench's own components: a plugin package installed in the
environment (entry-point group reprobench.plugins) must not join them (tests/test_plugins.py checks it).
Tests that exercise installed plugins do so in subprocesses, which this does not reach."""
from reprobench.plugins import ignore_installed_plugins, load_plugin

ignore_installed_plugins()
load_plugin("reprobench_documents")  # the study these suites test, loaded by name like any plugin
