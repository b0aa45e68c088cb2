"""`reprobench calibrate`'s arithmetic: non-overlap, coverage, compare's quiet pairs and verdict flips over
reports of the same code."""
from __future__ import annotations

from reprobench.calibrate import agreement


def _report(point, low, high, verdict="holds", quantity="speedup"):
    return {"claims": [{"id": "X-01", "verdict": verdict, "measured": {}, "decisions": [
        {"quantity": quantity, "estimate": point, "low": low, "high": high, "confidence": 0.95},
        {"quantity": "flops", "estimate": 7.0, "low": 7.0, "high": 7.0, "confidence": 1.0}]}], "environment": {}}


def test_agreement_counts_pairs_coverage_and_flips():
    reports = [_report(1.5, 1.4, 1.6), _report(1.55, 1.45, 1.65), _report(2.5, 2.4, 2.6, verdict="fails")]
    a = agreement(reports)
    assert a.quantities == 1  # the deterministic FLOP count is not a sampled quantity
    assert (a.interval_pairs, a.non_overlapping) == (3, 2)
    assert (a.coverage_checks, a.covered) == (6, 2)  # 1.5 in run 2's interval and 1.55 in run 1's
    assert (a.compare_pairs, a.compare_pairs_quiet) == (3, 1)
    assert a.verdict_flips == [("X-01", "holds", "fails")]
    assert "2/3" in a.summary()


def test_identical_runs_agree_completely():
    a = agreement([_report(1.5, 1.4, 1.6)] * 4)
    assert a.non_overlap_rate == 0.0 and a.coverage_rate == 1.0 and a.compare_pairs_quiet == a.compare_pairs == 6
    assert a.verdict_flips == []


import pytest  # noqa: E402


@pytest.mark.parametrize("argv, message", [
    (["--claim", "EFF-05", "--invocations", "1"], "--invocations must be >= 2"),
    (["--component", "attention.dense", "--repeats", "x"], "--repeats must be an integer"),
    (["--component", "attention.dense", "--budget", "0"], "--budget must be seconds > 0"),
])
def test_calibrate_refuses_counts_that_cannot_be_compared(argv, message, capsys):
    from reprobench.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", *argv])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--component", "attention.nope"], "not a registered component"),
    (["--claim", "NOPE-01"], "--claim: --only: 'NOPE-01' is neither"),
])
def test_calibrate_refuses_unknown_targets_before_running_anything(argv, message, capsys):
    from reprobench.cli import main

    assert main(["calibrate", *argv]) == 2
    assert message in capsys.readouterr().err
