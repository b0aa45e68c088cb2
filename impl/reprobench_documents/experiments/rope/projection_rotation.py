"""ROPE-04: does project_and_rotate preserve norms and angles, and is it invertible?"""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.experiments.rope._common import F64, HEAD_DIM, save_figure, orthogonality
from reprobench.measure import decide
from reprobench.registry import make_generator
from reprobench_documents.rotary.document import DEVIATIONS
from reprobench_documents.rotary.projection import DocumentProjection
from reprobench_documents.rotary.projection_corrected import SubspaceRotation

NORM_TOL = 1e-3  # every token's ‖f(x)‖ / ‖x‖ within 1 ± this
COSINE_TOL = 1e-3  # largest change of a pairwise cosine
CONDITION_MAX, INVERSION_TOL = 1e3, 1e-6  # invertible: well conditioned, and x recovered from f(x)
CLAIMED = ("project_and_rotate projects to 3D, rotates, projects back (SVD pseudo-inverse), 'enabling true geometric "
           "rotations'.")
RULE = (f"exact values (float64, dim 64, proj_dim 3, proj_scale 0.1: the document's defaults; deterministic draws), "
        f"four decisions on the document's map: max over tokens of |‖f(x)‖ / ‖x‖ − 1| at most {NORM_TOL:g} (every "
        f"norm ratio in [{1 - NORM_TOL:g}, {1 + NORM_TOL:g}]); pairwise cosines change by at most {COSINE_TOL:g}; condition "
        f"number at most {CONDITION_MAX:g}; inversion error at most {INVERSION_TOL:g}. All hold -> holds, all fail -> "
        f"fails, else partial (a rotation must do all of them). The corrected subspace rotation is reported, not "
        f"judged")


def _linear_map(module, dim) -> torch.Tensor:
    """Matrix M with module(x) = x @ M for inputs that stay under the document's rescale threshold."""
    return module(torch.eye(dim, dtype=F64, device=_device(module)).view(1, 1, dim, dim))[0, 0]


def _device(module) -> torch.device:
    return next(module.parameters()).device


@experiment("ROPE-04", logic="all-of", quick_judged=True, needs=("float64",),
            sizes={"full": {"tokens": 1024}, "quick": {"tokens": 256}},
            source='documents/002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)',
            text=(
                '`project_and_rotate` projects to 3D, rotates, projects back with an SVD-based pseudo-inverse, '
                '"enabling true geometric rotations even for high-dimensional embeddings". Check norm/angle '
                'preservation and invertibility.'))  # "a true geometric rotation" keeps norms AND angles
def projection_rotation(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)  # initialised and drawn on the CPU, then moved: the same values on every device
    doc = DocumentProjection(HEAD_DIM, generator=g).reset_parameters(g).to(device=ctx.device, dtype=F64)
    fixed = SubspaceRotation(HEAD_DIM, proj_dim=3).to(F64).reset_parameters(g).to(ctx.device)
    x = torch.randn(1, 1, ctx.sizes["tokens"], HEAD_DIM, generator=g, dtype=F64).to(ctx.device)
    results = {}
    with torch.no_grad():
        for key, module in (("doc", doc), ("corrected", fixed)):
            out = module(x)
            ratio = out.norm(dim=-1) / x.norm(dim=-1)
            xs, os = x[0, 0, :128], out[0, 0, :128]
            cos_in = (xs @ xs.T) / (xs.norm(dim=-1)[:, None] * xs.norm(dim=-1)[None, :])
            cos_out = (os @ os.T) / (os.norm(dim=-1)[:, None] * os.norm(dim=-1)[None, :])
            matrix = _linear_map(module, HEAD_DIM)
            singular = torch.linalg.svdvals(matrix)
            recovered = out @ torch.linalg.inv(matrix)
            results[key] = {"norm_ratio_min": ratio.min().item(), "norm_ratio_max": ratio.max().item(),
                            "norm_ratio_mean": ratio.mean().item(),
                            "angle_cos_max_change": (cos_out - cos_in).abs().max().item(),
                            "singular_min": singular.min().item(), "singular_max": singular.max().item(),
                            "condition_number": (singular.max() / singular.min()).item(),
                            "orthogonality_error": orthogonality(matrix)[0],
                            "inversion_error": (recovered - x).abs().max().item()}
            results[key]["ratios"] = ratio.flatten().tolist()  # for the figure's histogram
    d = results["doc"]
    norm_error = max(abs(d["norm_ratio_min"] - 1), abs(d["norm_ratio_max"] - 1))
    decisions = [decide("doc_max_norm_ratio_error", norm_error, at_most=NORM_TOL),
                 decide("doc_angle_cos_max_change", d["angle_cos_max_change"], at_most=COSINE_TOL),
                 decide("doc_condition_number", d["condition_number"], at_most=CONDITION_MAX),
                 decide("doc_inversion_error", d["inversion_error"], at_most=INVERSION_TOL)]
    figures = save_figure(ctx, "rope04_norm_ratio.png", lambda ax: (
        ax.hist(results["doc"]["ratios"], bins=40, label="document project_and_rotate"),
        ax.axvspan(1 - NORM_TOL, 1 + NORM_TOL, color="tab:green", alpha=0.4,
                   label=f"rule: every ratio in [{1 - NORM_TOL:g}, {1 + NORM_TOL:g}]"),
        ax.axvline(1.0, color="k", linestyle="--", label="rotation (corrected: all at 1)"),
        ax.set_xlabel("‖f(x)‖ / ‖x‖"), ax.set_ylabel("tokens"), ax.legend(fontsize=7)))
    measured = {f"{key}_{name}": value for key, values in results.items() for name, value in values.items()
                if name != "ratios"}
    measured["dim"], measured["proj_dim"], measured["proj_scale"] = HEAD_DIM, 3, 0.1
    return Outcome(
        decisions=decisions,
        headline="doc_max_norm_ratio_error",
        claimed=CLAIMED,
        measured=measured,
        rule=RULE,
        evidence=(f"The document's map is 0.09·V R Vᵀ x + 0.1·x: norm ratio "
                  f"{d['norm_ratio_min']:.3f}–{d['norm_ratio_max']:.3f} (mean {d['norm_ratio_mean']:.3f}), cosines "
                  f"change by up to {d['angle_cos_max_change']:.2f}; it is invertible (condition number "
                  f"{d['condition_number']:.2f}) but not a rotation. The corrected x + (xV)(R − I)Vᵀ keeps norms to "
                  f"{abs(results['corrected']['norm_ratio_max'] - 1):.0e} and is orthogonal "
                  f"({results['corrected']['orthogonality_error']:.0e})."),
        figures=figures,
        deviations=list(DEVIATIONS),
    )
