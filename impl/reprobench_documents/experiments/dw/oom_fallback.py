"""DW-06: with an out-of-memory error injected into the advanced path, the layer falls back to basic attention
with one warning; a non-memory error is not swallowed."""
from __future__ import annotations

import warnings

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.experiments.dw._common import seeded_layer
from reprobench.measure import decide
from reprobench.registry import make_generator


@experiment("DW-06",
            source='documents/000_294012e263fd6301.txt (Dynamic Weighting Formula Implementation)',
            text=(
                '"Fallback to basic attention if advanced fails; graceful degradation when OOM occurs": inject a '
                'failure / OOM in the advanced path; the layer returns the basic attention output with a warning.'))
def oom_fallback(ctx: RunContext) -> Outcome:
    layer = seeded_layer(ctx.seed, device=ctx.device)
    x = torch.randn(2, 16, 64, generator=make_generator(ctx.seed + 1)).to(ctx.device)
    with torch.no_grad():
        basic = layer(x, x, x, use_advanced=False)
        advanced = layer(x, x, x, use_advanced=True)
    original = layer.advanced_scores

    def raise_cuda_style(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")

    def real_allocation_failure(*args, **kwargs):
        torch.empty(1 << 45, dtype=torch.uint8, device=ctx.device)  # 32 TiB: the device's allocator refuses it
        return original(*args, **kwargs)

    def not_memory(*args, **kwargs):
        raise IndexError("injected non-memory bug")

    results = {}
    injected = {"cuda_oom": raise_cuda_style, "allocator": real_allocation_failure}  # the out-of-memory faults
    for label, fault in (*injected.items(), ("index_error", not_memory)):
        layer.advanced_scores = fault
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with torch.no_grad():
                    out = layer(x, x, x, use_advanced=True)
                results[label] = (float((out - basic).abs().max()), sum("falling back" in str(w.message) for w in caught), "")
            except Exception as error:  # noqa: BLE001 - the outcome records what escaped
                results[label] = (None, 0, type(error).__name__)
    del layer.advanced_scores
    measured = {"advanced_vs_basic_max_abs_diff_no_fault": float((advanced - basic).abs().max()),
                "allocator_device": ctx.device.type}
    for label, (diff, warned, raised) in results.items():
        measured[f"{label}_max_abs_diff_vs_basic"] = diff  # None when an error escaped (see _raised)
        measured[f"{label}_warnings"] = warned
        measured[f"{label}_raised"] = raised or "nothing"
    decisions = []
    for label in injected:
        diff, warned, raised = results[label]
        # an escaped error or any difference from basic attention is a failure to fall back
        decisions.append(decide(f"{label}_failures_to_fall_back", int(bool(raised) or diff != 0.0), at_most=0))
        decisions.append(decide(f"{label}_warnings", warned, between=(1, 1)))
    return Outcome(
        decisions=decisions,
        claimed="Fallback to basic attention if advanced fails; graceful degradation when OOM occurs; warning messages",
        measured=measured,
        rule="counts (deterministic), two decisions per injected out-of-memory error (a torch.OutOfMemoryError, and a "
             "real 32 TiB allocation failure on the measured device): outputs that escape with an error or differ from "
             "basic attention at all: at most 0; warnings emitted: exactly 1. All hold -> holds, all fail -> fails, "
             "else partial; the non-memory error is reported, not judged",
        evidence="Attention(64, 8, 8, cosine), batch 2, 16 tokens, float32. The advanced path differs from basic by "
                 f"{measured['advanced_vs_basic_max_abs_diff_no_fault']:.3g} without a fault, so equality is not trivial. "
                 f"A non-memory error is not swallowed (raised {measured['index_error_raised']}).",
        deviations=["Only out-of-memory errors fall back; the document says 'if advanced fails', but swallowing every "
                    "error would hide bugs."],
    )
