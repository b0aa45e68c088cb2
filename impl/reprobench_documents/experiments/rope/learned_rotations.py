"""ROPE-07: learned_rotations: gradients through rotations, t and freq_ranges, and locality per position."""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.experiments.rope._common import F64
from reprobench.measure import decide
from reprobench.registry import make_generator
from reprobench_documents.rotary.document import DEVIATIONS
from reprobench_documents.rotary.learned_rotations import DocumentLearnedRotations, FastLearnedRotations

CLAIMED = ("learned_rotations supports learnable rotation parameters (optionally × freq_ranges), adapting positional "
           "embeddings.")
RULE = ("counts (float64, deterministic draws), two decisions: torch.autograd.gradcheck failures w.r.t. rotations, t and "
        "freq_ranges, for the document's method and ours (4 checks): at most 0; positions m where changing "
        "rotations[m] changes anything but position m of the output: at most 0. All hold -> holds, all fail -> fails, "
        "else partial")


@experiment("ROPE-07", needs=("float64",),
            source='documents/002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)',
            text=(
                'learned_rotations / freq_ranges: learnable rotation parameters are differentiable and applied '
                'per position.'))
def learned_rotations(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)  # drawn on the CPU, moved: the same values on every device

    def leaf(*shape):
        return torch.randn(*shape, generator=g, dtype=F64).to(ctx.device).requires_grad_()

    ref = DocumentLearnedRotations(16).to(device=ctx.device, dtype=F64)
    fast = FastLearnedRotations(16).to(device=ctx.device, dtype=F64)
    n = 6
    rotations, t, small, ranges = leaf(n, 8), leaf(1, 2, n, 16), leaf(n, 2), leaf(4)
    gradcheck = {}
    for key, module in (("reference", ref), ("optimized", fast)):
        gradcheck[key] = torch.autograd.gradcheck(lambda r, x: module(r, x), (rotations, t), raise_exception=False)
        gradcheck[f"{key}_freq_ranges"] = torch.autograd.gradcheck(
            lambda r, x, f: module(r, x, freq_ranges=f), (small, t, ranges), raise_exception=False)
    with torch.no_grad():
        locality = []
        for m in range(n):
            bumped = rotations.detach().clone()
            bumped[m] += 0.5
            changed = (ref(bumped, t) - ref(rotations, t)).abs().amax(dim=(0, 1, 3)) > 0  # (n,)
            locality.append(changed.nonzero().flatten().tolist() == [m])
        twin_diff = (ref(rotations, t) - fast(rotations, t)).abs().max().item()
    module_params = sum(p.numel() for p in ref.rotary.parameters() if p.requires_grad)
    decisions = [decide("gradcheck_failures", sum(not passed for passed in gradcheck.values()), at_most=0),
                 decide("positions_with_nonlocal_effect", n - sum(locality), at_most=0)]
    return Outcome(
        decisions=decisions,
        claimed=CLAIMED,
        measured={**{f"gradcheck_{k}": int(v) for k, v in gradcheck.items()},
                  "positions_where_bump_acts_only_locally": sum(locality), "positions": n,
                  "optimized_vs_reference_max_diff": twin_diff,
                  "module_parameters_used_by_learned_rotations": 0,
                  "module_trainable_parameters_total": module_params},
        rule=RULE,
        evidence=(f"On {ctx.device.type}: gradcheck passes: {all(gradcheck.values())}; a bump of rotations[m] changes only position m for "
                  f"{sum(locality)}/{n} positions. The angles are an argument: RotaryEmbedding owns no rotation "
                  f"parameter for this path (its only trainable tensor, freqs, is unused), so the caller must register "
                  f"them."),
        deviations=list(DEVIATIONS),
    )
