"""ZOO-05: does the Refiner's Q-learning reach the optimal span policy on a toy task?"""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.experiments.zoo._common import proportion_estimate
from reprobench.measure import compare_interleaved, decide
from reprobench.registry import make_generator

CONVERGED_SHARE = 0.9  # the share of independent learners that must reach the optimal policy


@experiment("ZOO-05", needs=("float64",),  # the batched run must equal the Python-float reference exactly
            source='documents/002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)',
            text=(
                'Refiner: Q-learning over attention spans converges on a toy reward.'))
def refiner_converges(ctx: RunContext) -> Outcome:
    from reprobench_documents.attention.zoo.refiner import RefinerRun, span_environment

    # 64 learners: the rule must be able to decide either way. With n learners all optimal, the exact 95%
    # interval's lower end is 0.025^(1/n): 0.794 for 16 (the >= 0.9 rule could never hold), 0.944 for 64.
    states, target, learners = 7, 4, 64
    steps = 3000  # in every run: the judged share of converged learners depends on the steps
    config = dict(states=states, actions=3, alpha=0.3, gamma=0.9, epsilon=0.2, episode_len=10)
    device = ctx.device
    rewards, next_state, optimal = span_environment(states, target, device=device)
    uniforms = torch.rand(learners, steps, 3, generator=make_generator(ctx.seed), dtype=torch.float64).to(device)
    opt = RefinerRun(**config, path="optimized")
    ref = RefinerRun(**config, path="reference")
    q = opt(rewards, next_state, uniforms)
    q_ref = ref(rewards, next_state, uniforms[:2])
    converged = (q.argmax(-1) == optimal).all(-1)
    checkpoints = [s for s in (250, 500, 1000, 1500, 2000, 3000) if s <= steps]
    first = {}
    for s in checkpoints:
        first[s] = float((opt(rewards, next_state, uniforms[:, :s]).argmax(-1) == optimal).all(-1).double().mean())
    cmp = compare_interleaved(lambda: ref(rewards, next_state, uniforms[:, :200]),
                              lambda: opt(rewards, next_state, uniforms[:, :200]), rounds=1, min_run_time=0.05,
                              device=device)
    converged_count = int(converged.sum())
    share = proportion_estimate(converged_count, learners)
    measured = {"states": states, "actions": 3, "learners": learners, "steps": steps, **config,
                "learners_optimal": converged_count, "fraction_learners_optimal": share.point,
                "max_abs_diff_optimized_vs_reference": float((q[:2] - q_ref).abs().max()),
                "speedup_batched_vs_dict_200_steps": cmp.speedup}
    measured.update({f"fraction_optimal_after_{s}_steps": v for s, v in first.items()})
    decisions = [decide("fraction_learners_optimal", share, at_least=CONVERGED_SHARE),
                 decide("max_abs_diff_optimized_vs_reference", measured["max_abs_diff_optimized_vs_reference"],
                        at_most=0.0)]
    return Outcome(
        decisions=decisions,
        headline="fraction_learners_optimal",
        claimed="Q-learning to dynamically refine attention parameters, learning optimal attention spans through "
                "exploration and exploitation",
        measured=measured,
        rule=f"the share of independent ε-greedy learners (one fixed generator) that end with the optimal greedy span "
             f"action in every state of the toy span task, a proportion over learners with its exact (Clopper-Pearson) "
             f"95% interval: holds if the whole interval is >= {CONVERGED_SHARE:g}, fails if it is wholly below, else "
             f"inconclusive; and the batched implementation equals the dict reference exactly (max abs diff <= 0, "
             f"deterministic). Both hold -> holds, a decisive failure -> partial/fails, an undecided share keeps it "
             f"from holds",
        evidence=f"{learners} Refiner learners, {steps} steps on a {states}-state span task (actions shrink/keep/grow, "
                 f"reward -|span - {target}|/S): {converged_count} of {learners} reach the optimal policy "
                 f"(share {share}).",
        deviations=["The document gives only __init__ (states, actions, alpha, gamma, epsilon, R = {}); the update, "
                    "ε-greedy choice and the toy environment are the textbook method (Watkins 1989)."])
