"""ZOO-07: how much computation the gates and jumps skip, and whether the skip decisions get gradients."""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.experiments.zoo._common import pair, max_estimate
from reprobench.measure import count_flops, count_host_syncs, decide, mean_interval
from reprobench.registry import make_generator

SKIPPED_SHARE_MIN = 0.05  # "skip unnecessary computation": more than 5% of the always-compute twin's FLOPs


@experiment("ZOO-07", logic="all-of",
            source='documents/002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)',
            text=(
                'Content-dependent key/value updates (`should_update_key`) and dynamic layer skipping '
                '(`decide_jump`) "learn when to skip unnecessary computation": measure compute skipped.'))  # "learn when to skip": skipping AND a gradient to learn it
def skipped_computation(ctx: RunContext) -> Outcome:
    from reprobench_documents.attention.zoo.integrated import IntegratedAttention
    from reprobench_documents.attention.zoo.myelinated import MyelinatedLayer

    g = make_generator(ctx.seed)
    device = ctx.device
    dims, heads, n, batch = 128, 4, 128, 2
    seeds = range(12)  # in every run: the judged mean's interval depends on the number of inputs
    measured = {"dims": dims, "heads": heads, "n": n, "batch": batch, "inputs": len(seeds)}
    # Per input: the share of the always-compute (sync-free) twin's FLOPs that the skipping reference does not
    # spend; the inputs are random, so each mechanism's skip share is a mean over inputs with its t interval.
    skip_shares = {}
    for label, threshold in (("doc_threshold_0.1", 0.1), ("threshold_0.5", 0.5)):
        ref, opt = pair(MyelinatedLayer, make_generator(ctx.seed), dims=dims, head=heads, layerA=3,
                         sparsity_threshold=threshold)
        ref, opt = ref.to(device), opt.to(device)
        skipped, ratios, syncs = 0, [], 0
        for seed in seeds:
            x = torch.randn(batch, n, dims, generator=g).to(device)
            with torch.no_grad():
                ref_flops = count_flops(lambda: ref(x, seed=seed))
                skipped += sum(action != "attended" for action in ref.last_trace)
                syncs += count_host_syncs(lambda: ref(x, seed=seed))
                ratios.append(ref_flops / count_flops(lambda: opt(x, seed=seed)))
        with torch.no_grad():
            opt_syncs = count_host_syncs(lambda: opt(x, seed=0))
        skip_shares[f"myelinated_{label}"] = mean_interval([1 - r for r in ratios])
        measured[f"myelinated_{label}_fraction_layers_skipped"] = skipped / (3 * len(seeds))
        measured[f"myelinated_{label}_reference_flops_over_sync_free"] = sum(ratios) / len(ratios)
        measured[f"myelinated_{label}_reference_syncs_per_forward"] = syncs / len(seeds)
        measured[f"myelinated_{label}_sync_free_syncs_per_forward"] = opt_syncs
    iref, iopt = pair(IntegratedAttention, make_generator(ctx.seed), dims=dims, head=heads, max_dist=32, win_size=32,
                       max_span=32, ramp=8, span_init=0.5)
    iref, iopt = iref.to(device), iopt.to(device)
    skipped_global, ratios = 0.0, []
    for seed in seeds:
        x = torch.randn(batch, n, dims, generator=g).to(device)
        with torch.no_grad():
            ratios.append(count_flops(lambda: iref(x, seed=seed)) / count_flops(lambda: iopt(x, seed=seed)))
        skipped_global += iref.last_skipped["global"]
    skip_shares["integrated"] = mean_interval([1 - r for r in ratios])
    measured["integrated_reference_flops_over_sync_free"] = sum(ratios) / len(ratios)
    measured["integrated_fraction_global_branch_skipped"] = skipped_global / len(seeds)
    # can the skip decisions be learned? gradients reaching the deciders after one backward
    ref, _ = pair(MyelinatedLayer, make_generator(ctx.seed), dims=dims, head=heads, layerA=3, sparsity_threshold=0.5)
    ref = ref.to(device)
    ref(torch.randn(batch, n, dims, generator=g).to(device), seed=0).square().mean().backward()
    iref(torch.randn(batch, n, dims, generator=g).to(device), seed=0).square().mean().backward()
    deciders = {"myelinated_policy_net": ref.policy_net, "myelinated_node_predictors": ref.node_predictors,
                "integrated_key_update_predictor": iref.key_update_predictor, "integrated_policy_net": iref.policy_net}
    learnable = 0
    for name, module in deciders.items():
        grad_norm = sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)
        measured[f"grad_abs_sum_{name}"] = grad_norm
        learnable += int(grad_norm > 0)
    measured["deciders_receiving_gradient"] = learnable
    judged = ("myelinated_threshold_0.5", "integrated")  # the doc's threshold 0.1 is reported beside them
    skip = decide("largest_mean_share_of_flops_skipped", max_estimate([skip_shares[k] for k in judged]),
                  at_least=SKIPPED_SHARE_MIN,
                  note="; ".join(f"{k}: {skip_shares[k]}" for k in judged))
    measured.update({f"{k}_mean_share_of_flops_skipped": e.point for k, e in skip_shares.items()})
    return Outcome(
        decisions=[skip, decide("deciders_receiving_gradient", learnable, at_least=1)],
        headline="largest_mean_share_of_flops_skipped",
        claimed="Content-dependent key/value updates (should_update_key) and dynamic layer skipping (decide_jump) "
                "learn when to skip unnecessary computation",
        measured=measured,
        rule=f"two decisions. (1) FLOPs, since 'skip computation' is a count of work: per random input, the share of "
             f"the always-compute twin's FLOPs the skipping reference does not spend; its mean over the inputs "
             f"(Student-t interval) for MyelinatedLayer at threshold 0.5 and for IntegratedAttention, and the larger of "
             f"the two (interval [max of lows, max of highs], Bonferroni) must be >= {SKIPPED_SHARE_MIN:g}: holds if "
             f"the whole interval is, fails if wholly below, else inconclusive. (2) The skip decisions are learnable: "
             f"the count of deciders (policy nets, node predictors, update predictors) receiving a nonzero gradient "
             f">= 1 (deterministic). Both hold -> holds, both fail -> fails, a mix -> partial, an undecided one keeps "
             f"it from holds",
        evidence=f"MyelinatedLayer (3 layers) and IntegratedAttention at dims={dims}, n={n}, batch {batch}, "
                 f"{len(seeds)} random inputs/seeds: FLOPs of the skipping reference over the sync-free twin "
                 f"{measured['myelinated_threshold_0.5_reference_flops_over_sync_free']:.2f} / "
                 f"{measured['integrated_reference_flops_over_sync_free']:.2f}; the skipping costs "
                 f"{measured['myelinated_threshold_0.5_reference_syncs_per_forward']:.0f} host syncs per forward; "
                 f"{learnable} of {len(deciders)} deciders get any gradient (hard thresholds and sampled jumps).",
        deviations=["Jump randomness pre-drawn from an explicit generator (inverse-CDF in place of multinomial)."])
