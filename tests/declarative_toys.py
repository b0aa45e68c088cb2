"""Tiny components for the declarative-kind tests, registered by `registered(log_dir)` (a context manager)
under 'toy.*' and removed again, so no other test's list_components() ever sees them. Timed rounds may run
in worker processes holding copies of the toys, so draws are counted in files under `log_dir` (`draws()`),
which every process appends to.

- toy.linear: y = x W^T + b; reference a plain matmul, optimized F.linear processed in `chunk` rows (the
  config key a `config_per_size` rule sets; every build's config is recorded in BUILDS).
- toy.linear_other: the same function as another component (for `against` with `same_output`).
- toy.linear_double: another component returning 2 y, both twins (same shapes, other values).
- toy.wrong: an optimized twin returning 1.5 y (a wrong answer at every input).
- toy.late_wrong: an optimized twin that clamps its input to [-10, 10], so it is wrong only for the inputs
  drawn after the second draw, in any process (they hold a 100): the per-round match check must catch it.
- toy.scratch: a forward with an (n, n) temporary and an (n, 4) output: peak >> output (memory overhead).
- toy.adamw, toy.lion: optimizer components (twins with make(params)); Lion keeps one moment, AdamW two.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reprobench import ComponentSpec, Implementations, SampleInput, make_generator, register

DIM = 4
BUILDS: list[dict] = []  # every toy.linear build's config, in order (builds happen in the test's process)


class Linear(nn.Module):
    def __init__(self, path: str, chunk: int, scale: float = 1.0, clamp: float | None = None):
        # scale multiplies the output, clamp bounds the input (optimized path only)
        super().__init__()
        self.path, self.chunk, self.scale, self.clamp = path, chunk, scale, clamp
        self.weight = nn.Parameter(torch.empty(DIM, DIM))
        self.bias = nn.Parameter(torch.empty(DIM))

    def reset(self, generator) -> "Linear":
        with torch.no_grad():
            self.weight.uniform_(-0.5, 0.5, generator=generator)
            self.bias.uniform_(-0.5, 0.5, generator=generator)
        return self

    def forward(self, x):
        if self.path == "reference":
            return (x @ self.weight.T + self.bias) * self.scale
        x = x.clamp(-self.clamp, self.clamp) if self.clamp is not None else x
        return torch.cat([F.linear(part, self.weight, self.bias) for part in x.split(self.chunk, dim=-2)], dim=-2) * self.scale


def _linear_build(scale: float = 1.0, wrong_scale: float = 1.0, clamp: float | None = None, record: bool = False):
    def build(config, device, dtype, generator):
        if record:
            BUILDS.append(dict(config))
        reference = Linear("reference", config["chunk"], scale).to(dtype).reset(generator).to(device)
        optimized = Linear("optimized", config["chunk"], scale * wrong_scale, clamp).to(dtype).to(device)
        optimized.load_state_dict(reference.state_dict())
        return Implementations(reference=reference, optimized=optimized)
    return build


def _count_draw(log: Path | None) -> int:
    """Append one line to `log` (any process) and return how many draws it now holds."""
    if log is None:
        return 0
    with open(log, "a", encoding="ascii") as out:
        out.write("draw\n")
    return len(log.read_text(encoding="ascii").splitlines())


def draws(log_dir: Path, name: str) -> int:
    """How many times `name`'s inputs were drawn since `reset_draws`."""
    log = Path(log_dir) / f"{name}.draws"
    return len(log.read_text(encoding="ascii").splitlines()) if log.exists() else 0


def reset_draws(log_dir: Path, name: str) -> None:
    (Path(log_dir) / f"{name}.draws").unlink(missing_ok=True)


def _linear_inputs(log: Path | None = None, big_after: int | None = None):
    def sample_inputs(n, device, dtype, generator):
        count = _count_draw(log)
        x = torch.randn(2, n, DIM, dtype=dtype, generator=generator)
        if big_after is not None and count > big_after:
            x[0, 0, 0] = 100.0  # the optimized twin clamps this one's outputs
        return [SampleInput((x.to(device),), name="x")]
    return sample_inputs


