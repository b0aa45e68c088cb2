"""Standard rotary embedding: the document's ``RotaryEmbedding.rotate_qk`` path — ROPE-01.

Source: "Neural Network Optimizations and Embeddings" (002_3edd67eb5ef57768.txt), class
``RotaryEmbedding(dim, theta, num_freqs, learned_freq, theta_rescale_factor, ...)`` with
``use_quaternion=False``: ``freqs = arange(num_freqs) * 2π/θ`` (a *linear* spectrum, learned by
default), angle of pair k at position m = m·freqs[k], pairs are interleaved (2k, 2k+1) and only the
first 2·num_freqs features rotate. With the document's default ``num_freqs=1`` the only frequency
is 0: the default embedding rotates nothing (measured in ROPE-01).

Reference: the document's code (impl/reprobench/rotary/document.py) called as ``rotate_qk(t, offset=offset)``,
t of shape (batch, heads, seq, dim). Optimized: a cached table of e^{i·m·freqs} in float32 (float64
for float64 inputs; positions are exact integers, where the document builds them in t's dtype and so
rounds them in bfloat16 beyond 256) and one complex multiply per pair — one fused elementwise kernel
instead of rotate_half's rearrange/stack/cat and two products. The table is reused while ``freqs``
is unchanged (keyed on its version counter); when ``freqs`` is learned and autograd is on, the angles
are recomputed each call so gradients reach ``freqs``. No host syncs.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from reprobench.registry import ComponentSpec, ErrorInput, SampleInput, register
from reprobench.rotary.common import bench_head_inputs, check_dim, check_features, check_finite, check_int, head_error_inputs, head_samples
from reprobench.rotary.document import RotaryEmbedding


def check_rope_config(dim, theta, num_freqs, theta_rescale_factor) -> None:
    check_dim(dim)
    check_finite(theta, "theta", positive=True)
    check_finite(theta_rescale_factor, "theta_rescale_factor", positive=True)
    check_int(num_freqs, "num_freqs", 1)
    if 2 * num_freqs > dim:
        raise ValueError(f"num_freqs={num_freqs} rotates {2 * num_freqs} features but dim={dim}; need 2*num_freqs <= dim")


def check_offset(offset) -> int:
    return check_int(offset, "offset", 0)


class DocumentRoPE(nn.Module):
    """Reference: the document's RotaryEmbedding, standard path. rope(t (B, H, n, dim), offset=0)."""

    def __init__(self, dim, theta=10000, num_freqs=1, learned_freq=True, theta_rescale_factor=1.0):
        super().__init__()
        check_rope_config(dim, theta, num_freqs, theta_rescale_factor)
        self.dim = dim
        self.rotary = RotaryEmbedding(dim, theta=theta, num_freqs=num_freqs, learned_freq=learned_freq,
                                      theta_rescale_factor=theta_rescale_factor)

    def forward(self, t, offset=0):
        check_features(t, "t", self.dim)
        return self.rotary.rotate_qk(t, offset=check_offset(offset))


