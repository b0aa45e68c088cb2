"""Every untimed claim of the DCAL, DW, EQ, FAM and ROPE families, run once in quick mode: it judges through
decisions, its rule states every decided threshold, its measured values stay plain JSON, a rule stated in
float64 declares the need, and a claim declaring it refuses a device without float64. The lists are read from
the declarations (the timed claims run in `reprobench verify`); EFF and ZOO have their own file, which also
watches the device for float64 tensors."""
from __future__ import annotations

import pytest

from reprobench.claims.experiment import DECIDED_VERDICTS
from tests.claim_checks import (assert_float64_need_matches_rule, assert_plain_json, assert_rule_states_every_threshold,
                                float64_claims, quick_outcomes, run_quick, untimed_claims)

FAMILIES = ("DCAL", "DW", "EQ", "FAM", "ROPE")
UNTIMED = untimed_claims(*FAMILIES)
FLOAT64 = float64_claims(*FAMILIES)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Each untimed experiment once on the CPU (quick mode), shared by the checks below."""
    return quick_outcomes(tmp_path_factory)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_declarations_name_claims_to_check_in_every_family(family):
    # an empty parametrization would pass vacuously (a family renamed, a loader that found nothing)
    assert untimed_claims(family)


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
    outcome = run_quick(claim_id, tmp_path, device="mps")
    assert outcome.verdict == "not-checkable-here"
    assert "float64" in outcome.evidence and not outcome.decisions
