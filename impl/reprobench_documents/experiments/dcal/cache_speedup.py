"""DCAL-06: how much faster evaluation gets with the rollout cache, and the FLOP bound on it."""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.experiments.dcal._common import DEIT_S, MINI, seeded_images, seeded_model
from reprobench.measure import compare_interleaved, count_flops, decide, decide_speedup

CLAIMED_SPEEDUP = 1.6  # "up to 60% faster" read as a 1.6× speedup
SHARE_OF_CLAIM = 0.8  # reproduced at >= 80% of the claimed speedup


@experiment("DCAL-06", timed=True,
            sizes={"full": {"image_side": 224, "depth": 12, "rounds": 6, "min_run_time": 0.02},
                   "quick": {"image_side": 112, "depth": 4, "rounds": 3}},
            source='documents/001_128d0a2e45dbf7cd.txt (Dual Cross-Attention Model Optimizations)',
            text=(
                'Rollout caching: "up to 60% faster evaluation on repeated patterns".'))
def cache_speedup(ctx: RunContext) -> Outcome:
    from reprobench_documents.models.dcal.rollout import rollout_cls_reference

    side, depth = ctx.sizes["image_side"], ctx.sizes["depth"]
    rounds, min_run = ctx.sizes["rounds"], ctx.sizes["min_run_time"]
    floor = SHARE_OF_CLAIM * CLAIMED_SPEEDUP
    config = dict(backbone_name=MINI, num_classes=200, img_size=side, depth=depth, top_k_ratio=0.1)
    measured = {}
    with torch.no_grad():
        for rollout in ("full", "cls_chain"):
            plain = seeded_model(ctx, rollout_impl=rollout, **config).eval()
            # max_size=1 and two alternating batches: every lookup misses (the distinct-batch case).
            cached = seeded_model(ctx, rollout_impl=rollout, cache_attention_rollout=True, cache_size=1, **config).eval()
            batches = [seeded_images(ctx, 2, side, i) for i in range(2)]

            def alternate(model):
                state = {"i": 0}  # per model, so each one strictly alternates

                def call():
                    state["i"] ^= 1
                    return model(batches[state["i"]])
                return call

            if rollout == "full":  # the documented cache: the judged timing, sampled until decided
                timed, rep = decide_speedup(lambda: plain(batches[0]), lambda: cached(batches[0]),
                                            quantity="speedup_repeated_full", at_least=floor, min_run_time=min_run,
                                            budget_s=ctx.decision_budget_s, device=ctx.device)
            else:  # reported, not judged
                rep = compare_interleaved(lambda: plain(batches[0]), lambda: cached(batches[0]), rounds=rounds,
                                          min_run_time=min_run, device=ctx.device)
            cached.clear_attention_cache()
            dist = compare_interleaved(alternate(plain), alternate(cached), rounds=rounds, min_run_time=min_run,
                                       device=ctx.device)
            measured[f"speedup_repeated_{rollout}"] = timed.estimate.point if rollout == "full" else rep.speedup
            measured[f"speedup_distinct_{rollout}"] = dist.speedup
            # The timed calls ran in worker processes, so this model's cache saw none of them: replay the
            # alternating pattern here, untimed, and read what its cache did.
            cached.clear_attention_cache()
            replay = alternate(cached)
            for _ in range(4):
                replay()
            measured[f"distinct_hit_rate_{rollout}"] = cached.get_cache_stats()["hit_rate"]
    # Upper bound at the document's size: the share of evaluation FLOPs the rollout is (Amdahl), counted
    # under FakeTensorMode (shapes only, nothing allocated; the model refuses 'meta' tensors): DeiT-Small,
    # 448×448, batch 1, full-product rollout.
    from torch._subclasses.fake_tensor import FakeTensorMode

    from reprobench_documents.models.dcal.model import DualAttentionModel

    with FakeTensorMode(), ctx.device, torch.no_grad():
        model = DualAttentionModel(DEIT_S, num_classes=200, rollout_impl="full").eval()
        eval_flops = count_flops(lambda: model(torch.empty(1, 3, 448, 448)))
        rollout_flops = count_flops(lambda: rollout_cls_reference(torch.empty(12, 1, 6, 785, 785)))
    share = rollout_flops / eval_flops
    measured.update({"rollout_flop_share_deit_s_448": share, "amdahl_bound_speedup_deit_s_448": 1 / (1 - share)})
    with FakeTensorMode(), ctx.device, torch.no_grad():  # the same share at the timed size
        small = DualAttentionModel(rollout_impl="full", **config).eval()
        small_share = (count_flops(lambda: rollout_cls_reference(torch.empty(depth, 2, 3, small.pos_embed.shape[1],
                                                                              small.pos_embed.shape[1])))
                       / count_flops(lambda: small(torch.empty(2, 3, side, side))))
    measured["rollout_flop_share_timed_size"] = small_share
    # A hit can remove at most the rollout's share of the work: the FLOP bound at the document's size is
    # the primary (deterministic) decision; the timed speedup, a smaller model on this machine, the second.
    bound = 1 / (1 - share)
    decisions = [decide("amdahl_bound_speedup_deit_s_448", bound, at_least=floor), timed]
    return Outcome(
        decisions=decisions,
        claimed="Rollout caching: up to 60% faster evaluation on repeated patterns",
        measured=measured,
        rule=(f"'60% faster' read as a {CLAIMED_SPEEDUP:g}× speedup, reproduced at >= {floor:g} (0.8 × {CLAIMED_SPEEDUP:g}). "
              f"Primary, FLOPs (deterministic; a cache hit removes at most the rollout's share of the work): the Amdahl "
              f"bound 1/(1 − rollout FLOP share) of evaluation at DeiT-S@448 >= {floor:g}. Second, time (the claim is "
              f"about speed): eval speedup with the documented full-product rollout and statistics-hash cache on a "
              f"repeated batch, paired interleaved rounds, holds if the whole 95% interval is >= {floor:g}, fails if "
              f"wholly below, else inconclusive. Both hold -> holds, both fail -> fails, one -> partial"),
        evidence=(f"Eval forward of DualAttentionModel ({MINI}: dim 96, {depth} blocks, 3 heads, {side}×{side}, batch 2, "
                  f"float32; N/dim as DeiT-S@448), cache on vs off, timed interleaved. Repeated batch: "
                  f"{timed.estimate}× with the full rollout, {measured['speedup_repeated_cls_chain']:.2f}× with the CLS-row "
                  f"chain; distinct batches (every lookup a miss): {measured['speedup_distinct_full']:.2f}× / "
                  f"{measured['speedup_distinct_cls_chain']:.2f}×. At DeiT-S@448 the full rollout is {share:.0%} of eval "
                  f"FLOPs, so no cache can exceed {1 / (1 - share):.2f}× there — and the CLS-row chain removes that share "
                  f"without a cache."),
    )
