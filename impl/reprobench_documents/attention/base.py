"""Shared pieces of the attention family: argument checks, seeded init, the projection layer,
and the two attention cores everything is measured against.

`explicit_attention` is the textbook softmax(QKᵀ/√d)V with an optional boolean mask (the oracle);
`sdpa_attention` is the same through torch's fused scaled_dot_product_attention.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from reprobench.validation import check_tensor, describe

PATHS = ("reference", "optimized")


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_dropout(dropout, name: str = "dropout") -> float:
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {dropout!r}")
    return float(dropout)


def check_path(path: str) -> str:
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    return path


def check_heads(dim: int, num_heads: int) -> int:
    check_positive_int(dim, "dim")
    check_positive_int(num_heads, "num_heads")
    if dim % num_heads:
        raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
    return dim // num_heads


def check_tokens(x, name: str, dim: int, like: torch.Tensor | torch.dtype | None = None, *,
                 empty_batch: bool = False) -> torch.Tensor:
    """x must be a float32/float64 tensor (batch, seq, dim) with seq >= 1 (a query needs a key to
    attend to) and batch >= 1 unless the layer accepts an empty batch (as torch layers do); like is a
    parameter of the layer, whose dtype and device x must share (a bare dtype checks the dtype only)."""
    nonempty = ("seq",) if empty_batch else ("batch", "seq")
    if isinstance(like, torch.Tensor):
        return check_tensor(name, x, shape=("batch", "seq", dim), nonempty=nonempty, like=like,
                            like_what="the layer's parameters")
    check_tensor(name, x, shape=("batch", "seq", dim), nonempty=nonempty)
    if like is not None and x.dtype != like:
        raise TypeError(f"{name}: expected {str(like).replace('torch.', '')} like the layer's parameters, got {describe(x)}")
    return x


def check_qkv(q, k, v) -> None:
    """q, k, v must be [batch, heads, seq, head_dim] with matching batch/heads/head_dim and dtype."""
    for name, t in (("query", q), ("key", k), ("value", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor [batch, heads, seq, head_dim]")
        if t.dim() != 4:
            raise ValueError(f"{name} must have shape [batch, heads, seq, head_dim] (rank 4), got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating, got {t.dtype}")
        if t.shape[2] == 0:
            raise ValueError(f"{name} has an empty sequence (seq=0)")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"head dim mismatch: query has head_dim {q.shape[-1]}, key has {k.shape[-1]}")
    if k.shape[:3] != v.shape[:3]:
        raise ValueError(f"key {tuple(k.shape)} and value {tuple(v.shape)} must agree in [batch, heads, seq]")
    if q.shape[:2] != k.shape[:2]:
        raise ValueError(f"query {tuple(q.shape)} and key {tuple(k.shape)} must agree in [batch, heads]")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"query, key, value dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")


def explicit_attention(q, k, v, allowed: torch.Tensor | None = None, dropout: nn.Module | None = None,
                       return_probs: bool = False):
    """softmax(QKᵀ/√d)V with masked keys set to -inf before the softmax (so they get exactly 0)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, n, m)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    probs = scores.softmax(dim=-1)
    out = (dropout(probs) if dropout is not None else probs) @ v  # (B, H, n, dv)
    return (out, probs) if return_probs else out


def masked_softmax(scores: torch.Tensor) -> torch.Tensor:
    """softmax over the last dim, except that a row whose every score is -inf (every key masked)
    gets all-zero weights, and so zero output and zero gradients — what SDPA gives such a row —
    instead of 0/0 = NaN. A NaN score is not -inf, so NaN inputs still propagate. No host sync."""
    empty = (scores == float("-inf")).all(dim=-1, keepdim=True)
    return scores.masked_fill(empty, 0.0).softmax(dim=-1).masked_fill(empty, 0.0)


def sdpa_attention(q, k, v, dropout_p: float = 0.0):
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)


def init_linear_(linear: nn.Linear, generator: torch.Generator) -> None:
    """nn.Linear's default init (uniform ±1/√fan_in), drawn from an explicit generator."""
    bound = 1.0 / math.sqrt(linear.in_features)
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound, generator=generator)
        if linear.bias is not None:
            linear.bias.uniform_(-bound, bound, generator=generator)


