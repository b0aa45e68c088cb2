"""Plugins, declarative claims and the example user package, used as an outsider would: the example
(examples/acme_attention) is imported from its source or pip-installed, and reprobench runs in a
subprocess, so nothing it registers leaks into this test process's registry.

Malformed claim files are checked in-process (they must fail before anything is registered or run).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reprobench.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "acme_attention"
EXAMPLE_SRC = EXAMPLE / "src"
PLUGIN = "acme_attention.reprobench_plugin"
DECIDED = {"holds", "fails", "partial", "inconclusive"}


def run(*args: str, pythonpath: list[Path] = (), cwd: Path | None = None, timeout: int = 300, **env):
    """`python -m <args>` with only `pythonpath` added: what a user's shell would run."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath)), **env}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=cwd or ROOT)


def test_plugin_module_lists_and_verifies_the_example(tmp_path):
    listed = run("reprobench", "list", "acme.*", "--plugin", PLUGIN, "--claims", str(EXAMPLE / "claims.toml"),
                 pythonpath=[EXAMPLE_SRC])
    assert listed.returncode == 0, listed.stderr
    row = listed.stdout.split("acme.window_attention", 1)[1]
    # Its claims: the Python ones its plugin module defines, and the TOML ones naming it as their component.
    assert "ACME-01" in row and "ACME-02" in row and "ACME-10" in row, listed.stdout
    everything = run("reprobench", "list", "--plugin", PLUGIN, pythonpath=[EXAMPLE_SRC])
    assert everything.returncode == 0 and "attention.dense" in everything.stdout
    assert max(len(line) for line in everything.stdout.splitlines()) <= 100, everything.stdout

    out = tmp_path / "reports"
    verified = run("reprobench", "verify", "--quick", "--only", "ACME", "--claims", str(EXAMPLE / "claims.toml"),
                   "--plugin", PLUGIN, "--out", str(out), pythonpath=[EXAMPLE_SRC])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    claims = {c["id"]: c for c in json.loads((out / "claims.json").read_text())["claims"]}
    python_ids = {"ACME-01", "ACME-02"}
    toml_ids = {f"ACME-{i}" for i in range(10, 17)}
    assert set(claims) == python_ids | toml_ids, sorted(claims)  # --only ACME: no built-in claim ran
    # A quick run judges what it measured at the claim's own sizes; the rest is reported unjudged, with the
    # verdict it would have had kept beside it (a quick run never contradicts a full one).
    verdicts = {cid: c.get("quick_verdict_withheld", c["verdict"]) for cid, c in claims.items()}
    assert set(verdicts.values()) <= DECIDED, verdicts
    assert all(c["verdict"] in DECIDED or c["verdict"] == "unjudged" and c["unjudged_reason"]
               for c in claims.values())
    for cid in toml_ids:
        assert claims[cid]["source"] == "acme-attention README" and claims[cid]["decisions"], cid
    # The million-token memory claim cannot run for real here: its largest size is measured fake.
    assert claims["ACME-13"]["measured"]["fake_tensor_mode_sizes"] == 1


def test_installed_package_is_found_through_its_entry_point(tmp_path):
    source = tmp_path / "acme_attention"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    installed = run("pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "--target",
                    str(target), str(source))
    assert installed.returncode == 0, installed.stderr
    listed = run("reprobench", "list", "acme.*", pythonpath=[target], cwd=tmp_path)  # no --plugin
    assert listed.returncode == 0, listed.stderr
    assert "acme.window_attention" in listed.stdout


VALID = """\
[[claim]]
id = "ACME-90"
text = "under 10 MiB"
source = "a README"
kind = "peak_memory"
component = "attention.dense"
implementation = "optimized"
size = 64
at_most_mib = 10
"""

