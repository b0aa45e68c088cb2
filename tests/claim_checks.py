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
