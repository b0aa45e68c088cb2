"""Helpers shared by the EFF experiments: the head dim, FakeTensorMode costs, seeded q/k/v, and the
decisions several of them need (a ratio between the fastest of two groups of callables, the smallest of
several estimates, a rule's slope drawn on a log-log figure)."""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable, Mapping, Sequence

import torch
from torch.utils.benchmark.utils.common import set_torch_threads

from reprobench.measure import Decision, Timing, count_flops, fake_peak_tensor_bytes
from reprobench.measure import stats, workers
from reprobench.measure.timing import synchronize as _sync
from reprobench.measure.stats import min_estimate  # noqa: F401  (the family imports it from here)

HEAD_DIM = 64  # the document's examples: dim 768, 12 heads
WARM_IN_WORKER_UNDER_S = 1.0  # a worker warms a callable before timing it when one call is shorter than this


def _fake(make_call, flops: bool = True):
    """(tensor peak bytes, FLOPs) of an inference call (no_grad) built inside FakeTensorMode."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    def no_grad_call():
        call = make_call()

        def run():
            with torch.no_grad():
                return call()
        return run

    peak = fake_peak_tensor_bytes(no_grad_call).peak_bytes
    if not flops:
        return peak, None
    with FakeTensorMode():
        count = count_flops(no_grad_call())
    return peak, count


def _qkv(n, heads, g, requires_grad=False, device=None):
    """Seeded (1, heads, n, HEAD_DIM) q, k, v: drawn from the CPU generator `g`, then moved to `device`, so
    every device sees the same values."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    return [torch.randn(1, heads, n, HEAD_DIM, generator=g).to(device).requires_grad_(requires_grad) for _ in range(3)]


# --- decisions ---------------------------------------------------------------------------------------

def _measure_seconds(fn: Callable[[], object], number: int, device: torch.device) -> float:
    """Seconds per call of `fn` over `number` back-to-back calls (device-synchronised)."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(number):
        fn()
    _sync(device)
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
    (stats.sample_ratio_until_decided: 7, 14, 28 rounds, Bonferroni, `budget_s`). With one callable on
    each side this is the plain speedup decide_speedup makes; the groups express "faster than all of
    these" as one quantity. A round times each callable over a fixed count of calls chosen at warm-up to
    last >= `min_run_time`, so a multi-second layer costs one call per round (blocked_autorange would
    add an estimation call every round). `measure(fn, number)` replaces the wall clock in tests.
    Returns the decision (noisy timings flagged) and each callable's Timing over the rounds.
    """
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

    decision, _ = stats.sample_ratio_until_decided(measure_round, quantity=quantity, at_least=at_least,
                                                   at_most=at_most, between=between, budget_s=budget_s,
                                                   clock=clock, rounds_in=how)

    def summarise(values: list[float]) -> Timing:
        quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        return Timing(median_s=statistics.median(values), iqr_s=quartiles[2] - quartiles[0], samples=len(values),
                      threads=threads, round_medians=tuple(values))

    timings = {name: summarise(values) for name, values in times.items()}
    return stats.flag_noisy(decision, timings), timings


def draw_rule_slope(ax, sizes: Sequence[float], first_value: float, slope: float, label: str) -> None:
    """Draw the rule's exponent as a dotted line through a series' first point on log-log axes, so a series
    steeper than the line breaks the rule."""
    ax.loglog([sizes[0], sizes[-1]], [first_value, first_value * (sizes[-1] / sizes[0]) ** slope], "k:", lw=1,
              label=label)
