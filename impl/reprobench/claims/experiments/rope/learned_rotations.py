"""ROPE-07: learned_rotations: gradients through rotations, t and freq_ranges, and locality per position."""
from __future__ import annotations

import torch

from reprobench.claims.experiment import Outcome, RunContext, experiment, verdict_if
from reprobench.claims.experiments.rope._common import F64
from reprobench.registry import make_generator
from reprobench.rotary.document import DEVIATIONS
from reprobench.rotary.learned_rotations import DocumentLearnedRotations, FastLearnedRotations


@experiment("ROPE-07")
def learned_rotations(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    ref, fast = DocumentLearnedRotations(16).to(F64), FastLearnedRotations(16).to(F64)
    n = 6
    rotations = torch.randn(n, 8, generator=g, dtype=F64, requires_grad=True)
    t = torch.randn(1, 2, n, 16, generator=g, dtype=F64, requires_grad=True)
    small = torch.randn(n, 2, generator=g, dtype=F64, requires_grad=True)
    ranges = torch.randn(4, generator=g, dtype=F64, requires_grad=True)
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
    ok = all(gradcheck.values()) and all(locality)
    return Outcome(
        verdict=verdict_if(ok),
        claimed="learned_rotations supports learnable rotation parameters (optionally × freq_ranges), adapting "
                "positional embeddings.",
        measured={**{f"gradcheck_{k}": int(v) for k, v in gradcheck.items()},
                  "positions_where_bump_acts_only_locally": sum(locality), "positions": n,
                  "optimized_vs_reference_max_diff": twin_diff,
                  "module_parameters_used_by_learned_rotations": 0,
                  "module_trainable_parameters_total": module_params},
        rule=("holds if torch.autograd.gradcheck passes (float64) w.r.t. rotations, t and freq_ranges for the "
              "document's method and ours, and changing rotations[m] changes exactly position m of the output; fails "
              "otherwise."),
        evidence=(f"gradcheck passes: {all(gradcheck.values())}; a bump of rotations[m] changes only position m for "
                  f"{sum(locality)}/{n} positions. The angles are an argument: RotaryEmbedding owns no rotation "
                  f"parameter for this path (its only trainable tensor, freqs, is unused), so the caller must register "
                  f"them."),
        deviations=list(DEVIATIONS),
    )
