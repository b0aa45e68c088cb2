"""FAM-04: the debug mode's JSON dumps of band/alpha history."""
from __future__ import annotations

import json
import tempfile

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.experiments.fam._common import DEVIATIONS
from reprobench.measure import decide
from reprobench.registry import make_generator

RULE = ("counts (deterministic), two decisions: dump steps missing or extra against every multiple of debug_interval: "
        "at most 0; 10th-step history records (band values, alpha) that never reach the JSON file: at most 0. All hold "
        "-> holds, all fail -> fails, else partial")


@experiment("FAM-04", logic="all-of",
            source='documents/002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)',
            text=(
                'Debug mode writes band/alpha history to JSON every `debug_interval` steps.'))  # one property: a dump with the history, every interval
def debug_dumps(ctx: RunContext) -> Outcome:
    from reprobench_documents.optim.fam_reference import FAMOptimizer

    g = make_generator(ctx.seed)
    steps, interval = 400, 50
    p = torch.zeros(300, device=ctx.device, requires_grad=True)
    with tempfile.TemporaryDirectory() as tmp:
        opt = FAMOptimizer([p], lr=0.01, fam_start_step=0, min_size=64, debug=True, debug_dir=tmp,
                           debug_interval=interval, generator=make_generator(ctx.seed, ctx.device))
        dumps = []
        for t in range(steps):
            p.grad = torch.randn(300, generator=g).to(ctx.device)
            opt.step()
            with open(opt.debug_file) as f:
                recorded = json.load(f)
            dumps.append(len(recorded["steps_recorded"]))
        opt.debug = False  # no final dump from __del__ after the directory is gone
    history = recorded["parameters"]["param_0"]["steps"]
    expected = list(range(10, steps + 1, 10))
    dump_steps = recorded["steps_recorded"]
    duplicates = len(dump_steps) - len(set(dump_steps))
    dump_steps_off = len(set(dump_steps) ^ set(range(interval, steps + 1, interval))) + duplicates
    records_missing = len(set(expected) - set(history))
    return Outcome(
        decisions=[decide("dump_steps_missing_or_extra", dump_steps_off, at_most=0),
                   decide("history_records_missing", records_missing, at_most=0)],
        headline="history_records_missing",
        claimed="debug mode writes band/alpha history to JSON every debug_interval steps",
        measured={"steps": steps, "debug_interval": interval, "dumps": len(dump_steps),
                  "history_records_expected": len(expected), "history_records_written": len(history),
                  "last_recorded_step": history[-1] if history else 0},
        rule=RULE,
        evidence=f"Reference FAMOptimizer(debug=True, debug_interval={interval}) for {steps} steps on a 300-element "
                 f"tensor on {ctx.device.type}: {len(dump_steps)} dumps ({dump_steps_off} steps missing or extra), "
                 f"{len(history)}/{len(expected)} history records reach the file (last step {history[-1] if history else 0}): after each dump the in-memory "
                 f"lists are cut to 10 entries while the file's length is used as the offset, so from the 4th dump on "
                 f"nothing new is written.",
        deviations=DEVIATIONS)
