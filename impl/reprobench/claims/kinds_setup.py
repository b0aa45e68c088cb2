"""What a declarative claim measures at one size: the components built with the claim's config, the inputs
they all read, and the measured call (the claim's `call` field):

- ``forward`` (default): one call under no_grad.
- ``forward_backward``: the call, a loss (the sum, or with ``loss = "mean"`` the mean, of each floating
  output, added up) and its backward. The floating inputs and the parameters require grad; their gradients
  are set to None before each call, as a training loop does.
- ``train_step``: forward, loss and backward as above, then one step of the optimizer (``optimizer``: sgd,
  adam or adamw from torch.optim with their defaults, sgd with lr=1e-3; or a registered optimizer
  component) over the module's parameters. The inputs are data (no grad). ``steps`` steps (default 1) run
  before anything is measured, so the optimizer's state exists.
- ``optimizer_step``: for an optimizer component, whose twins have ``make(params)`` returning a
  torch.optim.Optimizer (as reprobench's optimizer runs do): one ``optimizer.step()`` over an (n, n)
  weight and an (n,) bias with gradients drawn from the claim's generator; ``steps`` steps run first.

Every implementation of one claim reads the same inputs, and ``Setup.redraw()`` replaces them with new
values (untimed): timed kinds redraw before every round by default, so rounds sample what a single draw
would fix (the values, and where the allocator puts them). The first draw comes from the run's seed; a
redraw seeds its generator from the operating system's entropy, because a timed round may run in a worker
process holding a copy of this one's generator, which would draw the same values in every round (the seed
is kept, and a mismatch reports it). ``results()`` is what the match check
compares: the outputs; for backward calls also the gradients of the inputs and of the parameters (by
name: twins share state_dict keys); for an optimizer, its parameters after the warm-up steps.
"""
from __future__ import annotations

import random
from typing import Any, Callable

import torch
from torch.utils._pytree import tree_map

from reprobench.claims.declared_claim import DeclaredClaim
from reprobench.claims.experiment import RunContext
from reprobench.claims.kinds_checks import Check
from reprobench.claims.kinds_config import config_at

BACKWARD_CALLS = ("forward_backward", "train_step")
STATELESS_CALLS = ("forward", "forward_backward")  # a later call computes what the first did (no step taken)


def fresh_seed() -> int:
    return random.SystemRandom().randrange(2 ** 62)


def draw_sample(spec, size: int, device, dtype, generator):
    """The bench input the claim's component takes at `size` (its last bench sample, as `reprobench bench`)."""
    from reprobench.registry import draw_inputs  # the one rule: drawn on the CPU generator, moved to the device

    return draw_inputs(spec, size, device, dtype, generator, bench=True)[-1]


from reprobench.claims.kinds_common import tensors  # noqa: E402  (kinds import it from here too)


def _loss(output, kind: str, label: str) -> torch.Tensor:
    parts = [t for t in tensors(output) if t.is_floating_point() and t.requires_grad]
    if not parts:
        raise ValueError(f"{label}: no floating output requires grad, so a backward call has nothing to start from "
                         "(are its outputs detached, or computed under no_grad?)")
    return sum(t.sum() if kind == "sum" else t.mean() for t in parts)


class SampleInputs:
    """The component's bench input at `size`, redrawn from one generator; floating tensors require grad for
    a forward_backward call (they are leaves: `leaves`)."""

    def __init__(self, spec, size: int, device, dtype, seed: int, requires_grad: bool):
        from reprobench.registry import make_generator

        self.spec, self.size, self.device, self.dtype = spec, size, device, dtype
        self.requires_grad = requires_grad
        self.seed = seed
        self.draw(seed)

    def draw(self, seed: int | None = None) -> None:
        from reprobench.registry import make_generator

        self.seed = fresh_seed() if seed is None else seed
        self.sample = self.leaves = None  # the old inputs are freed before the new ones are drawn
        sample = draw_sample(self.spec, self.size, self.device, self.dtype, make_generator(self.seed))
        if self.requires_grad:
            sample.args, sample.kwargs = tree_map(
                lambda t: t.detach().requires_grad_(True) if isinstance(t, torch.Tensor) and t.is_floating_point()
                else t, (tuple(sample.args), dict(sample.kwargs)))
        self.sample = sample
        self.leaves = [t for t in tensors((sample.args, sample.kwargs)) if t.requires_grad]


