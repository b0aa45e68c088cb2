"""EQ-10: the adapter wrapper's cached (detached) pooled features vs a fresh computation: outputs and gradients."""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.equivariant.shared_encoder import AdapterLearner, FreshMorphism, IndividualMorphismWrapper
from reprobench.measure import decide
from reprobench.registry import make_generator

CLAIMED = "the adapter wrapper reuses pooled features cached (detached) by the last forward pass"
RULE = ("exact errors (float64, deterministic draws), three decisions: the wrapper's output vs a fresh computation "
        "(learner on the examples with the input in slot i), relative difference <= 1e-9 for a new input and after an "
        "optimizer step (one decision each); the encoder's gradient through the wrapper vs through a fresh "
        "computation, relative difference <= 1e-12. All hold -> holds, all fail -> fails, else partial")


@experiment("EQ-10", needs=("float64",),
            source='documents/003_cfb6f10add0ba6bf.txt (Sparse Attention + Group-Aware Homotopy)',
            text=(
                '"Fix 2: pooled features caching": the adapter wrapper reuses pooled features cached (detached) '
        "by the last forward pass. Check that the wrapper's output for an input equals a fresh "
        'computation on that input, and whether gradients reach the parameters that produced the pooled '
        'features.'))
def cached_pooled_features(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    learner = AdapterLearner(3, 2, 2, 4, 2, k_neighbors=2).reset_parameters(g).to(device=ctx.device, dtype=torch.float64)
    examples = torch.randn(3, 2, 5, 5, generator=g, dtype=torch.float64).to(ctx.device)
    wrapper, fresh = IndividualMorphismWrapper(learner, 1), FreshMorphism(learner, 1, examples)
    learner(examples)
    with torch.no_grad():
        same_batch = float((wrapper(examples[1:2]) - learner(examples)[1:2]).abs().max())
        other = torch.randn(1, 2, 5, 5, generator=g, dtype=torch.float64).to(ctx.device)
        new_input = float((wrapper(other) - fresh(other)).abs().max() / fresh(other).abs().max())
    optimizer = torch.optim.SGD(learner.parameters(), lr=0.1)
    learner(examples).pow(2).sum().backward()
    optimizer.step()
    with torch.no_grad():
        after_step = float((wrapper(examples[1:2]) - fresh(examples[1:2])).abs().max() / fresh(examples[1:2]).abs().max())
    grads = {}
    for label, fn in (("documented", wrapper), ("fresh", fresh)):
        learner(examples)
        learner.zero_grad()
        fn(examples[1:2]).sum().backward()
        grads[label] = torch.cat([p.grad.flatten() for p in learner.shared_encoder.parameters()])
    pooled_path = float((grads["fresh"] - grads["documented"]).norm() / grads["fresh"].norm())
    measured = {"max_abs_diff_same_batch_no_update": same_batch, "relative_diff_new_input": new_input,
                "relative_diff_after_one_step": after_step,
                "encoder_grad_share_through_pooled_features_fresh": pooled_path,
                "cached_pooled_features_require_grad": int(learner._cached_pooled_features.requires_grad)}
    decisions = [decide("relative_diff_new_input", new_input, at_most=1e-9),
                 decide("relative_diff_after_one_step", after_step, at_most=1e-9),
                 decide("encoder_grad_relative_diff_documented_vs_fresh", pooled_path, at_most=1e-12)]
    return Outcome(
        decisions=decisions,
        claimed=CLAIMED,
        measured=measured,
        rule=RULE,
        evidence=f"float64 learner, 3 examples: right after a forward on the same batch the wrapper matches (diff {same_batch:.1g}); "
                 f"on a new input it is off by {new_input:.2g} and after one SGD step by {after_step:.2g} (relative); "
                 f"{100 * pooled_path:.1f}% of the encoder's fresh gradient flows through the pooled features and the "
                 f"documented wrapper drops it.",
        deviations=["FreshMorphism (corrected wrapper) recomputes the pooled features with gradients on every call."])
