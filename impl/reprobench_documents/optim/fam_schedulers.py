"""FAMScheduler and FAMScheduler2 as written, and their closed forms as tensor expressions — FAM-06.

Source: "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt), "Mini version and
schedulers". FAMScheduler: linear warmup from warmup_start_lr to the base lr over warmup_epochs,
then cosine from the base lr to eta_min at max_epochs. FAMScheduler2: the same with an optional
plateau until decay_start_step and ``+ 1e-8`` on every decay-phase lr.

What a tensor of epochs means: both classes compute the lr in get_lr() from ``last_epoch`` alone,
and ``_LRScheduler.step()`` sets it after each increment. So the lr of epoch e is get_lr() with
``last_epoch = e``, element by element, whatever the order or offset of the epochs.
Reference: the document's `_LRScheduler` subclasses on a one-parameter SGD, get_lr() read at each
requested epoch. This equals stepping a training loop e times (``reference_lrs``; a property test
checks it).
Optimized: the whole schedule for a tensor of epochs in one expression (no optimizer, no Python
loop over epochs). That is what a sweep, a plot or a compiled training loop wants.
Both accept integer and floating epochs of any shape. The lrs come back in the epochs' dtype, or
in the default float dtype for integer epochs. Bool, complex and 'meta' epochs are rejected. Negative
and non-finite epochs give NaN (no lr is defined there), and fractional epochs give the formula's value.

Behaviour the document leaves undefined (measured in FAM-06): with warmup == max_epochs (or
decay_start == total_steps) the reference divides by zero on the first cosine step, so the registered
pair rejects that config. Past the end the cosine is not held at eta_min: both forms follow cos()
on, so the lr rises again.
"""
from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import _LRScheduler

from reprobench.registry import ComponentSpec, ErrorInput, Implementations, InputSupport, SampleInput, register


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


def lr_dtype(epochs) -> torch.dtype:
    """The dtype of the learning rates for ``epochs``: its own if floating, else the default float
    dtype, as torch promotes ``int / float``. Rejects what has no epoch values."""
    if not isinstance(epochs, torch.Tensor):
        raise TypeError(f"epochs must be a torch.Tensor of epoch numbers, got {type(epochs).__name__}")
    if epochs.dtype == torch.bool or epochs.is_complex():
        raise TypeError(f"epochs must hold real numbers (an integer or floating dtype), got {epochs.dtype}")
    if epochs.layout != torch.strided:
        raise TypeError(f"epochs must be a dense (strided) tensor, got layout {epochs.layout}")
    if epochs.device.type == "meta":
        raise ValueError("epochs must be on a device with data (cpu, cuda, ...), got a tensor on 'meta'")
    return epochs.dtype if epochs.is_floating_point() else torch.get_default_dtype()


def warmup_cosine(epochs: torch.Tensor, base_lr, warmup, decay_start, total, warmup_start_lr, eta_min, offset=0.0):
    """Closed form of both schedulers: the lr at each epoch of ``epochs`` (any shape, real dtype).

    Values are those of the document's get_lr() with ``last_epoch`` = the epoch, at fractional epochs
    too. Negative and non-finite epochs give NaN: the document defines no lr before the first epoch
    (``last_epoch = -1`` means "not started") or at an infinite one. Checking the values instead would
    cost a host sync. Computed in at least float32, then cast to :func:`lr_dtype`.
    """
    out_dtype = lr_dtype(epochs)
    e = epochs.to(torch.promote_types(out_dtype, torch.float32))
    warm = warmup_start_lr + (base_lr - warmup_start_lr) * (e / max(warmup, 1))
    if total == decay_start:  # the document divides by zero here; the schedule is over: eta_min
        cosine = torch.full_like(e, eta_min) + offset
    else:
        phase = math.pi * (e - decay_start) / (total - decay_start)
        cosine = eta_min + (base_lr - eta_min) * (1 + torch.cos(phase)) / 2 + offset
    lr = torch.where(e < warmup, warm, torch.where(e < decay_start, torch.full_like(e, base_lr), cosine))
    defined = torch.isfinite(e) & (e >= 0)
    return torch.where(defined, lr, torch.full_like(e, math.nan)).to(out_dtype)