class ParameterInputs:
    """optimizer_step's parameters, an (n, n) weight and an (n,) bias, and their gradients (redrawn)."""

    def __init__(self, size: int, device, dtype, seed: int):
        self.shapes = ((size, size), (size,))
        self.device, self.dtype = device, dtype
        self.initial = self._draw(seed)
        self.draw(seed + 1)

    def _draw(self, seed: int) -> list[torch.Tensor]:  # drawn on the CPU, then moved: the same values on any device
        from reprobench.registry import make_generator

        generator = make_generator(seed)
        return [torch.randn(s, dtype=self.dtype, generator=generator).to(self.device) for s in self.shapes]

    def draw(self, seed: int | None = None) -> None:
        self.seed = fresh_seed() if seed is None else seed
        self.grads = None
        self.grads = self._draw(self.seed)


class CallSubject:
    """One implementation of a component under a forward, forward_backward or train_step call."""

    def __init__(self, fn, inputs: SampleInputs, call: str, loss: str, make_optimizer, steps: int, label: str):
        self.fn, self.inputs, self.call, self.loss, self.label = fn, inputs, call, loss, label
        named = fn.named_parameters() if isinstance(fn, torch.nn.Module) else ()
        self.parameters = sorted(((name, p) for name, p in named if p.requires_grad), key=lambda item: item[0])
        self.optimizer = None
        self.run: Callable[[], Any] = {"forward": self._forward, "forward_backward": self._forward_backward,
                                       "train_step": self._train_step}[call]
        if call == "train_step":
            if not self.parameters:
                raise ValueError(f"{label} has no trainable parameters: call = \"train_step\" needs a twin that is an "
                                 "nn.Module with parameters (use forward_backward for a function)")
            self.optimizer = make_optimizer([p for _, p in self.parameters])
            for _ in range(steps):
                self.run()

    def refresh(self) -> None:
        """Nothing to do: the call reads the shared inputs each time."""

    def _forward(self):
        sample = self.inputs.sample
        with torch.no_grad():
            return self.fn(*sample.args, **sample.kwargs)

    def _forward_backward(self):
        sample = self.inputs.sample
        for t in self.inputs.leaves:
            t.grad = None
        for _, p in self.parameters:
            p.grad = None
        output = self.fn(*sample.args, **sample.kwargs)
        _loss(output, self.loss, self.label).backward()
        return output

    def _train_step(self):
        sample = self.inputs.sample
        self.optimizer.zero_grad(set_to_none=True)
        loss = _loss(self.fn(*sample.args, **sample.kwargs), self.loss, self.label)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def results(self, with_parameters: bool = True):
        """Outputs (forward), or outputs and gradients of the inputs and, by name, of the parameters; nothing
        this subject keeps is changed."""
        if self.call == "forward":
            return self._forward()
        sample = self.inputs.sample
        args, kwargs = tree_map(lambda t: t.detach().requires_grad_(True)
                                if isinstance(t, torch.Tensor) and t.is_floating_point() else t,
                                (tuple(sample.args), dict(sample.kwargs)))
        leaves = [t for t in tensors((args, kwargs)) if t.requires_grad]
        params = [p for _, p in self.parameters] if with_parameters else []
        output = self.fn(*args, **kwargs)
        grads = torch.autograd.grad(_loss(output, self.loss, self.label), leaves + params, allow_unused=True)
        grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves + params)]
        return tree_map(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, output), grads


class OptimizerSubject:
    """One implementation of an optimizer component under optimizer_step: its own copy of the parameters,
    gradients copied from the shared draw, `steps` steps taken at construction."""

    def __init__(self, twin, inputs: ParameterInputs, steps: int, label: str):
        self.inputs, self.label = inputs, label
        make = getattr(twin, "make", None)
        if not callable(make):
            raise ValueError(f"{label} is not an optimizer component: call = \"optimizer_step\" needs twins with "
                             "make(params) returning a torch.optim.Optimizer (reprobench's optimizer runs have it)")
        self.parameters = [p.detach().clone().requires_grad_(True) for p in inputs.initial]
        self.optimizer = make(self.parameters)
        if not isinstance(self.optimizer, torch.optim.Optimizer):
            raise ValueError(f"{label}: make(params) returned a {type(self.optimizer).__name__}, expected a "
                             "torch.optim.Optimizer")
        self.refresh()
        for _ in range(steps):
            self.optimizer.step()

    def refresh(self) -> None:
        for p, g in zip(self.parameters, self.inputs.grads):
            p.grad = g.clone()

    def run(self):
        return self.optimizer.step()

    def results(self, with_parameters: bool = True):
        return [p.detach() for p in self.parameters]


def torch_optimizer(name: str) -> Callable[[list], torch.optim.Optimizer]:
    if name == "sgd":
        return lambda params: torch.optim.SGD(params, lr=1e-3)  # SGD has no default lr in older torch
    return lambda params: {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name](params)


