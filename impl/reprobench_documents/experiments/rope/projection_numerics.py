"""ROPE-05: numerical stability of the projection path: large inputs, homogeneity, NaN/inf containment."""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.experiments.rope._common import HEAD_DIM
from reprobench.measure import count_host_syncs, decide
from reprobench.registry import make_generator
from reprobench_documents.rotary.document import DEVIATIONS
from reprobench_documents.rotary.projection import DocumentProjection, FastProjection
from reprobench_documents.rotary.projection_corrected import SubspaceRotation

SCALES = (1.0, 1e2, 1e4, 1e8, 1e20, 1e36)
HOMOGENEITY_TOL = 1e-3  # |f(s·x)/s − f(x)| / |f(x)|: a linear map gives float32 rounding
RULE = (f"counts and exact errors (float32 as a model runs it, dim 64, inputs N(0,1) × scale for scale in 1 … 1e36, "
        f"deterministic draws), three decisions: (a) NaN/inf outputs for finite inputs, summed over the scales: at most "
        f"0; (b) the largest |f(s·x)/s − f(x)| / |f(x)| over the scales: at most {HOMOGENEITY_TOL:g}; (c) clean tokens "
        f"left unrotated when one token holds a NaN (and, separately, an inf), summed: at most 0. All hold -> holds, "
        f"all fail -> fails, else partial")


@experiment("ROPE-05", quick_judged=True, sizes={"full": {"tokens": 512}, "quick": {"tokens": 128}},
            source='documents/002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)',
            text=(
                '"SVD for orthogonal initialization, aimed at maintaining numerical stability": NaN/inf behaviour'
                ' on large inputs (the code rescales norms above 1e3 and falls back on NaN).'))
def projection_numerics(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)  # initialised and drawn on the CPU, then moved: the same values on every device
    doc = DocumentProjection(HEAD_DIM, generator=g).reset_parameters(g).to(ctx.device)
    fast = FastProjection(HEAD_DIM, generator=make_generator(0)).to(ctx.device)
    fast.load_state_dict(doc.state_dict())
    fixed = SubspaceRotation(HEAD_DIM, proj_dim=3).reset_parameters(g).to(ctx.device)
    n = ctx.sizes["tokens"]
    x = torch.randn(1, 1, n, HEAD_DIM, generator=g).to(ctx.device)
    measured: dict = {"dtype": "float32", "tokens": n, "dim": HEAD_DIM}
    nonfinite, homogeneity = 0, 0.0
    with torch.no_grad():
        # the weights' spectra in float64 on the CPU: a diagnostic, and some devices have no float64
        w = doc.rotary.proj_down.weight.detach().cpu().double()
        measured["proj_down_singular_values_max_dev_from_0.1"] = (torch.linalg.svdvals(w) - 0.1).abs().max().item()
        up_down = doc.rotary.proj_up.weight.detach().cpu().double() @ w
        measured["up_after_down_singular_max"] = torch.linalg.svdvals(up_down).max().item()
        base = doc(x)
        measured["host_syncs_per_call_reference"] = count_host_syncs(lambda: doc(x))
        measured["host_syncs_per_call_optimized"] = count_host_syncs(lambda: fast(x))
        for scale in SCALES:
            out = doc(x * scale)
            bad = (~torch.isfinite(out)).sum().item()
            rel = ((out / scale - base).norm() / base.norm()).item()
            measured[f"nonfinite_outputs_scale_{scale:.0e}"] = bad
            measured[f"homogeneity_rel_error_scale_{scale:.0e}"] = rel
            measured[f"corrected_nonfinite_outputs_scale_{scale:.0e}"] = \
                (~torch.isfinite(fixed(x * scale))).sum().item()
            nonfinite += bad
            homogeneity = max(homogeneity, rel)
            torch.testing.assert_close(fast(x * scale), out)  # the sync-free twin reproduces the branches
        for label, value in (("nan", float("nan")), ("inf", float("inf"))):
            poisoned = x.clone()
            poisoned[0, 0, 0, 0] = value
            out = doc(poisoned)
            clean_tokens_unrotated = (out[0, 0, 1:] == poisoned[0, 0, 1:]).all(dim=-1).sum().item()
            measured[f"{label}_in_one_token_other_tokens_left_unrotated"] = clean_tokens_unrotated
            measured[f"{label}_in_one_token_nonfinite_outputs"] = (~torch.isfinite(out)).sum().item()
    unrotated = (measured["nan_in_one_token_other_tokens_left_unrotated"]
                 + measured["inf_in_one_token_other_tokens_left_unrotated"])
    return Outcome(
        decisions=[decide("nonfinite_outputs_for_finite_inputs", nonfinite, at_most=0),
                   decide("max_homogeneity_rel_error", homogeneity, at_most=HOMOGENEITY_TOL),
                   decide("clean_tokens_left_unrotated_by_one_nan_or_inf", unrotated, at_most=0)],
        headline="max_homogeneity_rel_error",
        claimed="'SVD for orthogonal initialization, aimed at maintaining numerical stability'; rescales norms above "
                "1e3, falls back on NaN.",
        measured=measured,
        rule=RULE,
        evidence=(f"On {ctx.device.type}: finite inputs up to 1e36 give {nonfinite} non-finite outputs (the rescale "
                  f"works), but every input whose largest row norm exceeds 1e3 is shrunk: relative error "
                  f"{measured['homogeneity_rel_error_scale_1e+08']:.2f} at 1e8. One NaN (inf) entry makes the whole batch fall back to the unrotated input: "
                  f"{measured['nan_in_one_token_other_tokens_left_unrotated']} "
                  f"({measured['inf_in_one_token_other_tokens_left_unrotated']}) of {n - 1} clean tokens unrotated. "
                  f"The orthogonal init gives proj_up∘proj_down = 0.1·projection (largest singular value "
                  f"{measured['up_after_down_singular_max']:.3f}), not the identity on the subspace."),
        deviations=list(DEVIATIONS),
    )
