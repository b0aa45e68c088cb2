"""FAMScheduler and FAMScheduler2 as written, and their closed forms as tensor expressions — FAM-06.

Source: "Neural Network Optimizations and Embeddings" (002_3edd67eb5ef57768.txt), "Mini version and
schedulers". FAMScheduler: linear warmup from warmup_start_lr to the base lr over warmup_epochs,
then cosine from the base lr to eta_min at max_epochs. FAMScheduler2: the same with an optional
plateau until decay_start_step and ``+ 1e-8`` on every decay-phase lr.

Reference: the document's `_LRScheduler` subclasses, stepped epoch by epoch on a one-parameter SGD.
Optimized: the whole schedule for a tensor of epochs in one expression (no optimizer, no Python
loop over epochs) — what a sweep, a plot or a compiled training loop wants.

Behaviour the document leaves undefined (measured in FAM-06): with warmup == max_epochs (or
decay_start == total_steps) the reference divides by zero on the first cosine step; the closed form
returns eta_min (+1e-8) from then on. Past the
end the cosine is not held at eta_min: both forms follow cos() on, so the lr rises again.
"""
from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import _LRScheduler

from reprobench.registry import ComponentSpec, ErrorInput, Implementations, SampleInput, register


class FAMScheduler(_LRScheduler):
    """Scheduler with linear warmup followed by cosine annealing (the document's code)."""

    def __init__(self, optimizer, warmup_epochs, max_epochs, warmup_start_lr=1e-8, eta_min=1e-8, last_epoch=-1):
        self.warmup_epochs = warmup_epochs
        self.max_epochs = max_epochs
        self.warmup_start_lr = warmup_start_lr
        self.eta_min = eta_min
        super(FAMScheduler, self).__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch < self.warmup_epochs:
            alpha = self.last_epoch / self.warmup_epochs
            return [self.warmup_start_lr + (base_lr - self.warmup_start_lr) * alpha for base_lr in self.base_lrs]
        return [self.eta_min + (base_lr - self.eta_min)
                * (1 + math.cos(math.pi * (self.last_epoch - self.warmup_epochs) / (self.max_epochs - self.warmup_epochs))) / 2
                for base_lr in self.base_lrs]


class FAMScheduler2(torch.optim.lr_scheduler._LRScheduler):
    """Step-based learning rate scheduler with warmup, optional plateau and cosine annealing."""

    def __init__(self, optimizer, warmup_steps=1000, total_steps=100000, decay_start_step=None, warmup_start_lr=1e-6,
                 eta_min=1e-6, last_epoch=-1):
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.decay_start_step = decay_start_step if decay_start_step is not None else warmup_steps
        self.warmup_start_lr = warmup_start_lr
        self.eta_min = eta_min
        super(FAMScheduler2, self).__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch < self.warmup_steps:
            alpha = self.last_epoch / self.warmup_steps
            return [self.warmup_start_lr + (base_lr - self.warmup_start_lr) * alpha for base_lr in self.base_lrs]
        elif self.last_epoch < self.decay_start_step:
            return self.base_lrs
        return [self.eta_min + (base_lr - self.eta_min)
                * (1 + math.cos(math.pi * (self.last_epoch - self.decay_start_step) / (self.total_steps - self.decay_start_step))) / 2 + 1e-8
                for base_lr in self.base_lrs]


def warmup_cosine(epochs: torch.Tensor, base_lr, warmup, decay_start, total, warmup_start_lr, eta_min, offset=0.0):
    """Closed form of both schedulers: lr at each epoch of ``epochs`` (any shape, float dtype)."""
    warm = warmup_start_lr + (base_lr - warmup_start_lr) * (epochs / max(warmup, 1))
    if total == decay_start:  # the document divides by zero here; the schedule is over: eta_min
        cosine = torch.full_like(epochs, eta_min) + offset
    else:
        phase = math.pi * (epochs - decay_start) / (total - decay_start)
        cosine = eta_min + (base_lr - eta_min) * (1 + torch.cos(phase)) / 2 + offset
    plateau = torch.full_like(epochs, base_lr)
    return torch.where(epochs < warmup, warm, torch.where(epochs < decay_start, plateau, cosine))


