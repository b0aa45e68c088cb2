"""DCAL-02: the time PWCA saves by reusing SA's weights instead of copying them."""
from __future__ import annotations

import statistics

import torch

from reprobench.claims.experiment import Outcome, RunContext, experiment, pyplot, within_factor
from reprobench.measure import compare_interleaved, time_callable
from reprobench.registry import make_generator


@experiment("DCAL-02")
def pwca_time(ctx: RunContext) -> Outcome:
    plt = pyplot()

    from reprobench.models.dcal.pwca import PairwiseCrossAttention, copy_attention
    from reprobench.models.dcal.vit import init_vit_

    # The paper's two settings: Re-ID 256×128 (N = 129) and FGVC 448×448 (N = 785), patch 16.
    sizes = (129, 785) if ctx.quick else (50, 129, 785)
    # many short alternating rounds: on a shared machine the median of many A/B blocks is what survives
    rounds, min_run = (3, 0.05) if ctx.quick else (5, 0.2)
    g = make_generator(ctx.seed)
    before = PairwiseCrossAttention(384, 6, weights="copy", kernel="sdpa")
    init_vit_(before, g)
    after = PairwiseCrossAttention(384, 6, weights="shared", kernel="sdpa")
    after.load_state_dict(before.state_dict())
    before, after = before.to(ctx.device).train(), after.to(ctx.device).train()
    savings, speedups, copy_share = [], [], []
    sa = after.sa
    copy_ms = time_callable(lambda: copy_attention(sa), min_run_time=0.05 if ctx.quick else 0.2).median_ms
    for n in sizes:
        x1 = torch.randn(1, n, 384, generator=g).to(ctx.device)
        x2 = torch.randn(1, n, 384, generator=g).to(ctx.device)
        torch.testing.assert_close(after(x1, x2), before(x1, x2))  # no speed figure without equal outputs

        def step(module):  # a training-mode forward (autograd recording): where the copy happens
            return lambda: module(x1, x2)

        # Median of per-pair ratios (each pair an interleaved A/B): a drifting background load on this
        # shared machine moves both halves of a pair alike, so pairs cancel it better than pooled medians.
        pairs = [compare_interleaved(step(before), step(after), rounds=1, min_run_time=min_run, device=ctx.device)
                 for _ in range(rounds)]
        speedup = statistics.median(p.speedup for p in pairs)
        speedups.append(speedup)
        savings.append(1 - 1 / speedup)
        # the same question from two separate timings: the copy's share of a 'before' step
        after_ms = statistics.median(p.candidate.median_ms for p in pairs)
        copy_share.append(copy_ms / (copy_ms + after_ms))
    saved = dict(zip(sizes, savings))
    headline = saved[785]
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot(sizes, [100 * s for s in savings], "o-", label="measured (interleaved A/B)")
    ax.plot(sizes, [100 * s for s in copy_share], "s--", label="copy time / step time")
    ax.axhline(30, color="r", ls="--", label="claimed ~30%")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("tokens per image N")
    ax.set_ylabel("time saved by weight sharing (%)")
    ax.set_title("PWCA layer forward (train mode), dim 384, 6 heads", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(ctx.figure_path("dcal02_pwca_time.png"), dpi=120)
    plt.close(fig)
    measured = {f"time_saved_N{n}": s for n, s in zip(sizes, savings)}
    measured.update({f"speedup_N{n}": s for n, s in zip(sizes, speedups)})
    measured.update({f"copy_share_N{n}": s for n, s in zip(sizes, copy_share)})
    measured["weight_copy_ms"] = copy_ms
    return Outcome(
        verdict=within_factor(max(headline, 1e-9), 0.30, 2.0),
        claimed="~30% faster PWCA computation (no weight copying)",
        measured=measured,
        rule="holds if the time saved at the claims' size (DeiT-Small, 448×448 FGVC: N=785) lies within a factor 2 of "
             "30% (15%–60%); other sizes are reported, not judged",
        evidence=(f"One PWCA layer (DeiT-Small width: dim 384, 6 heads, batch 1, float32), training-mode forward, copy-then-attend "
                  f"vs shared weights, both through SDPA, median of {rounds} interleaved A/B pairs at N = {', '.join(map(str, sizes))}; "
                  f"outputs equal. Copying 2.3 MB of weights ({copy_ms:.2f} ms, O(D²)) against O(N·D² + N²·D) of "
                  f"attention: the saving is {saved[129]:.1%} at N=129 (Re-ID) and {headline:.1%} at N=785 (FGVC, copy share "
                  f"{copy_share[-1]:.1%}); it shrinks as N grows. This machine is shared, so single A/B ratios are noisy; the copy share is the "
                  f"steadier estimate."),
        figures=["dcal02_pwca_time.png"],
    )
