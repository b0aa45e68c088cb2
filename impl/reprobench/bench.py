"""Benchmark cases generated from the registry, shared by `reprobench bench`, the pytest-benchmark
suite, the asv suite and `reprobench profile`.

A case is (component, size, implementation) on the spec's bench config and bench inputs. Before a
speed figure is reported for an optimized implementation, it is checked against its reference on
the same input (STYLE: no speedup from a wrong answer).

`reprobench bench` estimates every implementation before running it, because `--size` can push a
component far past the sizes it was written for, and skips it, printing why, when either rule trips:
- memory: its tensor peak at the size plus its inputs' bytes, computed under FakeTensorMode (nothing
  is allocated), exceeds MEMORY_FRACTION of the memory available (MemAvailable) when it starts.
  Where fake tensors cannot run it (data-dependent ops such as .item()) or take over FAKE_SECONDS
  (their per-op cost makes loops over tokens slow), the real peak at the first probe size (the
  smaller of the size and the spec's smallest bench size, which the spec declares affordable) is
  scaled by (size / probe) ** memory_exponent;
- time: one forward call is estimated to take over MAX_CALL_SECONDS: a call is timed at the first
  probe size, then at doubling sizes below the size until one takes PROBE_SECONDS, and the last is
  scaled by (size / probe) ** time_exponent. A case makes five to nine such calls.
Where a spec declares no exponent, UNDECLARED_EXPONENT is used. The headroom left by the memory
fraction covers what the estimate leaves out: kernel scratch buffers, the reference's output kept
while the optimized runs for the pair check, and the interpreter itself.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from reprobench.measure.timing import DEFAULT_THREADS
from reprobench.registry import ComponentSpec, draw_inputs, get, list_components, make_generator

log = logging.getLogger(__name__)
IMPLEMENTATIONS = ("reference", "optimized")
BENCH_SEED = 0
MEMORY_FRACTION = 0.5  # share of the available memory one implementation's estimated peak may take
MAX_CALL_SECONDS = 3.0  # longest estimated forward call that `reprobench bench` still runs
FAKE_SECONDS = 2.0  # longest FakeTensorMode estimate; past it the peak is extrapolated from a real probe
PROBE_SECONDS = 0.1  # the time estimate's probes grow until one call takes this long
SLOW_CALL_SECONDS = 0.25  # a case with a call estimated slower is timed in one round, not three
UNDECLARED_EXPONENT = 2.0  # scaling assumed where a spec declares no exponent: attention's n², the usual worst


@dataclasses.dataclass
class BenchCase:
    spec: ComponentSpec
    size: int
    implementation: str  # "reference" or "optimized"
    fn: Any  # the callable under test
    sample: Any  # its SampleInput

    def forward(self) -> Callable[[], Any]:
        fn, sample = self.fn, self.sample

        def call():
            with torch.no_grad():
                return fn(*sample.args, **sample.kwargs)
        return call

    def forward_backward(self) -> Callable[[], Any]:
        fn, sample = self.fn, self.sample
        args = tuple(a.detach().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                     for a in sample.args)

        def call():
            out = fn(*args, **sample.kwargs)
            out = out[0] if isinstance(out, (tuple, list)) else out
            out.sum().backward()
        return call

    @property
    def label(self) -> str:
        return f"{self.spec.name}[{self.implementation}, {self.spec.size_name}={self.size}]"


def bench_dtype(spec: ComponentSpec) -> torch.dtype:
    """float32 where the component supports it (what users run), else its first declared dtype."""
    return torch.float32 if torch.float32 in spec.dtypes else spec.dtypes[0]


@functools.lru_cache(maxsize=8)
def _built(name: str, size: int, device: str, dtype: torch.dtype | None):
    spec = get(name)
    dtype = dtype or bench_dtype(spec)
    generator = make_generator(BENCH_SEED, "cpu")
    impls = spec.build(spec.config(bench=True), torch.device(device), dtype, generator)
    sample = draw_inputs(spec, size, device, dtype, generator, bench=True)[-1]
    return spec, impls, sample


def bench_case(name: str, size: int, implementation: str, device: str = "cpu",
               dtype: torch.dtype | None = None) -> BenchCase:
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    spec, impls, sample = _built(name, size, device, dtype)
    return BenchCase(spec, size, implementation, getattr(impls, implementation), sample)


@functools.lru_cache(maxsize=64)
def optimized_matches_reference(name: str, size: int, device: str = "cpu", dtype: torch.dtype | None = None) -> bool:
    """The pair check every benchmark leans on: optimized == reference on the bench input."""
    spec, impls, sample = _built(name, size, device, dtype)
    tol = spec.tolerances[dtype or bench_dtype(spec)]
    with torch.no_grad():
        ref = impls.reference(*sample.args, **sample.kwargs)
        opt = impls.optimized(*sample.args, **sample.kwargs)
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    opts = opt if isinstance(opt, (tuple, list)) else (opt,)
    try:
        for r, o in zip(refs, opts):
            if isinstance(r, torch.Tensor):
                # Bench sizes are larger than test sizes: allow 10x the test tolerance for fp32 accumulation.
                torch.testing.assert_close(o, r, atol=tol.atol * 10, rtol=tol.rtol * 10)
    except AssertionError as exc:
        log.error("%s at %s=%d: optimized differs from reference: %s", name, spec.size_name, size, exc)
        return False
    return True


def case_flops(case: BenchCase) -> int:
    from reprobench.measure import count_flops

    return count_flops(case.forward())


def case_peak_bytes(case: BenchCase) -> int:
    from reprobench.measure import peak_tensor_bytes

    return peak_tensor_bytes(case.forward()).peak_bytes


def case_host_syncs(case: BenchCase) -> int:
    from reprobench.measure import count_host_syncs

    return count_host_syncs(case.forward())


def measure_case(case: BenchCase) -> dict:
    """Deterministic measures of a case: FLOPs, peak tensor bytes and host syncs of one forward.

    The three counters are nested around a single call (each is a dispatch mode that passes ops on),
    which gives the same figures as three separate calls at a third of the cost of a large case.
    """
    from reprobench.measure import count_flops, count_host_syncs, peak_tensor_bytes

    call, measured = case.forward(), {}

    def tracked_call() -> None:
        measured["peak_tensor_bytes"] = peak_tensor_bytes(call).peak_bytes

    def counted_call() -> None:
        measured["host_syncs"] = count_host_syncs(tracked_call)

    measured["flops"] = count_flops(counted_call)
    return {key: measured[key] for key in ("flops", "peak_tensor_bytes", "host_syncs")}


# ---- estimates: what an implementation would cost, found before it runs ----

def available_memory_bytes() -> int:
    """Memory the kernel can hand out without swapping (MemAvailable: free plus reclaimable cache)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file states kB
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")  # not Linux: free pages only


