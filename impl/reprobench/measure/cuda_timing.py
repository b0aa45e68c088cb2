"""CUDA timing, modelled on triton.testing's do_bench and do_bench_cudagraph.

A host clock around a GPU call measures its launch, not its work, and a call timed right after itself
finds its inputs in L2. So, per sample:
1. one call, synchronised (lazy initialisation, autotuning, allocator growth);
2. an estimate of one call from ESTIMATE_CALLS calls, each between its own pair of CUDA events;
3. warm-up by time: as many calls as fill WARMUP_SECONDS at that estimate;
4. the timed calls, as many as fill `min_run_time` (MIN_CALLS..MAX_CALLS): before each, a 256 MiB
   buffer is zeroed (outside the events), which evicts the previous call's data from L2; then a start
   event, the call, an end event; one synchronisation at the end, then every pair's elapsed time.
With `use_cuda_graph`, launch overhead is removed for small kernels: calls are captured in a CUDA
graph (`calls_per_graph` of them, filling min_run_time / GRAPH_REPLAYS), and each sample is one replay
between events divided by its calls. Inside a replay the calls follow each other without a flush, so
only the first finds a cold L2 (the flush runs before each replay).

Everything device-specific goes through a clock (CudaClock: events, synchronize, the flush buffer,
graph capture), so the logic is tested on the CPU against a fake one (tests/test_cuda_timing.py).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

L2_FLUSH_BYTES = 256 * 2**20  # larger than any GPU's L2 today (H100: 50 MiB), as in triton
WARMUP_SECONDS = 0.025  # triton's default warm-up (25 ms)
ESTIMATE_CALLS = 5  # calls timed to estimate one call before warm-up and the timed calls
MIN_CALLS = 5  # timed calls at least, however slow a call
MAX_CALLS = 10_000  # timed calls at most, however fast (each holds two events)
GRAPH_REPLAYS = 10  # samples on the graph path (triton's n_retries)
SMALLEST_ESTIMATE_S = 1e-7  # floor for a call estimated at 0 (a timer's resolution)


class Event(Protocol):
    def record(self) -> None: ...
    def elapsed_time(self, end: "Event") -> float: ...  # milliseconds, as torch.cuda.Event


class Clock(Protocol):
    """What the timing loop needs from a device."""

    def event(self) -> Event: ...
    def synchronize(self) -> None: ...
    def flush_buffer(self, nbytes: int) -> Any: ...  # anything with .zero_()
    def capture(self, fn: Callable[[], Any], calls: int) -> Callable[[], None]: ...  # returns replay()


class CudaClock:
    """The real clock: CUDA events on the current stream, a device-wide synchronize, torch.cuda graphs."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"device={str(self.device)!r}: CUDA timing needs a 'cuda' device")

    def event(self) -> torch.cuda.Event:
        return torch.cuda.Event(enable_timing=True)

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def flush_buffer(self, nbytes: int) -> torch.Tensor:
        return torch.empty(nbytes // 4, dtype=torch.int32, device=self.device)

    def capture(self, fn: Callable[[], Any], calls: int) -> Callable[[], None]:
        # A capture must follow warm-up on a side stream (torch.cuda.graphs' documented recipe).
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(calls):
                fn()
        self.synchronize()
        return graph.replay


def _calls_filling(seconds: float, per_call: float, low: int, high: int) -> int:
    return int(min(high, max(low, math.ceil(seconds / max(per_call, SMALLEST_ESTIMATE_S)))))


def _timed(clock: Clock, call: Callable[[], Any], flush: Any | None) -> tuple[Event, Event]:
    """Queue one timed call: flush (untimed), start event, the call, end event."""
    if flush is not None:
        flush.zero_()
    start, end = clock.event(), clock.event()
    start.record()
    call()
    end.record()
    return start, end


def _seconds(pairs: Sequence[tuple[Event, Event]], per: int = 1) -> list[float]:
    return [start.elapsed_time(end) / 1e3 / per for start, end in pairs]


def estimate_call_seconds(fn: Callable[[], Any], clock: Clock, flush: Any | None) -> float:
    """Median of ESTIMATE_CALLS calls, each between its own events (the flush outside them)."""
    pairs = [_timed(clock, fn, flush) for _ in range(ESTIMATE_CALLS)]
    clock.synchronize()
    return float(np.median(_seconds(pairs)))


def cuda_block_times(fn: Callable[[], Any], *, min_run_time: float, device: torch.device | str,
                     flush_l2: bool = True, use_cuda_graph: bool = False, clock: Clock | None = None,
                     warmup_seconds: float = WARMUP_SECONDS) -> list[float]:
    """Seconds per call of ``fn()`` on a CUDA device, one value per sample (the caller takes medians).

    ``min_run_time``: seconds of timed calls to aim for. ``flush_l2``: zero a 256 MiB buffer before each
    timed call (each graph replay), so no call finds the previous one's data in L2. ``use_cuda_graph``:
    time replays of a captured graph (small kernels, where launch overhead would dominate). ``clock``:
    the device interface, CudaClock(device) unless given (tests pass a fake one)."""
    if not callable(fn):
        raise TypeError(f"fn must be a callable taking no arguments, got {type(fn).__name__}")
    if isinstance(min_run_time, bool) or not isinstance(min_run_time, (int, float)) or not min_run_time > 0:
        raise ValueError(f"min_run_time must be a number of seconds > 0, got {min_run_time!r}")
    if not warmup_seconds >= 0:
        raise ValueError(f"warmup_seconds must be >= 0, got {warmup_seconds!r}")
    clock = clock if clock is not None else CudaClock(device)
    flush = clock.flush_buffer(L2_FLUSH_BYTES) if flush_l2 else None
    fn()
    clock.synchronize()
    per_call = estimate_call_seconds(fn, clock, flush)
    for _ in range(_calls_filling(warmup_seconds, per_call, 0, MAX_CALLS) if warmup_seconds > 0 else 0):
        fn()
    if not use_cuda_graph:
        calls = _calls_filling(min_run_time, per_call, MIN_CALLS, MAX_CALLS)
        pairs = [_timed(clock, fn, flush) for _ in range(calls)]
        clock.synchronize()
        return _seconds(pairs)
    per_replay = clock.capture(fn, 1)
    per_call = estimate_call_seconds(per_replay, clock, flush)  # without launch overhead, now
    calls_per_graph = _calls_filling(min_run_time / GRAPH_REPLAYS, per_call, 1, MAX_CALLS)
    replay = clock.capture(fn, calls_per_graph)
    pairs = [_timed(clock, replay, flush) for _ in range(GRAPH_REPLAYS)]
    clock.synchronize()
    return _seconds(pairs, per=calls_per_graph)


def time_quantiles(times: Sequence[float], quantiles: Sequence[float] = (0.2, 0.5, 0.8)) -> list[float]:
    """Quantiles of per-call times (linear interpolation, as triton's do_bench(quantiles=...))."""
    if not len(times):
        raise ValueError("times is empty: nothing was timed")
    if any(not 0 <= q <= 1 for q in quantiles):
        raise ValueError(f"quantiles must lie in [0, 1], got {list(quantiles)}")
    return [float(v) for v in np.quantile(np.asarray(times, dtype=float), list(quantiles))]
