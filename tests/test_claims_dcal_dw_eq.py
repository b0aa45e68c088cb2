"""DCAL, DW and EQ experiments judge through decisions: the rule states every threshold,
measured values stay JSON numbers, a rule stated in float64 declares the need and such claims refuse a
device without float64, and the time-saved transform of DCAL-02 keeps its interval."""
from __future__ import annotations

import math

import pytest
import torch

from reprobench.claims.experiment import RunContext, load_experiments
from reprobench.measure import Estimate
from tests.claim_checks import (assert_float64_need_matches_rule, assert_plain_json, assert_rule_states_every_threshold,
                                float64_claims, untimed_claims)

FAMILIES = ("DCAL", "DW", "EQ")
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
    assert_rule_states_every_threshold(claim_id, outcomes(claim_id))


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


def test_two_phase_training_is_not_checkable_off_the_cpu(tmp_path):
    outcome = _run("EQ-09", tmp_path, device="cuda")
    assert outcome.verdict == "not-checkable-here" and "takes no device" in outcome.evidence


def test_time_saved_maps_the_speedup_interval_end_to_end():
    from reprobench_documents.experiments.dcal.pwca_time import time_saved

    speedup = Estimate(point=1.25, low=1.0, high=2.0, confidence=0.95, samples=7, method="paired rounds")
    saved = time_saved(speedup)
    assert math.isclose(saved.point, 0.2) and math.isclose(saved.low, 0.0) and math.isclose(saved.high, 0.5)
    assert (saved.confidence, saved.samples) == (0.95, 7)
