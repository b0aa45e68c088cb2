"""EQ-07: forward speed of one shared-encoder pass vs N separate networks."""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.experiments.eq._common import ARC_COLORS
from reprobench_documents.equivariant.shared_encoder import AdapterLearner, SeparateNetworks
from reprobench.measure import compare_interleaved, decide_speedup
from reprobench.registry import make_generator

JUDGED_N = 10  # the document's worked example (N = 10 examples)
MIN_SPEEDUP = 1.2  # "instead of N separate passes" read as at least 1.2× faster


@experiment("EQ-07", quick_judged=True, timed=True,
            sizes={"full": {"example_counts": (3, JUDGED_N, 30), "min_run_time": 0.05},
                   "quick": {"example_counts": (JUDGED_N,), "min_run_time": 0.02}},
            source='documents/003_cfb6f10add0ba6bf.txt (Sparse Attention + Group-Aware Homotopy)',
            text=(
                'Shared encoder: "1 shared forward pass" instead of N separate passes: speed.'))
def shared_forward_speed(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    measured: dict = {"grid": 10, "channels": ARC_COLORS, "feature_dim": 16, "pass": "forward, eval, no_grad, float32"}
    speedups = {}
    for n in ctx.sizes["example_counts"]:
        separate = SeparateNetworks(n, ARC_COLORS, ARC_COLORS, 16).reset_parameters(g).to(ctx.device).eval()
        learner = AdapterLearner(n, ARC_COLORS, ARC_COLORS, 16, 8, k_neighbors=min(5, n)).reset_parameters(g)
        learner = learner.to(ctx.device).eval()
        looped = AdapterLearner(n, ARC_COLORS, ARC_COLORS, 16, 8, k_neighbors=min(5, n), path="reference")
        looped = looped.to(ctx.device).eval()
        looped.load_state_dict(learner.state_dict())
        x = torch.randn(n, ARC_COLORS, 10, 10, generator=g).to(ctx.device)
        with torch.no_grad():
            if n == JUDGED_N:  # the judged ratio: paired rounds until its interval clears the rule
                timed, vs_separate = decide_speedup(lambda: separate(x), lambda: learner(x),
                                                    quantity=f"speedup_vs_separate_N{n}", at_least=MIN_SPEEDUP,
                                                    min_run_time=ctx.sizes["min_run_time"],
                                                    budget_s=ctx.decision_budget_s, device=ctx.device)
            else:  # reported, not judged
                vs_separate = compare_interleaved(lambda: separate(x), lambda: learner(x), rounds=3, min_run_time=0.05,
                                                  device=ctx.device)
            vs_loop = compare_interleaved(lambda: looped(x), lambda: learner(x), rounds=2, min_run_time=0.05,
                                          device=ctx.device)
        speedups[n] = timed.estimate.point if n == JUDGED_N else vs_separate.speedup
        measured[f"speedup_vs_separate_N{n}"] = vs_separate.speedup
        measured[f"shared_ms_N{n}"] = vs_separate.candidate.median_ms
        measured[f"separate_ms_N{n}"] = vs_separate.baseline.median_ms
        measured[f"speedup_vs_per_example_loop_N{n}"] = vs_loop.speedup
    return Outcome(
        decisions=[timed],
        claimed="shared encoder: 1 shared forward pass instead of N separate passes (speed)",
        measured=measured,
        rule=f"time (the claim is about speed; batching saves no FLOPs, so time is the measure): N separate networks' "
             f"forward time / the shared-encoder learner's at N = {JUDGED_N}, from paired interleaved rounds (median of the "
             f"round ratios, order-statistic 95% interval, rounds added while undecided). Holds if the whole interval is "
             f">= {MIN_SPEEDUP:g}, fails if wholly below, else inconclusive; other N are reported, not judged",
        evidence=f"N examples of 10x10 grids with 10 colours, D = 16; forward only, "
                 f"{'one thread' if ctx.device.type == 'cpu' else ctx.device.type}: shared vs N separate networks "
                 f"{', '.join(f'N={n}: {s:.2f}x' for n, s in speedups.items())} (N={JUDGED_N}: {timed.estimate}x over "
                 f"{timed.extra.get('rounds')} paired rounds).",
        deviations=["The per-example networks have the shared network's architecture (the document's 48,384-parameter "
                    "network is not specified), so the ratio isolates batching, not network size."])
