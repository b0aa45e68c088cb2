"""How the registry calls an optimizer: "run N steps from these initial parameters on this gradient
sequence, return the final parameters and momentum buffers" (a tuple of tensors).

Shared by optim.fam, optim.fam_corrected and optim.simple_fam. The layout below is a small model
whose parameter groups exercise every path of the FAM family: a conv group, an attention group
with two >10000-element matrices (64 x 64 sub-block sampling; their samples share one batched rFFT), an embedding group with a >10000-element
vector (1000-element sampling), a default group with different lr/alpha, a small (<= min_size)
tensor, an empty tensor, a frozen parameter, and gradients that are None at some steps.

Each twin is an :class:`OptimizerRun`: the registry calls it, and the torch.optim conformance suite
(suites/properties/test_optimizer_conformance.py) builds the optimizer itself with ``make``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from reprobench_documents.optim.optimizer_checks import check_parameter
from reprobench.registry import ErrorInput, InputSupport, SampleInput

# (group options, [(name, shape, requires_grad)])
LAYOUT = (
    (dict(names=["encoder.conv1.weight", "encoder.conv1.bias"]),
     [("encoder.conv1.weight", (8, 4, 3, 3), True), ("encoder.conv1.bias", (8,), True)]),
    (dict(names=["blocks.0.self_attn.in_proj_weight", "blocks.0.self_attn.in_proj_bias",
                 "blocks.0.self_attn.out_proj.weight"]),
     [("blocks.0.self_attn.in_proj_weight", (120, 96), True), ("blocks.0.self_attn.in_proj_bias", (200,), True),
      ("blocks.0.self_attn.out_proj.weight", (96, 120), True)]),
    (dict(names=["tok_embed.weight"], handler="embedding"),
     [("tok_embed.weight", (40, 16), True), ("tok_embed.scale", (10050,), True)]),
    (dict(handler="default", lr=0.02, alpha=0.8),
     [("mlp.fc.weight", (24, 20), True), ("mlp.empty", (0,), True), ("mlp.frozen", (5, 5), False)]),
)
SHAPES = [shape for _, params in LAYOUT for _, shape, _ in params]
FROZEN = [i for i, (_, _, trainable) in enumerate(p for _, ps in LAYOUT for p in ps) if not trainable]


# Half-precision parameters work as in torch.optim (the twins agree to the format's rounding:
# test_optimizer_conformance.py). A batch of 0 or an empty dim changes a parameter's shape, so the
# gradients no longer fit it; 'meta' parameters have no values to analyse. Both are rejected.
OPTIMIZER_INPUT_SUPPORT = InputSupport(low_precision=(torch.float16, torch.bfloat16))


def make_groups(params: list[torch.Tensor], layout=LAYOUT) -> list[dict]:
    groups, i = [], 0
    for options, specs in layout:
        groups.append({**options, "names": list(options.get("names", [])), "params": params[i:i + len(specs)]})
        if "names" not in options:
            groups[-1].pop("names")
        i += len(specs)
    return groups


def check_run_inputs(tensors, missing, n_params: int = len(SHAPES)) -> None:
    """What run_steps takes, checked before any step: a clear error instead of torch's
    grad-assignment errors (``assigned grad has data of a different size``) from inside the loop."""
    if len(tensors) != 2 * n_params:
        raise ValueError(f"tensors must be {n_params} initial parameters followed by {n_params} gradient sequences "
                         f"(the layout in reprobench_documents.optim.fam_runs), got {len(tensors)} tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"tensors[{i}] must be a torch.Tensor, got {type(t).__name__}")
    inits, grad_seqs = tensors[:n_params], tensors[n_params:]
    for i, (p, g) in enumerate(zip(inits, grad_seqs)):
        # named by position in the call, with the role: tensors[i] starts parameter i, tensors[P + i] its gradients
        param, grads = f"tensors[{i}] (parameter {i})", f"tensors[{n_params + i}] (gradients of parameter {i})"
        check_parameter(p, param)
        if g.dtype != p.dtype:
            raise TypeError(f"{grads} must have the dtype of tensors[{i}], {p.dtype}, got {g.dtype}")
        if g.device != p.device:
            raise ValueError(f"{grads} must be on the device of tensors[{i}], {p.device}, got {g.device}")
        if g.dim() != p.dim() + 1 or g.shape[1:] != p.shape:
            raise ValueError(f"{grads} must have shape (steps, *tensors[{i}].shape) = (steps, "
                             f"{', '.join(map(str, p.shape))}), got {tuple(g.shape)}")
        if g.shape[0] != grad_seqs[0].shape[0]:
            raise ValueError(f"{grads} must have as many steps as tensors[{n_params}], {grad_seqs[0].shape[0]}, "
                             f"got {g.shape[0]}")
    for pair in missing:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(v, int) for v in pair)):
            raise TypeError(f"missing must hold (step, index) pairs of ints, got {pair!r}")


def run_steps(make_optimizer, *tensors, missing=()):
    """tensors = P initial parameters, then P gradient sequences (N, *shape); ``missing`` holds
    (step, index) pairs whose gradient is None. Returns (final params..., momentum buffers...)."""
    check_run_inputs(tensors, missing)
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


@dataclass(frozen=True)
class OptimizerRun:
    """One twin as the registry calls it, ``run(*params, *grad_sequences, missing=())`` (run_steps),
    and ``make(params)``, the optimizer itself, built the same way every time."""

    optimizer_class: type  # a torch.optim.Optimizer subclass
    options: Mapping[str, Any] = field(default_factory=dict)  # constructor keywords besides params/generator
    handler: str | None = None  # when set, every dict group gets this handler (FAM family)
    seed: int | None = None  # when set, each optimizer gets a fresh generator with this seed (FAM family)
    device: str = "cpu"  # the generator's device
    adaptive_from: int = 1  # first step (1-based) at which the frequency-adaptive path can run

    def make(self, params) -> torch.optim.Optimizer:
        if isinstance(params, list) and params and all(isinstance(g, dict) for g in params):
            params = [self.group(g) for g in params]
        extra = {} if self.seed is None else {"generator": torch.Generator(device=self.device).manual_seed(self.seed)}
        return self.optimizer_class(params, **self.options, **extra)

    def group(self, group: dict) -> dict:
        """A parameter group as this run configures it (for make and add_param_group)."""
        return group if self.handler is None else {**group, "handler": self.handler}

    def __call__(self, *tensors, missing=()):
        return run_steps(self.make, *tensors, missing=missing)


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
    """Sparse gradients, gradient sequences that do not fit their parameters, parameters the family cannot
    update (integer, complex, 'meta'), a wrong tensor count, plus config errors raised at build time."""

    def error_inputs(device, dtype, generator):
        inits = [torch.randn(s, device=device, dtype=dtype, generator=generator) for s in shapes]
        grads = [torch.randn((2, *s), device=device, dtype=dtype, generator=generator) for s in shapes]
        grads[0] = torch.stack([g.to_sparse() for g in grads[0]])
        errors = [ErrorInput(SampleInput(tuple(inits) + tuple(grads), name="sparse_grad"), TypeError,
                             r"does not support sparse gradients")]
        dense = [torch.randn((2, *s), device=device, dtype=dtype, generator=generator) for s in shapes]

        def call(name, error_type, match, new_inits=inits, new_grads=dense):
            errors.append(ErrorInput(SampleInput(tuple(new_inits) + tuple(new_grads), name=name), error_type, match))

        n = len(shapes)
        call("grad_wrong_shape", ValueError, rf"tensors\[{n + 1}\] \(gradients of parameter 1\) must have shape "
                                             r"\(steps, \*tensors\[1\]\.shape\)",
             new_grads=[dense[0], dense[1][..., :-1]] + dense[2:])
        call("grad_missing_step_dim", ValueError, rf"tensors\[{n}\] .* must have shape",
             new_grads=[dense[0][0]] + dense[1:])
        call("grad_other_dtype", TypeError, rf"tensors\[{n + 2}\] .* must have the dtype of tensors\[2\]",
             new_grads=dense[:2] + [dense[2].to(torch.float16)] + dense[3:])
        call("steps_differ", ValueError, rf"tensors\[{2 * n - 1}\] .* must have as many steps as tensors\[{n}\]",
             new_grads=dense[:-1] + [dense[-1][:1]])
        call("int_params", TypeError, r"tensors\[0\] \(parameter 0\) must be real floating-point",
             new_inits=[t.round().long() for t in inits], new_grads=[g.round().long() for g in dense])
        call("complex_params", TypeError, r"tensors\[0\] \(parameter 0\) must be real floating-point",
             new_inits=[t.to(torch.complex128) for t in inits], new_grads=[g.to(torch.complex128) for g in dense])
        call("meta_params", ValueError, r"tensors\[0\] \(parameter 0\) must be on a device with data",
             new_inits=[t.to("meta") for t in inits], new_grads=[g.to("meta") for g in dense])
        call("too_few_tensors", ValueError, r"tensors must be \d+ initial parameters", new_inits=inits[:-1])
        for label, (overrides, error_type, match) in bad_configs.items():
            errors.append(ErrorInput(SampleInput(tuple(inits) + tuple(grads), name=label), error_type, match,
                                     config={**default_config, **overrides}))
        return errors

    return error_inputs