class Setup:
    """One claim at one size: the shared inputs (drawn on first use) and every implementation measured,
    each component built once (a component's twins come from one build, so they share parameters)."""

    def __init__(self, item: DeclaredClaim, ctx: RunContext, size: int):
        from reprobench.bench import bench_dtype
        from reprobench.registry import get

        self.item, self.ctx, self.size = item, ctx, size
        self.component = item.fields["component"]
        self.call = item.fields.get("call", "forward")
        self.spec = get(self.component)
        self.dtype = bench_dtype(self.spec)
        self._inputs = None
        self._built: dict[str, Any] = {}
        self._subjects: dict[tuple[str, str], Any] = {}

    @property
    def inputs(self):
        if self._inputs is None:
            if self.call == "optimizer_step":
                self._inputs = ParameterInputs(self.size, self.ctx.device, self.dtype, self.ctx.seed)
            else:
                self._inputs = SampleInputs(self.spec, self.size, self.ctx.device, self.dtype, self.ctx.seed,
                                            requires_grad=self.call == "forward_backward")
        return self._inputs

    @property
    def stateless(self) -> bool:
        return self.call in STATELESS_CALLS

    def implementations(self, component: str):
        from reprobench.bench import BENCH_SEED
        from reprobench.registry import get, make_generator

        if component not in self._built:
            config = config_at(self.component, self.item.fields, self.size, of=component)
            self._built[component] = get(component).build(config, self.ctx.device, self.dtype,
                                                          make_generator(BENCH_SEED))
        return self._built[component]

    def subject(self, component: str, implementation: str):
        key = (component, implementation)
        if key not in self._subjects:
            twin = getattr(self.implementations(component), implementation)
            label = f"{component} ({implementation})"
            steps = self.item.fields.get("steps", 1)
            if self.call == "optimizer_step":
                self._subjects[key] = OptimizerSubject(twin, self.inputs, steps, label)
            else:
                self._subjects[key] = CallSubject(twin, self.inputs, self.call, self.item.fields.get("loss", "sum"),
                                                  self._optimizer_factory(), steps, label)
        return self._subjects[key]

    def _optimizer_factory(self):
        name = self.item.fields.get("optimizer", "sgd")
        if name in ("sgd", "adam", "adamw"):
            return torch_optimizer(name)
        from reprobench.registry import get, make_generator
        from reprobench.bench import BENCH_SEED

        spec = get(name)
        twin = spec.build(spec.config(bench=True), self.ctx.device, self.dtype, make_generator(BENCH_SEED)).optimized
        if not callable(getattr(twin, "make", None)):
            raise ValueError(f"optimizer {name!r} is not an optimizer component: its twins have no make(params)")
        return twin.make

    def redraw(self) -> None:
        """New inputs for every subject (untimed)."""
        self.inputs.draw()
        for subject in self._subjects.values():
            subject.refresh()

    def against(self) -> tuple[str, str] | None:
        fields = self.item.fields
        return (fields["against"], fields.get("against_implementation", "optimized")) if "against" in fields else None

    def baseline(self):
        """The ratio's baseline subject: the `against` component, or the component's own reference."""
        against = self.against()
        return self.subject(*against) if against else self.subject(self.component, "reference")

    def checks(self) -> list[Check]:
        """The match checks before a ratio: the optimized twin against its reference; an `against` optimized
        twin against its own reference; with `same_output`, the optimized twin against the `against` one."""
        from reprobench.claims.kinds_common import size_label, tolerance

        label = size_label(self.component, self.size)
        atol, rtol, words = tolerance(self.component, self.item)
        candidate = self.subject(self.component, "optimized")
        checks = [Check(candidate, self.subject(self.component, "reference"), atol, rtol, words,
                        f"elements_outside_tolerance_{label}", f"{self.component} (optimized) vs its reference")]
        against = self.against()
        if against:
            name = against[0].replace(".", "_")
            if against[1] == "optimized":
                a_atol, a_rtol, a_words = tolerance(against[0], self.item, self.dtype)
                checks.append(Check(self.subject(*against), self.subject(against[0], "reference"), a_atol, a_rtol,
                                    a_words, f"elements_outside_tolerance_{name}_{label}",
                                    f"{against[0]} (optimized) vs its reference"))
            if self.item.fields.get("same_output", False):
                checks.append(Check(candidate, self.subject(*against), atol, rtol, words,
                                    f"elements_differing_from_{name}_{label}",
                                    f"{self.component} (optimized) vs {against[0]} ({against[1]})",
                                    with_parameters=False))
        return checks
