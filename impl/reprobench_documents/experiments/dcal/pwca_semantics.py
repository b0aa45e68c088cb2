"""DCAL-04: PWCA attends image 1's queries to the keys and values of both images."""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench.measure import decide
from reprobench.registry import make_generator

CLAIMED = "PWCA: queries of image 1 attend to the concatenated keys and values of images 1 and 2"
TOLERANCE = 1e-10  # float64: what is left is rounding
DEPENDS_FLOOR = 1e-6  # PWCA on a distinct image 2 must differ from SA by more than rounding
RULE = (f"exact errors (float64, both twins, deterministic): max |PWCA(x, x) - SA(x)| <= {TOLERANCE:g} and "
        f"max |PWCA(x1, perm(x2)) - PWCA(x1, x2)| <= {TOLERANCE:g}, and, so neither is trivial, max |PWCA(x1, x2) - "
        f"SA(x1)| >= {DEPENDS_FLOOR:g} for a distinct x2. Three decisions: all hold -> holds, all fail -> fails, "
        "else partial")


@experiment("DCAL-04", quick_judged=True, needs=("float64",),
            sizes={"full": {"tokens": 197}, "quick": {"tokens": 50}},
            source='documents/001_128d0a2e45dbf7cd.txt (Dual Cross-Attention Model Optimizations)',
            text=(
                'PWCA: queries of image 1 attend to concatenated keys and values of images 1 and 2. (Property: '
                'what must PWCA return when image 2 equals image 1?)'))
def pwca_semantics(ctx: RunContext) -> Outcome:
    from reprobench_documents.models.dcal.pwca import PairwiseCrossAttention
    from reprobench_documents.models.dcal.vit import init_vit_

    g = make_generator(ctx.seed)
    n = ctx.sizes["tokens"]
    ref = PairwiseCrossAttention(384, 6, weights="copy", kernel="explicit")
    init_vit_(ref, g)
    ref = ref.to(device=ctx.device, dtype=torch.float64)
    opt = PairwiseCrossAttention(384, 6, weights="shared", kernel="sdpa").to(device=ctx.device, dtype=torch.float64)
    opt.load_state_dict(ref.state_dict())
    x1 = torch.randn(2, n, 384, generator=g, dtype=torch.float64).to(ctx.device)
    x2 = torch.randn(2, n, 384, generator=g, dtype=torch.float64).to(ctx.device)
    perm = torch.randperm(n, generator=g).to(ctx.device)
    with torch.no_grad():
        sa = ref.self_attention(x1)
        same = max((m(x1, x1.clone()) - sa).abs().max().item() for m in (ref, opt))
        permuted = max((m(x1, x2[:, perm]) - m(x1, x2)).abs().max().item() for m in (ref, opt))
        depends_on_x2 = (opt(x1, x2) - sa).abs().max().item()
    # The document's snippet, literally: chunk (B, N, 3D) then cat on dim 2 = the feature axis.
    k1 = ref.sa.qkv(x1).chunk(3, dim=-1)[1]
    literal_width = torch.cat([k1, k1], dim=2).shape[-1]
    decisions = [decide("max_abs_diff_pwca_same_image_vs_sa", same, at_most=TOLERANCE),
                 decide("max_abs_diff_image2_tokens_permuted", permuted, at_most=TOLERANCE),
                 decide("max_abs_diff_pwca_vs_sa_distinct_image", depends_on_x2, at_least=DEPENDS_FLOOR)]
    return Outcome(
        decisions=decisions,
        claimed=CLAIMED,
        measured={"max_abs_diff_pwca_same_image_vs_sa": same, "max_abs_diff_image2_tokens_permuted": permuted,
                  "max_abs_diff_pwca_vs_sa_distinct_image": depends_on_x2,
                  "literal_snippet_key_width": literal_width, "dim": 384},
        rule=RULE,
        evidence=(f"float64, dim 384, 6 heads, batch 2, N={n}: PWCA with image 2 = image 1 equals SA to {same:.1e}; "
                  f"permuting image-2 tokens changes nothing ({permuted:.1e}). Read literally, the document's "
                  f"`torch.cat([k1, k2], dim=2)` on the (B, N, D) chunks concatenates features (width {literal_width}), "
                  f"not tokens; we concatenate tokens."),
        deviations=["PWCA concatenates keys/values on the token axis of the per-head layout (B, H, N, hd); the "
                    "document's snippet applies cat(dim=2) to (B, N, D) chunks, which is the feature axis."],
    )