class RotaryTable(nn.Module):
    """The document's ``freqs`` parameter plus a cache of e^{i·m·freqs} for positions 0..length-1."""

    def __init__(self, dim, theta=10000, num_freqs=1, learned_freq=True, theta_rescale_factor=1.0):
        super().__init__()
        theta = theta * theta_rescale_factor ** (dim / (dim - 2))
        self.freqs = nn.Parameter(torch.arange(0, num_freqs) * (2 * math.pi / theta), requires_grad=learned_freq)
        self._cache: tuple | None = None  # (key, table); not a buffer: never saved, rebuilt on demand

    def angle_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return torch.float64 if torch.float64 in (dtype, self.freqs.dtype) else torch.float32

    def _table(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        positions = torch.arange(length, device=self.freqs.device, dtype=dtype)
        angles = positions[:, None] * self.freqs.to(dtype)[None, :]  # (length, F)
        return torch.polar(torch.ones_like(angles), angles)  # complex (length, F)

    def cis(self, n: int, offset: int, dtype: torch.dtype) -> torch.Tensor:
        """e^{i·m·freqs} for m = offset .. offset+n-1, complex of `angle_dtype(dtype)`."""
        adtype = self.angle_dtype(dtype)
        length = offset + n
        if self.freqs.requires_grad and torch.is_grad_enabled():
            return self._table(length, adtype)[offset:]
        key = (self.freqs._version, self.freqs.device, adtype, self.freqs.data_ptr())
        if self._cache is None or self._cache[0] != key or self._cache[1].shape[0] < length:
            # Grow geometrically so a decode loop (offset += 1) rebuilds O(log n) times.
            size = max(length, 2 * self._cache[1].shape[0] if self._cache and self._cache[0] == key else length)
            with torch.no_grad():
                self._cache = (key, self._table(size, adtype))
        return self._cache[1][offset:length]


class FastRoPE(nn.Module):
    """Optimized: same parameters (key ``rotary.freqs``), cached table, complex multiply."""

    def __init__(self, dim, theta=10000, num_freqs=1, learned_freq=True, theta_rescale_factor=1.0):
        super().__init__()
        check_rope_config(dim, theta, num_freqs, theta_rescale_factor)
        self.dim = dim
        self.rotary = RotaryTable(dim, theta, num_freqs, learned_freq, theta_rescale_factor)

    def forward(self, t, offset=0):
        check_features(t, "t", self.dim)
        n, rot = t.shape[-2], 2 * self.rotary.freqs.shape[0]
        cis = self.rotary.cis(n, check_offset(offset), t.dtype)  # (n, F) complex
        head = t[..., :rot].to(cis.real.dtype).contiguous()
        rotated = torch.view_as_real(torch.view_as_complex(head.unflatten(-1, (-1, 2))) * cis).flatten(-2)
        rotated = rotated.to(t.dtype)
        return torch.cat((rotated, t[..., rot:]), dim=-1) if rot < t.shape[-1] else rotated


def _build(config, device, dtype, generator):
    from reprobench.registry import Implementations

    reference = DocumentRoPE(**config).to(device=device, dtype=dtype).eval()
    optimized = FastRoPE(**config).to(device=device, dtype=dtype).eval()
    optimized.load_state_dict(reference.state_dict())
    return Implementations(reference=reference, optimized=optimized)


TEST_DIM = 16


def _samples(n, device, dtype, generator):
    samples = head_samples(TEST_DIM)(n, device, dtype, generator)
    t = torch.randn(2, 2, n, TEST_DIM, device=device, dtype=dtype, generator=generator)
    return samples + [SampleInput((t,), dict(offset=37), name="offset37")]


def _bad_offset(randn):
    return [ErrorInput(SampleInput((randn(2, 3, 5, TEST_DIM),), dict(offset=-1), name="negative_offset"),
                       ValueError, r"offset must be >= 0")]


register(ComponentSpec(
    name="rotary.rope",
    claims=("ROPE-01",),
    description="document RotaryEmbedding.rotate_qk (linear freqs, rotate_half); optimized cached complex multiply",
    build=_build,
    sample_inputs=_samples,
    error_inputs=head_error_inputs(TEST_DIM, {
        "dim_odd": (dict(dim=15, num_freqs=4), ValueError, r"dim must be even"),
        "dim_two": (dict(dim=2, num_freqs=1), ValueError, r"dim must be >= 4"),
        "too_many_freqs": (dict(dim=TEST_DIM, num_freqs=9), ValueError, r"num_freqs=9"),
        "theta_nan": (dict(dim=TEST_DIM, theta=float("nan"), num_freqs=8), ValueError, r"theta must be a finite"),
        "theta_inf": (dict(dim=TEST_DIM, theta=float("inf"), num_freqs=8), ValueError, r"theta must be a finite"),
    }, extra=_bad_offset),
    # theta=50 (not the document's 10000) so test angles wrap past 2π at test sizes; num_freqs=dim/2
    # (not the document's 1, which rotates by 0) so every feature pair is exercised.
    default_config=dict(dim=TEST_DIM, theta=50.0, num_freqs=TEST_DIM // 2, learned_freq=True),
    bench_inputs=bench_head_inputs(64),
    bench_config=dict(dim=64, theta=10000.0, num_freqs=32, learned_freq=False),
    test_sizes=(1, 7, 16),
    bench_sizes=(512, 1024, 2048, 4096),
    size_name="seq",
    time_exponent={"reference": 1.0, "optimized": 1.0},
    memory_exponent={"reference": 1.0, "optimized": 1.0},
))