class Scratch(nn.Module):
    """An (n, n) temporary, an (n, DIM) output."""

    def forward(self, x):
        scores = x @ x.transpose(-1, -2)  # (2, n, n), freed before returning
        return scores.softmax(-1) @ x


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023): sign of an interpolated momentum; one moment per parameter."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99)):
        super().__init__(params, dict(lr=lr, betas=betas))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                p.add_(torch.sign(m * beta1 + p.grad * (1 - beta1)), alpha=-group["lr"])
                m.mul_(beta2).add_(p.grad, alpha=1 - beta2)


@dataclass(frozen=True)
class OptimizerTwin:
    """The registry's optimizer convention: called with (initial params, gradient sequences) it runs the steps
    and returns the final parameters; make(params) builds the optimizer itself."""

    optimizer_class: type
    options: dict = field(default_factory=dict)

    def make(self, params):
        return self.optimizer_class(params, **self.options)

    def __call__(self, *tensors):
        half = len(tensors) // 2
        params = [t.detach().clone().requires_grad_(True) for t in tensors[:half]]
        optimizer = self.make(params)
        for step in range(tensors[half].shape[0]):
            for p, grads in zip(params, tensors[half:]):
                p.grad = grads[step].clone()
            optimizer.step()
        return tuple(p.detach() for p in params)


def _optimizer_inputs(n, device, dtype, generator):
    init = torch.randn(DIM, DIM, dtype=dtype, generator=generator)
    grads = torch.randn(n, DIM, DIM, dtype=dtype, generator=generator)
    return [SampleInput((init.to(device), grads.to(device)), name="steps")]


def _optimizer_build(cls):
    def build(config, device, dtype, generator):
        return Implementations(reference=OptimizerTwin(cls, dict(config)), optimized=OptimizerTwin(cls, dict(config)))
    return build


def _specs(log_dir: Path) -> list[ComponentSpec]:
    linear = dict(default_config=dict(chunk=3), sample_inputs=_linear_inputs(), test_sizes=(1, 5), bench_sizes=(8, 16))
    return [
        ComponentSpec(name="toy.linear", claims=(), build=_linear_build(record=True),
                      **{**linear, "sample_inputs": _linear_inputs(Path(log_dir) / "toy.linear.draws")}),
        ComponentSpec(name="toy.linear_other", claims=(), build=_linear_build(), **linear),
        ComponentSpec(name="toy.linear_double", claims=(), build=_linear_build(scale=2.0), **linear),
        ComponentSpec(name="toy.wrong", claims=(), build=_linear_build(wrong_scale=1.5), **linear),
        ComponentSpec(name="toy.late_wrong", claims=(), build=_linear_build(clamp=10.0),
                      **{**linear, "sample_inputs": _linear_inputs(Path(log_dir) / "toy.late_wrong.draws", big_after=2)}),
        ComponentSpec(name="toy.scratch", claims=(), sample_inputs=_linear_inputs(), test_sizes=(4,), bench_sizes=(8,),
                      build=lambda config, device, dtype, generator: Implementations(Scratch(), Scratch())),
        ComponentSpec(name="toy.adamw", claims=(), build=_optimizer_build(torch.optim.AdamW),
                      sample_inputs=_optimizer_inputs, default_config=dict(lr=1e-3), test_sizes=(2,), bench_sizes=(3,)),
        ComponentSpec(name="toy.lion", claims=(), build=_optimizer_build(Lion), sample_inputs=_optimizer_inputs,
                      default_config=dict(lr=1e-4), test_sizes=(2,), bench_sizes=(3,)),
    ]


@contextlib.contextmanager
def registered(log_dir: Path):
    """Register the toys for the duration of the block, then remove them from the registry."""
    from reprobench import registry

    specs = _specs(log_dir)
    for spec in specs:
        register(spec)
    try:
        yield {spec.name: spec for spec in specs}
    finally:
        for spec in specs:
            registry._REGISTRY.pop(spec.name, None)


def state_bytes_expected(n: int, moments: int, element_size: int = 4, step_bytes: int = 0) -> int:
    """Bytes of `moments` state tensors per parameter of an (n, n) weight and an (n,) bias (+ step counters)."""
    return moments * (n * n + n) * element_size + 2 * step_bytes


def sqrt_ceil(n: int) -> int:
    return math.ceil(n ** 0.5)
