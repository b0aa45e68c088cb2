"""EFF-10: every documented attention block builds and runs, and get_attention picks by length."""
from __future__ import annotations

import torch

from reprobench.claims.experiment import Outcome, RunContext, experiment, verdict_if
from reprobench.registry import make_generator


@experiment("EFF-10")
def blocks_build_and_run(ctx: RunContext) -> Outcome:
    from reprobench.attention.blocks import HierarchicalAttentionBlock, LinearAttentionBlock, get_attention

    g = make_generator(ctx.seed)
    n = 64 if ctx.quick else 512
    x = torch.randn(1, n, 768, generator=g)
    memory = torch.randn(1, 64, 768, generator=g)
    results = {}
    with torch.no_grad():
        for kind in ("strided", "local_global", "cross_memory", "performer", "mamba"):
            cls = LinearAttentionBlock if kind in ("performer", "mamba") else HierarchicalAttentionBlock
            block = cls(attention_type=kind).reset_parameters(g).eval()  # the document's defaults: dim 768, 12 heads
            out = block(x, memory=memory) if kind == "cross_memory" else block(x)
            results[f"{kind}_runs"] = int(out.shape == x.shape and bool(torch.isfinite(out).all()))
            if kind == "cross_memory":
                changed = not torch.allclose(block(x, memory=memory.flip(-1)), out)
                try:
                    block(x)
                    missing_raises = False
                except ValueError:
                    missing_raises = True
                results["cross_memory_memory_passes_through"] = int(changed and missing_raises)
        # dim 48 / 4 heads: the thresholds do not depend on the width, and building five 768-dim blocks costs time
        picks = {s: get_attention(s, dim=48, num_heads=4).attention_type for s in (256, 511, 512, 4095, 4096)}
    thresholds_ok = picks == {256: "local_global", 511: "local_global", 512: "strided", 4095: "strided", 4096: "performer"}
    results.update({f"get_attention_{s}": kind for s, kind in picks.items()})
    ok = all(v == 1 for k, v in results.items() if k.endswith("_runs") or k.endswith("through")) and thresholds_ok
    return Outcome(
        verdict=verdict_if(ok),
        claimed="HierarchicalAttentionBlock / LinearAttentionBlock / get_attention: every documented attention_type builds "
                "and runs; memory passes through for cross_memory",
        measured=results,
        rule="holds if all five documented attention types build with the document's defaults and return finite "
             "(batch, n, 768) outputs, the cross_memory block's output depends on memory and raises without it, and "
             "get_attention picks local_global < 512 <= strided < 4096 <= performer",
        evidence=f"Blocks at dim 768, 12 heads, batch 1, n={n}, fp32 forward; memory of 64 tokens for cross_memory; "
                 f"get_attention checked at n = 256, 511, 512, 4095, 4096.",
        deviations=["Block layout (pre-norm, FFN 4x with GELU) is ours: the document says only 'layer normalization "
                    "and feed-forward network'."],
    )
