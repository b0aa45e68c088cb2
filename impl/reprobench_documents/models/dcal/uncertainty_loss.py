"""Uncertainty-weighted multi-task loss (Kendall, Gal & Cipolla, CVPR 2018) — DCAL-10.

Source: "Dual Cross-Attention Model Optimizations" (documents/001_128d0a2e45dbf7cd.txt), §3 and the usage
example: `UncertaintyWeightedLoss(num_tasks=3)` balances the SA, GLCA and PWCA losses, returns a dict
with 'total_loss', and `get_current_weights()` reports '<task>_weight'.

Which published form. Kendall et al. give L = Σ_i L_i / (2σ_i²) + log σ_i (their eq. 7 with the
regression weighting). With the learned s_i = log σ_i² (numerically stable, unconstrained) this is
    L = ½ Σ_i ( exp(−s_i) · L_i + s_i ),
exactly the form the DCAL paper writes for L_SA, L_GLCA, L_PWCA. The reported weight of task i is
its precision exp(−s_i) (the factor multiplying L_i, up to the common ½). Stationary point: for a
fixed loss value L_i, ∂L/∂s_i = ½(1 − exp(−s_i) L_i) = 0 at s_i = log L_i, i.e. σ_i² = L_i — each
task is weighted by the inverse of its own loss (the property tests check this).

Reference: the per-task Python loop over the dict, as a reader would write it.
Optimized: the losses stacked into one vector and a single fused expression (one kernel, no loop),
which is what a training step calls 3× per iteration.
Both modules hold one parameter `log_vars` (num_tasks,), initialised to 0 (all weights 1).
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from reprobench.registry import ComponentSpec, ErrorInput, Implementations, SampleInput, register
from reprobench.validation import check_tensor

PATHS = ("reference", "optimized")


class UncertaintyWeightedLoss(nn.Module):
    """forward(losses) with losses a Tensor (num_tasks,) -> total loss (scalar), or a dict
    {task: loss} -> {'total_loss', '<task>_weighted'}."""

    def __init__(self, num_tasks: int = 3, path: str = "optimized"):
        super().__init__()
        if isinstance(num_tasks, bool) or not isinstance(num_tasks, int):
            raise TypeError(f"num_tasks must be an int >= 1, got {type(num_tasks).__name__} {num_tasks!r}")
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        self.num_tasks, self.path = num_tasks, path
        self.log_vars = nn.Parameter(torch.zeros(num_tasks))  # s_i = log σ_i²
        self.task_names: list[str] = []

    def _check(self, losses: torch.Tensor) -> torch.Tensor:
        """(num_tasks,) in log_vars' dtype and on its device (or a dict of scalar losses, see forward)."""
        return check_tensor("losses", losses, shape=(self.num_tasks,), like=self.log_vars, like_what="log_vars")

    def total(self, losses: torch.Tensor) -> torch.Tensor:
        losses = self._check(losses)
        if self.path == "reference":
            total = losses.new_zeros(())
            for i in range(self.num_tasks):
                precision = torch.exp(-self.log_vars[i])
                total = total + 0.5 * (precision * losses[i] + self.log_vars[i])
            return total
        return 0.5 * (torch.exp(-self.log_vars) * losses + self.log_vars).sum()

    def forward(self, losses):
        if isinstance(losses, Mapping):
            if len(losses) != self.num_tasks:
                raise ValueError(f"losses has {len(losses)} tasks {sorted(losses)}, expected num_tasks={self.num_tasks}")
            self.task_names = list(losses)
            # Python numbers take log_vars' dtype; tensors are checked as they are
            stacked = torch.stack([(v if isinstance(v, torch.Tensor) else torch.as_tensor(v, dtype=self.log_vars.dtype,
                                                                                          device=self.log_vars.device))
                                   .reshape(()) for v in losses.values()])
            out = {"total_loss": self.total(stacked)}
            weighted = 0.5 * torch.exp(-self.log_vars) * stacked
            out.update({f"{name}_weighted": weighted[i] for i, name in enumerate(self.task_names)})
            return out
        return self.total(losses)

    def get_current_weights(self) -> dict[str, float]:
        """Precision exp(−s_i) per task, keyed '<task>_weight' (host read: for logging only)."""
        names = self.task_names or [f"task{i}" for i in range(self.num_tasks)]
        return {f"{name}_weight": float(w) for name, w in zip(names, torch.exp(-self.log_vars.detach()).tolist())}


def _build(config, device, dtype, generator):
    reference = UncertaintyWeightedLoss(**config, path="reference")
    with torch.no_grad():  # non-zero s so the weights differ per task
        reference.log_vars.uniform_(-1.0, 1.0, generator=generator)
    reference = reference.to(device=device, dtype=dtype)
    optimized = UncertaintyWeightedLoss(**config, path="optimized").to(device=device, dtype=dtype)
    optimized.load_state_dict(reference.state_dict())
    return Implementations(reference=reference, optimized=optimized)


def _sample_inputs(size, device, dtype, generator):
    losses = torch.rand(3, device=device, dtype=dtype, generator=generator) * size
    return [SampleInput((losses,), name="three_losses"), SampleInput((losses.new_zeros(3),), name="zero_losses")]


def _error_inputs(device, dtype, generator):
    losses = torch.rand(3, device=device, dtype=dtype, generator=generator)
    return [
        ErrorInput(SampleInput((losses[:2],), name="wrong_count"), ValueError, r"losses: expected .* shape \(3,\)"),
        ErrorInput(SampleInput((torch.ones(3, dtype=torch.long, device=device),), name="int_losses"), TypeError,
                   r"losses: expected a float32 or float64 tensor"),
        ErrorInput(SampleInput((losses,), name="num_tasks_zero"), ValueError, r"num_tasks must be >= 1",
                   config=dict(num_tasks=0)),
        ErrorInput(SampleInput((losses,), name="num_tasks_float"), TypeError, r"num_tasks must be an int",
                   config=dict(num_tasks=3.0)),
    ]


register(ComponentSpec(
    name="models.dcal_uncertainty_loss",
    claims=("DCAL-10",),
    description="Kendall uncertainty weighting ½Σ(exp(−s)L + s); reference per-task loop, optimized one fused expression",
    build=_build,
    sample_inputs=_sample_inputs,
    error_inputs=_error_inputs,
    default_config=dict(num_tasks=3),
    test_sizes=(1, 5),
    bench_sizes=(1,),
    size_name="loss scale",
))
