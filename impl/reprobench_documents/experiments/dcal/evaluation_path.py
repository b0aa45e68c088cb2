"""DCAL-11: evaluation runs SA + GLCA only, and GLCA keeps the rollout's top queries."""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.experiments.dcal._common import MINI, seeded_images, seeded_model
from reprobench.measure import count_flops, decide
from reprobench.registry import make_generator


@experiment("DCAL-11", quick_judged=True, sizes={"full": {"image_side": 224}, "quick": {"image_side": 112}},
            source='documents/001_128d0a2e45dbf7cd.txt (Dual Cross-Attention Model Optimizations)',
            text=(
                'Evaluation runs SA + GLCA only (PWCA is training-only); GLCA keeps the top `top_k_ratio` (0.1) '
                'of queries by rollout.'))
def evaluation_path(ctx: RunContext) -> Outcome:
    from reprobench_documents.models.dcal.glca import num_selected
    from reprobench_documents.models.dcal.rollout import rollout_cls_optimized

    side = ctx.sizes["image_side"]
    config = dict(backbone_name=MINI, num_classes=200, img_size=side, top_k_ratio=0.1, depth=2)
    model = seeded_model(ctx, **config)
    x, y = seeded_images(ctx, 1, side, 0), seeded_images(ctx, 1, side, 1)
    with torch.no_grad():
        model.eval()
        eval_keys = sorted(model(x, y))
        eval_flops_pair = count_flops(lambda: model(x, y))
        eval_flops_single = count_flops(lambda: model(x))
        model.train()
        train_keys = sorted(model(x, y))
        train_flops_pair = count_flops(lambda: model(x, y))
        model.eval()
    # Query selection at the document's size: N = 785 -> R of the 784 patches.
    n = 785
    r = num_selected(n, 0.1)
    maps = torch.rand(2, 1, 2, n, n, generator=make_generator(ctx.seed)).to(ctx.device).softmax(-1)
    row = rollout_cls_optimized(maps)
    from reprobench_documents.models.dcal.glca import select_queries

    index = select_queries(row, 0.1)
    top = set(row[0, 1:].topk(r).indices.add(1).tolist())
    selection_ok = set(index[0, 1:].tolist()) == top and index[0, 0].item() == 0
    selection_departures = len(set(index[0, 1:].tolist()) ^ top) + (index[0, 0].item() != 0)
    decisions = [
        decide("eval_output_departures", len(set(eval_keys) ^ {"glca_logits", "sa_logits"}), at_most=0),
        decide("eval_flops_added_by_pair", abs(eval_flops_pair - eval_flops_single), at_most=0),
        decide("train_outputs_missing_pwca", int("pwca_logits" not in train_keys), at_most=0),
        decide("train_flops_added_by_pwca", train_flops_pair - eval_flops_pair, at_least=1),
        decide("selection_departures_from_topk", selection_departures, at_most=0),
    ]
    return Outcome(
        decisions=decisions,
        headline="eval_flops_added_by_pair",
        claimed="Evaluation runs SA + GLCA only (PWCA is training-only); GLCA keeps the top top_k_ratio (0.1) of queries by rollout",
        measured={"eval_outputs": ",".join(eval_keys), "train_outputs": ",".join(train_keys),
                  "eval_flops_with_pair": eval_flops_pair, "eval_flops_without_pair": eval_flops_single,
                  "train_flops_with_pair": train_flops_pair, "queries_kept_N785": r,
                  "fraction_kept_N785": r / (n - 1), "selection_is_topk": selection_ok},
        rule="counts (deterministic: output keys, FLOPs from the torch flop counter, selected indices), five decisions: "
             "eval outputs other than / missing from {sa_logits, glca_logits}: at most 0; eval FLOPs added by passing a "
             "pair: at most 0; training outputs missing pwca_logits: at most 0; training FLOPs beyond eval (PWCA runs): "
             "at least 1; selected patches departing from CLS + the top ⌈0.1·(N−1)⌉ of the rollout's CLS row: at most "
             "0. All hold -> holds, all fail -> fails, else partial",
        evidence=(f"{MINI} (2 blocks, {side}×{side}): eval FLOPs {eval_flops_pair:,} with or without a paired image, "
                  f"training {train_flops_pair:,} (PWCA runs). At N=785 GLCA keeps CLS + {r} of 784 patches "
                  f"({r / (n - 1):.1%}), exactly the top-{r} of the rollout row."),
        deviations=["GLCA classifies from the mean of its 1 + R output tokens, not the CLS output alone: with one GLCA "
                    "block the CLS query attends to all keys, so a CLS-only head would ignore the selection."],
    )
