"""DCAL, DW and EQ experiments judge through decisions: the rule states every threshold,
measured values stay JSON numbers, the float64 checks refuse a device without float64, and the
time-saved transform of DCAL-02 keeps its interval."""
from __future__ import annotations

import math

import pytest
import torch

from reprobench.claims.experiment import RunContext, load_experiments
from reprobench.measure import Estimate
from tests.claim_checks import assert_plain_json, assert_rule_states_every_threshold, float64_claims

# The experiments cheap enough to run here in quick mode: a choice about the
# suite's running time, not something the claims declare. The others run in `reprobench verify`.
FAST = ["DCAL-04", "DCAL-08", "DCAL-09", "DCAL-10", "DCAL-11", "DW-01", "DW-02", "DW-03", "DW-05", "DW-06",
        "EQ-03", "EQ-04", "EQ-05", "EQ-08", "EQ-10"]
FLOAT64 = float64_claims("DCAL", "DW", "EQ")  # read from the experiments: those that refuse a device without float64


def _run(claim_id, tmp_path, device="cpu"):
    return load_experiments()[claim_id](RunContext(quick=True, device=torch.device(device), figures_dir=tmp_path))


@pytest.mark.parametrize("claim_id", FAST)
def test_rule_states_every_decided_threshold(claim_id, tmp_path):
    assert_rule_states_every_threshold(claim_id, _run(claim_id, tmp_path))


@pytest.mark.parametrize("claim_id", FAST)
def test_measured_values_are_plain_json(claim_id, tmp_path):
    assert_plain_json(_run(claim_id, tmp_path).measured)


@pytest.mark.parametrize("claim_id", FLOAT64)
def test_float64_checks_are_not_checkable_on_a_device_without_float64(claim_id, tmp_path):
    # No MPS hardware is needed: the check returns before anything touches the device.
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
