"""Hypothesis profiles for every suite: `ci` (default, fast), `dev`, `thorough`.

Choose with HYPOTHESIS_PROFILE=dev|thorough. Deadlines are off: these machines are noisy and
speed is checked by benchmarks, never by timed tests.
"""
import os

import torch
from hypothesis import HealthCheck, settings

from reprobench.plugins import ignore_installed_plugins, load_plugin

# These suites test reprobench's own components: a plugin package installed in the environment (entry-point
# group reprobench.plugins) must not join them. `--reprobench-plugin MODULE` still loads one by name.
ignore_installed_plugins()
load_plugin("reprobench_documents")  # the study these suites test, loaded by name like any plugin

settings.register_profile("ci", max_examples=12, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Fixed threads: results must not depend on how many cores the machine happens to have.
torch.set_num_threads(int(os.environ.get("REPROBENCH_THREADS", "1")))


def pytest_configure(config):
    """Failure messages print a rerun command with a node id; node ids are relative to rootdir."""
    from reprobench.testing import checks

    checks.PYTEST_ROOTDIR = str(config.rootpath)
