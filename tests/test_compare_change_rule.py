"""`compare` calls a quantity changed only when the two runs' uncertainty says so, and gates on holds ->
fails/partial. Boundaries are tested on both sides so a flipped comparison cannot pass unnoticed."""
from __future__ import annotations

import math

import pytest

from reprobench.claims import compare


def _decision(point, low, high, confidence=0.95, quantity="speedup"):
    return {"quantity": quantity, "estimate": point, "low": low, "high": high, "confidence": confidence,
            "threshold": 1.0, "direction": "at_least", "outcome": "holds"}


def _report(verdict="holds", decisions=()):
    return {"claims": [{"id": "X-01", "verdict": verdict, "measured": {}, "decisions": list(decisions)}],
            "environment": {}}


def test_the_same_quantity_within_noise_is_not_a_change():
    # Two runs of one commit: intervals that do not even overlap, but a 4% move, under the 10% floor.
    changed, _ = compare.quantity_change(_decision(1.49, 1.47, 1.51), _decision(1.55, 1.53, 1.57))
    assert not changed


def test_a_large_change_with_tight_intervals_is_reported():
    changed, how = compare.quantity_change(_decision(2.0, 1.95, 2.05), _decision(1.2, 1.17, 1.23))
    assert changed and "new/old = 0.6" in how


def test_a_large_move_inside_wide_intervals_is_not_reported():
    changed, _ = compare.quantity_change(_decision(2.0, 1.0, 4.0), _decision(1.5, 0.8, 3.0))
    assert not changed


def _interval_for(point, se_log, confidence=0.95):
    z = 1.959963984540054
    return _decision(point, point * math.exp(-z * se_log), point * math.exp(z * se_log), confidence)


def test_the_noise_floor_is_a_strict_bound():
    tiny = 1e-4  # intervals so narrow that only the floor decides
    at_floor = compare.quantity_change(_interval_for(1.0, tiny), _interval_for(1.0 + compare.NOISE_FLOOR, tiny))
    past_floor = compare.quantity_change(_interval_for(1.0, tiny), _interval_for(1.0 + compare.NOISE_FLOOR + 1e-3,
                                                                                 tiny))
    assert not at_floor[0] and past_floor[0]


def test_the_ratio_interval_must_exclude_one():
    # A 30% move (past the floor) whose combined 99% interval just includes / just excludes no change.
    z99 = 2.5758293035489004
    delta = math.log(1.3)
    se_each_edge = delta / (z99 * math.sqrt(2))
    inside = compare.quantity_change(_interval_for(1.0, se_each_edge * 1.01), _interval_for(1.3, se_each_edge * 1.01))
    outside = compare.quantity_change(_interval_for(1.0, se_each_edge * 0.99), _interval_for(1.3, se_each_edge * 0.99))
    assert not inside[0] and outside[0]


def test_deterministic_quantities_change_when_their_value_does():
    assert compare.quantity_change(_decision(4096, 4096, 4096), _decision(4096, 4096, 4096)) == (
        False, "4096 -> 4096 (deterministic)")
    assert compare.quantity_change(_decision(4096, 4096, 4096), _decision(4097, 4097, 4097))[0]


def test_signed_quantities_compare_as_a_difference():
    changed, how = compare.quantity_change(_decision(-0.5, -0.52, -0.48), _decision(0.5, 0.48, 0.52))
    assert changed and "new - old" in how
    assert not compare.quantity_change(_decision(-0.01, -0.2, 0.2), _decision(0.01, -0.2, 0.2))[0]


def test_intervals_without_an_error_estimate_are_not_compared():
    changed, how = compare.quantity_change(_decision(1.0, 0.5, 2.0, confidence=1e-12), _decision(5.0, 4.0, 6.0))
    assert not changed and "not compared" in how


@pytest.mark.parametrize("old, new, gated", [
    ("holds", "fails", True), ("holds", "partial", True), ("holds", "inconclusive", False),
    ("holds", "unjudged", False), ("fails", "holds", False), ("partial", "fails", False)])
def test_only_holds_to_fails_or_partial_gates(old, new, gated):
    diff = compare.diff_reports(_report(old), _report(new))
    assert diff.exit_code == (1 if gated else 0)


def test_diff_lists_a_changed_quantity_and_says_why():
    old = _report(decisions=[_decision(2.0, 1.95, 2.05)])
    new = _report(decisions=[_decision(1.2, 1.17, 1.23)])
    diff = compare.diff_reports(old, new)
    assert [c[0] for c in diff.interval_changes] == ["X-01"]
    text = compare.format_diff(diff, old, new)
    assert "measured quantities that changed" in text and "new/old" in text
    quiet = compare.diff_reports(old, _report(decisions=[_decision(2.05, 2.0, 2.1)]))
    assert not quiet.interval_changes
    assert "no measured quantity changed" in compare.format_diff(quiet, old, new)


def test_a_float_error_far_below_its_threshold_is_not_a_change():
    # 2.2e-16 -> 1.9e-16 against a rule of <= 1e-10: the BLAS build moved the last bits, not the claim.
    old, new = _decision(2.22e-16, 2.22e-16, 2.22e-16), _decision(1.94e-16, 1.94e-16, 1.94e-16)
    old["threshold"] = new["threshold"] = 1e-10
    assert not compare.quantity_change(old, new)[0]
    new = _decision(5e-10, 5e-10, 5e-10)
    new["threshold"] = 1e-10
    assert compare.quantity_change(old, new)[0]  # the same error moving past its threshold is a change


def test_a_deterministic_move_must_be_a_visible_share_of_the_rule():
    old, new = _decision(1.5e8, 1.5e8, 1.5e8), _decision(1.6e8, 1.6e8, 1.6e8)
    old["threshold"] = new["threshold"] = 1.5e9  # bytes against an "at most 1.5 GB" rule: a real change
    assert compare.quantity_change(old, new)[0]
    small = _decision(1.5e8 + 1e5, 1.5e8 + 1e5, 1.5e8 + 1e5)
    small["threshold"] = 1.5e9
    assert not compare.quantity_change(old, small)[0]  # 1e5 bytes: under a thousandth of the rule's 1.5e9
