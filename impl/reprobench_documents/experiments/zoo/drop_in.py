"""ZOO-01: can the zoo modules be called exactly like nn.MultiheadAttention?"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from reprobench.claims import Outcome, RunContext, experiment
from reprobench.measure import decide
from reprobench.registry import make_generator


def _zoo_modules(dims, heads, device):
    from reprobench_documents.attention.zoo.adaptive_span import AdaptiveSpan
    from reprobench_documents.attention.zoo.base_attention import BaseAttention
    from reprobench_documents.attention.zoo.integrated import IntegratedAttention
    from reprobench_documents.attention.zoo.myelinated import MyelinatedLayer
    from reprobench_documents.attention.zoo.relative_force import RelativeForce

    g = make_generator(0)  # the weights do not matter here (only whether the call is accepted), but they are seeded
    modules = {"BaseAttention": BaseAttention(dims, heads, 64), "AdaptiveSpan": AdaptiveSpan(dims, heads, 64),
               "MyelinatedLayer": MyelinatedLayer(dims, heads), "RelativeForce": RelativeForce(dims, heads),
               "IntegratedAttention": IntegratedAttention(dims, heads, win_size=4, max_span=4)}
    return {name: module.reset_parameters(g).to(device) for name, module in modules.items()}


@experiment("ZOO-01",
            source='documents/002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)',
            text=(
                '"Many can be used as drop-in replacements for nn.MultiheadAttention": call signature and output '
                'shapes against nn.MultiheadAttention.'))
def drop_in_replacement(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    device = ctx.device
    dims, heads, n, batch = 32, 4, 6, 2
    with torch.random.fork_rng(devices=[]):  # nn.MultiheadAttention draws its init from the global RNG: seed it
        torch.manual_seed(ctx.seed)          # locally and leave the caller's RNG state as it was
        mha = nn.MultiheadAttention(dims, heads).to(device).eval()
    q, k, v = (torch.randn(n, batch, dims, generator=g).to(device) for _ in range(3))  # MHA's default: (seq, batch, dim)
    padding = torch.zeros(batch, n, dtype=torch.bool, device=device)
    with torch.no_grad():
        mha_out = mha(q, k, v, key_padding_mask=padding)
    measured, drop_in = {}, 0
    modules = _zoo_modules(dims, heads, device)
    for name, module in modules.items():
        module.eval()
        params = list(inspect.signature(module.forward).parameters)
        try:
            with torch.no_grad():
                out = module(q, k, v, key_padding_mask=padding)
            accepted = True
        except (TypeError, ValueError, RuntimeError):
            out, accepted = None, False
        try:  # positional (query, key, value) only, the most lenient MHA-style call
            with torch.no_grad():
                module(q, k, v)
            positional_ok = True
        except (TypeError, ValueError, RuntimeError):
            positional_ok = False
        tuple_out = isinstance(out, tuple) and len(out) == 2 and out[0].shape == mha_out[0].shape
        measured[f"{name}_signature"] = "(" + ", ".join(params) + ")"
        measured[f"{name}_accepts_mha_call"] = int(accepted)
        measured[f"{name}_accepts_positional_qkv"] = int(positional_ok)
        measured[f"{name}_returns_output_weights"] = int(tuple_out)
        drop_in += int(accepted and tuple_out)
    measured["mha_signature"] = "(" + ", ".join(inspect.signature(mha.forward).parameters) + ")"
    measured["modules_checked"] = len(modules)
    measured["drop_in_count"] = drop_in
    return Outcome(
        decisions=[decide("drop_in_count", drop_in, at_least=len(modules) / 2)],
        claimed="many [blocks] can be used as drop-in replacements for a standard pytorch multiheadattention block",
        measured=measured,
        rule="a count (deterministic): holds if at least half of the zoo modules (drop_in_count >= 2.5 of 5) accept "
             "nn.MultiheadAttention's call m(query, key, value, key_padding_mask=...) on its (seq, batch, dim) tensors "
             "and return (output, weights) with MHA's output shape; fails otherwise",
        evidence=f"Called each of the 5 zoo modules exactly as nn.MultiheadAttention(32, 4) is called (seq-first "
                 f"q, k, v of shape ({n}, {batch}, {dims}) plus key_padding_mask); {drop_in} of 5 accepted it and "
                 f"returned (output, weights). The document's modules take batch-first x (and xa, mask, kv_cache) and "
                 f"return one tensor.",
        deviations=["BaseAttention/calculate_attention are not in the document; their signatures follow the document's "
                    "calls (super().__init__(dims, head, max_dist), forward(x, xa, mask, kv_cache))."])
