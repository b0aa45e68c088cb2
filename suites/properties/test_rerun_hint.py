"""The rerun line a failing generic case prints must rerun exactly that case.

The line used to be ``pytest … -k '… -grid=1'``, which pytest rejects (exit 4: ``-k`` cannot parse
the ``=`` in case ids). Here a throw-away project with one failing and one passing case whose ids
look like the generic suite's runs in a subprocess; the command printed by `case_message` is then
run as printed, from another directory, and must fail on that one case and run nothing else.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAILING = "equivariant.shared_encoder-cpu-float64-grid=1"
PASSING = "equivariant.shared_encoder-cpu-float64-grid=3"

TEST_MODULE = textwrap.dedent(f'''
    from types import SimpleNamespace

    import pytest
    import torch

    from reprobench.registry import SampleInput
    from reprobench.testing.checks import case_message

    SPEC = SimpleNamespace(name="equivariant.shared_encoder", size_name="grid")


    @pytest.mark.parametrize("size", [1, 3], ids=["{FAILING}", "{PASSING}"])
    def test_matches_reference(size):
        sample = SampleInput((torch.zeros(4, 3, size, size),), name="examples")
        assert size != 1, case_message(SPEC, sample, torch.float64, size, 600, "matches_reference")
''')


def _run(command, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "impl"), os.environ.get("PYTHONPATH", "")])}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(command, cwd=cwd, env=env, shell=isinstance(command, str), capture_output=True, text=True,
                          timeout=600)


def test_printed_rerun_command_selects_exactly_the_failing_case(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")  # rootdir = project
    (project / "conftest.py").write_text('pytest_plugins = ["suites.conftest"]\n')  # records the rootdir
    (project / "test_cases.py").write_text(TEST_MODULE)

    first = _run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_cases.py"], project)
    assert "1 failed, 1 passed" in first.stdout, first.stdout + first.stderr
    hints = {line.split("rerun: ", 1)[1] for line in first.stdout.splitlines() if "rerun: " in line}
    assert len(hints) == 1, f"expected one rerun line, got {hints}\n{first.stdout}"
    command = hints.pop()
    assert sys.executable in command, command

    rerun = _run(command + " -p no:cacheprovider -rA", tmp_path)  # from outside the project: the command cds
    summary = rerun.stdout.strip().splitlines()[-1] if rerun.stdout.strip() else ""
    assert rerun.returncode == 1, f"exit {rerun.returncode} for {command}\n{rerun.stdout}{rerun.stderr}"
    assert "1 failed" in summary and "passed" not in summary and "deselected" not in summary, rerun.stdout
    assert f"FAILED test_cases.py::test_matches_reference[{FAILING}]" in rerun.stdout, rerun.stdout
