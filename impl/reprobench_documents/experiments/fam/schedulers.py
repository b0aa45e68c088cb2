"""FAM-06: the learning-rate shapes of FAMScheduler and FAMScheduler2."""
from __future__ import annotations

import math

import torch

from reprobench.claims import Outcome, RunContext, experiment, pyplot
from reprobench_documents.experiments.fam._common import DEVIATIONS
from reprobench.measure import decide

BASE, WARMUP, DECAY_START, TOTAL = 0.1, 10, 30, 100  # base lr; warmup end, FAMScheduler2's decay start, max epochs
V1_START, V2_START, ETA_MIN, V2_OFFSET = 1e-8, 1e-6, 1e-6, 1e-8  # warmup_start_lr (v1, v2), eta_min, v2's +1e-8
TOL_POINT, TOL_END = 1e-12, 1e-9  # relative: exact arithmetic at the warmup end and decay start; the cosine's end
CLAIMED = ("FAMScheduler: linear warmup warmup_start_lr -> base lr, cosine to eta_min; FAMScheduler2: warmup, "
           "optional plateau, cosine decay (+1e-8)")
RULE = (f"counts (deterministic; float64 lrs of the document's schedulers, base lr {BASE}, warmup {WARMUP}, decay start "
        f"{DECAY_START}, {TOTAL} epochs), four decisions, at most 0 each: per scheduler, the stated points off their "
        f"value (lr(0) = warmup_start_lr, lr(warmup end) = base lr, FAMScheduler2's plateau and lr(decay start) = base "
        f"lr + 1e-8, each within {TOL_POINT:g} relative; lr(end) = eta_min (FAMScheduler2: + 1e-8) within {TOL_END:g} "
        f"relative), and the epochs after warmup (FAMScheduler2: after decay start) where lr increases. All hold -> "
        f"holds, all fail -> fails, else partial. Edge cases (warmup == max_epochs, epochs past the end) are reported, "
        f"not judged")


def off_target(value: float, target: float, rel: float) -> int:
    """1 if `value` is not within `rel` relative of `target` (math.isclose, no absolute slack), else 0."""
    return int(not math.isclose(value, target, rel_tol=rel, abs_tol=0.0))


@experiment("FAM-06", needs=("float64",),
            source='documents/002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)',
            text=(
                'FAMScheduler: linear warmup from warmup_start_lr to base lr, then cosine to eta_min. '
                'FAMScheduler2: warmup, optional plateau, cosine decay (+1e-8).'))
def schedulers(ctx: RunContext) -> Outcome:
    from reprobench_documents.optim.fam_schedulers import FAMScheduler, FAMScheduler2, reference_lrs

    plt = pyplot()
    n = TOTAL + 21  # 20 epochs past the end
    v1 = reference_lrs(lambda o: FAMScheduler(o, WARMUP, TOTAL, V1_START, ETA_MIN), BASE, n, torch.float64, ctx.device)
    v2 = reference_lrs(lambda o: FAMScheduler2(o, WARMUP, TOTAL, DECAY_START, V2_START, ETA_MIN), BASE, n,
                       torch.float64, ctx.device)
    lr1, lr2 = v1.tolist(), v2.tolist()  # a few hundred host floats, read once for the judged points
    v1_points = [(0, V1_START, TOL_POINT), (WARMUP, BASE, TOL_POINT), (TOTAL, ETA_MIN, TOL_END)]
    v2_points = ([(0, V2_START, TOL_POINT)] + [(e, BASE, TOL_POINT) for e in range(WARMUP, DECAY_START)]
                 + [(DECAY_START, BASE + V2_OFFSET, TOL_POINT), (TOTAL, ETA_MIN + V2_OFFSET, TOL_END)])
    v1_off = sum(off_target(lr1[e], target, rel) for e, target, rel in v1_points)
    v2_off = sum(off_target(lr2[e], target, rel) for e, target, rel in v2_points)
    v1_rises = int((v1[WARMUP:TOTAL + 1].diff() > 0).sum())
    v2_rises = int((v2[DECAY_START:TOTAL + 1].diff() > 0).sum())
    try:
        reference_lrs(lambda o: FAMScheduler(o, 5, 5), BASE, 8, torch.float64, ctx.device)
        equal_divides = False
    except ZeroDivisionError:
        equal_divides = True
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(lr1, label="FAMScheduler(warmup 10, max 100)")
    ax.plot(lr2, label="FAMScheduler2(warmup 10, decay 30, total 100)")
    ax.plot([e for e, _, _ in v1_points], [t for _, t, _ in v1_points], "kx", ms=7,
            label="rule: stated lr at start, warmup end, end")
    ax.plot([e for e, _, _ in v2_points], [t for _, t, _ in v2_points], "k+", ms=7,
            label="rule: FAMScheduler2's stated points (plateau, decay start)")
    ax.axvline(TOTAL, color="gray", ls=":")
    ax.set(xlabel="epoch / step", ylabel="lr", title="document schedulers (past the end: cosine rises again)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ctx.figure_path("fam06_schedulers.png"), dpi=110)
    plt.close(fig)
    decisions = [decide("v1_stated_points_off", v1_off, at_most=0),
                 decide("v1_lr_increases_after_warmup", v1_rises, at_most=0),
                 decide("v2_stated_points_off", v2_off, at_most=0),
                 decide("v2_lr_increases_after_decay_start", v2_rises, at_most=0)]
    return Outcome(
        decisions=decisions,
        claimed=CLAIMED,
        measured={"v1_lr_at_0": lr1[0], "v1_lr_at_warmup_end": lr1[WARMUP], "v1_lr_at_end": lr1[TOTAL],
                  "v1_lr_20_past_end": lr1[TOTAL + 20], "v2_lr_at_0": lr2[0],
                  "v2_lr_at_decay_start": lr2[DECAY_START], "v2_lr_at_end": lr2[TOTAL],
                  "v1_stated_points": len(v1_points), "v2_stated_points": len(v2_points),
                  "warmup_equals_total_raises_zero_division": equal_divides},
        rule=RULE,
        evidence=f"Both schedulers stepped as written on a one-parameter SGD (base lr {BASE}, {n} steps), lrs kept in "
                 f"float64 on {ctx.device.type}: {v1_off}/{len(v1_points)} and {v2_off}/{len(v2_points)} stated points "
                 f"off, {v1_rises} and {v2_rises} increases in the decay. Undefined by the document: warmup == "
                 f"max_epochs raises ZeroDivisionError ({equal_divides}); past the end the cosine rises again (lr "
                 f"{lr1[TOTAL + 20]:.2e} at 20 epochs past the end).",
        figures=["fam06_schedulers.png"], deviations=DEVIATIONS)
