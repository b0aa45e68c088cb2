"""DW-05: the predicted per-head component weights are non-negative, sum to 1 and adapt to the input."""
from __future__ import annotations

import torch

from reprobench.claims.experiment import Outcome, RunContext, experiment, verdict_if
from reprobench.claims.experiments.dw._common import F64, _layer
from reprobench.registry import make_generator


@experiment("DW-05")
def dynamic_weights(ctx: RunContext) -> Outcome:
    layer = _layer(ctx.seed, F64)
    g = make_generator(ctx.seed + 1)
    inputs = 10 if ctx.quick else 50
    weights = []
    with torch.no_grad():
        for _ in range(inputs):
            x = torch.randn(2, 12, 64, dtype=F64, generator=g) * (0.5 + 2 * torch.rand(1, dtype=F64, generator=g))
            q, k, _ = layer.split_heads(x, x, x)
            weights.append(layer.component_weights(q, k))
        stacked = torch.stack(weights)  # (inputs, B, H, 3)
        scores = layer.advanced_scores(q, k, 1.0, 1e-8, "optimized")
        per_head_const = torch.randn(2, 8, 1, 1, dtype=F64, generator=g) * 50  # what a scalar regularizer adds
        no_op = float(((scores + per_head_const).softmax(-1) - scores.softmax(-1)).abs().max())
    measured = {
        "weights_shape": "x".join(map(str, stacked.shape[1:])), "max_abs_sum_minus_1": float((stacked.sum(-1) - 1).abs().max()),
        "min_weight": float(stacked.min()), "max_weight": float(stacked.max()),
        "mean_std_across_inputs": float(stacked.std(0).mean()),
        "max_abs_change_across_inputs": float((stacked - stacked[0]).abs().max()),
        "scalar_broadcast_softmax_change": no_op,
    }
    ok = measured["max_abs_sum_minus_1"] <= 1e-12 and measured["min_weight"] >= 0 and measured["max_abs_change_across_inputs"] > 1e-4
    return Outcome(
        verdict=verdict_if(ok),
        claimed="A small network predicts [heads, 3] weights that sum to 1 (softmax) and adapt to the input features",
        measured=measured,
        rule="holds if every weight vector is non-negative, sums to 1 within 1e-12, and the weights for different inputs "
             "differ by more than 1e-4 somewhere; fails otherwise",
        evidence=f"Attention(dim=64, heads=8, dim_head=8), seeded init, {inputs} random inputs (batch 2, 12 tokens, "
                 "random scale), float64. Adding a per-head constant (what a scalar regularizer value would add) changes "
                 f"the attention probabilities by {no_op:.1e}: why the terms are defined per (query, key) pair.",
        deviations=["Weights are [batch, heads, 3] (per sample) rather than [heads, 3], so one sample's output never "
                    "depends on the other samples in its batch; pooled per-head (mean q, mean k) features feed the predictor."],
    )
