"""Tests of the interleaved A/B timing: what is paired with what, with a fake clock (no real timings are
asserted; those belong to benchmarks and the report)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from reprobench.measure import timing, workers
from reprobench.measure.timing import compare_interleaved, time_interleaved


@pytest.fixture(autouse=True)
def _rounds_in_this_process():
    """The fake Timer below is patched into this process; a worker process would time with the real one."""
    with workers.in_process_rounds():
        yield


class _FakeTimer:
    """Stands in for torch.utils.benchmark.Timer: each measurement reports the callable's next scripted cost."""

    def __init__(self, stmt, globals, num_threads, **kwargs):
        self.fn = globals["fn"]

    def blocked_autorange(self, min_run_time):
        cost = self.fn.costs.pop(0)
        return SimpleNamespace(times=[cost, cost])


def _scripted(costs):
    def fn():
        return None
    fn.costs = list(costs)
    return fn


def test_rounds_are_recorded_in_order_and_paired(monkeypatch):
    monkeypatch.setattr(timing.benchmark, "Timer", _FakeTimer)
    # The machine slows down 3x during the run; within each round the baseline stays 2x the candidate.
    base, cand = _scripted([2.0, 4.0, 6.0]), _scripted([1.0, 2.0, 3.0])
    cmp = compare_interleaved(base, cand, rounds=3)
    assert cmp.baseline.round_medians == (2.0, 4.0, 6.0)
    assert cmp.candidate.round_medians == (1.0, 2.0, 3.0)
    assert cmp.round_speedups == (2.0, 2.0, 2.0)
    assert cmp.speedup == 2.0 and cmp.baseline.samples == 6


def test_a_drift_between_rounds_shows_in_the_round_ratios(monkeypatch):
    monkeypatch.setattr(timing.benchmark, "Timer", _FakeTimer)
    base, cand = _scripted([2.0, 2.0, 8.0]), _scripted([1.0, 1.0, 1.0])  # a neighbour hits the last baseline
    cmp = compare_interleaved(base, cand, rounds=3)
    assert cmp.round_speedups == (2.0, 2.0, 8.0)
    assert cmp.speedup == 2.0  # the pooled median is not moved by one bad round


def test_rejects_empty_or_zero_rounds():
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        time_interleaved({"a": lambda: None}, rounds=0)
    with pytest.raises(ValueError, match="callables is empty"):
        time_interleaved({})


def test_decide_speedup_runs_before_round_once_per_round_untimed(monkeypatch):
    from reprobench.measure.timing import decide_speedup

    monkeypatch.setattr(timing.benchmark, "Timer", _FakeTimer)
    calls = []
    base, cand = _scripted([2.0] * 40), _scripted([1.0] * 40)  # warm-up calls do not consume costs
    decision, _ = decide_speedup(base, cand, quantity="s", at_least=1.5, budget_s=60,
                                 before_round=lambda: calls.append(len(base.costs)))
    assert decision.outcome == "holds" and decision.extra["rounds"] == 7
    assert calls == [40 - i for i in range(7)]  # once before each paired round (the baseline has run i rounds)
