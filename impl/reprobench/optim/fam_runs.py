"""How the registry calls an optimizer: "run N steps from these initial parameters on this gradient
sequence, return the final parameters and momentum buffers" (a tuple of tensors).

Shared by optim.fam, optim.fam_corrected and optim.simple_fam. The layout below is a small model
whose parameter groups exercise every path of the FAM family: a conv group, an attention group
with a >10000-element matrix (64 x 64 sub-block sampling), an embedding group with a >10000-element
vector (1000-element sampling), a default group with different lr/alpha, a small (<= min_size)
tensor, an empty tensor, a frozen parameter, and gradients that are None at some steps.
"""
from __future__ import annotations

import torch

from reprobench.registry import ErrorInput, SampleInput

# (group options, [(name, shape, requires_grad)])
LAYOUT = (
    (dict(names=["encoder.conv1.weight", "encoder.conv1.bias"]),
     [("encoder.conv1.weight", (8, 4, 3, 3), True), ("encoder.conv1.bias", (8,), True)]),
    (dict(names=["blocks.0.self_attn.in_proj_weight", "blocks.0.self_attn.in_proj_bias"]),
     [("blocks.0.self_attn.in_proj_weight", (120, 96), True), ("blocks.0.self_attn.in_proj_bias", (200,), True)]),
    (dict(names=["tok_embed.weight"], handler="embedding"),
     [("tok_embed.weight", (40, 16), True), ("tok_embed.scale", (10050,), True)]),
    (dict(handler="default", lr=0.02, alpha=0.8),
     [("mlp.fc.weight", (24, 20), True), ("mlp.empty", (0,), True), ("mlp.frozen", (5, 5), False)]),
)
SHAPES = [shape for _, params in LAYOUT for _, shape, _ in params]
FROZEN = [i for i, (_, _, trainable) in enumerate(p for _, ps in LAYOUT for p in ps) if not trainable]


def make_groups(params: list[torch.Tensor], layout=LAYOUT) -> list[dict]:
    groups, i = [], 0
    for options, specs in layout:
        groups.append({**options, "names": list(options.get("names", [])), "params": params[i:i + len(specs)]})
        if "names" not in options:
            groups[-1].pop("names")
        i += len(specs)
    return groups


def run_steps(make_optimizer, *tensors, missing=()):
    """tensors = P initial parameters, then P gradient sequences (N, *shape); ``missing`` holds
    (step, index) pairs whose gradient is None. Returns (final params..., momentum buffers...)."""
    n_params = len(tensors) // 2
    inits, grad_seqs = tensors[:n_params], tensors[n_params:]
    params = [t.detach().clone().requires_grad_(i not in FROZEN) for i, t in enumerate(inits)]
    optimizer = make_optimizer(make_groups(params))
    skip = set(missing)
    for t in range(grad_seqs[0].shape[0]):
        for i, (p, g) in enumerate(zip(params, grad_seqs)):
            p.grad = None if (i in FROZEN or (t, i) in skip) else g[t].clone()
        optimizer.step()
    buffers = [optimizer.state[p]["exp_avg"] if "exp_avg" in optimizer.state[p] else torch.zeros_like(p) for p in params]
    return tuple(p.detach() for p in params) + tuple(buffers)


def gradient_sequence(steps, shape, device, dtype, generator, smooth: bool):
    """White-noise gradients, or smooth ones (cumulative sums along the flattened tensor: most power
    in the low bands) so that both branches of every momentum rule are reached."""
    g = torch.randn((steps, *shape), device=device, dtype=dtype, generator=generator)
    if smooth and g[0].numel() > 1:
        flat = g.reshape(steps, -1).cumsum(-1)
        g = (flat / flat.shape[-1] ** 0.5).reshape(g.shape)
    return g


def optimizer_samples(size, device, dtype, generator, shapes=SHAPES):
    """`size` = number of optimizer steps."""
    samples = []
    for label, smooth in (("white", False), ("smooth", True)):
        inits = [torch.randn(s, device=device, dtype=dtype, generator=generator) for s in shapes]
        grads = [gradient_sequence(size, s, device, dtype, generator, smooth) for s in shapes]
        missing = tuple((t, i) for t in range(size) for i in range(len(shapes)) if (t + i) % 5 == 4)
        samples.append(SampleInput(tuple(inits) + tuple(grads), dict(missing=missing), name=label))
    return samples


def optimizer_error_inputs(default_config, bad_configs: dict, shapes=SHAPES):
    """Sparse gradients for every optimizer, plus config errors raised at build time."""

    def error_inputs(device, dtype, generator):
        inits = [torch.randn(s, device=device, dtype=dtype, generator=generator) for s in shapes]
        grads = [torch.randn((2, *s), device=device, dtype=dtype, generator=generator) for s in shapes]
        grads[0] = torch.stack([g.to_sparse() for g in grads[0]])
        errors = [ErrorInput(SampleInput(tuple(inits) + tuple(grads), name="sparse_grad"), TypeError,
                             r"does not support sparse gradients")]
        for label, (overrides, error_type, match) in bad_configs.items():
            errors.append(ErrorInput(SampleInput(tuple(inits) + tuple(grads), name=label), error_type, match,
                                     config={**default_config, **overrides}))
        return errors

    return error_inputs
