"""Causal sliding-window attention: token i attends to the `window` most recent tokens, itself included
(keys j with i - window < j <= i), as in Longformer's local attention or Mistral's sliding window.

Two forward paths over one set of parameters, so the fast one can always be checked against the
readable one:
- ``reference``: dense (n x n) scores with the window mask. Obviously right, O(n^2) time and memory.
- ``optimized``: blocked. The sequence is cut into blocks of `window` tokens; the keys a query may see
  lie in its own block and the one before, so each block attends to 2 * window keys through one fused
  scaled_dot_product_attention call with a (window x 2 * window) mask. O(n * window) time and memory,
  no Python loop over tokens or blocks, no host sync, any device.

This module depends on torch only; acme_attention.reprobench_plugin registers it with reprobench.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PATHS = ("reference", "optimized")


def _check_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value}")
    return value


def window_mask(n: int, window: int, device=None) -> torch.Tensor:
    """(n, n) bool: True where query i may attend key j, i.e. 0 <= i - j < window."""
    idx = torch.arange(n, device=device)
    offset = idx[:, None] - idx[None, :]
    return (offset >= 0) & (offset < window)


def dense_window_attention(q, k, v, window: int, return_probs: bool = False):
    """The reference: softmax(QK^T / sqrt(d)) V over the window mask. q, k, v (B, H, n, hd)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    allowed = window_mask(q.shape[-2], window, q.device)
    probs = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)  # the diagonal is always allowed
    out = probs @ v
    return (out, probs, allowed) if return_probs else out


def blocked_window_attention(q, k, v, window: int):
    """Exact sliding-window attention in O(n * window). q, k, v (B, H, n, hd) -> (B, H, n, hd)."""
    b, h, n, hd = q.shape
    blocks = -(-n // window)  # ceil(n / window)
    pad = blocks * window - n  # padded keys come after every real query: the causal mask hides them

    def cut(t):  # (B, H, n, hd) -> (B, H, blocks, window, hd)
        t = F.pad(t, (0, 0, 0, pad)) if pad else t
        return t.view(b, h, blocks, window, hd)

    def with_previous(t):  # (B, H, blocks, window, hd) -> (B, H, blocks, 2 * window, hd): previous block first
        previous = F.pad(t, (0, 0, 0, 0, 1, 0))[:, :, :-1]  # block 0's "previous" is zeros, masked below
        return torch.cat([previous, t], dim=3)

    qb, kb, vb = cut(q), with_previous(cut(k)), with_previous(cut(v))
    # Query a of block t sits at t*window + a, key c of its 2*window keys at (t-1)*window + c:
    # i - j = a + window - c, so 0 <= i - j < window  <=>  a < c <= a + window.
    a = torch.arange(window, device=q.device)[:, None]
    c = torch.arange(2 * window, device=q.device)[None, :]
    allowed = (c > a) & (c <= a + window)  # (window, 2*window)
    first_block = torch.arange(blocks, device=q.device)[:, None, None] == 0
    allowed = allowed & ~(first_block & (c < window))  # block 0 has no previous block
    # 4-D (batch, heads * blocks, window, dim): the layout the fused kernels take.
    out = F.scaled_dot_product_attention(
        qb.reshape(b, h * blocks, window, hd), kb.reshape(b, h * blocks, 2 * window, hd),
        vb.reshape(b, h * blocks, 2 * window, hd), attn_mask=allowed.repeat(h, 1, 1))
    out = out.view(b, h, blocks * window, hd)
    return out[:, :, :n] if pad else out


class WindowAttention(nn.Module):
    """WindowAttention(dim, num_heads, window). x (batch, n, dim) -> (batch, n, dim)."""

    def __init__(self, dim: int, num_heads: int, window: int, path: str = "optimized", *, device=None, dtype=None):
        super().__init__()
        _check_int(dim, "dim")
        _check_int(num_heads, "num_heads")
        if dim % num_heads:
            raise ValueError(f"dim: expected a multiple of num_heads ({num_heads}), got {dim}")
        if path not in PATHS:
            raise ValueError(f"path: expected one of {PATHS}, got {path!r}")
        self.dim, self.num_heads, self.window, self.path = dim, num_heads, _check_int(window, "window"), path
        self.qkv = nn.Linear(dim, 3 * dim, device=device, dtype=dtype)
        self.proj = nn.Linear(dim, dim, device=device, dtype=dtype)

    def reset_parameters(self, generator: torch.Generator) -> "WindowAttention":
        """nn.Linear's default init (uniform +-1/sqrt(fan_in)), drawn in the module's dtype from `generator`."""
        with torch.no_grad():
            for linear in (self.qkv, self.proj):
                bound = 1.0 / math.sqrt(linear.in_features)
                linear.weight.uniform_(-bound, bound, generator=generator)
                linear.bias.uniform_(-bound, bound, generator=generator)
        return self

    def _check(self, x) -> None:
        weight = self.qkv.weight
        if not isinstance(x, torch.Tensor) or x.dtype not in (torch.float32, torch.float64):
            got = f"{x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"x: expected a float32 or float64 tensor (batch, n, {self.dim}), got {got}")
        if x.dim() != 3 or x.shape[-1] != self.dim or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"x: expected shape (batch >= 1, n >= 1, {self.dim}), got {tuple(x.shape)}")
        if x.device != weight.device:
            raise ValueError(f"x: expected a tensor on {weight.device} like the layer's parameters, got {x.device}")
        if x.dtype != weight.dtype:
            raise TypeError(f"x: expected {weight.dtype} like the layer's parameters, got {x.dtype}")

    def _heads(self, x):
        self._check(x)
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.dim // self.num_heads).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def _merge(self, out):
        b, h, n, hd = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, n, h * hd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(x)
        if self.path == "reference":
            return self._merge(dense_window_attention(q, k, v, self.window))
        return self._merge(blocked_window_attention(q, k, v, self.window))

    def attention_probs(self, x: torch.Tensor):
        """(probabilities (B, H, n, n), allowed mask (n, n)) as the reference forms them."""
        q, k, v = self._heads(x)
        _, probs, allowed = dense_window_attention(q, k, v, self.window, return_probs=True)
        return probs, allowed

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, window={self.window}, path={self.path}"
