"""DCAL-04: PWCA attends image 1's queries to the keys and values of both images."""
from __future__ import annotations

import torch

from reprobench.claims.experiment import Outcome, RunContext, experiment, verdict_if
from reprobench.registry import make_generator


@experiment("DCAL-04")
def pwca_semantics(ctx: RunContext) -> Outcome:
    from reprobench.models.dcal.pwca import PairwiseCrossAttention
    from reprobench.models.dcal.vit import init_vit_

    g = make_generator(ctx.seed)
    n = 50 if ctx.quick else 197
    ref = PairwiseCrossAttention(384, 6, weights="copy", kernel="explicit")
    init_vit_(ref, g)
    ref = ref.to(torch.float64)
    opt = PairwiseCrossAttention(384, 6, weights="shared", kernel="sdpa").to(torch.float64)
    opt.load_state_dict(ref.state_dict())
    x1 = torch.randn(2, n, 384, generator=g, dtype=torch.float64)
    x2 = torch.randn(2, n, 384, generator=g, dtype=torch.float64)
    perm = torch.randperm(n, generator=g)
    with torch.no_grad():
        sa = ref.self_attention(x1)
        same = max((m(x1, x1.clone()) - sa).abs().max().item() for m in (ref, opt))
        permuted = max((m(x1, x2[:, perm]) - m(x1, x2)).abs().max().item() for m in (ref, opt))
        depends_on_x2 = (opt(x1, x2) - sa).abs().max().item()
    # The document's snippet, literally: chunk (B, N, 3D) then cat on dim 2 = the feature axis.
    k1 = ref.sa.qkv(x1).chunk(3, dim=-1)[1]
    literal_width = torch.cat([k1, k1], dim=2).shape[-1]
    ok = same <= 1e-10 and permuted <= 1e-10 and depends_on_x2 > 1e-6
    return Outcome(
        verdict=verdict_if(ok),
        claimed="PWCA: queries of image 1 attend to the concatenated keys and values of images 1 and 2",
        measured={"max_abs_diff_pwca_same_image_vs_sa": same, "max_abs_diff_image2_tokens_permuted": permuted,
                  "max_abs_diff_pwca_vs_sa_distinct_image": depends_on_x2,
                  "literal_snippet_key_width": literal_width, "dim": 384},
        rule="holds if PWCA(x, x) == SA(x) and PWCA(x1, perm(x2)) == PWCA(x1, x2) within 1e-10 (float64), both twins",
        evidence=(f"float64, dim 384, 6 heads, batch 2, N={n}: PWCA with image 2 = image 1 equals SA to {same:.1e}; "
                  f"permuting image-2 tokens changes nothing ({permuted:.1e}). Read literally, the document's "
                  f"`torch.cat([k1, k2], dim=2)` on the (B, N, D) chunks concatenates features (width {literal_width}), "
                  f"not tokens; we concatenate tokens."),
        deviations=["PWCA concatenates keys/values on the token axis of the per-head layout (B, H, N, hd); the "
                    "document's snippet applies cat(dim=2) to (B, N, D) chunks, which is the feature axis."],
    )
