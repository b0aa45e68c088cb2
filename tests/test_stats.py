"""The statistics module: intervals, decisions and sequential sampling, with fake clocks and known truths.

No real timing is asserted here; the decisions are checked against ratios we choose, with noise we
choose, over many seeds, so the rates are properties of the rule, not of this machine.
"""
from __future__ import annotations

import math
import random

import pytest

from reprobench.measure import stats
from reprobench.measure.stats import (Estimate, combine_outcomes, decide, exact, fit_exponent_estimate,
                                      mean_interval, median_interval, ratio_from_rounds, sample_ratio_until_decided)

SEEDS = range(200)
THRESHOLD = 3.0


def _noisy_rounds(true_ratio: float, noise: float, seed: int):
    """A fake machine: the candidate takes 1 ms, the baseline true_ratio ms, each timing off by a lognormal
    factor of `noise` (5% -> each time within about ±5%), independently per round."""
    rng = random.Random(seed)

    def measure_round():
        return (true_ratio * 1e-3 * math.exp(rng.gauss(0.0, noise)), 1e-3 * math.exp(rng.gauss(0.0, noise)))
    return measure_round


class _FakeClock:
    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def _outcomes(true_ratio: float, noise: float = 0.05) -> list[str]:
    outcomes = []
    for seed in SEEDS:
        decision, _ = sample_ratio_until_decided(_noisy_rounds(true_ratio, noise, seed), quantity="speedup",
                                                 at_least=THRESHOLD, clock=_FakeClock(0.001))
        outcomes.append(decision.outcome)
    return outcomes


def test_ten_percent_above_the_threshold_holds():
    outcomes = _outcomes(1.10 * THRESHOLD)
    assert outcomes.count("holds") / len(outcomes) >= 0.95, outcomes.count("holds")
    assert outcomes.count("fails") == 0


def test_exactly_at_the_threshold_is_inconclusive():
    outcomes = _outcomes(THRESHOLD)
    assert outcomes.count("inconclusive") / len(outcomes) >= 0.90, {o: outcomes.count(o) for o in set(outcomes)}


def test_ten_percent_below_the_threshold_fails():
    outcomes = _outcomes(0.90 * THRESHOLD)
    assert outcomes.count("fails") / len(outcomes) >= 0.95, outcomes.count("fails")
    assert outcomes.count("holds") == 0


def test_sampling_starts_at_seven_rounds_and_adds_rounds_only_while_undecided():
    clear, rounds = sample_ratio_until_decided(_noisy_rounds(2 * THRESHOLD, 0.05, 0), quantity="s", at_least=THRESHOLD,
                                               clock=_FakeClock(0.001))
    assert clear.outcome == "holds" and len(rounds) == 7 and clear.extra["rounds"] == 7 and clear.extra["looks"] == 1
    undecided, rounds = sample_ratio_until_decided(_noisy_rounds(THRESHOLD, 0.05, 1), quantity="s", at_least=THRESHOLD,
                                                   clock=_FakeClock(0.001))
    assert undecided.outcome == "inconclusive" and len(rounds) == 28 and undecided.extra["looks"] == 3
    assert "undecided after 28 rounds" in undecided.note


def test_the_time_budget_stops_sampling_and_is_recorded():
    # Each clock reading advances 1 s: the 5 s budget is spent after a few rounds past the minimum.
    decision, rounds = sample_ratio_until_decided(_noisy_rounds(THRESHOLD, 0.05, 3), quantity="s", at_least=THRESHOLD,
                                                  budget_s=5.0, clock=_FakeClock(1.0))
    assert len(rounds) == 7  # never fewer than the minimum, even over budget
    assert decision.extra["budget_s"] == 5.0 and decision.extra["seconds"] > 5.0
    assert decision.outcome == "inconclusive" and "time budget" in decision.note


def test_median_interval_covers_at_the_stated_level():
    estimate = median_interval(range(1, 8))
    assert (estimate.low, estimate.point, estimate.high) == (1, 4, 7)
    assert estimate.confidence == pytest.approx(1 - 2 * 0.5 ** 7)
    wide = median_interval(range(100))
    assert wide.confidence >= 0.95 and 30 < wide.low < 49.5 < wide.high < 70
    few = median_interval([1.0, 2.0, 3.0])  # (min, max) of 3 covers only 75%: say so, do not pretend 95%
    assert few.confidence == pytest.approx(0.75) and (few.low, few.high) == (1.0, 3.0)


