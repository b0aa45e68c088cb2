"""Checks every family's experiment tests share: the rule states each decided threshold, and measured
values are plain JSON (one type per key, no NaN, no tensors)."""
from __future__ import annotations

import json


def spellings(value: float) -> set[str]:
    """How a rule may write a threshold: 1e-10, 1e-09, 0.4, 1.28, 50%, 1000, 6."""
    forms = {f"{value:g}", f"{value:g}".replace("e-0", "e-"), f"{value:.0e}".replace("e-0", "e-"), f"{value:.0%}"}
    if float(value).is_integer():
        forms.add(str(int(value)))
    return forms


def assert_rule_states_every_threshold(claim_id: str, outcome) -> None:
    assert outcome.decisions, f"{claim_id} judged nothing"
    for decision in outcome.decisions:
        bounds = decision.threshold if isinstance(decision.threshold, tuple) else (decision.threshold,)
        for bound in bounds:
            assert any(form in outcome.rule for form in spellings(bound)), (
                f"{claim_id}: the rule does not state {decision.quantity}'s threshold {bound}: {outcome.rule}")


def assert_plain_json(measured: dict) -> None:
    json.dumps(measured, allow_nan=False)  # no NaN/inf, no tensors
    assert all(v is None or isinstance(v, (bool, int, float, str)) for v in measured.values())


def float64_claims(*families: str) -> list[str]:
    """IDs of the given families whose experiment refuses a device without float64: its code, or a study helper
    it calls, returns when `float64_unavailable(ctx)` gives a reason. Read from the experiments themselves, so a
    new float64 claim is checked without a list to update; one that uses float64 only for an optional part
    (and runs without it) is not among them."""
    from reprobench.claims.experiment import float64_unavailable, load_experiments

    return sorted(cid for cid, fn in load_experiments().items()
                  if cid.split("-")[0] in families and _returns_on(fn, float64_unavailable, set()))


def _returns_on(fn, guard, seen: set) -> bool:
    """Whether `fn`, or a function of its own package it names, has `if ...guard(...)...: ... return`."""
    import ast
    import inspect
    import textwrap

    if fn in seen:
        return False
    seen.add(fn)
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and any(isinstance(s, ast.Return) for s in node.body) and any(
                isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and fn.__globals__.get(c.func.id) is guard
                for c in ast.walk(node.test)):
            return True
    package = fn.__module__.split(".")[0]
    callees = [fn.__globals__.get(n.id) for n in ast.walk(tree) if isinstance(n, ast.Name)]
    return any(inspect.isfunction(f) and f.__module__.split(".")[0] == package and _returns_on(f, guard, seen)
               for f in callees)
