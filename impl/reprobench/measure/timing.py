"""Wall-clock timing on torch.utils.benchmark, and A/B ratios measured interleaved across processes.

torch.utils.benchmark.Timer already does warm-up, fixed thread counts and CUDA synchronisation;
we add the A/B comparison: the callables are timed back to back within a round (A B C), so a noisy
neighbour or a frequency change hits all of them, and every round runs in its own fresh worker
process (reprobench.measure.workers), so what one process fixes once -- where the inputs were placed,
the allocator's state -- is sampled across rounds instead of hidden in all of them.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils import benchmark

from reprobench.measure import workers

DEFAULT_THREADS = 1  # benchmarks pin threads so figures compare across runs and machines


@dataclass(frozen=True)
class Timing:
    median_s: float  # median seconds per call
    iqr_s: float  # interquartile range of the per-block means
    samples: int  # number of measurement blocks
    threads: int
    round_medians: tuple[float, ...] = ()  # interleaved timing: the median seconds of each round (process), in order

    @property
    def median_ms(self) -> float:
        return self.median_s * 1e3


def synchronize(device: torch.device | str | None) -> None:
    """Wait for queued device work, so a timer that stops measures the work and not its launch."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def block_times(fn: Callable[[], Any], *, threads: int, min_run_time: float,
                device: torch.device | str | None = None) -> list[float]:
    """Seconds per call of `fn`, one value per measurement block: CUDA events on a GPU
    (reprobench.measure.cuda_timing), torch.utils.benchmark's blocked_autorange elsewhere."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        from reprobench.measure import cuda_timing

        return list(cuda_timing.cuda_block_times(fn, min_run_time=min_run_time, device=device))
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    return list(timer.blocked_autorange(min_run_time=min_run_time).times)


def time_callable(fn: Callable[[], Any], *, threads: int = DEFAULT_THREADS, min_run_time: float = 0.2,
                  label: str = "", device: torch.device | str | None = None) -> Timing:
    """Median and IQR of ``fn()`` in this process (warm-up included, CUDA-synchronised): a supporting figure,
    never a judged ratio (those go through time_interleaved or decide_speedup, across processes)."""
    fn()  # warm-up outside the timer: first-call allocations, lazy init, compile
    synchronize(device)
    times = block_times(fn, threads=threads, min_run_time=min_run_time, device=device)
    return _summarise(times, threads)


def _summarise(values: list[float], threads: int, round_medians: tuple[float, ...] = ()) -> Timing:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return Timing(median_s=statistics.median(values), iqr_s=q[2] - q[0], samples=len(values), threads=threads,
                  round_medians=round_medians)


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
        """The ratio within each interleaved round (A and B timed back to back, in one worker process): their
        spread shows how much the machine and the process moved, which one pooled ratio hides."""
        return tuple(b / c for b, c in zip(self.baseline.round_medians, self.candidate.round_medians))


def interleaved_round(callables: dict[str, Callable[[], Any]], *, threads: int, min_run_time: float,
                      device: torch.device | str | None = None,
                      before_round: Callable[[], Any] | None = None) -> Callable[[], dict[str, list[float]]]:
    """One round as a task for a worker: (re-create inputs,) warm every callable, then time each once, back
    to back. Returns name -> block times. The worker's first calls pay its lazy initialisation, so the
    warm-up is part of every round, off the clock."""
    def run_round() -> dict[str, list[float]]:
        if before_round is not None:
            before_round()
        for fn in callables.values():
            fn()
        synchronize(device)
        return {key: block_times(fn, threads=threads, min_run_time=min_run_time, device=device)
                for key, fn in callables.items()}

    return run_round


def time_interleaved(callables: dict[str, Callable[[], Any]], *, rounds: int = 5, threads: int = DEFAULT_THREADS,
                     min_run_time: float = 0.1, device: torch.device | str | None = None) -> dict[str, Timing]:
    """Time several callables in alternating rounds (A B C | A B C | ...), each round in a fresh worker
    process, so drifts hit all alike and each round's medians are one process's sample."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if not callables:
        raise ValueError("callables is empty")
    run_once, _ = workers.per_process(interleaved_round(callables, threads=threads, min_run_time=min_run_time,
                                                        device=device))
    times: dict[str, list[float]] = {key: [] for key in callables}
    per_round: dict[str, list[float]] = {key: [] for key in callables}
    for _ in range(rounds):
        for key, block in run_once().items():
            times[key].extend(block)
            per_round[key].append(statistics.median(block))
    return {key: _summarise(times[key], threads, tuple(per_round[key])) for key in times}


def compare_interleaved(baseline: Callable[[], Any], candidate: Callable[[], Any], *, rounds: int = 5,
                        threads: int = DEFAULT_THREADS, min_run_time: float = 0.1,
                        device: torch.device | str | None = None) -> Comparison:
    """Time two callables in alternating rounds (A B | A B | ...), one worker process per round."""
    timings = time_interleaved({"baseline": baseline, "candidate": candidate}, rounds=rounds, threads=threads,
                               min_run_time=min_run_time, device=device)
    return Comparison(baseline=timings["baseline"], candidate=timings["candidate"])


def decide_speedup(baseline: Callable[[], Any], candidate: Callable[[], Any], *, quantity: str,
                   at_least: float | None = None, at_most: float | None = None,
                   between: tuple[float, float] | None = None, threads: int = DEFAULT_THREADS,
                   min_run_time: float = 0.05, budget_s: float = 30.0, device: torch.device | str | None = None,
                   confidence: float | None = None, before_round: Callable[[], Any] | None = None):
    """Decide a speedup (baseline time / candidate time) under uncertainty. Every round runs in a fresh worker
    process: it rebuilds the inputs and weights the callables capture, warms both, then times the baseline
    and the candidate back to back; each round's ratio is one process's sample. Rounds (processes) are added
    while the interval straddles the rule, within `budget_s` (stats.sample_ratio_until_decided). Returns
    (Decision, Comparison); the decision records how its rounds ran and notes any timing whose IQR exceeds
    10% of its median.

    `before_round()`, when given, runs first in every round (untimed): use it for what rebuilding the
    captured tensors does not re-draw, e.g. inputs that must be regenerated rather than copied."""
    from reprobench.measure import stats

    run_once, how = workers.per_process(interleaved_round(
        {"baseline": baseline, "candidate": candidate}, threads=threads, min_run_time=min_run_time, device=device,
        before_round=before_round))
    blocks: dict[str, list[float]] = {"baseline": [], "candidate": []}

    def measure_round() -> tuple[float, float]:
        result = run_once()
        for key in blocks:
            blocks[key].extend(result[key])
        return statistics.median(result["baseline"]), statistics.median(result["candidate"])

    decision, rounds = stats.sample_ratio_until_decided(
        measure_round, quantity=quantity, at_least=at_least, at_most=at_most, between=between,
        confidence=confidence if confidence is not None else stats.CONFIDENCE, budget_s=budget_s, rounds_in=how)
    comparison = Comparison(baseline=_summarise(blocks["baseline"], threads, tuple(r[0] for r in rounds)),
                            candidate=_summarise(blocks["candidate"], threads, tuple(r[1] for r in rounds)))
    decision = stats.flag_noisy(decision, {"baseline": comparison.baseline, "candidate": comparison.candidate})
    return decision, comparison
