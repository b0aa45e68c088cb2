"""Shared pieces of the rotary family: argument checks, sample inputs, and the closed-form rotations
the optimized twins and the property tests use. Registers nothing.

- :func:`pairwise_givens` applies Givens rotations on the canonical disjoint pairs (0,1), (2,3), ...
  as element updates, O(n·d), instead of one d×d matrix product per pair (the document's way).
  Disjoint pairs commute, so applying them at once equals the document's sequential loop.
- :func:`rodrigues` is a proper 3D rotation about a unit axis (the textbook quaternion sandwich
  q x q*, written as Rodrigues' formula); :func:`doc_quaternion_fast` is the document's formula
  (which drops sin(θ/2)) in closed form, for the optimized twins of the document's code.
- :func:`textbook_rope_float64` is an independent float64 per-pair rotation, the oracle of the
  property tests.
"""
from __future__ import annotations

import math

import torch

from reprobench.registry import ErrorInput, SampleInput
from reprobench.validation import FLOATING, check_tensor


def check_int(value, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_finite(value, name: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def check_dim(dim, name: str = "dim", minimum: int = 4) -> int:
    """Rotations act on (2k, 2k+1) pairs: dim must be even (and > 2: the document divides by dim - 2)."""
    check_int(dim, name, minimum)
    if dim % 2:
        raise ValueError(f"{name} must be even (rotations act on feature pairs), got {dim}")
    return dim


def check_features(t, name: str, dim: int, rank: int | None = 4, like: torch.Tensor | None = None,
                   dtypes: tuple = FLOATING) -> torch.Tensor:
    """t must be a floating tensor [..., dim]; with rank=4 exactly [batch, heads, seq, dim]. like: a
    parameter of the rotation, whose dtype and device t must share; dtypes: the input dtypes accepted."""
    layout = f"[batch, heads, seq, {dim}]" if rank == 4 else f"[..., {dim}]"
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {layout}, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor {layout}, got dtype {t.dtype}")
    if rank is not None and t.dim() != rank:
        raise ValueError(f"{name} must have shape {layout} (rank {rank}), got shape {tuple(t.shape)}")
    if t.dim() == 0 or t.shape[-1] != dim:
        raise ValueError(f"{name} has feature dim {t.shape[-1] if t.dim() else None}, expected {dim}: shape {layout}")
    # float32/float64 only, the parameters' dtype and device, no 'meta', no empty batch or sequence:
    # a bad call fails here with a ValueError/TypeError naming the argument, not deep inside torch
    check_tensor(name, t, shape=("batch", "heads", "seq", dim) if rank == 4 else None, dtypes=dtypes,
                 nonempty=("batch", "seq") if rank == 4 else (), like=like, like_what="the rotation's parameters")
    return t


def pairwise_givens(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x @ G_0 @ G_1 ... for Givens G_k on pair (2k, 2k+1), G_k[i,i]=G_k[j,j]=c, G_k[i,j]=-s, G_k[j,i]=s.

    cos, sin: (r,) broadcast over x[..., :2r]; features beyond 2r pass through. Row-vector
    convention as the document's ``x @ G``: x_i' = c x_i + s x_j, x_j' = -s x_i + c x_j.
    """
    r = cos.shape[-1]
    if x.dtype in (torch.float32, torch.float64):
        # (x_i + i x_j)(c - i s) = (c x_i + s x_j) + i(c x_j - s x_i): one fused complex multiply
        head = torch.view_as_complex(x[..., : 2 * r].contiguous().unflatten(-1, (r, 2)))
        rotated = torch.view_as_real(head * torch.complex(cos, -sin).to(head.dtype)).flatten(-2)
    else:  # half precision has no fast complex kernels: explicit pair updates
        pairs = x[..., : 2 * r].unflatten(-1, (r, 2))  # (..., r, 2)
        a, b = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack((a * cos + b * sin, b * cos - a * sin), dim=-1).flatten(-2)
    return torch.cat((rotated, x[..., 2 * r:]), dim=-1) if 2 * r < x.shape[-1] else rotated


def cross_matrix(u: torch.Tensor) -> torch.Tensor:
    """K with x @ K.T == cross(u, x) for rows x: the skew matrix [u]_x."""
    zero = torch.zeros_like(u[0])
    return torch.stack((torch.stack((zero, -u[2], u[1])),
                        torch.stack((u[2], zero, -u[0])),
                        torch.stack((-u[1], u[0], zero))))


def doc_quaternion_fast(x: torch.Tensor, theta: torch.Tensor, u: torch.Tensor, clamp: float | None = 10.0):
    """The document's q_rotation in closed form: x + clamp(2(cos(θ/2) u×x + u×(u×x))).

    One (3×3) matrix for the increment instead of two cross products over all rows.
    """
    u = u / (torch.linalg.vector_norm(u) + 1e-8)
    k = cross_matrix(u)
    w = torch.cos(theta / 2).reshape(())
    increment_matrix = 2 * (w * k + k @ k)  # rows: x @ M.T = 2(w u×x + u×(u×x))
    increment = x.reshape(-1, 3) @ increment_matrix.T
    if clamp is not None:
        increment = increment.clamp(-clamp, clamp)
    return (x.reshape(-1, 3) + increment).reshape(x.shape)


def rodrigues(x: torch.Tensor, theta: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Proper rotation of rows x (..., 3) by θ about unit axis u: x cosθ + (u×x) sinθ + u(u·x)(1-cosθ)."""
    u = u / torch.linalg.vector_norm(u)
    c, s = torch.cos(theta), torch.sin(theta)
    u_b = u.expand_as(x)
    return x * c + torch.linalg.cross(u_b, x, dim=-1) * s + u_b * (x @ u).unsqueeze(-1) * (1 - c)


def textbook_rope_float64(t: torch.Tensor, freqs: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Independent oracle: pair (2k, 2k+1) of position m rotated by m·freqs[k], in float64, by loops
    over pairs with the 2×2 matrix [[cos, -sin], [sin, cos]] acting on column vectors."""
    t64, f64 = t.detach().to(torch.float64), freqs.detach().to(torch.float64)
    out = t64.clone()
    positions = torch.arange(t.shape[-2], dtype=torch.float64) + offset
    for k in range(f64.shape[0]):
        angle = positions * f64[k]  # (seq,)
        c, s = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
        x, y = t64[..., 2 * k], t64[..., 2 * k + 1]
        out[..., 2 * k] = c[:, 0] * x - s[:, 0] * y
        out[..., 2 * k + 1] = s[:, 0] * x + c[:, 0] * y
    return out


def head_samples(dim: int, heads: int = 3, batch: int = 2):
    """sample_inputs for callables taking t (batch, heads, n, dim)."""

    def sample_inputs(n, device, dtype, generator):
        def randn(*shape):
            return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

        return [SampleInput((randn(batch, heads, n, dim),), name="bhnd"),
                SampleInput((randn(1, 1, n, dim),), name="single_head")]

    return sample_inputs


def head_error_inputs(dim: int, bad_configs: dict, extra=None):
    """Bad layouts/dtypes every (batch, heads, seq, dim) rotary callable rejects, plus config errors."""

    def error_inputs(device, dtype, generator):
        def randn(*shape):
            return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

        errors = [
            ErrorInput(SampleInput((randn(5, dim),), name="rank2"), ValueError, r"t must have shape .*rank 4"),
            ErrorInput(SampleInput((randn(2, 3, 5, dim + 1),), name="wrong_dim"), ValueError, r"t has feature dim"),
            ErrorInput(SampleInput((torch.ones(2, 3, 5, dim, dtype=torch.long, device=device),), name="int_input"),
                       TypeError, r"t must be a floating tensor"),
        ]
        errors += list(extra(randn) if extra else [])
        for label, (config, error_type, match) in bad_configs.items():
            errors.append(ErrorInput(SampleInput((randn(2, 3, 5, dim),), name=label), error_type, match, config=config))
        return errors

    return error_inputs


def bench_head_inputs(dim: int, heads: int = 8):
    """bench_inputs: one t (1, heads, n, dim) — the ROPE claims' benchmark shape (8 heads x 64)."""

    def bench_inputs(n, device, dtype, generator):
        t = torch.randn(1, heads, n, dim, device=device, dtype=dtype, generator=generator)
        return [SampleInput((t,), name=f"1x{heads}x{n}x{dim}")]

    return bench_inputs
