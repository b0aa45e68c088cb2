"""Wall-clock timing on torch.utils.benchmark, and A/B ratios measured interleaved across processes.

torch.utils.benchmark.Timer already does warm-up, fixed thread counts and CUDA synchronisation;
we add the A/B comparison: the callables are timed back to back within a round (A B C), so a noisy
neighbour or a frequency change hits all of them, and every round runs in its own fresh worker
process (reprobench.measure.workers), so what one process fixes once -- where the inputs were placed,
the allocator's state -- is sampled across rounds instead of hidden in all of them.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch.utils import benchmark
from torch.utils.benchmark.utils.common import set_torch_threads

from reprobench.measure import workers

DEFAULT_THREADS = 1  # benchmarks pin threads so figures compare across runs and machines
WARM_IN_WORKER_UNDER_S = 1.0  # a worker warms a callable before timing it when one call is shorter than this


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


# --- groups of callables, sized per call (layers that take seconds) ------------------------------------------

def _measure_seconds(fn: Callable[[], object], number: int, device: torch.device) -> float:
    """Seconds per call of `fn` over `number` back-to-back calls (device-synchronised)."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(number):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / number


def _calls_per_round(fn: Callable[[], object], min_run_time: float, measure) -> int:
    """Time one warm-up call and size a round from it: enough calls to last >= `min_run_time`, one when a single
    call is longer (the warm-up's first-call costs only make the count smaller)."""
    return max(1, math.ceil(min_run_time / max(measure(fn, 1), 1e-9)))


def seconds_per_call(callables: Mapping[str, Callable[[], object]], *, device: torch.device, min_run_time: float = 0.05,
                     threads: int = 1) -> dict[str, float]:
    """One interleaved round, for supporting evidence (sweeps): every callable warmed up and sized first, then
    each timed once over its count of calls. A multi-second layer costs two calls (time_interleaved's
    blocked_autorange adds an estimation call)."""
    def measure(fn, number):
        return _measure_seconds(fn, number, device)

    with set_torch_threads(threads):
        numbers = {name: _calls_per_round(fn, min_run_time, measure) for name, fn in callables.items()}
        return {name: measure(fn, numbers[name]) for name, fn in callables.items()}


def decide_time_ratio(numerators: Mapping[str, Callable[[], object]], denominators: Mapping[str, Callable[[], object]],
                      *, quantity: str, budget_s: float, device: torch.device, min_run_time: float = 0.05,
                      threads: int = 1, at_least: float | None = None, at_most: float | None = None,
                      between: tuple[float, float] | None = None,
                      measure: Callable[[Callable[[], object], int], float] | None = None,
                      clock: Callable[[], float] = time.perf_counter) -> tuple[Decision, dict[str, Timing]]:
    """Decide (time of the fastest numerator) / (time of the fastest denominator) from paired rounds.

    Each round times every callable once, one after the other, so a slow moment of the machine hits the
    whole round and the round's ratio is one sample; every round runs in a fresh worker process
    (reprobench.measure.workers), and rounds are added while undecided
    (_stats.sample_ratio_until_decided: 7, 14, 28 rounds, Bonferroni, `budget_s`). With one callable on
    each side this is the plain speedup decide_speedup makes; the groups express "faster than all of
    these" as one quantity. A round times each callable over a fixed count of calls chosen at warm-up to
    last >= `min_run_time`, so a multi-second layer costs one call per round (blocked_autorange would
    add an estimation call every round). `measure(fn, number)` replaces the wall clock in tests.
    Returns the decision (noisy timings flagged) and each callable's Timing over the rounds.
    """
    from reprobench.measure import stats as _stats

    if not numerators or not denominators:
        raise ValueError("decide_time_ratio: numerators and denominators each need at least one callable")
    overlap = set(numerators) & set(denominators)
    if overlap:
        raise ValueError(f"decide_time_ratio: a callable cannot be on both sides: {sorted(overlap)}")
    if min_run_time <= 0:
        raise ValueError(f"min_run_time must be > 0, got {min_run_time}")
    callables = {**numerators, **denominators}
    in_process = measure is not None  # an injected clock (tests) measures in this process
    if measure is None:
        def measure(fn, number):
            return _measure_seconds(fn, number, device)
    with set_torch_threads(threads):
        warm_up = {name: measure(fn, 1) for name, fn in callables.items()}
    numbers = {name: max(1, math.ceil(min_run_time / max(seconds, 1e-9))) for name, seconds in warm_up.items()}

    def timed_round() -> dict[str, float]:
        # In a fresh worker: warm what is cheap to warm (a multi-second layer's lazy start-up is small beside
        # it, and warming it would double the round), then time every callable once, back to back.
        with set_torch_threads(threads):
            for name, fn in callables.items():
                if warm_up[name] < WARM_IN_WORKER_UNDER_S:
                    fn()
            return {name: measure(fn, numbers[name]) for name, fn in callables.items()}

    if in_process:
        run_once, how = timed_round, ""
    else:
        run_once, how = workers.per_process(timed_round)
    times: dict[str, list[float]] = {name: [] for name in callables}

    def measure_round() -> tuple[float, float]:
        result = run_once()
        for name in callables:
            times[name].append(result[name])
        return (min(result[name] for name in numerators), min(result[name] for name in denominators))

    decision, _ = _stats.sample_ratio_until_decided(measure_round, quantity=quantity, at_least=at_least,
                                                   at_most=at_most, between=between, budget_s=budget_s,
                                                   clock=clock, rounds_in=how)

    def summarise(values: list[float]) -> Timing:
        quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        return Timing(median_s=statistics.median(values), iqr_s=quartiles[2] - quartiles[0], samples=len(values),
                      threads=threads, round_medians=tuple(values))

    timings = {name: summarise(values) for name, values in times.items()}
    return _stats.flag_noisy(decision, timings), timings
