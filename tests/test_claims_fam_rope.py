"""FAM and ROPE experiments judge through decisions: the rule states every decided threshold,
measured values stay plain JSON, a rule stated in float64 declares the need and such claims refuse a device
without float64, and the small helpers the experiments judge with do what their rules say."""
from __future__ import annotations

import math

import pytest
import torch

from reprobench.claims.experiment import DECIDED_VERDICTS, RunContext, load_experiments
from tests.claim_checks import (assert_float64_need_matches_rule, assert_plain_json, assert_rule_states_every_threshold,
                                float64_claims, untimed_claims)

FAMILIES = ("FAM", "ROPE")
# Read from the declarations: the claims not declared timed run here in quick mode (the timed ones run in
# `reprobench verify`), and those declaring needs=("float64",) are checked on a device without it.
UNTIMED = untimed_claims(*FAMILIES)
FLOAT64 = float64_claims(*FAMILIES)


def _run(claim_id, tmp_path, device="cpu"):
    return load_experiments()[claim_id](RunContext(quick=True, device=torch.device(device), figures_dir=tmp_path))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Each untimed experiment once on the CPU (quick mode), shared by the checks below."""
    cache = {}

    def get(claim_id):
        if claim_id not in cache:
            cache[claim_id] = _run(claim_id, tmp_path_factory.mktemp(claim_id))
        return cache[claim_id]

    return get


def test_the_declarations_name_claims_to_check():
    # an empty parametrization would pass vacuously (a family renamed, a loader that found nothing)
    assert UNTIMED and FLOAT64


@pytest.mark.parametrize("claim_id", UNTIMED)
def test_rule_states_every_decided_threshold(claim_id, outcomes):
    outcome = outcomes(claim_id)
    assert outcome.verdict in DECIDED_VERDICTS
    assert_rule_states_every_threshold(claim_id, outcome)


@pytest.mark.parametrize("claim_id", UNTIMED)
def test_measured_values_are_plain_json(claim_id, outcomes):
    assert_plain_json(outcomes(claim_id).measured)


@pytest.mark.parametrize("claim_id", UNTIMED)
def test_a_rule_stated_in_float64_declares_the_need(claim_id, outcomes):
    assert_float64_need_matches_rule(claim_id, outcomes(claim_id))


@pytest.mark.parametrize("claim_id", FLOAT64)
def test_float64_checks_are_not_checkable_on_a_device_without_float64(claim_id, tmp_path):
    # No MPS hardware is needed: the declaration refuses the device before the experiment touches it.
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
