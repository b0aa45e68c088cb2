"""`reprobench bench`: reference vs optimized per case, timed interleaved, with FLOPs, tensor peaks and host
syncs, printed as rows as each case completes. Each implementation is estimated first (cost.py) and
skipped, with its reason, when it would not fit in memory or take too long; `--json` writes the rows.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import torch

from reprobench.bench.cases import IMPLEMENTATIONS, bench_case, bench_dtype, measure_case
from reprobench.bench.cost import MAX_CALL_SECONDS, MEMORY_FRACTION, CostEstimate, estimate_case, skip_reason
from reprobench.bench.pair_check import optimized_matches_reference
from reprobench.measure.memory import available_bytes
from reprobench.measure.timing import DEFAULT_THREADS
from reprobench.registry import ComponentSpec, list_components

log = logging.getLogger(__name__)
SLOW_CALL_SECONDS = 0.25  # a case with a call estimated slower is timed in one round, not three
COLUMNS = "{:<12}{:>10}{:>10}{:>9}{:>7}{:>9}{:>11}"  # 68 characters: rows fit 80 columns


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
            available = available_bytes(device)  # read per implementation: the machine is shared
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
    """`reprobench bench`: each case is estimated first and skipped by cost.py's rules, and its rows are
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
           f"({available_bytes(device) / 2**30:.1f} GiB now),",
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
