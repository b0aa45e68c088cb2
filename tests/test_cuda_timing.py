"""The CUDA timing loop (reprobench.measure.cuda_timing) on a fake event clock: a simulated device
timeline where a kernel advances time, events read it, a flush costs time, and an event's elapsed time
is only readable after a synchronize (as with CUDA events)."""
from __future__ import annotations

import math

import pytest

from reprobench.measure import cuda_timing
from reprobench.measure.cuda_timing import (ESTIMATE_CALLS, GRAPH_REPLAYS, L2_FLUSH_BYTES, MAX_CALLS, MIN_CALLS,
                                            CudaClock, cuda_block_times, time_quantiles)


class FakeClock:
    def __init__(self, flush_ms: float = 0.0):
        self.now_ms = 0.0
        self.flush_ms = flush_ms
        self.log: list[tuple] = []
        self.buffers: list[int] = []
        self.synced_at = -1  # index in log of the last synchronize

    def event(self):
        return FakeEvent(self)

    def synchronize(self):
        self.log.append(("sync",))
        self.synced_at = len(self.log) - 1

    def flush_buffer(self, nbytes):
        self.buffers.append(nbytes)
        return FakeBuffer(self)

    def capture(self, fn, calls):
        self.log.append(("capture", calls))

        def replay():
            self.log.append(("replay", calls))
            for _ in range(calls):
                fn.run_on_device(graphed=True)
        return replay


class FakeBuffer:
    def __init__(self, clock):
        self.clock = clock

    def zero_(self):
        self.clock.log.append(("flush",))
        self.clock.now_ms += self.clock.flush_ms


class FakeEvent:
    def __init__(self, clock):
        self.clock, self.time_ms, self.logged_at = clock, None, None

    def record(self):
        self.time_ms = self.clock.now_ms
        self.clock.log.append(("record",))
        self.logged_at = len(self.clock.log) - 1

    def elapsed_time(self, end):
        if self.time_ms is None or end.time_ms is None:
            raise RuntimeError("elapsed_time of an event that was never recorded")
        if self.clock.synced_at < end.logged_at:
            raise RuntimeError("elapsed_time before the end event completed: synchronize first")
        return end.time_ms - self.time_ms


class FakeKernel:
    """A call that costs `costs_ms[i]` of device time on its i-th run (the last repeats), plus a launch
    overhead when launched eagerly rather than replayed from a graph."""

    def __init__(self, clock, costs_ms, launch_ms: float = 0.0):
        self.clock, self.costs_ms, self.launch_ms = clock, list(costs_ms), launch_ms
        self.calls = 0

    def cost(self, i):
        return self.costs_ms[min(i, len(self.costs_ms) - 1)]

    def run_on_device(self, graphed=False):
        self.clock.log.append(("call", self.calls))
        self.clock.now_ms += self.cost(self.calls) + (0.0 if graphed else self.launch_ms)
        self.calls += 1

    def __call__(self):
        self.run_on_device()


def timed(kernel_ms, *, min_run_time=0.1, flush_ms=0.0, launch_ms=0.0, **options):
    clock = FakeClock(flush_ms)
    kernel = FakeKernel(clock, kernel_ms if isinstance(kernel_ms, list) else [kernel_ms], launch_ms)
    times = cuda_block_times(kernel, min_run_time=min_run_time, device="cuda", clock=clock, **options)
    return times, clock, kernel


@pytest.mark.parametrize("kernel_ms,warmup_calls", [(1.0, 25), (2.0, 13), (0.3, 84), (40.0, 1)])
def test_warm_up_fills_the_warm_up_time_at_the_estimated_call_time(kernel_ms, warmup_calls):
    times, _, kernel = timed(kernel_ms)
    assert kernel.calls - 1 - ESTIMATE_CALLS - len(times) == warmup_calls == math.ceil(25 / kernel_ms)


def test_the_estimate_ignores_a_slow_first_call_and_an_outlier():
    # First call 500 ms (lazy init), one estimate call 30 ms: the median of the estimate calls is 1 ms.
    times, _, kernel = timed([500.0, 1.0, 30.0, 1.0, 1.0, 1.0, 1.0])
    assert kernel.calls - 1 - ESTIMATE_CALLS - len(times) == 25


def test_each_timed_call_has_its_own_event_pair_with_the_flush_outside():
    times, clock, _ = timed(1.0, flush_ms=50.0)
    timed_section = clock.log[clock.log.index(("sync",), clock.log.index(("sync",)) + 1) + 1:]
    pattern = [entry[0] for entry in timed_section]
    warmup = pattern.index("flush")
    assert set(pattern[:warmup]) == {"call"}
    per_call = [tuple(pattern[i:i + 4]) for i in range(warmup, len(pattern) - 1, 4)]
    assert per_call == [("flush", "record", "call", "record")] * len(times)
    assert pattern[-1] == "sync"
    # The 50 ms flush is queued before the start event: no sample contains it.
    assert times == [pytest.approx(1e-3)] * len(times)


