"""Checks every family's experiment tests share: the rule states each decided threshold, measured values are
plain JSON (one type per key, no NaN, no tensors), and a rule stated in float64 goes with a declared float64 need.
Which claims a test runs is read from the claims' declarations (needs, timed), not from lists kept here."""
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
    """IDs of the given families whose declaration says they need float64 (`experiment(..., needs=("float64",))`):
    read from the declarations, so a new float64 claim is checked without a list to update."""
    from reprobench.claims.experiment import declaration, load_experiments

    return sorted(cid for cid in load_experiments()
                  if cid.split("-")[0] in families and "float64" in declaration(cid).needs)


def untimed_claims(*families: str) -> list[str]:
    """IDs of the given families not declared timed (`experiment(..., timed=True)`): their verdicts rest on no
    wall-clock decision, so a quick run of each is cheap and repeatable enough for the test suite."""
    from reprobench.claims.experiment import declaration, load_experiments

    return sorted(cid for cid in load_experiments() if cid.split("-")[0] in families and not declaration(cid).timed)


def assert_float64_need_matches_rule(claim_id: str, outcome) -> None:
    """A rule whose tolerances assume float64 says so ("float64" in its text), and then its claim declares the
    need, so a device without float64 refuses it before it runs; a rule that does not say so declares none."""
    from reprobench.claims.experiment import declaration

    declared, stated = "float64" in declaration(claim_id).needs, "float64" in outcome.rule
    assert declared == stated, (f"{claim_id}: the rule {'states' if stated else 'does not state'} float64 but the "
                                f"declaration's needs are {declaration(claim_id).needs!r}: {outcome.rule}")


def run_quick(claim_id: str, tmp_path, device: str = "cpu"):
    """The claim's experiment once, in quick mode, on `device` (through its declaration's wrapper)."""
    import torch

    from reprobench.claims.experiment import RunContext, load_experiments

    return load_experiments()[claim_id](RunContext(quick=True, device=torch.device(device), figures_dir=tmp_path))


def quick_outcomes(tmp_path_factory):
    """claim_id -> its quick outcome on the CPU, each experiment run once: the claim tests' module fixture."""
    cache = {}

    def get(claim_id):
        if claim_id not in cache:
            cache[claim_id] = run_quick(claim_id, tmp_path_factory.mktemp(claim_id))
        return cache[claim_id]

    return get
