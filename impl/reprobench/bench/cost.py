"""What a forward call would cost, found before it runs: the one cost model of `reprobench bench`,
`reprobench profile` and the declarative claim kinds.

- memory: the tensor peak of one forward plus its inputs' bytes, computed under FakeTensorMode (nothing
  is allocated). A call fits when that peak is at most MEMORY_FRACTION of the memory the device has
  available (measure.memory.available_bytes) when it starts; `bench` skips what does not fit, and the
  declarative kinds measure it under FakeTensorMode instead. Where fake tensors cannot run it
  (data-dependent ops such as .item()) or take over FAKE_SECONDS (their per-op cost makes loops over
  tokens slow), the real peak at the first probe size (the smaller of the size and the spec's smallest
  bench size, which the spec declares affordable) is scaled by (size / probe) ** memory_exponent;
- time: one forward call is timed at the first probe size, then at doubling sizes below the size until
  one takes PROBE_SECONDS, and the last is scaled by (size / probe) ** time_exponent; `bench` skips a
  call estimated over MAX_CALL_SECONDS (a case makes five to nine such calls).
Where a spec declares no exponent, UNDECLARED_EXPONENT is used. The headroom the memory fraction leaves
covers what the estimate leaves out: kernel scratch buffers, the reference's output kept while the
optimized runs for the pair check, and the interpreter itself.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from reprobench.bench.cases import BENCH_SEED, bench_case, bench_dtype
from reprobench.measure.memory import peak_tensor_bytes
from reprobench.measure.timing import DEFAULT_THREADS, synchronize
from reprobench.registry import ComponentSpec, draw_inputs, get, make_generator

log = logging.getLogger(__name__)
MEMORY_FRACTION = 0.5  # share of the available memory one implementation's estimated peak may take
MAX_CALL_SECONDS = 3.0  # longest estimated forward call that `reprobench bench` still runs
FAKE_SECONDS = 2.0  # longest FakeTensorMode estimate; past it the peak is extrapolated from a real probe
PROBE_SECONDS = 0.1  # the time estimate's probes grow until one call takes this long
UNDECLARED_EXPONENT = 2.0  # scaling assumed where a spec declares no exponent: attention's n², the usual worst


@dataclasses.dataclass(frozen=True)
class CostEstimate:
    """What one forward of a case is expected to cost, before it runs (not a statistics Estimate)."""

    peak_bytes: int  # tensor peak of one forward plus its inputs
    peak_method: str  # "FakeTensorMode" or how it was extrapolated
    call_seconds: float | None  # one forward call, 1 thread; None: not timed, the peak already rules it out
    probe_size: int | None  # the size whose timed call was extrapolated


def fits_in_memory(peak_bytes: float, available: int, memory_fraction: float = MEMORY_FRACTION) -> bool:
    """The memory rule: an estimated peak may take `memory_fraction` of the `available` bytes."""
    return peak_bytes <= memory_fraction * available


def memory_reason(peak_bytes: int, *, available_bytes: int, memory_fraction: float = MEMORY_FRACTION) -> str | None:
    """Why an estimated peak must not run (None: it may), by the memory rule."""
    if not fits_in_memory(peak_bytes, available_bytes, memory_fraction):
        return (f"est. peak {peak_bytes / 2**30:.3g} GiB > {memory_fraction:.0%} of "
                f"{available_bytes / 2**30:.3g} GiB available")
    return None


def skip_reason(estimate: CostEstimate, *, available_bytes: int, memory_fraction: float = MEMORY_FRACTION,
                max_call_seconds: float = MAX_CALL_SECONDS) -> str | None:
    """Why an implementation must not run (None: it may), by the module docstring's two rules."""
    if why := memory_reason(estimate.peak_bytes, available_bytes=available_bytes, memory_fraction=memory_fraction):
        return why
    if estimate.call_seconds is not None and estimate.call_seconds > max_call_seconds:
        return f"est. {estimate.call_seconds:.3g} s per call > {max_call_seconds:g} s"
    return None


# ---- the memory estimate ----

def input_bytes(sample) -> int:
    """Bytes of the tensors a SampleInput holds: a real run holds them beside the call's own peak."""
    leaves = tree_flatten((sample.args, sample.kwargs))[0]
    return sum(t.untyped_storage().nbytes() for t in leaves if isinstance(t, torch.Tensor))


class FakeTooSlow(RuntimeError):
    """A FakeTensorMode estimate ran past its time limit."""


