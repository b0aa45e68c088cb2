"""What every optimizer in this package checks and keeps, as torch.optim's own optimizers do.

suites/properties/test_optimizer_conformance.py holds every registered optimizer (both twins) to this.
- ``params``: a bare tensor is a TypeError and an empty list a ValueError, with torch's own messages.
  FAM's handler assignment would otherwise wrap either into a group and accept it.
- Parameters must be real floating-point tensors with storage. Complex parameters have no rFFT band
  analysis: the reference's ``rfft`` fails and its try/except silently falls back to plain momentum,
  while a batched twin would drop the imaginary part. 'meta' tensors have no values to sample, and the
  reference's ``.item()`` fails on them.
- Hyperparameters are checked for every group as it is added (constructor or ``add_param_group``),
  so a bad per-group ``lr`` fails as clearly as a bad default.
- ``copy.deepcopy`` and ``pickle`` keep the optimizer's own public attributes. torch.optim keeps only
  ``defaults``, ``state`` and ``param_groups``, because its hooks may hold closures that cannot be
  pickled. FAM's sampling generator travels with its state, so a copy continues the same random stream.
Gradients are not checked for finiteness: that would be a host sync per step. A NaN or inf
gradient makes its parameter non-finite, as it does in torch.optim's SGD and Adam.
"""
from __future__ import annotations

import math

import torch

class SparseGradientError(TypeError, RuntimeError):
    """Raised for sparse gradients: RuntimeError as in the document, TypeError as bad input."""


_TORCH_TENSOR_PARAMS = "params argument given to the optimizer should be an iterable of Tensors or dicts, but got "


def params_list(params) -> list:
    """``params`` as a list, rejected the way torch.optim.Optimizer rejects it."""
    if isinstance(params, torch.Tensor):
        raise TypeError(_TORCH_TENSOR_PARAMS + torch.typename(params))
    try:
        params = list(params)
    except TypeError:
        raise TypeError(f"params must be an iterable of Tensors or dicts, got {type(params).__name__}") from None
    if not params:
        raise ValueError("optimizer got an empty parameter list")
    return params


def check_parameter(p, name: str = "params") -> None:
    """A parameter this package's optimizers can update: a real floating-point tensor with storage."""
    if not isinstance(p, torch.Tensor):
        return  # torch.optim's add_param_group names it ("optimizer can only optimize Tensors")
    if p.is_complex() or not p.is_floating_point():
        raise TypeError(f"{name} must be real floating-point (the FAM family analyses real gradients), got {p.dtype}")
    if p.layout != torch.strided:
        raise TypeError(f"{name} must be dense (strided), got layout {p.layout}")
    if p.device.type == "meta":
        raise ValueError(f"{name} must be on a device with data (cpu, cuda, ...), got a tensor on 'meta'")


def check_number(value, name, low, high=None, high_open=True) -> None:
    """A finite real number in [low, high) (or [low, high] with high_open=False, or >= low)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    bound = (f"in [{low}, {high})" if high_open else f"in [{low}, {high}]") if high is not None else f">= {low}"
    if not math.isfinite(value) or value < low or (high is not None and (value >= high if high_open else value > high)):
        raise ValueError(f"{name} must be {bound}, got {value!r}")


def check_int(value, name, low) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")


def check_dense_gradient(grad, optimizer_name: str) -> None:
    if grad.layout != torch.strided:
        raise SparseGradientError(f"{optimizer_name} does not support sparse gradients (got layout {grad.layout})")


class CheckedOptimizer(torch.optim.Optimizer):
    """torch.optim.Optimizer plus this package's group checks and complete copies (see the module)."""

    def check_group(self, group: dict) -> None:
        """Raise ValueError/TypeError for a bad hyperparameter; ``group`` has the defaults filled in."""

    def add_param_group(self, param_group):
        if isinstance(param_group, dict) and "params" in param_group:
            params = param_group["params"]
            if not isinstance(params, (torch.Tensor, set)):  # torch wraps a tensor and rejects a set itself
                param_group["params"] = params = list(params)  # a generator can be read once: keep the list
            for p in [params] if isinstance(params, torch.Tensor) else params:
                check_parameter(p)
            self.check_group({**self.defaults, **param_group})
        super().add_param_group(param_group)

    def __getstate__(self):
        return {**super().__getstate__(), **{k: v for k, v in self.__dict__.items() if not k.startswith("_")}}

    def __setstate__(self, state):
        had_flag = "differentiable" in state.get("defaults", {})
        super().__setstate__(state)
        if not had_flag:  # torch adds it for pickles of old torch optimizers; these never read it
            self.defaults.pop("differentiable", None)
