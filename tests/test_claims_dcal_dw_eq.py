"""DCAL, DW and EQ helpers and cases beyond the checks every untimed claim gets (tests/test_claims_untimed.py):
EQ-09 refuses a device it cannot train on, and the time-saved transform of DCAL-02 keeps its interval."""
from __future__ import annotations

import math

from reprobench.measure import Estimate
from tests.claim_checks import run_quick


def test_two_phase_training_is_not_checkable_off_the_cpu(tmp_path):
    outcome = run_quick("EQ-09", tmp_path, device="cuda")
    assert outcome.verdict == "not-checkable-here" and "takes no device" in outcome.evidence


def test_time_saved_maps_the_speedup_interval_end_to_end():
    from reprobench_documents.experiments.dcal.pwca_time import time_saved

    speedup = Estimate(point=1.25, low=1.0, high=2.0, confidence=0.95, samples=7, method="paired rounds")
    saved = time_saved(speedup)
    assert math.isclose(saved.point, 0.2) and math.isclose(saved.low, 0.0) and math.isclose(saved.high, 0.5)
    assert (saved.confidence, saved.samples) == (0.95, 7)
