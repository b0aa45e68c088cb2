"""DW-05: the predicted per-head component weights are non-negative, sum to 1 and adapt to the input."""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.experiments.dw._common import F64, seeded_layer
from reprobench.measure import decide
from reprobench.registry import make_generator

CLAIMED = "A small network predicts [heads, 3] weights that sum to 1 (softmax) and adapt to the input features"
RULE = ("exact values over the inputs (float64, deterministic draws), three decisions: max |Σ weights - 1| <= 1e-12; "
        "the smallest weight >= 0; the largest change of any weight between inputs >= 1e-4 (they adapt). All hold -> "
        "holds, all fail -> fails, else partial")


@experiment("DW-05", quick_judged=True, needs=("float64",),
            sizes={"full": {"inputs": 50}, "quick": {"inputs": 10}},
            source='documents/000_294012e263fd6301.txt (Dynamic Weighting Formula Implementation)',
            text=(
                'Dynamic weights: a small network predicts [heads, 3] weights that sum to 1 (softmax) and change '
                'with the input.'))
def dynamic_weights(ctx: RunContext) -> Outcome:
    layer = seeded_layer(ctx.seed, dtype=F64, device=ctx.device)
    g = make_generator(ctx.seed + 1)
    inputs = ctx.sizes["inputs"]
    weights = []
    with torch.no_grad():
        for _ in range(inputs):
            x = (torch.randn(2, 12, 64, dtype=F64, generator=g) * (0.5 + 2 * torch.rand(1, dtype=F64, generator=g))).to(ctx.device)
            q, k, _ = layer.split_heads(x, x, x)
            weights.append(layer.component_weights(q, k))
        stacked = torch.stack(weights)  # (inputs, B, H, 3)
        scores = layer.advanced_scores(q, k, 1.0, 1e-8, "optimized")
        per_head_const = torch.randn(2, 8, 1, 1, dtype=F64, generator=g).to(ctx.device) * 50  # what a scalar regularizer adds
        no_op = float(((scores + per_head_const).softmax(-1) - scores.softmax(-1)).abs().max())
    measured = {
        "weights_shape": "x".join(map(str, stacked.shape[1:])), "max_abs_sum_minus_1": float((stacked.sum(-1) - 1).abs().max()),
        "min_weight": float(stacked.min()), "max_weight": float(stacked.max()),
        "mean_std_across_inputs": float(stacked.std(0).mean()),
        "max_abs_change_across_inputs": float((stacked - stacked[0]).abs().max()),
        "scalar_broadcast_softmax_change": no_op,
    }
    decisions = [decide("max_abs_sum_minus_1", measured["max_abs_sum_minus_1"], at_most=1e-12),
                 decide("min_weight", measured["min_weight"], at_least=0.0),
                 decide("max_abs_change_across_inputs", measured["max_abs_change_across_inputs"], at_least=1e-4)]
    return Outcome(
        decisions=decisions,
        claimed=CLAIMED,
        measured=measured,
        rule=RULE,
        evidence=f"Attention(dim=64, heads=8, dim_head=8), seeded init, {inputs} random inputs (batch 2, 12 tokens, "
                 "random scale), float64. Adding a per-head constant (what a scalar regularizer value would add) changes "
                 f"the attention probabilities by {no_op:.1e}: why the terms are defined per (query, key) pair.",
        deviations=["Weights are [batch, heads, 3] (per sample) rather than [heads, 3], so one sample's output never "
                    "depends on the other samples in its batch; pooled per-head (mean q, mean k) features feed the predictor."],
    )