MALFORMED = {  # case -> (file text, what the one-line error must name)
    "unknown_kind": (VALID.replace('"peak_memory"', '"peak_memroy"'), ["claim #1 (ACME-90)", "'kind'", "peak_memroy"]),
    "missing_field": (VALID.replace("size = 64\n", ""), ["claim #1 (ACME-90)", "'size'", "missing"]),
    "wrong_type": (VALID.replace("size = 64", 'size = "64"'), ["'size'", "expected an integer"]),
    "unknown_component": (VALID.replace("attention.dense", "acme.nowhere"), ["'component'", "acme.nowhere"]),
    "typo_key": (VALID.replace("at_most_mib", "at_most_mb"), ["'at_most_mb'", "unknown key"]),
    "missing_id": (VALID.replace('id = "ACME-90"\n', ""), ["claim #1:", "'id'", "missing"]),
    "builtin_id": (VALID.replace("ACME-90", "EFF-01"), ["claim #1 (EFF-01)", "'id'", "reprobench_documents"]),
    "duplicate_id": (VALID + VALID, ["claim #2 (ACME-90)", "claim #1"]),
    "not_toml": (VALID + "sizes = [1,\n", ["not valid TOML"]),
    "no_tables": ("title = 'claims'\n", ["'title'"]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_claim_file_is_one_line_and_exit_2(case, tmp_path, capsys):
    text, names = MALFORMED[case]
    path = tmp_path / "claims.toml"
    path.write_text(text)
    out = tmp_path / "reports"
    assert main(["verify", "--claims", str(path), "--only", "EFF-01", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(path) in err and all(name in err for name in names), err
    assert not (out / "claims.json").exists()  # nothing ran


CLASHES = """\
import sys
from reprobench.cli import main
codes = [main(["list", "--plugin", "acme_component_clash"]), main(["list", "--plugin", "acme_claim_clash"]),
         main(["verify", "--plugin", "acme_attention.reprobench_plugin", "--claims", sys.argv[1], "--only", "ACME",
               "--out", sys.argv[2]])]
print(codes)
"""


def test_clashes_with_builtins_name_both_origins(tmp_path):
    plugin = (EXAMPLE_SRC / "acme_attention" / "reprobench_plugin.py").read_text()
    name = 'NAME = "acme.window_attention"'
    for module, changes in (("acme_component_clash", {name: 'NAME = "attention.dense"'}),
                            ("acme_claim_clash", {name: 'NAME = "acme.window_attention_2"',
                                                  'claim("ACME-01"': 'claim("EFF-01"'})):
        text = plugin
        for old, new in changes.items():
            assert text.count(old) == 1, old
            text = text.replace(old, new)
        (tmp_path / f"{module}.py").write_text(text)
    (tmp_path / "clash.toml").write_text(VALID.replace("ACME-90", "ACME-01"))  # an ID the plugin defines
    script = tmp_path / "clashes.py"
    script.write_text(CLASHES)
    result = run(str(script.stem), str(tmp_path / "clash.toml"), str(tmp_path / "reports"),
                 pythonpath=[EXAMPLE_SRC, tmp_path])
    assert result.stdout.strip().splitlines()[-1:] == ["[2, 2, 2]"], result.stdout + result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 3, result.stderr
    assert "'attention.dense'" in errors[0] and "acme_component_clash" in errors[0] \
        and "reprobench_documents.attention.dense" in errors[0]
    assert "EFF-01" in errors[1] and "acme_claim_clash" in errors[1] \
        and "reprobench_documents.experiments" in errors[1]
    assert "ACME-01" in errors[2] and "clash.toml" in errors[2] and PLUGIN in errors[2]


def test_outside_tolerance_counts_what_assert_close_would_reject():
    """The pair check behind speedup, flops_ratio and matches_reference claims (no figure for a wrong answer)."""
    import torch

    from reprobench.claims.declarative_kinds import outside_tolerance

    ref = torch.tensor([1.0, 2.0, float("inf"), float("nan"), 0.0])
    assert outside_tolerance(ref, ref.clone(), atol=0.0, rtol=0.0) == (0, 0.0)  # equal inf and NaN agree
    moved = ref.clone()
    moved[0], moved[4] = 1.0 + 1e-3, float("nan")
    count, worst = outside_tolerance(ref, moved, atol=1e-2, rtol=0.0)
    assert count == 1 and worst is None  # 1e-3 is inside atol; a NaN where the reference has 0.0 is not
    assert outside_tolerance(ref, moved[:4], atol=1.0, rtol=1.0) == (5, None)  # shapes differ: every element
    assert outside_tolerance((ref,), (ref, ref), atol=1.0, rtol=1.0)[0] == 15  # an extra output: every element


def _generated_suite(source: Path, cwd: Path, *options: str):
    """The generic property suite over the example's components, from a directory holding no tests."""
    return run("pytest", "-v", "-p", "no:cacheprovider", "-p", "reprobench", *options, pythonpath=[source], cwd=cwd,
               PYTEST_ADDOPTS="")


def _outcomes(stdout: str) -> dict[str, str]:
    """node id -> PASSED/FAILED/..., from pytest -v lines."""
    return {line.split(" ")[0]: line.split(" ")[1] for line in stdout.splitlines()
            if "::test_" in line and line.split(" ")[1:2] and line.split(" ")[1].isupper()}


GENERIC = ("test_matches_reference", "test_gradients_match_reference", "test_outputs_finite",
           "test_probabilities_normalised", "test_state_dict_shared", "test_no_host_syncs", "test_inputs_unchanged",
           "test_bad_input_raises", "test_matches_reference_random_cases", "test_bad_input_is_handled",
           "test_float64_build_creates_every_tensor_in_float64")


def test_pytest_plugin_runs_the_generic_suite_and_a_broken_twin_fails_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    inert = _generated_suite(EXAMPLE_SRC, empty)  # not asked: the plugin adds nothing
    # (-p reprobench names the pytest11 entry point; without it installed, pytest imports the package itself
    # and the options below are unknown: reinstall with `pip install -e .`.)
    assert inert.returncode == 5 and "no tests ran" in inert.stdout, inert.stdout + inert.stderr

    options = ("--reprobench-components", "acme.*", "--reprobench-plugin", PLUGIN)
    good = _generated_suite(EXAMPLE_SRC, empty, *options)
    outcomes = _outcomes(good.stdout)
    assert good.returncode == 0 and set(outcomes.values()) == {"PASSED"}, good.stdout[-3000:] + good.stderr
    assert {node.split("::")[1].split("[")[0] for node in outcomes} == set(GENERIC)
    assert all("[acme.window_attention" in node for node in outcomes)  # the pattern, not the built-ins
    print(f"generated tests on acme.window_attention: {len(outcomes)} passed")

    # The same package with an off-by-one window in its optimized twin (window + 1 keys per query).
    broken = tmp_path / "broken"
    shutil.copytree(EXAMPLE_SRC, broken, ignore=shutil.ignore_patterns("__pycache__"))
    twin = broken / "acme_attention" / "window_attention.py"
    correct = "allowed = (c > a) & (c <= a + window)"
    assert twin.read_text().count(correct) == 1
    twin.write_text(twin.read_text().replace(correct, "allowed = (c >= a) & (c <= a + window)"))
    bad = _generated_suite(broken, empty, *options)
    failed = {node.split("::")[1].split("[")[0] for node, outcome in _outcomes(bad.stdout).items() if outcome == "FAILED"}
    assert bad.returncode == 1, bad.stdout[-3000:] + bad.stderr
    assert {"test_matches_reference", "test_gradients_match_reference", "test_matches_reference_random_cases"} <= failed
    assert "rerun: cd " in bad.stdout and "--reprobench-components" in bad.stdout  # the failure says how to rerun it
    # The short summary's ids (generic_tests.py::...) do not rerun from here; the summary ends with commands that do.
    section = bad.stdout.split("reprobench: rerun a failed generated case from any directory", 1)[1]
    commands = [line for line in section.splitlines() if line.startswith("cd ")]
    assert len(commands) == len([o for o in _outcomes(bad.stdout).values() if o == "FAILED"]), section
    gradient = next(c for c in commands if "test_gradients_match_reference[" in c)
    rerun = subprocess.run(gradient + " -p no:cacheprovider", shell=True, capture_output=True, text=True, timeout=300,
                           cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(broken), "PYTEST_ADDOPTS": ""})
    assert rerun.returncode == 1 and "1 failed" in rerun.stdout.splitlines()[-1], rerun.stdout[-2000:] + rerun.stderr


def _variant(tmp_path: Path, name: str, edits: dict[str, dict[str, str]]) -> Path:
    """A copy of the example's source with `edits` ({file in the package: {old: new}}) applied, each old once."""
    source = tmp_path / name
    shutil.copytree(EXAMPLE_SRC, source, ignore=shutil.ignore_patterns("__pycache__"))
    for file, changes in edits.items():
        path = source / "acme_attention" / file
        text = path.read_text()
        for old, new in changes.items():
            assert text.count(old) == 1, (file, old)
            text = text.replace(old, new)
        path.write_text(text)
    return source


# The example's layer without its input checks: what most real packages look like to the derived bad inputs.
UNCHECKED = {"window_attention.py": {"        self._check(x)\n": ""}}
HYGIENE_TESTS = {"test_bad_input_raises", "test_bad_input_is_handled"}


def _failed_tests(stdout: str) -> set[str]:
    return {node.split("::")[1] for node, outcome in _outcomes(stdout).items() if outcome == "FAILED"}


def test_generated_suite_reports_input_hygiene_of_a_plugin_as_findings_unless_strict(tmp_path):
    """Two tiers: a package that checks none of its inputs passes the default run, with every hygiene problem
    in the findings table (per component and kind); --reprobench-strict-hygiene fails exactly those tests."""
    empty = tmp_path / "empty"
    empty.mkdir()
    unchecked = _variant(tmp_path, "unchecked", UNCHECKED)
    options = ("--reprobench-components", "acme.*", "--reprobench-plugin", PLUGIN)

    lenient = _generated_suite(unchecked, empty, *options)
    assert lenient.returncode == 0, lenient.stdout[-3000:] + lenient.stderr
    assert set(_outcomes(lenient.stdout).values()) == {"PASSED"}
    table = lenient.stdout.split("reprobench input hygiene: findings, not failures", 1)[1]
    for kind, finding in (("rank_plus", "error from inside torch"), ("float16", "error from inside torch"),
                          ("batch_zero", "accepted an unsupported input"),
                          ("error_inputs:wrong_dim", "declared error not raised")):
        assert any(line.startswith("acme.window_attention") and f" {kind} " in line and finding in line
                   for line in table.splitlines()), (kind, table)
    assert "non_contiguous" not in table and " nan " not in table  # handled correctly: no finding

    strict = _generated_suite(unchecked, empty, *options, "--reprobench-strict-hygiene")
    assert strict.returncode == 1, strict.stdout[-3000:]
    assert _failed_tests(strict.stdout) and {t.split("[")[0] for t in _failed_tests(strict.stdout)} == HYGIENE_TESTS
    assert "reprobench input hygiene" not in strict.stdout  # failures now, not findings

    clean = _generated_suite(EXAMPLE_SRC, empty, *options, "--reprobench-strict-hygiene")  # the checked original
    assert clean.returncode == 0 and "reprobench input hygiene" not in clean.stdout, clean.stdout[-3000:]


def test_expected_failures_cover_any_generic_test_and_one_that_passes_is_reported(tmp_path):
    """ExpectedFailure for a bad-input kind and for the random cases: a declared failure that happens is an
    xfail (and leaves the findings table), one that no longer happens fails, saying to remove it."""
    empty = tmp_path / "empty"
    empty.mkdir()
    expected = ('ExpectedFailure("bad_input_is_handled", "acme checks no ranks", kind="rank_plus"), '
                'ExpectedFailure("bad_input_is_handled", "strides once broke it", kind="non_contiguous"), '
                'ExpectedFailure("matches_reference_random_cases", "a stale declaration", dtype=torch.float64)')
    source = _variant(tmp_path, "declared", {
        **UNCHECKED,
        "reprobench_plugin.py": {"    name=NAME,\n": f"    name=NAME,\n    expected_failures=({expected}),\n",
                                 "import torch\n": "import torch\n\nfrom reprobench import ExpectedFailure\n"}})
    result = _generated_suite(source, empty, "--reprobench-components", "acme.*", "--reprobench-plugin", PLUGIN, "-rxX")
    outcomes = _outcomes(result.stdout)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr
    assert _failed_tests(result.stdout) == {"test_bad_input_is_handled[acme.window_attention-non_contiguous]",
                                            "test_matches_reference_random_cases[acme.window_attention]"}
    assert outcomes[next(n for n in outcomes if n.endswith("-rank_plus]"))] == "XFAIL"
    assert ("bad_input_is_handled[non_contiguous] is declared an expected failure ('strides once broke it') but now "
            "passes; remove that ExpectedFailure") in result.stdout
    assert "[XPASS(strict)] a stale declaration" in result.stdout
    table = result.stdout.split("reprobench input hygiene", 1)[1]
    assert " rank_minus " in table and " rank_plus " not in table  # the declared one left the table


FAKE_DIST = {  # a plugin package "installed" by a dist-info directory on PYTHONPATH
    "strayplugin-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: strayplugin\nVersion: 1.0\n",
    "strayplugin-1.0.dist-info/entry_points.txt": "[reprobench.plugins]\nstray = strayplugin_mod\n",
    "strayplugin-1.0.dist-info/top_level.txt": "strayplugin_mod\n",
    "strayplugin_mod.py": (
        "import torch\n"
        "from reprobench import ComponentSpec, Implementations, SampleInput, register\n"
        "def build(config, device, dtype, generator):\n"
        "    return Implementations(reference=torch.tanh, optimized=torch.tanh)\n"
        "def samples(n, device, dtype, generator):\n"
        "    return [SampleInput((torch.randn(2, n, dtype=dtype, generator=generator),), name='x')]\n"
        "register(ComponentSpec(name='strayplugin.tanh', claims=(), build=build, sample_inputs=samples))\n"),
}


def test_an_installed_plugin_does_not_join_this_repositorys_suites(tmp_path):
    """With a plugin installed in the environment (entry-point group reprobench.plugins), the CLI finds it, and
    this repository's own suites still run over reprobench's components only (its claims=() and its bad-input
    handling would fail them: test_every_spec_has_claims..., test_bad_inputs.py)."""
    site = tmp_path / "site"
    for name, text in FAKE_DIST.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    listed = run("reprobench", "list", "strayplugin.*", pythonpath=[site])
    assert listed.returncode == 0 and "strayplugin.tanh" in listed.stdout, listed.stdout + listed.stderr

    own = run("pytest", "-q", "-p", "no:cacheprovider", "--collect-only", "suites/properties/test_float64_builds.py",
              "suites/properties/test_generic.py", pythonpath=[site], PYTEST_ADDOPTS="")
    assert own.returncode == 0 and "float64_build_creates_every_tensor_in_float64[attention.dense]" in own.stdout, \
        own.stdout[-2000:] + own.stderr
    assert "strayplugin" not in own.stdout
    registry = run("pytest", "-q", "-p", "no:cacheprovider", "tests/test_registry.py", "-k", "every_spec",
                   pythonpath=[site], PYTEST_ADDOPTS="")
    assert registry.returncode == 0, registry.stdout[-2000:]


def test_pytest_comes_with_the_pytest_extra():
    """`pip install 'reprobench[pytest]'` brings what the pytest11 plugin needs (README, generated suite)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the tomli backport (a dependency there)
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(req.replace(" ", "").startswith("pytest>=") for req in project["optional-dependencies"]["pytest"])
    assert not any(req.startswith("pytest") for req in project["dependencies"])  # the extra, not a dependency
