"""EQ-10: the adapter wrapper's cached (detached) pooled features vs a fresh computation: outputs and gradients."""
from __future__ import annotations

import torch

from reprobench.claims.experiment import Outcome, RunContext, combine, experiment, verdict_if
from reprobench.equivariant.shared_encoder import AdapterLearner, FreshMorphism, IndividualMorphismWrapper
from reprobench.registry import make_generator


@experiment("EQ-10")
def cached_pooled_features(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    learner = AdapterLearner(3, 2, 2, 4, 2, k_neighbors=2).reset_parameters(g).double()
    examples = torch.randn(3, 2, 5, 5, generator=g, dtype=torch.float64)
    wrapper, fresh = IndividualMorphismWrapper(learner, 1), FreshMorphism(learner, 1, examples)
    learner(examples)
    with torch.no_grad():
        same_batch = float((wrapper(examples[1:2]) - learner(examples)[1:2]).abs().max())
        other = torch.randn(1, 2, 5, 5, generator=g, dtype=torch.float64)
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
    equals_fresh = max(new_input, after_step) <= 1e-9
    return Outcome(
        verdict=combine(verdict_if(equals_fresh), verdict_if(pooled_path < 1e-12)),
        claimed="the adapter wrapper reuses pooled features cached (detached) by the last forward pass",
        measured=measured,
        rule="two parts combined: (1) the wrapper's output equals a fresh computation (learner on the examples with the "
             "input in slot i) within 1e-9 relative, for a new input and after an optimizer step; (2) the encoder "
             "receives the same gradient as through a fresh computation (relative difference < 1e-12)",
        evidence=f"float64 learner, 3 examples: right after a forward on the same batch the wrapper matches (diff {same_batch:.1g}); "
                 f"on a new input it is off by {new_input:.2g} and after one SGD step by {after_step:.2g} (relative); "
                 f"{100 * pooled_path:.1f}% of the encoder's fresh gradient flows through the pooled features and the "
                 f"documented wrapper drops it.",
        deviations=["FreshMorphism (corrected wrapper) recomputes the pooled features with gradients on every call."])
