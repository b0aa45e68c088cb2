"""FAM-06: the learning-rate shapes of FAMScheduler and FAMScheduler2."""
from __future__ import annotations

import math

import torch

from reprobench.claims.experiment import Outcome, RunContext, combine, experiment, pyplot, verdict_if
from reprobench.claims.experiments.fam._common import DEVIATIONS


@experiment("FAM-06")
def schedulers(ctx: RunContext) -> Outcome:
    from reprobench.optim.fam_schedulers import FAMScheduler, FAMScheduler2, reference_lrs

    plt = pyplot()
    base = 0.1
    v1 = reference_lrs(lambda o: FAMScheduler(o, 10, 100, 1e-8, 1e-6), base, 121, torch.float64, "cpu")
    v2 = reference_lrs(lambda o: FAMScheduler2(o, 10, 100, 30, 1e-6, 1e-6), base, 121, torch.float64, "cpu")
    v1_ok = (math.isclose(v1[0], 1e-8, abs_tol=1e-15) and math.isclose(v1[10], base, rel_tol=1e-12)
             and math.isclose(v1[100], 1e-6, rel_tol=1e-9) and bool((v1[10:101].diff() <= 0).all()))
    v2_ok = (math.isclose(v2[0], 1e-6, rel_tol=1e-12) and math.isclose(v2[10], base, rel_tol=1e-12)
             and bool((v2[10:30] == base).all()) and math.isclose(v2[30], base + 1e-8, rel_tol=1e-12)
             and math.isclose(v2[100], 1e-6 + 1e-8, rel_tol=1e-9)
             and bool((v2[30:101].diff() <= 0).all()))
    try:
        reference_lrs(lambda o: FAMScheduler(o, 5, 5), base, 8, torch.float64, "cpu")
        equal_divides = False
    except ZeroDivisionError:
        equal_divides = True
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(v1.tolist(), label="FAMScheduler(warmup 10, max 100)")
    ax.plot(v2.tolist(), label="FAMScheduler2(warmup 10, decay 30, total 100)")
    ax.axvline(100, color="gray", ls=":")
    ax.set(xlabel="epoch / step", ylabel="lr", title="document schedulers (past the end: cosine rises again)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ctx.figure_path("fam06_schedulers.png"), dpi=110)
    plt.close(fig)
    return Outcome(
        verdict=combine(verdict_if(v1_ok), verdict_if(v2_ok)),
        claimed="FAMScheduler: linear warmup warmup_start_lr -> base lr, cosine to eta_min; FAMScheduler2: warmup, "
                "optional plateau, cosine decay (+1e-8)",
        measured={"v1_lr_at_0": float(v1[0]), "v1_lr_at_warmup_end": float(v1[10]), "v1_lr_at_end": float(v1[100]),
                  "v1_lr_20_past_end": float(v1[120]), "v2_lr_at_0": float(v2[0]),
                  "v2_lr_at_decay_start": float(v2[30]),
                  "v2_lr_at_end": float(v2[100]), "warmup_equals_total_raises_zero_division": equal_divides},
        rule="holds if, for each scheduler, lr(0) = warmup_start_lr, lr(warmup end) = base lr, lr is non-increasing "
             "after warmup (FAMScheduler2: constant plateau, base lr + 1e-8 at decay start), lr(end) = eta_min "
             "(FAMScheduler2: + 1e-8). "
             "Edge cases are reported, not part of the verdict.",
        evidence=f"Both schedulers stepped as written on a one-parameter SGD (base lr {base}, 121 steps). Shapes as "
                 f"claimed. Undefined by the document: warmup == max_epochs raises ZeroDivisionError "
                 f"({equal_divides}); "
                 f"past the end the cosine rises again (lr {float(v1[120]):.2e} at 20 epochs past the end).",
        figures=["fam06_schedulers.png"], deviations=DEVIATIONS)