def _tensor_bytes(sample) -> int:
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


def fake_case_peak_bytes(name: str, size: int, implementation: str, device: str = "cpu",
                         dtype: torch.dtype | None = None, *, seconds: float = float("inf")) -> int:
    """Tensor peak of one bench forward at `size` plus its inputs' bytes, under FakeTensorMode.

    The implementation is built for real, outside the fake mode: parameters do not grow with the
    size, and FakeTensorMode cannot run a module's .to() (it must swap fake parameters in). Only
    the inputs are fake, and the mode turns the real parameters into fake ones as ops read them.
    This fresh build is thrown away, so nothing fake is left cached inside a module. Raises FakeTooSlow
    past `seconds`.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    from reprobench.measure import peak_tensor_bytes

    spec = get(name)
    dtype = dtype or bench_dtype(spec)
    generator = make_generator(BENCH_SEED, "cpu")
    fn = getattr(spec.build(spec.config(bench=True), torch.device(device), dtype, generator), implementation)
    with FakeTensorMode(allow_non_fake_inputs=True):
        sample = draw_inputs(spec, size, device, dtype, generator, bench=True)[-1]

        def call():
            with torch.no_grad():
                return fn(*sample.args, **sample.kwargs)
        with _Deadline(seconds):
            return _tensor_bytes(sample) + peak_tensor_bytes(call).peak_bytes


@dataclasses.dataclass(frozen=True)
class CostEstimate:
    """What one forward of a case is expected to cost, before it runs (not a statistics Estimate)."""

    peak_bytes: int  # tensor peak of one forward plus its inputs
    peak_method: str  # "FakeTensorMode" or how it was extrapolated
    call_seconds: float | None  # one forward call, 1 thread; None: not timed, the peak already rules it out
    probe_size: int | None  # the size whose timed call was extrapolated


def _exponent(declared, implementation: str) -> float:
    return float((declared or {}).get(implementation, UNDECLARED_EXPONENT))


def _first_probe_size(spec: ComponentSpec, size: int) -> int:
    return min(size, min(spec.bench_sizes))  # the spec declares its bench sizes affordable


def estimate_peak_bytes(name: str, size: int, implementation: str, device: str = "cpu") -> tuple[int, str]:
    """(bytes, method): the FakeTensorMode peak; where fake tensors cannot run the implementation (data-
    dependent ops such as .item()) or take over FAKE_SECONDS, the real peak at the first probe size scaled
    by the memory exponent."""
    from reprobench.measure import peak_tensor_bytes

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
    probe_bytes = _tensor_bytes(case.sample) + peak_tensor_bytes(case.forward()).peak_bytes
    return (int(probe_bytes * (size / probe) ** exponent),
            f"{why}: {spec.size_name}={probe} scaled by exponent {exponent:g}")


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
            _synchronize(device)
            start = time.perf_counter()
            call()
            _synchronize(device)
            seconds = time.perf_counter() - start
            if seconds >= PROBE_SECONDS or 2 * probe >= size:
                break
            probe *= 2
    finally:
        torch.set_num_threads(threads)
    return seconds * (size / probe) ** _exponent(spec.time_exponent, implementation), probe


def _synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def estimate_case(name: str, size: int, implementation: str, device: str = "cpu", *,
                  budget_bytes: float = float("inf")) -> CostEstimate:
    """Both estimates of the module docstring; the time one only when the peak fits in budget_bytes, as
    its probes run for real."""
    peak_bytes, method = estimate_peak_bytes(name, size, implementation, device)
    if peak_bytes > budget_bytes:
        return CostEstimate(peak_bytes, method, None, None)
    return CostEstimate(peak_bytes, method, *estimate_call_seconds(name, size, implementation, device))


def memory_reason(peak_bytes: int, *, available_bytes: int, memory_fraction: float = MEMORY_FRACTION) -> str | None:
    """Why an estimated peak must not run (None: it may), by the memory rule."""
    if peak_bytes > memory_fraction * available_bytes:
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


def unwritable_reason(path: Path, *, directory: bool = False) -> str | None:
    """Why nothing can be written at `path` (None: it can), found by creating and removing a scratch
    directory where it would go: permission bits say little for root, or on /proc."""
    if directory and path.exists() and not path.is_dir():
        return "exists and is not a directory"
    if not directory and path.is_dir():
        return "is a directory"
    existing = path if directory else path.parent
    while not existing.exists():  # the writers create missing parents
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".reprobench-probe-", dir=existing))
    except OSError as exc:
        return f"cannot write in {existing} ({exc.strerror})"
    return None


# ---- `reprobench bench` ----

COLUMNS = "{:<12}{:>10}{:>10}{:>9}{:>7}{:>9}{:>11}"  # 68 characters: rows fit 80 columns


def _elapsed(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def _print(*lines: str) -> None:
    print(*lines, sep="\n", flush=True)  # flushed: a log or pipe shows each row as it completes


def _run_case(spec: ComponentSpec, size: int, device: str, estimates: dict[str, CostEstimate],
              skipped: dict[str, str | None]) -> dict:
    """Time and measure the implementations not skipped; the pair check only when both run."""
    from reprobench.measure import time_interleaved

    runs = [impl for impl in IMPLEMENTATIONS if skipped[impl] is None]
    cases = {impl: bench_case(spec.name, size, impl, device) for impl in runs}
    ok = optimized_matches_reference(spec.name, size, device) if len(runs) == 2 else None
    # Each round costs a slow call twice (blocked_autorange sizes its block with one call), and one
    # round of calls this long is already a stable median for a quick table.
    rounds = 1 if max((estimates[impl].call_seconds for impl in runs), default=0.0) > SLOW_CALL_SECONDS else 3
    timings = time_interleaved({impl: case.forward() for impl, case in cases.items()}, rounds=rounds,
                               min_run_time=0.05, device=device) if runs else {}
    row: dict[str, Any] = {"component": spec.name, "size": size, "matches_reference": ok}
    for impl in IMPLEMENTATIONS:
        measured = measure_case(cases[impl]) if impl in cases else {}
        row[f"{impl}_skipped"] = skipped[impl]
        row[f"{impl}_ms"] = timings[impl].median_ms if impl in timings else None
        row.update({f"{impl}_{key}": measured.get(key) for key in ("peak_tensor_bytes", "flops", "host_syncs")})
    row["speedup"] = row["reference_ms"] / row["optimized_ms"] if ok else None
    return row


def _row_lines(row: dict) -> list[str]:
    lines = []
    for impl in IMPLEMENTATIONS:
        if row[f"{impl}_skipped"]:
            lines.append(f"  {impl:<10}skipped: {row[f'{impl}_skipped']}")
            continue
        last = impl == IMPLEMENTATIONS[-1]
        ok = row["matches_reference"]
        lines.append(COLUMNS.format(
            f"  {impl}", f"{row[f'{impl}_ms']:.2f}", f"{row[f'{impl}_peak_tensor_bytes'] / 2**20:.1f}",
            f"{row[f'{impl}_flops'] / 1e9:.3f}", str(row[f"{impl}_host_syncs"]),
            (f"{row['speedup']:.2f}x" if ok else "n/a") if last else "",
            ({True: "yes", False: "NO"}.get(ok, "unchecked")) if last else "").rstrip())
    return lines


def _estimate_and_run(spec: ComponentSpec, size: int, device: str, memory_fraction: float,
                      max_call_seconds: float) -> dict:
    estimates, skipped = {}, {}
    try:
        for impl in IMPLEMENTATIONS:
            available = available_memory_bytes()  # read per implementation: the machine is shared
            estimates[impl] = estimate_case(spec.name, size, impl, device, budget_bytes=memory_fraction * available)
            skipped[impl] = skip_reason(estimates[impl], available_bytes=available, memory_fraction=memory_fraction,
                                        max_call_seconds=max_call_seconds)
        row = _run_case(spec, size, device, estimates, skipped)
    except Exception as exc:  # noqa: BLE001 - one failing case (e.g. a size it refuses) must not end the table
        log.debug("%s at %s=%d raised", spec.name, spec.size_name, size, exc_info=True)
        row = {"component": spec.name, "size": size, "error": f"{type(exc).__name__}: {exc}"}
        _print(*textwrap.wrap(row["error"], 78, initial_indent="  error: ", subsequent_indent="    "))
    else:
        _print(*_row_lines(row))
    row["estimates"] = {impl: dataclasses.asdict(e) for impl, e in estimates.items()}
    return row


def run_bench(pattern: str, sizes: list[int] | None = None, device: str = "cpu", out: str | None = None, *,
              memory_fraction: float = MEMORY_FRACTION, max_call_seconds: float = MAX_CALL_SECONDS) -> int:
    """`reprobench bench`: reference vs optimized, timed interleaved, with FLOPs, tensor peaks and host
    syncs; each case is estimated first and skipped by the module docstring's rules, and its rows are
    printed as soon as it completes. Exit 2 for bad arguments (before any case runs), 1 when an optimized
    implementation differs from its reference or a case raised, else 0."""
    def usage_error(message: str) -> int:
        print(f"reprobench bench: {message}", file=sys.stderr)
        return 2

    if any(size < 1 for size in sizes or ()):
        return usage_error(f"--size must be a positive integer, got {min(sizes)}")
    if not 0 < memory_fraction <= 1:
        return usage_error(f"memory_fraction must be in (0, 1], got {memory_fraction}")
    if not max_call_seconds > 0:
        return usage_error(f"max_call_seconds must be > 0, got {max_call_seconds}")
    if out and (why := unwritable_reason(Path(out))):
        return usage_error(f"--json {out}: {why}")
    specs = list_components(pattern)
    if not specs:
        return usage_error(f"no component matches {pattern!r}; `reprobench list` shows the registered ones")
    plan = [(spec, size) for spec in specs for size in (sizes or spec.bench_sizes)]
    _print(f"reference vs optimized on {device}, forward under no_grad, 1 thread",
           f"skip rules: estimated tensor peak > {memory_fraction:.0%} of available memory "
           f"({available_memory_bytes() / 2**30:.1f} GiB now),",
           f"  or one call estimated > {max_call_seconds:g} s (from smaller sizes and time_exponent)",
           COLUMNS.format("", "ms", "peak MiB", "GFLOP", "syncs", "speedup", "match"))
    rows, start, threads = [], time.perf_counter(), torch.get_num_threads()
    # Everything runs on the thread count the timings use: estimates, pair checks and counters too. With
    # more threads than free cores (a shared machine), each parallel region waits for a descheduled thread.
    torch.set_num_threads(DEFAULT_THREADS)
    try:
        for index, (spec, size) in enumerate(plan, 1):
            _print(f"[{index}/{len(plan)} {_elapsed(time.perf_counter() - start)}] {spec.name} {spec.size_name}={size} "
                   f"{str(bench_dtype(spec)).removeprefix('torch.')}")
            rows.append(_estimate_and_run(spec, size, device, memory_fraction, max_call_seconds))
    finally:
        torch.set_num_threads(threads)
    mismatches = sum(r.get("matches_reference") is False for r in rows)
    errors = sum("error" in r for r in rows)
    skips = sum(bool(r.get(f"{impl}_skipped")) for r in rows for impl in IMPLEMENTATIONS)
    _print(f"{len(plan)} case{'s' * (len(plan) != 1)} in {_elapsed(time.perf_counter() - start)}: {skips} implementations skipped, "
           f"{mismatches} mismatches, {errors} errors")
    if out:
        from reprobench.io import atomic_write_text
        from reprobench.measure import fingerprint

        rules = {"memory_fraction": memory_fraction, "max_call_seconds": max_call_seconds}
        atomic_write_text(Path(out), json.dumps({"environment": fingerprint(device), "skip_rules": rules,
                                                 "rows": rows}, indent=2))
    return 1 if mismatches or errors else 0