class SelfAttentionLayer(nn.Module):
    """Projections around an attention core: x -> qkv -> core -> out projection.

    Subclasses implement ``attend_reference`` and ``attend_optimized`` on (B, H, n, hd) tensors;
    ``path`` picks which one ``forward`` runs, so both twins have identical parameters and keys.
    """

    accepts_empty_batch = False  # a subclass whose cores handle batch 0 (empty output) says so

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, path: str = "optimized"):
        super().__init__()
        self.head_dim = check_heads(dim, num_heads)
        self.dim, self.num_heads = dim, num_heads
        self.dropout_p = check_dropout(dropout)
        self.path = check_path(path)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(self.dropout_p)

    def reset_parameters(self, generator: torch.Generator) -> "SelfAttentionLayer":
        init_linear_(self.qkv, generator)
        init_linear_(self.proj, generator)
        return self

    def split_heads(self, x: torch.Tensor):
        check_tokens(x, "x", self.dim, self.qkv.weight, empty_batch=self.accepts_empty_batch)
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]  # each (B, H, n, hd)

    def merge_heads(self, out: torch.Tensor) -> torch.Tensor:
        b, h, n, hd = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, n, h * hd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split_heads(x)
        attend = self.attend_optimized if self.path == "optimized" else self.attend_reference
        return self.merge_heads(attend(q, k, v))

    def attention_probs(self, x: torch.Tensor):
        """(probabilities (B, H, n, n), allowed mask) as the reference forms them."""
        q, k, _ = self.split_heads(x)
        allowed = self.allowed_mask(x.shape[1], x.device)
        _, probs = explicit_attention(q, k, k, allowed, return_probs=True)
        return probs, allowed if allowed is not None else torch.ones(1, dtype=torch.bool, device=x.device)

    def allowed_mask(self, n: int, device) -> torch.Tensor | None:
        return None

    def attend_reference(self, q, k, v):
        return explicit_attention(q, k, v, self.allowed_mask(q.shape[2], q.device), self.attn_drop)

    def attend_optimized(self, q, k, v):  # pragma: no cover - every subclass overrides
        raise NotImplementedError


def build_module_pair(cls, config, device, dtype, generator):
    """Reference and optimized instances of ``cls``: seeded init, optimized loads the reference's
    state_dict (same keys, equal values), both in eval mode so dropout is off for comparisons."""
    from reprobench.registry import Implementations

    reference = cls(**config, path="reference").to(dtype=dtype).reset_parameters(generator).to(device=device).eval()
    optimized = cls(**config, path="optimized").to(device=device, dtype=dtype).eval()
    optimized.load_state_dict(reference.state_dict())
    return Implementations(reference=reference, optimized=optimized,
                           probabilities=lambda sample: reference.attention_probs(*sample.args))


def token_samples(dim: int):
    """sample_inputs for layers called as layer(x) with x (batch, n, dim)."""
    from reprobench.registry import SampleInput

    def sample_inputs(n, device, dtype, generator):
        return [
            SampleInput((torch.randn(2, n, dim, device=device, dtype=dtype, generator=generator),), name="batch2"),
            SampleInput((torch.randn(1, n, dim, device=device, dtype=dtype, generator=generator),), name="batch1"),
        ]

    return sample_inputs


def token_error_inputs(dim: int, bad_configs: dict):
    """Bad calls every token layer must reject, plus config errors raised at build time."""
    from reprobench.registry import ErrorInput, SampleInput

    def error_inputs(device, dtype, generator):
        def randn(*shape, dt=dtype):
            return torch.randn(*shape, device=device, dtype=dt, generator=generator)

        other = torch.float64 if dtype != torch.float64 else torch.float32
        errors = [
            ErrorInput(SampleInput((randn(4, dim),), name="rank2"), ValueError, rf"x: expected .* shape \(batch, seq, {dim}\)"),
            ErrorInput(SampleInput((randn(2, 5, dim + 1),), name="wrong_dim"), ValueError,
                       rf"x: expected .* shape \(batch, seq, {dim}\).*got .* \(2, 5, {dim + 1}\)"),
            ErrorInput(SampleInput((randn(2, 0, dim),), name="empty_seq"), ValueError, r"x: expected .*seq >= 1"),
            ErrorInput(SampleInput((randn(2, 5, dim, dt=other),), name="dtype_mix"), TypeError,
                       r"x: expected float\d+ like the layer's parameters"),
            ErrorInput(SampleInput((torch.ones(2, 5, dim, dtype=torch.long, device=device),), name="int_input"),
                       TypeError, r"x: expected a float32 or float64 tensor"),
        ]
        for label, (config, error_type, match) in bad_configs.items():
            errors.append(ErrorInput(SampleInput((randn(2, 5, dim),), name=label), error_type, match, config=config))
        return errors

    return error_inputs