def check_schedule(base_lr, warmup, total, decay_start=None):
    for value, name in ((warmup, "warmup"), (total, "total")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if not isinstance(base_lr, (int, float)) or base_lr < 0:
        raise ValueError(f"base_lr must be a number >= 0, got {base_lr!r}")
    if decay_start is not None and (not isinstance(decay_start, int) or decay_start < 0):
        raise ValueError(f"decay_start must be an int >= 0 or None, got {decay_start!r}")


def reference_lrs(make_scheduler, base_lr, n, dtype, device):
    """Epochs 0..n-1 of a scheduler, stepped the way a training loop does."""
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=base_lr)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(n):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return torch.tensor(lrs, dtype=dtype, device=device)


def _build_v1(config, device, dtype, generator):
    c = dict(config)
    check_schedule(c["base_lr"], c["warmup_epochs"], c["max_epochs"])
    kwargs = dict(warmup_epochs=c["warmup_epochs"], max_epochs=c["max_epochs"], warmup_start_lr=c["warmup_start_lr"],
                  eta_min=c["eta_min"])
    return Implementations(
        reference=lambda epochs: reference_lrs(lambda o: FAMScheduler(o, **kwargs), c["base_lr"], epochs.shape[0],
                                               epochs.dtype, epochs.device),
        optimized=lambda epochs: warmup_cosine(epochs, c["base_lr"], c["warmup_epochs"], c["warmup_epochs"],
                                               c["max_epochs"], c["warmup_start_lr"], c["eta_min"]))


def _build_v2(config, device, dtype, generator):
    c = dict(config)
    check_schedule(c["base_lr"], c["warmup_steps"], c["total_steps"], c.get("decay_start_step"))
    decay = c["decay_start_step"] if c.get("decay_start_step") is not None else c["warmup_steps"]
    kwargs = {k: c[k] for k in ("warmup_steps", "total_steps", "decay_start_step", "warmup_start_lr", "eta_min")}
    return Implementations(
        reference=lambda epochs: reference_lrs(lambda o: FAMScheduler2(o, **kwargs), c["base_lr"], epochs.shape[0],
                                               epochs.dtype, epochs.device),
        optimized=lambda epochs: warmup_cosine(epochs, c["base_lr"], c["warmup_steps"], decay, c["total_steps"],
                                               c["warmup_start_lr"], c["eta_min"], offset=1e-8))


def _epochs(n, device, dtype, generator):
    return [SampleInput((torch.arange(n, device=device, dtype=dtype),), name="epochs")]


def _errors(bad):
    def error_inputs(device, dtype, generator):
        sample = SampleInput((torch.arange(4, device=device, dtype=dtype),), name="bad_config")
        return [ErrorInput(sample, ValueError, match, config=config) for config, match in bad]
    return error_inputs


V1 = dict(base_lr=0.1, warmup_epochs=5, max_epochs=20, warmup_start_lr=1e-8, eta_min=1e-8)
V2 = dict(base_lr=0.1, warmup_steps=4, total_steps=20, decay_start_step=8, warmup_start_lr=1e-6, eta_min=1e-6)

register(ComponentSpec(
    name="optim.fam_scheduler", claims=("FAM-06",),
    description="FAMScheduler (warmup + cosine) stepped as written vs its closed form on a tensor of epochs",
    build=_build_v1, sample_inputs=_epochs, default_config=V1, test_sizes=(1, 6, 21, 30), bench_sizes=(1000,),
    size_name="epochs", supports_backward=False,
    error_inputs=_errors([({**V1, "warmup_epochs": -1}, r"warmup must be an int >= 0"),
                          ({**V1, "base_lr": -0.1}, r"base_lr must be a number >= 0")]),
))
register(ComponentSpec(
    name="optim.fam_scheduler2", claims=("FAM-06",),
    description="FAMScheduler2 (warmup, plateau, cosine + 1e-8) stepped as written vs its closed form",
    build=_build_v2, sample_inputs=_epochs, default_config=V2, test_sizes=(1, 6, 21, 30), bench_sizes=(1000,),
    size_name="epochs", supports_backward=False,
    error_inputs=_errors([({**V2, "total_steps": -5}, r"total must be an int >= 0"),
                          ({**V2, "decay_start_step": 2.5}, r"decay_start must be an int")]),
))