def test_ratio_pairs_rounds_and_is_robust_to_one_bad_round():
    estimate = ratio_from_rounds([2, 2, 2, 2, 2, 2, 16], [1] * 7)
    assert estimate.point == 2.0 and estimate.high == 16.0 and estimate.samples == 7
    with pytest.raises(ValueError, match="pair up"):
        ratio_from_rounds([1, 2], [1])


def test_mean_interval_is_students_t():
    estimate = mean_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n)
    assert estimate.point == 2.0 and estimate.high - 2.0 == pytest.approx(half)


def test_fit_recovers_a_known_exponent_with_an_interval_and_r2():
    rng = random.Random(0)
    sizes = [n for n in (256, 512, 1024, 2048) for _ in range(3)]
    values = [1e-9 * n ** 1.5 * math.exp(rng.gauss(0, 0.03)) for n in sizes]
    fit = fit_exponent_estimate(sizes, values)
    assert fit.estimate.low < 1.5 < fit.estimate.high and fit.r_squared > 0.99
    assert decide("exponent", fit.estimate, at_most=1.7, min_r2=0.9).outcome == "holds"
    assert decide("exponent", fit.estimate, at_most=1.0, min_r2=0.9).outcome == "fails"
    exact_fit = fit_exponent_estimate([1, 2, 4], [3, 12, 48], deterministic=True)
    assert exact_fit.estimate.exact and exact_fit.exponent == pytest.approx(2.0)


def test_a_poor_fit_is_inconclusive_whatever_its_interval():
    rng = random.Random(1)
    sizes = [n for n in (256, 512, 1024) for _ in range(4)]
    values = [n * math.exp(rng.gauss(0, 0.8)) for n in sizes]  # r² far under the floor
    fit = fit_exponent_estimate(sizes, values)
    assert fit.r_squared < stats.MIN_R2
    decision = decide("exponent", fit.estimate, at_most=100.0, min_r2=stats.MIN_R2)
    assert decision.outcome == "inconclusive" and "r²" in decision.note


def test_deterministic_quantities_decide_exactly():
    assert decide("flop_ratio", 4.0, between=(3.8, 4.2)).outcome == "holds"
    assert decide("flop_ratio", 4.3, between=(3.8, 4.2)).outcome == "fails"
    assert decide("bytes", exact(10), at_most=10).outcome == "holds"
    assert decide("counterexamples", 1, at_most=0).outcome == "fails"
    assert decide("flag", True, at_least=1).outcome == "holds"


def test_interval_decisions_in_each_direction():
    est = Estimate(point=3.0, low=2.9, high=3.1, confidence=0.95, samples=7, method="test")
    assert decide("x", est, at_least=2.8).outcome == "holds"
    assert decide("x", est, at_least=3.0).outcome == "inconclusive"
    assert decide("x", est, at_least=3.2).outcome == "fails"
    assert decide("x", est, at_most=3.2).outcome == "holds"
    assert decide("x", est, at_most=2.8).outcome == "fails"
    assert decide("x", est, between=(2.95, 4)).outcome == "inconclusive"
    with pytest.raises(ValueError, match="exactly one of"):
        decide("x", est, at_least=1, at_most=2)
    with pytest.raises(TypeError, match="estimate must be"):
        decide("x", "3.0", at_least=1)


def test_combining_parts():
    assert combine_outcomes(["holds", "holds"]) == "holds"
    assert combine_outcomes(["holds", "inconclusive"]) == "inconclusive"  # keeps the claim from holds
    assert combine_outcomes(["fails", "inconclusive"]) == "fails"  # a decisive failure stays a failure
    assert combine_outcomes(["holds", "fails", "inconclusive"]) == "partial"
    assert combine_outcomes(["fails", "fails"]) == "fails"
    assert combine_outcomes([]) == "inconclusive"


def test_decision_json_has_the_schema_outside_checks_read():
    decision = decide("speedup", Estimate(2.0, 1.5, 2.5, 0.95, 7, "m"), at_least=1.0)
    data = decision.to_json()
    for key in ("quantity", "estimate", "low", "high", "confidence", "samples", "threshold", "direction", "outcome"):
        assert key in data
    assert data["outcome"] == "holds" and data["direction"] == "at_least"


def test_estimate_rejects_nonsense():
    with pytest.raises(ValueError, match="low <= point <= high"):
        Estimate(point=1.0, low=2.0, high=3.0, confidence=0.95, samples=3, method="m")
    with pytest.raises(ValueError, match="real number"):
        Estimate(point=float("nan"), low=0.0, high=1.0, confidence=0.95, samples=3, method="m")
