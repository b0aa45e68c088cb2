"""The process is the unit of a timed sample: rounds run in fresh worker processes, and the interval is
computed across them. A fake machine with per-process offsets checks the method's coverage."""
from __future__ import annotations

import math
import os
import random

import pytest
import torch

from reprobench.measure import stats, timing, workers


# --- real workers -------------------------------------------------------------------------------------

def test_each_round_runs_in_its_own_fresh_process_with_rebuilt_tensors():
    captured = torch.zeros(4)

    def task():
        captured.add_(1)  # mutates the worker's rebuilt copy, never the parent's tensor
        return os.getpid(), float(captured.sum())

    run_once, how = workers.per_process(task)
    assert how == workers.IN_WORKERS
    results = [run_once() for _ in range(3)]
    pids = {pid for pid, _ in results}
    assert len(pids) == 3 and os.getpid() not in pids
    assert [total for _, total in results] == [4.0, 4.0, 4.0]  # every worker starts from the parent's values
    assert float(captured.sum()) == 0.0


def test_consecutive_rounds_come_from_separately_execd_servers_with_their_own_layout_and_hash_seed():
    # What a fork cannot re-draw (where libtorch's code and the heap start, the string hash seed) differs
    # between exec'd servers: the first look's rounds each come from a different one.
    def layout():
        import ctypes
        return os.getppid(), hash("reprobench"), ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "Py_Version"))

    run_once, _ = workers.per_process(layout)
    rounds = [run_once() for _ in range(workers.POOL_SIZE)]
    assert len({server for server, _, _ in rounds}) == workers.POOL_SIZE
    assert len({seed for _, seed, _ in rounds}) > 1
    assert len({address for _, _, address in rounds}) > 1
    again = run_once()  # the pool's size is reached: the rotation starts over
    assert again[0] == rounds[0][0]


def test_a_failing_round_raises_with_the_worker_traceback():
    def task():
        raise ValueError("boom inside the round")

    run_once, _ = workers.per_process(task)
    with pytest.raises(workers.WorkerError, match="boom inside the round"):
        run_once()
    ok, _ = workers.per_process(lambda: 7)
    assert ok() == 7  # the server survives a failed round


def test_a_callable_that_cannot_be_sent_runs_here_and_says_so():
    import threading

    lock = threading.Lock()  # locks do not pickle
    run_once, how = workers.per_process(lambda: lock.locked())
    assert run_once() is False
    assert how.startswith(workers.IN_PROCESS) and "cannot be sent" in how


def test_decide_speedup_records_that_its_rounds_ran_in_workers():
    a = torch.randn(64, 64)
    decision, comparison = timing.decide_speedup(lambda: a @ a @ a, lambda: a @ a, quantity="s", at_least=0.01,
                                                 budget_s=5.0, min_run_time=0.005)
    assert decision.extra["rounds_in"] == workers.IN_WORKERS
    assert decision.extra["rounds"] >= stats.MIN_ROUNDS
    assert len(comparison.round_speedups) == decision.extra["rounds"]


# --- a fake machine: what one process fixes once, and what varies within it -------------------------------

class FakeMachine:
    """Timing noise in two layers: each process draws a lognormal offset per callable (where its tensors
    landed), larger than the lognormal noise between rounds inside one process."""

    BETWEEN = 0.08  # sigma of log time between processes
    WITHIN = 0.01  # sigma of log time between rounds of one process

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.offsets: dict[str, float] = {}
        self.new_process()

    def new_process(self):
        self.offsets = {name: self.rng.lognormvariate(0.0, self.BETWEEN) for name in ("baseline", "candidate")}

    def block_times(self, fn, **_):
        return [fn.true_seconds * self.offsets[fn.role] * self.rng.lognormvariate(0.0, self.WITHIN)]


def _callable(role: str, seconds: float):
    def fn():
        return None
    fn.role, fn.true_seconds = role, seconds
    return fn


TRUE_RATIO = 1.7


def _decide_on(machine: FakeMachine, monkeypatch, *, fresh_process_per_round: bool):
    monkeypatch.setattr(timing, "block_times", machine.block_times)

    def per_process(task):
        if not fresh_process_per_round:
            return task, workers.IN_PROCESS  # the old method: every round shares the one process's offsets

        def run_once():
            machine.new_process()
            return task()
        return run_once, workers.IN_WORKERS

    monkeypatch.setattr(workers, "per_process", per_process)
    decision, _ = timing.decide_speedup(_callable("baseline", TRUE_RATIO), _callable("candidate", 1.0),
                                        quantity="s", at_least=1.0, budget_s=1e9)
    return decision


def _coverage(monkeypatch, fresh: bool, seeds: int = 200) -> float:
    covered = 0
    for seed in range(seeds):
        estimate = _decide_on(FakeMachine(seed), monkeypatch, fresh_process_per_round=fresh).estimate
        covered += estimate.low <= TRUE_RATIO <= estimate.high
    return covered / seeds


def test_pooled_rounds_of_one_process_do_not_cover_the_true_ratio(monkeypatch):
    # The old method: an interval over one process's rounds describes that process.
    assert _coverage(monkeypatch, fresh=False) < 0.5


def test_rounds_in_fresh_processes_cover_the_true_ratio_at_least_93_percent(monkeypatch):
    assert _coverage(monkeypatch, fresh=True) >= 0.93


# --- the decision core's single-line slips ------------------------------------------------------------------

