"""ZOO-03: MyelinatedLayer's attention rows and masks (float 0/1 node mask added to the scores)."""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench.measure import count_host_syncs, decide
from reprobench.registry import make_generator

ROW_SUM_TOLERANCE = 1e-5  # float32 rows of a softmax sum to 1 within this


@experiment("ZOO-03", logic="all-of", quick_judged=True,
            sizes={"full": {"inputs": 8}, "quick": {"inputs": 3}},  # worst case over this many random inputs
            source='documents/002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)',
            text=(
                'MyelinatedLayer: node-importance gating, policy-driven layer jumps, working memory; every '
                'attention row it uses sums to 1 over unmasked keys; masks do what they say.'))  # rows sum to 1 over the unmasked keys: no weight on masked ones
def myelinated_masks(ctx: RunContext) -> Outcome:
    from reprobench_documents.attention.zoo.myelinated import MyelinatedLayer

    g = make_generator(ctx.seed)
    device = ctx.device
    dims, heads, n = 64, 4, 32
    seeds = range(ctx.sizes["inputs"])
    measured = {"dims": dims, "heads": heads, "n": n, "inputs": len(seeds)}
    for label, bool_mask in (("as_written", False), ("bool_mask_fixed", True)):
        module = MyelinatedLayer(dims, heads, layerA=3, sparsity_threshold=0.5, bool_mask=bool_mask,
                                 path="reference").reset_parameters(make_generator(ctx.seed)).to(device).eval()
        worst_row, masked_mass, masked_keys = 0.0, 0.0, 0
        for _ in seeds:
            x = torch.randn(2, n, dims, generator=g).to(device)
            with torch.no_grad():
                probs, allowed = module.attention_probs(x)
            allowed = allowed.expand_as(probs)
            worst_row = max(worst_row, float((probs.sum(-1) - 1).abs().max()))
            masked_mass = max(masked_mass, float((probs * ~allowed).sum(-1).max()))
            masked_keys += int((~allowed).sum())
        measured[f"{label}_max_row_sum_error"] = worst_row
        measured[f"{label}_max_weight_on_masked_keys_per_row"] = masked_mass
        measured[f"{label}_masked_query_key_pairs"] = masked_keys
    doc = MyelinatedLayer(dims, heads, path="reference").reset_parameters(make_generator(ctx.seed)).to(device).eval()
    x = torch.randn(2, n, dims, generator=g).to(device)
    with torch.no_grad():
        measured["doc_threshold_0.1_fraction_keys_masked_at_init"] = float(
            1 - doc.predict_node_importance(x, 0).mean())
        measured["reference_host_syncs_per_forward"] = count_host_syncs(lambda: doc(x, seed=0))
    decisions = [decide("as_written_max_row_sum_error", measured["as_written_max_row_sum_error"],
                        at_most=ROW_SUM_TOLERANCE),
                 decide("as_written_max_weight_on_masked_keys_per_row",
                        measured["as_written_max_weight_on_masked_keys_per_row"], at_most=0.0)]
    return Outcome(
        decisions=decisions,
        headline="as_written_max_weight_on_masked_keys_per_row",
        claimed="MyelinatedLayer: node-importance gating, policy-driven layer jumps, working memory; every attention "
                "row sums to 1 over unmasked keys; masks do what they say",
        measured=measured,
        rule=f"two exact errors (deterministic: worst case over the inputs), in the document's MyelinatedLayer: every "
             f"row of the attention it forms sums to 1 (max |row sum - 1| <= {ROW_SUM_TOLERANCE:g}), and keys its masks "
             f"exclude (node importance 0, causal, user mask) receive exactly 0 weight (max weight on masked keys per "
             f"row <= 0). Both hold -> holds, both fail -> fails, one -> partial",
        evidence=f"Layer-0 attention of MyelinatedLayer(dims={dims}, {heads} heads, threshold 0.5 so that about half "
                 f"the tokens are unimportant) on {len(seeds)} random (2, {n}, {dims}) inputs: rows sum to 1, but the "
                 f"float 0/1 node mask is added to the scores, so a row puts up to "
                 f"{measured['as_written_max_weight_on_masked_keys_per_row']:.2f} of its weight on unimportant keys; "
                 "with a bool mask (attention.zoo_myelinated_boolmask) that weight is 0.",
        deviations=["Random jumps use pre-drawn uniforms from an explicit generator and inverse-CDF sampling instead "
                    "of torch.rand_like / torch.multinomial on the global RNG.",
                    "Prints are behind debug=True (logging); compute_attention keeps its default is_causal=True as "
                    "written; calculate_attention (not in the document) folds causality into a given mask because SDPA "
                    "refuses both, and reads a (B, 1, n) mask as (B, 1, 1, n)."])
