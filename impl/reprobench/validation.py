"""Argument checks every component calls once at the entry of both twins.

A bad call gets a ValueError (shape, size, device) or TypeError (not a tensor, dtype) whose message
starts with the argument's name and says what was expected and what arrived, e.g.
``q: expected a float32 or float64 tensor of shape (batch, heads, n, head_dim), got int64 of shape (2, 3)``.

The checks read only metadata (shape, dtype, device), so they cost no host sync and work on 'meta'
tensors; the optimized twins must stay free of host syncs. Checks of *values* (finiteness, index
range) need a reduction and a sync: :func:`check_finite` and :func:`check_index_range` are for
entry points that already synchronise, never for an optimized hot path.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

FLOATING = (torch.float32, torch.float64)  # what the components compute in unless they declare more
INTEGER = (torch.int64, torch.int32)  # index and label tensors

__all__ = ["FLOATING", "INTEGER", "describe", "check_tensor", "check_like", "check_size", "check_finite",
           "check_index_range"]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _dtypes_phrase(dtypes: Sequence[torch.dtype]) -> str:
    names = [_dtype_name(d) for d in dtypes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeio" else "a ") + phrase


def _shape_phrase(shape: Sequence) -> str:
    inner = ", ".join(str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def describe(x) -> str:
    """How a received value is quoted in a message: dtype, shape and a non-CPU device."""
    if not isinstance(x, torch.Tensor):
        return f"{type(x).__name__} {x!r}" if isinstance(x, (int, float, bool, str)) else type(x).__name__
    where = "" if x.device.type == "cpu" else f" on {x.device}"
    return f"{_dtype_name(x.dtype)} of shape {tuple(x.shape)}{where}"


def _matches(x: torch.Tensor, shape: Sequence, nonempty: Iterable[str]) -> bool:
    if x.dim() != len(shape):
        return False
    for size, want in zip(x.shape, shape):
        if isinstance(want, int) and size != want:
            return False
        if isinstance(want, str) and want in nonempty and size == 0:
            return False
    return True


def check_tensor(name: str, x, *, shape: Sequence | list[Sequence] | None = None,
                 dtypes: Sequence[torch.dtype] | None = FLOATING, nonempty: Iterable[str] = (),
                 like: torch.Tensor | None = None, like_what: str = "the parameters",
                 same_device_as: torch.Tensor | None = None, allow_meta: bool = False) -> torch.Tensor:
    """Check one tensor argument; return it unchanged.

    shape: the expected layout, e.g. ``("batch", "seq", 32)`` (ints are required sizes, strings name
    free dimensions), or a list of such layouts when several ranks are accepted.
    dtypes: the accepted dtypes (None: any). nonempty: names of dimensions that must be >= 1.
    like: a tensor x must share dtype and device with (the module's parameters, or the first
    argument), named in the message by like_what; same_device_as: a tensor whose device (only) x must
    share, e.g. an index tensor beside float data. allow_meta: accept 'meta' tensors (shape inference)
    where x has no `like` on another device; components that cannot run without data refuse them.
    """
    nonempty = tuple(dict.fromkeys(nonempty))  # (..., "N", "N") names N once
    layouts = [] if shape is None else (list(shape) if isinstance(shape, list) else [shape])
    want = "a" if dtypes is None else _article(_dtypes_phrase(dtypes))
    want += " tensor" + (" of shape " + " or ".join(_shape_phrase(s) for s in layouts) if layouts else "")
    if nonempty:
        want += " with " + " and ".join(f"{d} >= 1" for d in nonempty)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected {want}, got {describe(x)}")
    if dtypes is not None and x.dtype not in dtypes:
        raise TypeError(f"{name}: expected {want}, got {describe(x)}")
    if layouts and not any(_matches(x, s, nonempty) for s in layouts):
        raise ValueError(f"{name}: expected {want}, got {describe(x)}")
    anchor = like if like is not None else same_device_as
    if like is not None:
        check_like(name, x, like, like_what)
    elif same_device_as is not None and x.device != same_device_as.device:
        raise ValueError(f"{name}: expected a tensor on {same_device_as.device} like {like_what}, got {describe(x)}")
    if x.device.type == "meta" and not allow_meta and (anchor is None or anchor.device.type != "meta"):
        raise ValueError(f"{name}: expected a tensor with data (on cpu or an accelerator), got {describe(x)}; "
                         "this component does not support shape inference on 'meta'")
    return x


def check_like(name: str, x: torch.Tensor, like: torch.Tensor, like_what: str) -> torch.Tensor:
    """x must be on like's device and of like's dtype (one dtype per call: no silent promotion)."""
    if x.device != like.device:
        raise ValueError(f"{name}: expected a tensor on {like.device} like {like_what}, got {describe(x)}")
    if x.dtype != like.dtype:
        raise TypeError(f"{name}: expected {_dtype_name(like.dtype)} like {like_what}, got {describe(x)}")
    return x


def check_size(name: str, x: torch.Tensor, dim: int, size: int, what: str) -> None:
    """Dimension `dim` of x must equal `size` (e.g. the key length of another argument)."""
    if x.shape[dim] != size:
        raise ValueError(f"{name}: expected size {size} in dim {dim} ({what}), got {describe(x)}")


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """x must hold no NaN/inf. One reduction and one host sync: not for optimized hot paths."""
    if x.device.type != "meta" and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: expected finite values, got NaN or inf in {describe(x)}")
    return x


def check_index_range(name: str, x: torch.Tensor, size: int) -> torch.Tensor:
    """Integer x must lie in [0, size). One reduction and one host sync: not for optimized hot paths."""
    if x.device.type != "meta" and x.numel() and not bool(((x >= 0) & (x < size)).all()):
        raise ValueError(f"{name}: expected indices in [0, {size}), got values outside in {describe(x)}")
    return x
