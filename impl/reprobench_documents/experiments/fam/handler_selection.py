"""FAM-02: which handler FAMOptimizer assigns to a parameter group from its names."""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.experiments.fam._common import DEVIATIONS
from reprobench.measure import decide

CASES = 6  # one group per name pattern of the claim
RULE = (f"a count (deterministic): groups of the {CASES} named ones to which FAMOptimizer assigns the claimed handler, "
        f"at least {CASES} (every one); the corrected variant's count is reported, not judged")


@experiment("FAM-02",
            source='documents/002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)',
            text=(
        "Handlers are chosen from parameter-group names: 'conv' -> conv; 'attention'/'mha'/'self_attn' ->"
        " attention; 'embed'/'token' -> embedding; otherwise default."))
def handler_selection(ctx: RunContext) -> Outcome:
    from reprobench_documents.optim.fam_corrected import CorrectedFAMOptimizer
    from reprobench_documents.optim.fam_reference import FAMOptimizer

    names = {"conv": "encoder.conv1.weight", "attention": "blocks.0.self_attn.in_proj_weight",
             "mha": "layers.3.mha.out_proj.weight", "embedding": "tok_embed.weight",
             "token": "token_emb.weight", "default": "mlp.fc1.weight"}
    expected = {"conv": "conv", "attention": "attention", "mha": "attention", "embedding": "embedding",
                "token": "embedding", "default": "default"}
    chosen = {}
    for cls, label in ((FAMOptimizer, "document"), (CorrectedFAMOptimizer, "corrected")):
        groups = [{"params": [torch.zeros(2, device=ctx.device, requires_grad=True)], "names": [name]}
                  for name in names.values()]
        opt = cls(groups)
        chosen[label] = {key: group["handler"] for key, group in zip(names, opt.param_groups)}
    correct = {label: sum(chosen[label][k] == expected[k] for k in names) for label in chosen}
    measured = {f"document_{k}": v for k, v in chosen["document"].items()}
    measured.update({f"corrected_{k}": v for k, v in chosen["corrected"].items()},
                    document_correct=correct["document"], corrected_correct=correct["corrected"], cases=len(names))
    return Outcome(
        decisions=[decide("document_correct_handlers", correct["document"], at_least=CASES)],
        claimed="'conv' -> conv; 'attention'/'mha'/'self_attn' -> attention; 'embed'/'token' -> embedding; "
                "else default",
        measured=measured,
        rule=RULE,
        evidence=f"FAMOptimizer built on one-parameter groups named as in a transformer: {correct['document']}/6 "
                 f"correct; embedding and plain MLP groups get 'attention' because the inner `for name in [...]` "
                 f"shadows `name`, so `name in name.lower()` is always true. Corrected variant: "
                 f"{correct['corrected']}/6. Groups without 'names' (e.g. model.parameters()) all get 'default'.",
        deviations=DEVIATIONS)
