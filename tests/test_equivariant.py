"""The fast EQ experiments run in quick mode and return well-formed outcomes (plain numbers, a stated rule)."""
from __future__ import annotations

import pytest

from reprobench.claims.experiment import VERDICTS, Outcome, RunContext, load_experiments


@pytest.mark.parametrize("claim_id", ["EQ-03", "EQ-04", "EQ-05", "EQ-08", "EQ-10"])
def test_fast_eq_experiments_return_outcomes(claim_id, tmp_path):
    import torch

    outcome = load_experiments()[claim_id](RunContext(quick=True, device=torch.device("cpu"), figures_dir=tmp_path))
    assert isinstance(outcome, Outcome) and outcome.verdict in VERDICTS[:4]
    assert outcome.rule and outcome.evidence
    assert all(isinstance(v, (int, float, str)) for v in outcome.measured.values())


def test_documented_parameter_figures_are_checked_arithmetically(tmp_path):
    import torch

    outcome = load_experiments()["EQ-04"](RunContext(quick=True, device=torch.device("cpu"), figures_dir=tmp_path))
    assert outcome.measured["documented_arithmetic_consistent"] == 1
    assert outcome.measured["learner_is_fixed_plus_256N"] == 1
