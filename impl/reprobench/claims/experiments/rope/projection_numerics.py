"""ROPE-05: numerical stability of the projection path: large inputs, homogeneity, NaN/inf containment."""
from __future__ import annotations

import torch

from reprobench.claims.experiment import Outcome, RunContext, combine, experiment, verdict_if
from reprobench.claims.experiments.rope._common import HEAD_DIM
from reprobench.measure import count_host_syncs
from reprobench.registry import make_generator
from reprobench.rotary.document import DEVIATIONS
from reprobench.rotary.projection import DocumentProjection, FastProjection
from reprobench.rotary.projection_corrected import SubspaceRotation


@experiment("ROPE-05")
def projection_numerics(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    doc = DocumentProjection(HEAD_DIM, generator=g).reset_parameters(g)
    fast = FastProjection(HEAD_DIM, generator=make_generator(0))
    fast.load_state_dict(doc.state_dict())
    fixed = SubspaceRotation(HEAD_DIM, proj_dim=3).reset_parameters(g)
    n = 128 if ctx.quick else 512
    x = torch.randn(1, 1, n, HEAD_DIM, generator=g)
    measured: dict = {"dtype": "float32", "tokens": n, "dim": HEAD_DIM}
    finite_ok, homogeneous_ok = True, True
    with torch.no_grad():
        w = doc.rotary.proj_down.weight.double()
        measured["proj_down_singular_values_max_dev_from_0.1"] = (torch.linalg.svdvals(w) - 0.1).abs().max().item()
        up_down = doc.rotary.proj_up.weight.double() @ w
        measured["up_after_down_singular_max"] = torch.linalg.svdvals(up_down).max().item()
        base = doc(x)
        measured["host_syncs_per_call_reference"] = count_host_syncs(lambda: doc(x))
        measured["host_syncs_per_call_optimized"] = count_host_syncs(lambda: fast(x))
        for scale in (1.0, 1e2, 1e4, 1e8, 1e20, 1e36):
            out = doc(x * scale)
            bad = (~torch.isfinite(out)).sum().item()
            rel = ((out / scale - base).norm() / base.norm()).item()
            measured[f"nonfinite_outputs_scale_{scale:.0e}"] = bad
            measured[f"homogeneity_rel_error_scale_{scale:.0e}"] = rel
            measured[f"corrected_nonfinite_outputs_scale_{scale:.0e}"] = \
                (~torch.isfinite(fixed(x * scale))).sum().item()
            finite_ok &= bad == 0
            homogeneous_ok &= rel < 1e-3
            torch.testing.assert_close(fast(x * scale), out)  # the sync-free twin reproduces the branches
        for label, value in (("nan", float("nan")), ("inf", float("inf"))):
            poisoned = x.clone()
            poisoned[0, 0, 0, 0] = value
            out = doc(poisoned)
            clean_tokens_unrotated = (out[0, 0, 1:] == poisoned[0, 0, 1:]).all(dim=-1).sum().item()
            measured[f"{label}_in_one_token_other_tokens_left_unrotated"] = clean_tokens_unrotated
            measured[f"{label}_in_one_token_nonfinite_outputs"] = (~torch.isfinite(out)).sum().item()
    contained = measured["nan_in_one_token_other_tokens_left_unrotated"] == 0 and \
        measured["inf_in_one_token_other_tokens_left_unrotated"] == 0
    return Outcome(
        verdict=combine(verdict_if(finite_ok), verdict_if(homogeneous_ok), verdict_if(contained)),
        claimed="'SVD for orthogonal initialization, aimed at maintaining numerical stability'; rescales norms above "
                "1e3, falls back on NaN.",
        measured=measured,
        rule=("three parts at dim 64, float32, inputs N(0,1) × scale for scale in 1 … 1e36: (a) no NaN/inf outputs for "
              "finite inputs; (b) outputs scale with the input, |f(s·x)/s − f(x)| / |f(x)| < 1e-3; (c) a NaN or inf in "
              "one token leaves the other tokens' outputs rotated. All hold -> holds, some -> partial, none -> fails."),
        evidence=(f"Finite inputs up to 1e36 give finite outputs (the rescale works), but every input whose largest "
                  f"row norm exceeds 1e3 is shrunk: relative error {measured['homogeneity_rel_error_scale_1e+08']:.2f} "
                  f"at 1e8. One NaN (inf) entry makes the whole batch fall back to the unrotated input: "
                  f"{measured['nan_in_one_token_other_tokens_left_unrotated']} "
                  f"({measured['inf_in_one_token_other_tokens_left_unrotated']}) of {n - 1} clean tokens unrotated. "
                  f"The orthogonal init gives proj_up∘proj_down = 0.1·projection (largest singular value "
                  f"{measured['up_after_down_singular_max']:.3f}), not the identity on the subspace."),
        deviations=list(DEVIATIONS),
    )
