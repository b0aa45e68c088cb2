"""FAM and ROPE experiments judge through decisions: the rule states every decided threshold,
measured values stay plain JSON, the float64 checks refuse a device without float64, and
the small helpers the experiments judge with do what their rules say."""
from __future__ import annotations

import math

import pytest
import torch

from reprobench.claims.experiment import DECIDED_VERDICTS, RunContext, load_experiments
from tests.claim_checks import assert_plain_json, assert_rule_states_every_threshold, float64_claims

# The experiments cheap enough to run here (quick mode, nothing timed): a choice about
# the suite's running time, not something the claims declare. The timed ones (FAM-03/07, ROPE-01/03/06) run
# in `reprobench verify`.
FAST = ["FAM-01", "FAM-02", "FAM-04", "FAM-05", "FAM-06", "ROPE-02", "ROPE-04", "ROPE-05", "ROPE-07"]
FLOAT64 = float64_claims("FAM", "ROPE")  # read from the experiments: those that refuse a device without float64


def _run(claim_id, tmp_path, device="cpu"):
    return load_experiments()[claim_id](RunContext(quick=True, device=torch.device(device), figures_dir=tmp_path))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Each fast experiment once on the CPU (quick mode), shared by the checks below."""
    cache = {}

    def get(claim_id):
        if claim_id not in cache:
            cache[claim_id] = _run(claim_id, tmp_path_factory.mktemp(claim_id))
        return cache[claim_id]

    return get


@pytest.mark.parametrize("claim_id", FAST)
def test_rule_states_every_decided_threshold(claim_id, outcomes):
    outcome = outcomes(claim_id)
    assert outcome.verdict in DECIDED_VERDICTS
    assert_rule_states_every_threshold(claim_id, outcome)


@pytest.mark.parametrize("claim_id", FAST)
def test_measured_values_are_plain_json(claim_id, outcomes):
    assert_plain_json(outcomes(claim_id).measured)


@pytest.mark.parametrize("claim_id", FLOAT64)
def test_float64_checks_are_not_checkable_on_a_device_without_float64(claim_id, tmp_path):
    # No MPS hardware is needed: the check returns before anything touches the device.
    outcome = _run(claim_id, tmp_path, device="mps")
    assert outcome.verdict == "not-checkable-here"
    assert "float64" in outcome.evidence and not outcome.decisions


def test_scheduler_points_are_judged_relative_without_absolute_slack():
    from reprobench_documents.experiments.fam.schedulers import off_target

    assert off_target(0.1, 0.1, 1e-12) == 0
    assert off_target(0.1 * (1 + 5e-13), 0.1, 1e-12) == 0
    assert off_target(0.1 * (1 + 2e-12), 0.1, 1e-12) == 1
    # a warmup_start_lr of 1e-8 missed by 5e-16 is off by 5e-8 relative: no absolute tolerance hides it
    assert off_target(1e-8 + 5e-16, 1e-8, 1e-12) == 1
    assert off_target(math.nan, 0.1, 1e-9) == 1


def test_bf16_error_is_none_when_the_module_refuses_bfloat16():
    from reprobench_documents.experiments.rope.standard_path import bf16_error, bf16_words

    truth = torch.zeros(2, dtype=torch.float64)

    def refuses(_):
        raise TypeError("t: expected a float32 or float64 tensor")

    assert bf16_error(refuses, truth.to(torch.bfloat16), truth) is None
    assert bf16_error(lambda t: t + 0.5, truth.to(torch.bfloat16), truth) == 0.5
    with pytest.raises(RuntimeError):  # any other failure is an error, not a refusal
        bf16_error(lambda t: (_ for _ in ()).throw(RuntimeError("boom")), truth.to(torch.bfloat16), truth)
    assert "refused" in bf16_words(None, 0.1) and "0.100" in bf16_words(0.5, 0.1)
