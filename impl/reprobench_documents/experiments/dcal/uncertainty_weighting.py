"""DCAL-10: the uncertainty-weighted loss balances the SA, GLCA and PWCA losses."""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench.measure import decide

CLAIMED = ("Uncertainty-weighted loss (Kendall et al.) balances the SA, GLCA and PWCA losses automatically; weights "
           "reported")
BALANCE = 1.01  # weighted losses agree within 1% at the stationary point s_i = log L_i
RULE = ("exact values (deterministic SGD on fixed losses, float64): (1) task weights get_current_weights misses or adds "
        f"against the three tasks: at most 0; (2) max/min of the weighted losses exp(−s_i)·L_i <= {BALANCE:g}. Both hold "
        "-> holds, both fail -> fails, one -> partial")


@experiment("DCAL-10", quick_judged=True, needs=("float64",),
            sizes={"full": {"steps": 400}, "quick": {"steps": 200}},
            source='documents/001_128d0a2e45dbf7cd.txt (Dual Cross-Attention Model Optimizations)',
            text=(
                'Uncertainty-weighted loss (Kendall et al.) balances the SA, GLCA and PWCA losses automatically; '
                'weights are reported.'))
def uncertainty_weighting(ctx: RunContext) -> Outcome:
    from reprobench_documents.models.dcal.uncertainty_loss import UncertaintyWeightedLoss

    values = {"sa_loss": 0.5, "glca_loss": 2.0, "pwca_loss": 4.0}
    loss_fn = UncertaintyWeightedLoss(3).to(device=ctx.device, dtype=torch.float64)
    opt = torch.optim.SGD(loss_fn.parameters(), lr=0.5)
    steps = ctx.sizes["steps"]
    for _ in range(steps):
        opt.zero_grad()
        out = loss_fn({k: torch.tensor(v, dtype=torch.float64, device=ctx.device) for k, v in values.items()})
        out["total_loss"].backward()
        opt.step()
    weights = loss_fn.get_current_weights()
    weighted = [weights[f"{k}_weight"] * v for k, v in values.items()]  # exp(-s_i) L_i: 1 at the optimum
    spread = max(weighted) / min(weighted)
    missing_or_extra = len(set(weights) ^ {f"{k}_weight" for k in values})
    return Outcome(
        decisions=[decide("weight_keys_missing_or_extra", missing_or_extra, at_most=0),
                   decide("weighted_loss_max_over_min", spread, at_most=BALANCE)],
        headline="weighted_loss_max_over_min",
        claimed=CLAIMED,
        measured={**{k: w for k, w in weights.items()}, "weighted_loss_max_over_min": spread, "sgd_steps": steps},
        rule=RULE,
        evidence=(f"Form ½Σ(exp(−s_i)L_i + s_i) (Kendall et al. 2018, as the DCAL paper writes it). Trained on fixed losses "
                  f"0.5 / 2 / 4 for {steps} SGD steps the weights go to 1/L_i ({', '.join(f'{w:.3f}' for w in weights.values())}) "
                  f"and the weighted losses agree to a ratio of {spread:.4f}: balanced, each task scaled by its inverse loss."),
        deviations=["The document gives no formula; we use ½Σ(exp(−s)L + s) with s = log σ², the form in the DCAL paper."],
    )
