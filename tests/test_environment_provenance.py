"""What a report records about the code that ran: reprobench's version and commit, and for each loaded plugin
its distribution, version and the versions of the packages it imports."""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reprobench.measure import environment

PLUGIN_SITE = {  # an installed plugin (dist-info on PYTHONPATH) that imports another installed package
    "acmeprov-1.4.dist-info/METADATA": "Metadata-Version: 2.1\nName: acmeprov\nVersion: 1.4\n",
    "acmeprov-1.4.dist-info/entry_points.txt": "[reprobench.plugins]\nacmeprov = acmeprov_plugin\n",
    "acmeprov-1.4.dist-info/top_level.txt": "acmeprov_plugin\n",
    "fastkernels-2.3.dist-info/METADATA": "Metadata-Version: 2.1\nName: fastkernels\nVersion: 2.3\n",
    "fastkernels-2.3.dist-info/top_level.txt": "fastkernels\n",
    "fastkernels/__init__.py": "import torch\nscale = torch.tensor(2.0)\n",
    "acmeprov_plugin.py": "import fastkernels  # the package under test\nimport torch\n",
}

SNIPPET = """
import json
from reprobench.plugins import load_plugins
from reprobench.measure.environment import fingerprint
load_plugins([])
env = fingerprint()
print(json.dumps({k: env[k] for k in ("reprobench_version", "git_commit", "plugins")}))
"""


def test_report_environment_names_reprobench_the_plugin_and_what_it_imports(tmp_path):
    for name, text in PLUGIN_SITE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    result = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    env = json.loads(result.stdout.strip().splitlines()[-1])
    assert env["reprobench_version"] == importlib.metadata.version("reprobench")
    plugin = next(p for p in env["plugins"] if p["module"] == "acmeprov_plugin")
    assert plugin["entry_point"] == "acmeprov = acmeprov_plugin"
    assert (plugin["distribution"], plugin["version"]) == ("acmeprov", "1.4")
    assert plugin["packages"]["fastkernels"] == "2.3"
    assert plugin["packages"]["torch"] == importlib.metadata.version("torch")  # imported before it, named by it


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_commit_is_reprobenchs_own_checkout_never_a_surrounding_repository(tmp_path, monkeypatch):
    """An installed copy inside some other git repository (a virtualenv in a user's project) is not that
    project's commit: it records 'unknown' (and its version), or the commit a git-URL install recorded."""
    own_commit, _ = environment.git_state()
    if own_commit == "unknown":
        pytest.skip("this copy of reprobench is not a git checkout")
    assert own_commit == _git(environment.PACKAGE_DIR, "rev-parse", "HEAD")

    project = tmp_path / "project"
    installed = project / ".venv" / "lib" / "site-packages" / "reprobench"
    installed.mkdir(parents=True)
    _git(project, "init", "-q")
    _git(project, "-c", "user.name=u", "-c", "user.email=u@example.com", "commit", "-q", "--allow-empty", "-m", "x")
    monkeypatch.setattr(environment, "PACKAGE_DIR", installed)
    assert environment.git_state() == ("unknown", False)
