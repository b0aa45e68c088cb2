"""Argument checks of the references. The packages under test check nothing; the references do, so that
reprobench's input-hygiene findings are the packages' own (a reference that fails inside torch would be
reported in their place)."""
from __future__ import annotations

import torch


def check_tensor(name: str, t, *, rank: int | tuple[int, ...], dtype: torch.dtype | None = None, device=None,
                 last_dim: int | None = None, like: torch.Tensor | None = None) -> None:
    """A floating tensor of `rank` dims, or one of the ranks in a tuple (and the given dtype, device, last dim,
    or the shape of `like`)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {t.dtype}")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} (the layer's), got {t.dtype}")
    if device is not None and t.device != torch.device(device):
        raise ValueError(f"{name}: expected a tensor on {device} (the layer's device), got {t.device}")
    ranks = rank if isinstance(rank, tuple) else (rank,)
    if t.dim() not in ranks:
        raise ValueError(f"{name}: expected {' or '.join(map(str, ranks))} dims, got shape {tuple(t.shape)}")
    if last_dim is not None and t.shape[-1] != last_dim:
        raise ValueError(f"{name}: expected last dim {last_dim}, got shape {tuple(t.shape)}")
    if like is not None and t.shape != like.shape:
        raise ValueError(f"{name}: expected shape {tuple(like.shape)}, got {tuple(t.shape)}")
    if any(s == 0 for s in t.shape):
        raise ValueError(f"{name}: expected a non-empty tensor (batch and length >= 1), got shape {tuple(t.shape)}")


def check_key_mask(name: str, mask, batch: int, length: int, device) -> None:
    """A (batch, length) bool mask on `device`, True where a key may be attended to."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"{name}: expected a bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
    if tuple(mask.shape) != (batch, length):
        raise ValueError(f"{name}: expected shape {(batch, length)}, got {tuple(mask.shape)}")
    if mask.device != torch.device(device):
        raise ValueError(f"{name}: expected a tensor on {device}, got {mask.device}")
