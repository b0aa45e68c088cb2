"""ZOO-07: how much computation the gates and jumps skip, and whether the skip decisions get gradients."""
from __future__ import annotations

import torch

from reprobench.claims.experiment import Outcome, RunContext, combine, experiment, verdict_if
from reprobench.claims.experiments.zoo._common import _pair
from reprobench.measure import count_flops, count_host_syncs
from reprobench.registry import make_generator


@experiment("ZOO-07")
def skipped_computation(ctx: RunContext) -> Outcome:
    from reprobench.attention.zoo.integrated import IntegratedAttention
    from reprobench.attention.zoo.myelinated import MyelinatedLayer

    g = make_generator(ctx.seed)
    dims, heads, n, batch = 128, 4, 128, 2
    seeds = range(4 if ctx.quick else 12)
    measured = {"dims": dims, "heads": heads, "n": n, "batch": batch, "inputs": len(seeds)}
    for label, threshold in (("doc_threshold_0.1", 0.1), ("threshold_0.5", 0.5)):
        ref, opt = _pair(MyelinatedLayer, make_generator(ctx.seed), dims=dims, head=heads, layerA=3,
                         sparsity_threshold=threshold)
        skipped, ref_flops, syncs = 0, 0, 0
        for seed in seeds:
            x = torch.randn(batch, n, dims, generator=g)
            with torch.no_grad():
                ref_flops += count_flops(lambda: ref(x, seed=seed))
                skipped += sum(action != "attended" for action in ref.last_trace)
                syncs += count_host_syncs(lambda: ref(x, seed=seed))
        with torch.no_grad():
            opt_flops = count_flops(lambda: opt(x, seed=0)) * len(seeds)
            opt_syncs = count_host_syncs(lambda: opt(x, seed=0))
        measured[f"myelinated_{label}_fraction_layers_skipped"] = skipped / (3 * len(seeds))
        measured[f"myelinated_{label}_reference_flops_over_sync_free"] = ref_flops / opt_flops
        measured[f"myelinated_{label}_reference_syncs_per_forward"] = syncs / len(seeds)
        measured[f"myelinated_{label}_sync_free_syncs_per_forward"] = opt_syncs
    iref, iopt = _pair(IntegratedAttention, make_generator(ctx.seed), dims=dims, head=heads, max_dist=32, win_size=32,
                       max_span=32, ramp=8, span_init=0.5)
    skipped_global, ref_flops = 0.0, 0
    for seed in seeds:
        x = torch.randn(batch, n, dims, generator=g)
        with torch.no_grad():
            ref_flops += count_flops(lambda: iref(x, seed=seed))
        skipped_global += iref.last_skipped["global"]
    with torch.no_grad():
        measured["integrated_reference_flops_over_sync_free"] = ref_flops / (count_flops(lambda: iopt(x, seed=0))
                                                                             * len(seeds))
    measured["integrated_fraction_global_branch_skipped"] = skipped_global / len(seeds)
    # can the skip decisions be learned? gradients reaching the deciders after one backward
    ref, _ = _pair(MyelinatedLayer, make_generator(ctx.seed), dims=dims, head=heads, layerA=3, sparsity_threshold=0.5)
    ref(torch.randn(batch, n, dims, generator=g), seed=0).square().mean().backward()
    iref(torch.randn(batch, n, dims, generator=g), seed=0).square().mean().backward()
    deciders = {"myelinated_policy_net": ref.policy_net, "myelinated_node_predictors": ref.node_predictors,
                "integrated_key_update_predictor": iref.key_update_predictor, "integrated_policy_net": iref.policy_net}
    learnable = 0
    for name, module in deciders.items():
        grad_norm = sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)
        measured[f"grad_abs_sum_{name}"] = grad_norm
        learnable += int(grad_norm > 0)
    measured["deciders_receiving_gradient"] = learnable
    skips = max(1 - measured["myelinated_threshold_0.5_reference_flops_over_sync_free"],
                1 - measured["integrated_reference_flops_over_sync_free"]) > 0.05
    return Outcome(
        verdict=combine(verdict_if(skips), verdict_if(learnable > 0)),
        claimed="Content-dependent key/value updates (should_update_key) and dynamic layer skipping (decide_jump) "
                "learn when to skip unnecessary computation",
        measured=measured,
        rule="two checks: (1) the gates/jumps skip > 5% of the FLOPs of the always-compute twin on random inputs; "
             "(2) the skip decisions are learnable: some decider (policy nets, node predictors, update predictors) "
             "receives a nonzero gradient. both -> holds, neither -> fails, one -> partial",
        evidence=f"MyelinatedLayer (3 layers) and IntegratedAttention at dims={dims}, n={n}, batch {batch}, "
                 f"{len(seeds)} random inputs/seeds: FLOPs of the skipping reference over the sync-free twin "
                 f"{measured['myelinated_threshold_0.5_reference_flops_over_sync_free']:.2f} / "
                 f"{measured['integrated_reference_flops_over_sync_free']:.2f}; the skipping costs "
                 f"{measured['myelinated_threshold_0.5_reference_syncs_per_forward']:.0f} host syncs per forward; "
                 f"{learnable} of {len(deciders)} deciders get any gradient (hard thresholds and sampled jumps).",
        deviations=["Jump randomness pre-drawn from an explicit generator (inverse-CDF in place of multinomial)."])