def test_every_look_is_taken_at_the_bonferroni_level(monkeypatch):
    levels = []
    real = stats.ratio_from_rounds

    def spy(base, cand, confidence=stats.CONFIDENCE):
        levels.append(confidence)
        return real(base, cand, confidence)

    monkeypatch.setattr(stats, "ratio_from_rounds", spy)
    rng = random.Random(1)
    stats.sample_ratio_until_decided(lambda: (rng.uniform(0.9, 1.1), 1.0), quantity="q", at_least=1.0,
                                     budget_s=1e9)
    assert len(levels) == stats.MAX_LOOKS  # a ratio at its threshold stays undecided: every look is taken
    assert levels == [pytest.approx(1 - (1 - stats.CONFIDENCE) / stats.MAX_LOOKS)] * stats.MAX_LOOKS


def test_seed_sampling_looks_at_the_bonferroni_level_and_adds_runs_while_undecided():
    rng = random.Random(0)
    decision, values = stats.sample_mean_until_decided(lambda i: rng.gauss(0.0, 1.0), quantity="gap",
                                                       at_most=0.0, min_samples=3, budget_s=1e9)
    assert decision.extra["runs"] == len(values)
    if decision.outcome == "inconclusive":
        assert len(values) == 3 * 2 ** (stats.MAX_LOOKS - 1)
    expected = stats.mean_interval(values, 1 - (1 - stats.CONFIDENCE) / stats.MAX_LOOKS)
    assert (decision.estimate.low, decision.estimate.high) == pytest.approx((expected.low, expected.high))


def test_seed_sampling_stops_at_the_first_decisive_look():
    decision, values = stats.sample_mean_until_decided(lambda i: 5.0 + 0.01 * i, quantity="gap", at_least=0.0,
                                                       min_samples=3, budget_s=1e9)
    assert decision.outcome == "holds" and len(values) == 3


def _true_coverage(n: int, k: int) -> float:
    """Coverage of [x_(k), x_(n+1-k)] for the median, summed from the binomial pmf (not the cdf)."""
    from scipy.stats import binom

    return sum(float(binom.pmf(i, n, 0.5)) for i in range(k, n - k + 1))


@pytest.mark.parametrize("n", [6, 7, 10, 14, 20, 28, 41])
def test_median_interval_is_the_narrowest_order_statistic_interval_with_the_stated_coverage(n):
    xs = list(range(n))
    estimate = stats.median_interval(xs, 0.95)
    k = int(estimate.low) + 1  # xs[k-1] == k-1
    assert estimate.high == n - k
    assert estimate.confidence == pytest.approx(_true_coverage(n, k))
    if _true_coverage(n, 1) >= 0.95:
        assert _true_coverage(n, k) >= 0.95
        assert k + 1 > n // 2 or _true_coverage(n, k + 1) < 0.95  # no narrower interval keeps 95%


def test_all_of_claims_fail_on_any_decisive_failure():
    assert stats.combine_outcomes(["holds", "fails"], "all-of") == "fails"
    assert stats.combine_outcomes(["holds", "fails"], "separate") == "partial"
    assert stats.combine_outcomes(["holds", "inconclusive"], "all-of") == "inconclusive"
    assert stats.combine_outcomes(["inconclusive", "fails"], "all-of") == "fails"
    assert stats.combine_outcomes(["holds", "holds"], "all-of") == "holds"
    with pytest.raises(ValueError, match="logic"):
        stats.combine_outcomes(["holds"], "any")


def test_a_worker_runs_under_the_callers_grad_mode_and_default_dtype():
    def modes():
        return torch.is_grad_enabled(), torch.is_inference_mode_enabled(), torch.get_default_dtype()

    with torch.no_grad():
        run_once, _ = workers.per_process(modes)
    assert run_once() == (False, False, torch.float32)
    with torch.inference_mode():
        run_once, _ = workers.per_process(modes)
    assert run_once()[1] is True
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        run_once, _ = workers.per_process(modes)
    finally:
        torch.set_default_dtype(previous)
    assert run_once() == (True, False, torch.float64)


def test_a_worker_runs_under_the_callers_deterministic_mode_and_matmul_precision():
    def modes():
        return torch.are_deterministic_algorithms_enabled(), torch.get_float32_matmul_precision()

    deterministic, precision = torch.are_deterministic_algorithms_enabled(), torch.get_float32_matmul_precision()
    torch.use_deterministic_algorithms(True)
    torch.set_float32_matmul_precision("medium")
    try:
        run_once, _ = workers.per_process(modes)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_float32_matmul_precision(precision)
    assert run_once() == (True, "medium")
    run_once, _ = workers.per_process(modes)  # and a caller in the defaults gets the defaults
    assert run_once() == (False, "highest")


def test_a_round_does_not_reset_modes_that_already_match(monkeypatch):
    # The first use_deterministic_algorithms call in a process costs about a second: a worker whose modes
    # already match the caller's must not pay it on every round.
    def refuse(*args, **kwargs):
        raise AssertionError("a mode that already matched was set again")

    state = workers.caller_state()
    for setter in ("use_deterministic_algorithms", "set_default_dtype", "set_float32_matmul_precision"):
        monkeypatch.setattr(torch, setter, refuse)
    assert workers._InCallerState(lambda: "ran", state)() == "ran"


def test_an_in_place_update_of_a_leaf_times_under_no_grad_as_it_would_here():
    weight = torch.nn.Parameter(torch.ones(3))

    def step():
        weight.fill_(2.0)  # raises with gradients on: what a timed call under no_grad must not see
        return float(weight.sum())

    with torch.no_grad():
        run_once, _ = workers.per_process(step)
    assert run_once() == 6.0
