"""`reprobench profile COMPONENT`: a torch.profiler trace of one registered component.

Writes two views of the same run:
- runs/<run>/<run>.<ns>.pt.trace.json, the layout torch.profiler.tensorboard_trace_handler writes, which
  TensorBoard's PyTorch Profiler tab (torch-tb-profiler) lists: `tensorboard --logdir runs`;
- runs/<component>.chrome_trace.json, a Chrome trace for https://ui.perfetto.dev or chrome://tracing
  (the TensorBoard plugin is deprecated upstream; Perfetto is where traces are going).
"""
from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from reprobench.bench import (bench_case, estimate_peak_bytes, memory_reason, optimized_matches_reference,
                              unwritable_reason)
from reprobench.measure.memory import available_bytes
from reprobench.registry import get

log = logging.getLogger(__name__)
WAIT, WARMUP, ACTIVE = 1, 1, 3  # profiler schedule: skip 1 step, warm up 1, record 3


def run_profile(component: str, *, size: int | None, logdir: Path, device: str = "cpu",
                implementation: str = "optimized", backward: bool = False) -> int:
    """Exit 2, with one line on stderr, for a bad argument or a case that would not fit in memory (the
    bench's memory rule), all found before the profiled run; else 0."""
    def usage_error(message: str) -> int:
        print(f"reprobench profile: {message}", file=sys.stderr)
        return 2

    if size is not None and size < 1:
        return usage_error(f"--size must be a positive integer, got {size}")
    if why := unwritable_reason(logdir, directory=True):
        return usage_error(f"--logdir {logdir}: {why}")
    try:
        spec = get(component)
    except KeyError as exc:
        return usage_error(exc.args[0])
    size = size or max(spec.bench_sizes)
    # The bench's memory rule only: a slow profile was asked for by name, a peak past the machine's memory
    # never is. The estimate is of a forward; --backward also holds what autograd saves.
    def too_big(impl: str) -> str | None:
        peak_bytes, _ = estimate_peak_bytes(component, size, impl, device)
        return memory_reason(peak_bytes, available_bytes=available_bytes(device))

    if why := too_big(implementation):
        return usage_error(f"{component} ({implementation}) at {spec.size_name}={size}: {why}; choose a smaller --size")
    case = bench_case(component, size, implementation, device)
    if implementation == "optimized":
        if why := too_big("reference"):  # the pair check runs the reference too
            print(f"note: not checked against its reference, which would not fit: {why}")
        elif not optimized_matches_reference(component, size, device):
            print(f"warning: {case.label} differs from its reference at this size")
    step_fn = case.forward_backward() if backward and spec.supports_backward else case.forward()
    run_name = f"{component}-{implementation}-{spec.size_name}{size}{'-fwd_bwd' if backward else ''}"
    tb_dir = logdir / run_name
    chrome_path = logdir / f"{run_name}.chrome_trace.json"
    logdir.mkdir(parents=True, exist_ok=True)

    def on_trace_ready(prof):
        # A kineto trace can be saved once: save the Chrome trace, then place a copy where
        # tensorboard_trace_handler would (<logdir>/<run>/<worker>.<ns>.pt.trace.json), which is
        # the layout the TensorBoard plugin scans.
        prof.export_chrome_trace(str(chrome_path))
        tb_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(chrome_path, tb_dir / f"{run_name}.{time.time_ns()}.pt.trace.json")

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.device(device).type == "cuda" else [])
    with profile(activities=activities, schedule=schedule(wait=WAIT, warmup=WARMUP, active=ACTIVE),
                 on_trace_ready=on_trace_ready, record_shapes=True, profile_memory=True, with_stack=False) as prof:
        for _ in range(WAIT + WARMUP + ACTIVE):
            step_fn()
            prof.step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    print(f"TensorBoard trace: {tb_dir}\n  open with: tensorboard --logdir {logdir}  (PyTorch Profiler tab, "
          f"needs torch-tb-profiler)")
    print(f"Chrome/Perfetto trace: {chrome_path}\n  open with: https://ui.perfetto.dev (Open trace file) or chrome://tracing")
    return 0
