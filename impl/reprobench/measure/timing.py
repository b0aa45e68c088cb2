"""Wall-clock timing on torch.utils.benchmark, and A/B ratios measured interleaved.

torch.utils.benchmark.Timer already does warm-up, fixed thread counts and CUDA synchronisation;
we add the A/B comparison: the two callables are timed in alternating rounds in one run, so a
noisy neighbour or a frequency change hits both, and the ratio of their medians is what we report.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils import benchmark

DEFAULT_THREADS = 1  # benchmarks pin threads so figures compare across runs and machines


@dataclass(frozen=True)
class Timing:
    median_s: float  # median seconds per call
    iqr_s: float  # interquartile range of the per-block means
    samples: int  # number of measurement blocks
    threads: int
    round_medians: tuple[float, ...] = ()  # interleaved timing: the median seconds of each round, in order

    @property
    def median_ms(self) -> float:
        return self.median_s * 1e3


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def time_callable(fn: Callable[[], Any], *, threads: int = DEFAULT_THREADS, min_run_time: float = 0.2,
                  label: str = "", device: torch.device | str | None = None) -> Timing:
    """Median and IQR of ``fn()`` with torch.utils.benchmark (warm-up included, CUDA-synchronised)."""
    device = torch.device(device) if device is not None else None
    fn()  # warm-up outside the timer: first-call allocations, lazy init, compile
    _sync(device)
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads, label=label)
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return Timing(median_s=measurement.median, iqr_s=measurement.iqr, samples=len(measurement.times),
                  threads=threads)


@dataclass(frozen=True)
class Comparison:
    baseline: Timing
    candidate: Timing

    @property
    def speedup(self) -> float:
        """baseline time / candidate time (> 1: the candidate is faster)."""
        return self.baseline.median_s / self.candidate.median_s

    @property
    def round_speedups(self) -> tuple[float, ...]:
        """The ratio within each interleaved round (A and B timed back to back): their spread shows how much
        the machine moved during the run, which one pooled ratio hides."""
        return tuple(b / c for b, c in zip(self.baseline.round_medians, self.candidate.round_medians))


def time_interleaved(callables: dict[str, Callable[[], Any]], *, rounds: int = 5, threads: int = DEFAULT_THREADS,
                     min_run_time: float = 0.1, device: torch.device | str | None = None) -> dict[str, Timing]:
    """Time several callables in alternating rounds (A B C A B C ...), so drifts hit all alike."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if not callables:
        raise ValueError("callables is empty")
    device = torch.device(device) if device is not None else None
    times: dict[str, list[float]] = {key: [] for key in callables}
    per_round: dict[str, list[float]] = {key: [] for key in callables}
    for fn in callables.values():  # warm every callable before the first measured round
        fn()
    _sync(device)
    for _ in range(rounds):
        for key, fn in callables.items():
            timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
            block_times = timer.blocked_autorange(min_run_time=min_run_time).times
            times[key].extend(block_times)
            per_round[key].append(statistics.median(block_times))

    def summarise(key: str) -> Timing:
        values = times[key]
        q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        return Timing(median_s=statistics.median(values), iqr_s=q[2] - q[0], samples=len(values), threads=threads,
                      round_medians=tuple(per_round[key]))

    return {key: summarise(key) for key in times}


def compare_interleaved(baseline: Callable[[], Any], candidate: Callable[[], Any], *, rounds: int = 5,
                        threads: int = DEFAULT_THREADS, min_run_time: float = 0.1,
                        device: torch.device | str | None = None) -> Comparison:
    """Time two callables in alternating rounds (A B A B ...) and compare their medians."""
    timings = time_interleaved({"baseline": baseline, "candidate": candidate}, rounds=rounds, threads=threads,
                               min_run_time=min_run_time, device=device)
    return Comparison(baseline=timings["baseline"], candidate=timings["candidate"])


def decide_speedup(baseline: Callable[[], Any], candidate: Callable[[], Any], *, quantity: str,
                   at_least: float | None = None, at_most: float | None = None,
                   between: tuple[float, float] | None = None, threads: int = DEFAULT_THREADS,
                   min_run_time: float = 0.05, budget_s: float = 30.0, device: torch.device | str | None = None,
                   confidence: float | None = None, before_round: Callable[[], Any] | None = None):
    """Decide a speedup (baseline time / candidate time) under uncertainty: paired rounds, each one
    blocked_autorange of the baseline then of the candidate, sampled until the interval clears the rule
    or the budget is spent (stats.sample_ratio_until_decided). Returns (Decision, Comparison); the
    decision notes any timing whose IQR exceeds 10% of its median.

    `before_round()`, when given, runs before every round (untimed): use it to re-create the inputs the two
    callables read, so that rounds sample what one run would otherwise fix once — where the allocator places
    the inputs can move a kernel's time by 15% (EFF-01), and an interval over rounds that share one placement
    describes that placement, not the claim."""
    from reprobench.measure import stats

    device = torch.device(device) if device is not None else None
    blocks: dict[str, list[float]] = {"baseline": [], "candidate": []}
    for fn in (baseline, candidate):  # warm both before the first measured round
        fn()
    _sync(device)

    def one(fn: Callable[[], Any], key: str) -> float:
        times = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads).blocked_autorange(
            min_run_time=min_run_time).times
        blocks[key].extend(times)
        return statistics.median(times)

    def measure_round() -> tuple[float, float]:
        if before_round is not None:
            before_round()
        return one(baseline, "baseline"), one(candidate, "candidate")

    decision, rounds = stats.sample_ratio_until_decided(
        measure_round, quantity=quantity, at_least=at_least, at_most=at_most, between=between,
        confidence=confidence if confidence is not None else stats.CONFIDENCE, budget_s=budget_s)

    def summarise(key: str, index: int) -> Timing:
        values = blocks[key]
        q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        return Timing(median_s=statistics.median(values), iqr_s=q[2] - q[0], samples=len(values), threads=threads,
                      round_medians=tuple(r[index] for r in rounds))

    comparison = Comparison(baseline=summarise("baseline", 0), candidate=summarise("candidate", 1))
    decision = stats.flag_noisy(decision, {"baseline": comparison.baseline, "candidate": comparison.candidate})
    return decision, comparison
