"""EQ-07: forward speed of one shared-encoder pass vs N separate networks."""
from __future__ import annotations

import torch

from reprobench.claims.experiment import Outcome, RunContext, experiment, verdict_if
from reprobench.claims.experiments.eq._common import ARC_COLORS
from reprobench.equivariant.shared_encoder import AdapterLearner, SeparateNetworks
from reprobench.measure import compare_interleaved
from reprobench.registry import make_generator


@experiment("EQ-07")
def shared_forward_speed(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    measured: dict = {"grid": 10, "channels": ARC_COLORS, "feature_dim": 16, "pass": "forward, eval, no_grad, float32"}
    speedups = {}
    for n in ((10,) if ctx.quick else (3, 10, 30)):
        separate = SeparateNetworks(n, ARC_COLORS, ARC_COLORS, 16).reset_parameters(g).eval()
        learner = AdapterLearner(n, ARC_COLORS, ARC_COLORS, 16, 8, k_neighbors=min(5, n)).reset_parameters(g).eval()
        looped = AdapterLearner(n, ARC_COLORS, ARC_COLORS, 16, 8, k_neighbors=min(5, n), path="reference").eval()
        looped.load_state_dict(learner.state_dict())
        x = torch.randn(n, ARC_COLORS, 10, 10, generator=g)
        with torch.no_grad():
            vs_separate = compare_interleaved(lambda: separate(x), lambda: learner(x), rounds=2 if ctx.quick else 3,
                                              min_run_time=0.05)
            vs_loop = compare_interleaved(lambda: looped(x), lambda: learner(x), rounds=2, min_run_time=0.05)
        speedups[n] = vs_separate.speedup
        measured[f"speedup_vs_separate_N{n}"] = vs_separate.speedup
        measured[f"shared_ms_N{n}"] = vs_separate.candidate.median_ms
        measured[f"separate_ms_N{n}"] = vs_separate.baseline.median_ms
        measured[f"speedup_vs_per_example_loop_N{n}"] = vs_loop.speedup
    return Outcome(
        verdict=verdict_if(speedups[10] >= 1.2),
        claimed="shared encoder: 1 shared forward pass instead of N separate passes (speed)",
        measured=measured,
        rule="holds if the shared-encoder learner's forward is >= 1.2x faster than N separate networks at N = 10 (interleaved medians)",
        evidence=f"N examples of 10x10 grids with 10 colours, D = 16; forward only, one thread: shared vs N separate "
                 f"networks {', '.join(f'N={n}: {s:.2f}x' for n, s in speedups.items())}.",
        deviations=["The per-example networks have the shared network's architecture (the document's 48,384-parameter "
                    "network is not specified), so the ratio isolates batching, not network size."])
