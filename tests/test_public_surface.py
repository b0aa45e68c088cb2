"""The public surface a plugin package may use, and the packages that must use nothing else.

`reprobench.__all__` (and the `__all__` of reprobench.PUBLIC_MODULES) is the documented surface: every name
resolves, the README lists each one, and every module of examples/ (and any other package under impl/)
imports reprobench names from it only. The check reads the sources (ast), so a private import fails here
even where the example's own tests never run the line.
"""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import reprobench

ROOT = Path(__file__).resolve().parents[1]


def _is_reprobench(name: str) -> bool:
    return name == "reprobench" or name.startswith("reprobench.")


def _dotted(node: ast.AST) -> list[str] | None:
    """`a.b.c` as ['a', 'b', 'c'], or None when the chain does not start at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def private_uses(source: str, filename: str) -> list[str]:
    """Every use of a reprobench name outside the public surface, as 'FILE:LINE: what'."""
    public = reprobench.PUBLIC_MODULES
    problems, bound = [], {}  # bound: local name -> the public module it names (`import reprobench as rb`)

    def name_ok(module: str, name: str) -> bool:
        return name in reprobench._public_names(module)

    def module_problem(line: int, module: str) -> None:
        problems.append(f"{filename}:{line}: {module} is not a public module (public: {', '.join(public)})")

    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and _is_reprobench(node.module or ""):
            if node.module not in public:
                module_problem(node.lineno, node.module)
                continue
            for alias in node.names:
                if f"{node.module}.{alias.name}" in public:
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                elif not name_ok(node.module, alias.name):
                    problems.append(f"{filename}:{node.lineno}: from {node.module} import {alias.name}: not in "
                                    f"{node.module}'s public names")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not _is_reprobench(alias.name):
                    continue
                if alias.name not in public:
                    module_problem(node.lineno, alias.name)
                else:
                    bound[alias.asname or alias.name.split(".")[0]] = alias.asname and alias.name or "reprobench"
        elif (isinstance(node, ast.Call) and _dotted(node.func) in (["importlib", "import_module"], ["import_module"])
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and _is_reprobench(node.args[0].value) and node.args[0].value not in public):
            module_problem(node.lineno, node.args[0].value)
    for node in ast.walk(tree):  # attribute chains on a bound module: reprobench.bench.bench_case
        chain = _dotted(node) if isinstance(node, ast.Attribute) else None
        if not chain or chain[0] not in bound or isinstance(getattr(node, "ctx", None), ast.Store):
            continue
        module = bound[chain[0]]
        for index, part in enumerate(chain[1:], start=2):
            if f"{module}.{part}" in public:
                module = f"{module}.{part}"
                continue
            if not name_ok(module, part):  # named up to the private part: the inner chains say the same
                problems.append(f"{filename}:{node.lineno}: {'.'.join(chain[:index])}: {part!r} is not in "
                                f"{module}'s public names")
            break
    return sorted(set(problems))


def checked_sources() -> list[Path]:
    """Every module of examples/, and of any package under impl/ other than reprobench (a bundled plugin)."""
    files = sorted((ROOT / "examples").rglob("*.py"))
    for package in sorted((ROOT / "impl").iterdir()):
        if package.is_dir() and package.name != "reprobench" and (package / "__init__.py").exists():
            files.extend(sorted(package.rglob("*.py")))
    return [f for f in files if "build" not in f.relative_to(ROOT).parts]


def test_every_public_name_resolves():
    for module_name in reprobench.PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names = reprobench._public_names(module_name)
        assert names, module_name
        missing = sorted(name for name in names if not hasattr(module, name))
        assert not missing, f"{module_name} lists names it does not have: {missing}"


def test_the_readme_lists_every_public_name():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Bring your own component and claims", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in reprobench.__all__ if f"`{name}`" not in section]
    assert not missing, f"README's 'Bring your own component and claims' does not list {missing}"


def test_examples_use_only_the_public_surface():
    files = checked_sources()
    assert any(f.name == "reprobench_plugin.py" for f in files), files  # the example is really scanned
    problems = [p for f in files for p in private_uses(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))]
    assert not problems, "imports outside reprobench's public surface:\n" + "\n".join(problems)


@pytest.mark.parametrize("source, found", [
    ("from reprobench.bench import bench_case", "reprobench.bench is not a public module"),
    ("import reprobench.bench", "reprobench.bench is not a public module"),
    ("from reprobench import bench_case", "from reprobench import bench_case: not in"),
    ("from reprobench.registry import _REGISTRY", "from reprobench.registry import _REGISTRY: not in"),
    ("import reprobench\nreprobench.bench.bench_case('x', 1, 'optimized')", "'bench' is not in reprobench's"),
    ("import reprobench as rb\nrb.registry._REGISTRY.clear()", "'_REGISTRY' is not in reprobench.registry's"),
    ("import importlib\nimportlib.import_module('reprobench.claims.declarative_kinds')", "not a public module"),
])
def test_the_check_reports_each_private_use(source, found):
    problems = private_uses(source, "plugin.py")
    assert len(problems) == 1 and found in problems[0], problems


def test_the_check_accepts_the_public_spellings():
    source = ("import reprobench\nimport reprobench.measure\nfrom reprobench import register, peak_tensor_bytes\n"
              "from reprobench.claims import experiment\nfrom reprobench.measure import count_flops\n"
              "from reprobench.registry import ComponentSpec, make_generator\nfrom reprobench import measure\n"
              "reprobench.decide('x', 1, at_most=1)\nreprobench.measure.peak_tensor_bytes(print)\n"
              "measure.count_host_syncs(print)\n")
    assert private_uses(source, "plugin.py") == []


def test_importing_reprobench_does_not_import_torch():
    """pytest imports the package for its plugin entry point in every run, with or without reprobench's options."""
    code = "import sys, reprobench; print('torch' in sys.modules, len(reprobench.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", str(len(reprobench.__all__))]
