"""ROPE-02: is the document's q_rotation (and CompactRotation.q_rotate) a rotation?"""
from __future__ import annotations

import math

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.experiments.rope._common import F64, orthogonality
from reprobench.measure import decide
from reprobench.registry import make_generator
from reprobench_documents.rotary.document import DEVIATIONS, CompactRotation, RotaryEmbedding
from reprobench_documents.rotary.quaternion_corrected import sandwich_rotation

TOL = 1e-6  # float64: a rotation's defects are rounding (~1e-15); the document's are O(1)
CLAIMED = "q_rotation performs quaternion-based 3D rotations that 'better preserve geometric relationships'."
RULE = (f"exact errors (float64, unit vectors, an angle grid in [-2π, 2π] and random axes, deterministic draws), four "
        f"decisions on the document's q_rotation, each at most {TOL:g}: max |QᵀQ − I|; max |det Q − 1|; max norm error; "
        f"max |R(θ/2)R(θ/2)x − R(θ)x| (composition). All hold -> holds, all fail -> fails, else partial; the corrected "
        f"q x q* and CompactRotation.q_rotate are reported, not judged")


@experiment("ROPE-02", quick_judged=True, needs=("float64",),
            sizes={"full": {"angles": 33, "axes": 8}, "quick": {"angles": 17, "axes": 4}},
            source='documents/002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)',
            text=(
                'Quaternion rotation `q_rotation` performs 3D rotations ("better preserve geometric '
                'relationships"): orthogonality, norm preservation, composition.'))
def quaternion_rotation(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)  # draws on the CPU, moved: the same values on every device
    doc = RotaryEmbedding(4).to(device=ctx.device, dtype=F64)
    eye = torch.eye(3, dtype=F64, device=ctx.device)
    angles = torch.linspace(-2 * math.pi, 2 * math.pi, ctx.sizes["angles"], dtype=F64, device=ctx.device)
    axes = torch.randn(ctx.sizes["axes"], 3, generator=g, dtype=F64).to(ctx.device)
    x = torch.randn(64, 3, generator=g, dtype=F64).to(ctx.device)
    x = x / x.norm(dim=-1, keepdim=True)  # unit vectors: the ±10 clamp stays inactive
    worst = {"doc_orth": 0.0, "doc_det": 0.0, "doc_norm": 0.0, "doc_comp": 0.0,
             "fix_orth": 0.0, "fix_det": 0.0, "fix_norm": 0.0, "fix_comp": 0.0, "compact_orth": 0.0}
    dets = []
    for u in axes:
        for theta in angles:
            for key, rotate in (("doc", doc.q_rotation), ("fix", sandwich_rotation)):
                orth, det = orthogonality(rotate(eye, theta, u))
                worst[f"{key}_orth"] = max(worst[f"{key}_orth"], orth)
                worst[f"{key}_det"] = max(worst[f"{key}_det"], abs(det - 1))
                dets.append(det) if key == "doc" else None
                worst[f"{key}_norm"] = max(worst[f"{key}_norm"],
                                           (rotate(x, theta, u).norm(dim=-1) - 1).abs().max().item())
                half = theta / 2
                comp = (rotate(rotate(x, half, u), half, u) - rotate(x, theta, u)).abs().max().item()
                worst[f"{key}_comp"] = max(worst[f"{key}_comp"], comp)
    for axis in range(3):
        for theta in angles:
            orth, _ = orthogonality(CompactRotation.q_rotate(eye, theta, axis))
            worst["compact_orth"] = max(worst["compact_orth"], orth)
    at_pi, _ = orthogonality(doc.q_rotation(eye, torch.tensor(math.pi, dtype=F64, device=ctx.device), axes[0]))
    big = 100 * x
    clamp_error = ((doc.q_rotation(big, angles[3], axes[0]) - 100 * doc.q_rotation(x, angles[3], axes[0])).norm()
                   / (100 * doc.q_rotation(x, angles[3], axes[0])).norm()).item()
    decisions = [decide("doc_max_orthogonality_error", worst["doc_orth"], at_most=TOL),
                 decide("doc_max_abs_det_minus_1", worst["doc_det"], at_most=TOL),
                 decide("doc_max_norm_error_unit_vectors", worst["doc_norm"], at_most=TOL),
                 decide("doc_max_composition_error", worst["doc_comp"], at_most=TOL)]
    measured = {"doc_max_orthogonality_error": worst["doc_orth"], "doc_max_abs_det_minus_1": worst["doc_det"],
                "doc_det_min": min(dets), "doc_det_max": max(dets),
                "doc_max_norm_error_unit_vectors": worst["doc_norm"], "doc_max_composition_error": worst["doc_comp"],
                "doc_orthogonality_error_at_theta_pi": at_pi,
                "doc_clamp_nonlinearity_rel_error_at_norm_100": clamp_error,
                "compact_q_rotate_max_orthogonality_error": worst["compact_orth"],
                "corrected_max_orthogonality_error": worst["fix_orth"],
                "corrected_max_abs_det_minus_1": worst["fix_det"],
                "corrected_max_norm_error": worst["fix_norm"], "corrected_max_composition_error": worst["fix_comp"],
                "angles": len(angles), "axes": len(axes)}
    return Outcome(
        decisions=decisions,
        claimed=CLAIMED,
        measured=measured,
        rule=RULE,
        evidence=(f"The code drops sin(θ/2) (vec is computed, never used): max |QᵀQ − I| = {worst['doc_orth']:.2f}, "
                  f"det in [{min(dets):.2f}, {max(dets):.2f}], norm error {worst['doc_norm']:.2f}, composition error "
                  f"{worst['doc_comp']:.2f}; it is a rotation only at θ = π (error {at_pi:.1e}). "
                  f"CompactRotation.q_rotate has the same defect. The corrected q x q* (rotary.quaternion_corrected) "
                  f"has orthogonality error {worst['fix_orth']:.1e} and composition error {worst['fix_comp']:.1e}."),
        deviations=list(DEVIATIONS),
    )