def check_schedule(base_lr, warmup, total, decay_start=None, *, names=("warmup", "total", "decay_start"),
                   warmup_start_lr=0.0, eta_min=0.0):
    """The config both twins accept: the document's scheduler divides by zero when the cosine phase
    has no length (total == decay start), so that config is rejected for both."""
    warmup_name, total_name, decay_name = names
    for value, name in ((warmup, warmup_name), (total, total_name)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    for value, name in ((base_lr, "base_lr"), (warmup_start_lr, "warmup_start_lr"), (eta_min, "eta_min")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if decay_start is not None and (isinstance(decay_start, bool) or not isinstance(decay_start, int) or decay_start < 0):
        raise ValueError(f"{decay_name} must be an int >= 0 or None, got {decay_start!r}")
    start = warmup if decay_start is None else decay_start
    if total <= start:
        raise ValueError(f"{total_name} must be greater than {decay_name if decay_start is not None else warmup_name} "
                         f"(the cosine phase needs a length), got {total} <= {start}")


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


def reference_lrs_at(make_scheduler, base_lr, epochs: torch.Tensor) -> torch.Tensor:
    """The document's get_lr() at ``last_epoch`` = each epoch of ``epochs``. That is the lr a training
    loop has after that many ``scheduler.step()`` calls (``reference_lrs``; a property test checks
    the two agree). Negative and non-finite epochs give NaN without calling get_lr, as in
    :func:`warmup_cosine`."""
    out_dtype = lr_dtype(epochs)
    scheduler = make_scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr))
    lrs = []
    for epoch in epochs.flatten().tolist():
        if not math.isfinite(epoch) or epoch < 0:
            lrs.append(math.nan)
            continue
        scheduler.last_epoch = epoch
        lrs.append(scheduler.get_lr()[0])
    return torch.tensor(lrs, dtype=torch.float64).to(out_dtype).reshape(epochs.shape).to(epochs.device)


def _build_v1(config, device, dtype, generator):
    c = dict(config)
    check_schedule(c["base_lr"], c["warmup_epochs"], c["max_epochs"], names=("warmup_epochs", "max_epochs", ""),
                   warmup_start_lr=c["warmup_start_lr"], eta_min=c["eta_min"])
    kwargs = dict(warmup_epochs=c["warmup_epochs"], max_epochs=c["max_epochs"], warmup_start_lr=c["warmup_start_lr"],
                  eta_min=c["eta_min"])
    return Implementations(
        reference=lambda epochs: reference_lrs_at(lambda o: FAMScheduler(o, **kwargs), c["base_lr"], epochs),
        optimized=lambda epochs: warmup_cosine(epochs, c["base_lr"], c["warmup_epochs"], c["warmup_epochs"],
                                               c["max_epochs"], c["warmup_start_lr"], c["eta_min"]))


def _build_v2(config, device, dtype, generator):
    c = dict(config)
    check_schedule(c["base_lr"], c["warmup_steps"], c["total_steps"], c.get("decay_start_step"),
                   names=("warmup_steps", "total_steps", "decay_start_step"), warmup_start_lr=c["warmup_start_lr"],
                   eta_min=c["eta_min"])
    decay = c["decay_start_step"] if c.get("decay_start_step") is not None else c["warmup_steps"]
    kwargs = {k: c[k] for k in ("warmup_steps", "total_steps", "decay_start_step", "warmup_start_lr", "eta_min")}
    return Implementations(
        reference=lambda epochs: reference_lrs_at(lambda o: FAMScheduler2(o, **kwargs), c["base_lr"], epochs),
        optimized=lambda epochs: warmup_cosine(epochs, c["base_lr"], c["warmup_steps"], decay, c["total_steps"],
                                               c["warmup_start_lr"], c["eta_min"], offset=1e-8))