def test_the_flush_buffer_is_256_mib_and_zeroed_before_every_timed_call():
    times, clock, _ = timed(1.0)
    assert clock.buffers == [L2_FLUSH_BYTES] == [256 * 2**20]
    assert clock.log.count(("flush",)) == ESTIMATE_CALLS + len(times)


def test_no_flush_when_asked():
    times, clock, _ = timed(1.0, flush_l2=False)
    assert clock.buffers == [] and ("flush",) not in clock.log and times == [pytest.approx(1e-3)] * len(times)


@pytest.mark.parametrize("kernel_ms,min_run_time,calls", [
    (1.0, 0.1, 100), (1.0, 0.0105, 11), (1000.0, 0.1, MIN_CALLS), (0.0, 0.1, MAX_CALLS), (1e-6, 1.0, MAX_CALLS)])
def test_timed_calls_fill_min_run_time_within_bounds(kernel_ms, min_run_time, calls):
    times, _, _ = timed(kernel_ms, min_run_time=min_run_time, warmup_seconds=0.0)
    assert len(times) == calls


def test_samples_are_per_call_seconds_in_order():
    costs = [1.0] * (1 + ESTIMATE_CALLS + 25) + [1.0, 2.0, 3.0, 1.5, 0.5]
    times, _, _ = timed(costs, min_run_time=0.005)
    assert times == pytest.approx([1e-3, 2e-3, 3e-3, 1.5e-3] + [0.5e-3] * (len(times) - 4))


def test_synchronize_after_the_first_call_the_estimate_and_the_timed_calls():
    _, clock, _ = timed(1.0)
    assert clock.log.count(("sync",)) == 3 and clock.log[1] == ("sync",) and clock.log[-1] == ("sync",)


def test_cuda_graph_path_removes_launch_overhead_and_divides_each_replay_by_its_calls():
    times, clock, _ = timed(0.01, launch_ms=0.02, use_cuda_graph=True, min_run_time=0.01)
    captures = [entry for entry in clock.log if entry[0] == "capture"]
    calls_per_graph = math.ceil(0.01 / GRAPH_REPLAYS / 1e-5)
    assert captures == [("capture", 1), ("capture", calls_per_graph)]
    assert len(times) == GRAPH_REPLAYS and times == [pytest.approx(1e-5)] * GRAPH_REPLAYS
    assert clock.log.count(("replay", calls_per_graph)) == GRAPH_REPLAYS
    eager, _, _ = timed(0.01, launch_ms=0.02, min_run_time=0.01)
    assert eager == [pytest.approx(3e-5)] * len(eager)  # what the graph path takes out


def test_cuda_graph_path_flushes_before_each_replay():
    _, clock, _ = timed(0.01, use_cuda_graph=True, min_run_time=0.01)
    replays = [i for i, entry in enumerate(clock.log) if entry[0] == "replay"]
    assert all(clock.log[i - 2] == ("flush",) and clock.log[i - 1] == ("record",) for i in replays)


def test_quantiles():
    assert time_quantiles([5.0, 1.0, 4.0, 2.0, 3.0]) == pytest.approx([1.8, 3.0, 4.2])
    assert time_quantiles([2.0], (0.0, 1.0)) == [2.0, 2.0]
    with pytest.raises(ValueError, match="times is empty"):
        time_quantiles([])
    with pytest.raises(ValueError, match=r"quantiles must lie in \[0, 1\]"):
        time_quantiles([1.0], (50,))


def test_bad_arguments():
    clock = FakeClock()
    kernel = FakeKernel(clock, [1.0])
    with pytest.raises(ValueError, match="min_run_time must be a number of seconds > 0"):
        cuda_block_times(kernel, min_run_time=0, device="cuda", clock=clock)
    with pytest.raises(TypeError, match="fn must be a callable"):
        cuda_block_times(None, min_run_time=0.1, device="cuda", clock=clock)
    with pytest.raises(ValueError, match="needs a 'cuda' device"):
        CudaClock("cpu")


def test_timing_module_routes_cuda_devices_here(monkeypatch):
    """measure.timing.block_times hands a CUDA device to cuda_block_times (and nothing else does)."""
    from reprobench.measure import timing

    seen = {}

    def fake_block_times(fn, **kwargs):
        seen.update(kwargs)
        return [1.0]

    monkeypatch.setattr(cuda_timing, "cuda_block_times", fake_block_times)
    assert timing.block_times(lambda: None, threads=1, min_run_time=0.5, device="cuda:0") == [1.0]
    assert seen["min_run_time"] == 0.5 and str(seen["device"]) == "cuda:0"