class _Deadline(TorchDispatchMode):
    """Stops a call once `seconds` have passed, at its next op. Fake tensors cost far more per op than
    real ones, so a loop over tokens can take longer to estimate than to run."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds, self.end = seconds, time.monotonic() + seconds

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if time.monotonic() > self.end:
            raise FakeTooSlow(f"took over {self.seconds:g} s")
        return func(*args, **(kwargs or {}))


def fake_forward(fn: Callable[..., Any], draw: Callable[[], Any],
                 measure: Callable[[Callable[[], Any]], float] | None = None, *, seconds: float = math.inf) -> float:
    """One forward of `fn` under no_grad on the SampleInput `draw()` returns, both under FakeTensorMode:
    `measure(call)`, by default the call's tensor peak plus its inputs' bytes (what a real run holds).

    `fn` is built for real, outside the fake mode: parameters do not grow with the size, and FakeTensorMode
    cannot run a module's .to() (it must swap fake parameters in). Only the inputs are fake, and the mode
    turns the real parameters into fake ones as ops read them; build a fresh `fn` for this and throw it
    away, so nothing fake is left cached inside a module. Raises FakeTooSlow past `seconds`.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        sample = draw()

        def call():
            with torch.no_grad():
                return fn(*sample.args, **sample.kwargs)
        with _Deadline(seconds) if seconds < math.inf else contextlib.nullcontext():
            if measure is None:
                return input_bytes(sample) + peak_tensor_bytes(call).peak_bytes
            return measure(call)


def fake_case_peak_bytes(name: str, size: int, implementation: str, device: str = "cpu",
                         dtype: torch.dtype | None = None, *, seconds: float = math.inf) -> int:
    """Tensor peak of one bench forward at `size` plus its inputs' bytes, under FakeTensorMode (fake_forward,
    on a fresh build). Raises FakeTooSlow past `seconds`."""
    spec = get(name)
    dtype = dtype or bench_dtype(spec)
    generator = make_generator(BENCH_SEED, "cpu")
    fn = getattr(spec.build(spec.config(bench=True), torch.device(device), dtype, generator), implementation)
    return int(fake_forward(fn, lambda: draw_inputs(spec, size, device, dtype, generator, bench=True)[-1],
                            seconds=seconds))


def _exponent(declared, implementation: str) -> float:
    return float((declared or {}).get(implementation, UNDECLARED_EXPONENT))


def _first_probe_size(spec: ComponentSpec, size: int) -> int:
    return min(size, min(spec.bench_sizes))  # the spec declares its bench sizes affordable


def estimate_peak_bytes(name: str, size: int, implementation: str, device: str = "cpu") -> tuple[int, str]:
    """(bytes, method): the FakeTensorMode peak; where fake tensors cannot run the implementation (data-
    dependent ops such as .item()) or take over FAKE_SECONDS, the real peak at the first probe size scaled
    by the memory exponent."""
    try:
        return fake_case_peak_bytes(name, size, implementation, device, seconds=FAKE_SECONDS), "FakeTensorMode"
    except FakeTooSlow as exc:
        why = f"FakeTensorMode {exc}"
    except Exception as exc:  # noqa: BLE001 - whatever op fake tensors cannot run
        why = f"FakeTensorMode cannot run it ({type(exc).__name__})"
    log.info("%s (%s): %s", name, implementation, why)
    spec = get(name)
    probe, exponent = _first_probe_size(spec, size), _exponent(spec.memory_exponent, implementation)
    case = bench_case(name, probe, implementation, device)
    probe_bytes = input_bytes(case.sample) + peak_tensor_bytes(case.forward()).peak_bytes
    return (int(probe_bytes * (size / probe) ** exponent),
            f"{why}: {spec.size_name}={probe} scaled by exponent {exponent:g}")


# ---- the time estimate ----

def estimate_call_seconds(name: str, size: int, implementation: str, device: str = "cpu") -> tuple[float, int]:
    """(seconds, probe size): one call timed at doubling sizes below `size` until it takes PROBE_SECONDS,
    scaled by (size / probe) ** time_exponent. Timing near the size, not at the smallest one, sees the
    slowdown a working set outgrowing the caches brings, which no exponent declares. Every probe is
    smaller than `size`, so it fits wherever `size` was estimated to fit."""
    spec = get(name)
    probe, threads = _first_probe_size(spec, size), torch.get_num_threads()
    torch.set_num_threads(DEFAULT_THREADS)  # the bench times with this many threads
    try:
        bench_case(name, probe, implementation, device).forward()()  # lazy initialisation is not per-call cost
        while True:
            call = bench_case(name, probe, implementation, device).forward()
            synchronize(device)
            start = time.perf_counter()
            call()
            synchronize(device)
            seconds = time.perf_counter() - start
            if seconds >= PROBE_SECONDS or 2 * probe >= size:
                break
            probe *= 2
    finally:
        torch.set_num_threads(threads)
    return seconds * (size / probe) ** _exponent(spec.time_exponent, implementation), probe


def estimate_case(name: str, size: int, implementation: str, device: str = "cpu", *,
                  budget_bytes: float = math.inf) -> CostEstimate:
    """Both estimates of the module docstring; the time one only when the peak fits in budget_bytes, as
    its probes run for real."""
    peak_bytes, method = estimate_peak_bytes(name, size, implementation, device)
    if peak_bytes > budget_bytes:
        return CostEstimate(peak_bytes, method, None, None)
    return CostEstimate(peak_bytes, method, *estimate_call_seconds(name, size, implementation, device))