def _epochs(n, device, dtype, generator):
    """From epoch 0, from a random offset (past the end of the schedule too), and random fractional
    epochs in random order: the twins must read the values, not the positions. Integer epochs (lrs
    in the default dtype) are drawn by test_fam.py's test_scheduler_twins_agree_on_any_epochs; here an
    integer tensor would be taken for indices by the derived bad-input suite."""
    offset = int(torch.randint(0, 40, (1,), generator=generator))
    return [SampleInput((torch.arange(n, device=device, dtype=dtype),), name="epochs"),
            SampleInput((torch.arange(offset, offset + n, device=device, dtype=dtype),), name="offset_epochs"),
            SampleInput((torch.rand(n, device=device, dtype=dtype, generator=generator) * 40,), name="fractional_epochs")]


def _errors(bad):
    def error_inputs(device, dtype, generator):
        sample = SampleInput((torch.arange(4, device=device, dtype=dtype),), name="bad_config")
        errors = [ErrorInput(sample, ValueError, match, config=config) for config, match in bad]
        for epochs, error_type, match in (
                (torch.arange(4, device=device) % 2 == 0, TypeError, r"epochs must hold real numbers.*torch.bool"),
                (torch.zeros(4, device=device, dtype=torch.complex64), TypeError, r"epochs must hold real numbers"),
                (torch.arange(4, dtype=dtype, device="meta"), ValueError, r"epochs must be on a device with data"),
                ([0, 1, 2], TypeError, r"epochs must be a torch.Tensor")):
            errors.append(ErrorInput(SampleInput((epochs,), name="bad_epochs"), error_type, match))
        return errors
    return error_inputs


# Half-precision epochs give half-precision lrs (computed in float32, then rounded); no epochs give no lrs.
SCHEDULER_INPUT_SUPPORT = InputSupport(low_precision=(torch.float16, torch.bfloat16), empty_batch=True)

V1 = dict(base_lr=0.1, warmup_epochs=5, max_epochs=20, warmup_start_lr=1e-8, eta_min=1e-8)
V2 = dict(base_lr=0.1, warmup_steps=4, total_steps=20, decay_start_step=8, warmup_start_lr=1e-6, eta_min=1e-6)

register(ComponentSpec(
    name="optim.fam_scheduler", claims=("FAM-06",),
    description="FAMScheduler (warmup + cosine) stepped as written vs its closed form on a tensor of epochs",
    build=_build_v1, sample_inputs=_epochs, default_config=V1, test_sizes=(1, 6, 21, 30), bench_sizes=(1000,),
    size_name="epochs", supports_backward=False, input_support=SCHEDULER_INPUT_SUPPORT,
    error_inputs=_errors([({**V1, "warmup_epochs": -1}, r"warmup_epochs must be an int >= 0"),
                          ({**V1, "base_lr": -0.1}, r"base_lr must be a number >= 0"),
                          ({**V1, "max_epochs": 5}, r"max_epochs must be greater than warmup_epochs")]),
))
register(ComponentSpec(
    name="optim.fam_scheduler2", claims=("FAM-06",),
    description="FAMScheduler2 (warmup, plateau, cosine + 1e-8) stepped as written vs its closed form",
    build=_build_v2, sample_inputs=_epochs, default_config=V2, test_sizes=(1, 6, 21, 30), bench_sizes=(1000,),
    size_name="epochs", supports_backward=False, input_support=SCHEDULER_INPUT_SUPPORT,
    error_inputs=_errors([({**V2, "total_steps": -5}, r"total_steps must be an int >= 0"),
                          ({**V2, "decay_start_step": 2.5}, r"decay_start_step must be an int"),
                          ({**V2, "total_steps": 8}, r"total_steps must be greater than decay_start_step"),
                          ({**V2, "eta_min": -1e-6}, r"eta_min must be a number >= 0")]),
))
