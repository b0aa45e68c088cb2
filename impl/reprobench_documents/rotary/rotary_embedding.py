"""Standard rotary embedding: the document's ``RotaryEmbedding.rotate_qk`` path — ROPE-01.

Source: "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt), class
``RotaryEmbedding(dim, theta, num_freqs, learned_freq, theta_rescale_factor, ...)`` with
``use_quaternion=False``: ``freqs = arange(num_freqs) * 2π/θ`` (a *linear* spectrum, learned by
default), angle of pair k at position m = m·freqs[k], pairs are interleaved (2k, 2k+1) and only the
first 2·num_freqs features rotate. With the document's default ``num_freqs=1`` the only frequency
is 0: the default embedding rotates nothing (measured in ROPE-01).

Reference: the document's code (impl/reprobench_documents/rotary/document.py) called as ``rotate_qk(t, offset=offset)``,
t of shape (batch, heads, seq, dim). Optimized: a table of e^{i·m·freqs} in float32 (float64 for
float64 inputs; positions are exact integers, where the document builds them in t's dtype and so
rounds them in bfloat16 beyond 256) and one complex multiply per pair — one fused elementwise kernel
instead of rotate_half's rearrange/stack/cat and two products. No host syncs. Both twins take
``device=``/``dtype=`` and create ``freqs`` in that dtype, so a float64 build is exact to float64.

When the table is cached. A learned ``freqs`` (requires_grad) is recomputed into a table on every
call: a trainable parameter is what optimizers write, and some write through ``freqs.data``, which
PyTorch gives its own version counter, so no cheap key can see the write (the table would stay
stale); the table costs O(n·F) against the O(B·H·n·F) rotation. A frozen ``freqs`` (learned_freq=False
or ``requires_grad_(False)``) is a constant by contract: its table is cached, keyed on the
parameter's data pointer, version counter, dtype and device and on inference mode, with an alias of
the keyed storage held so its address cannot be reused; a call while ``freqs`` is trainable drops it.
The one write this cannot see is an in-place write through ``.data`` while ``freqs`` is frozen (or
while trainable with no call before it is frozen again): call :meth:`RotaryTable.clear_cache` after
one (declared in the spec's ``caches``; suites/properties/test_cache_invalidation.py pins it).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from reprobench.registry import CacheUse, ComponentSpec, ErrorInput, InputSupport, SampleInput, register
from reprobench_documents.rotary.common import bench_head_inputs, check_dim, check_features, check_finite, check_int, head_error_inputs, head_samples
from reprobench_documents.rotary.document import RotaryEmbedding

# t may be float16/bfloat16 whatever the table's dtype: the rotation runs in the table's precision and
# returns t's dtype (half-precision q/k with a float32 table is the common mixed-precision use)
HALF_OK = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


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

    def __init__(self, dim, theta=10000, num_freqs=1, learned_freq=True, theta_rescale_factor=1.0, *,
                 device=None, dtype=None):
        super().__init__()
        check_rope_config(dim, theta, num_freqs, theta_rescale_factor)
        self.dim = dim
        self.rotary = RotaryEmbedding(dim, theta=theta, num_freqs=num_freqs, learned_freq=learned_freq,
                                      theta_rescale_factor=theta_rescale_factor, device=device, dtype=dtype)

    def forward(self, t, offset=0):
        check_features(t, "t", self.dim, dtypes=HALF_OK)
        return self.rotary.rotate_qk(t, offset=check_offset(offset))


class RotaryTable(nn.Module):
    """The document's ``freqs`` parameter and e^{i·m·freqs}; the table is cached only while freqs is frozen."""

    def __init__(self, dim, theta=10000, num_freqs=1, learned_freq=True, theta_rescale_factor=1.0, *,
                 device=None, dtype=None):
        super().__init__()
        theta = theta * theta_rescale_factor ** (dim / (dim - 2))
        steps = torch.arange(num_freqs, device=device, dtype=dtype or torch.get_default_dtype())
        self.freqs = nn.Parameter(steps * (2 * math.pi / theta), requires_grad=learned_freq)
        self._cache: tuple | None = None  # (key, table, source alias); not a buffer: never saved

    def angle_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return torch.float64 if torch.float64 in (dtype, self.freqs.dtype) else torch.float32

    def _table(self, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
        positions = torch.arange(start, stop, device=self.freqs.device, dtype=dtype)
        angles = positions[:, None] * self.freqs.to(dtype)[None, :]  # (stop - start, F)
        return torch.polar(torch.ones_like(angles), angles)  # complex (stop - start, F)

    def cache_key(self, dtype: torch.dtype) -> tuple:
        f = self.freqs
        return f.data_ptr(), f._version, f.dtype, f.device, dtype, torch.is_inference_mode_enabled()

    def cis(self, n: int, offset: int, dtype: torch.dtype) -> torch.Tensor:
        """e^{i·m·freqs} for m = offset .. offset+n-1, complex of `angle_dtype(dtype)`."""
        adtype, length = self.angle_dtype(dtype), offset + n
        if self.freqs.requires_grad:  # trainable: recomputed every call, and an older frozen-time table dropped
            self._cache = None  # (optimizers may write through .data while it is trainable; module docstring)
            return self._table(offset, length, adtype)
        key = self.cache_key(adtype)
        cached = self._cache is not None and self._cache[0] == key
        if not cached or self._cache[1].shape[0] < length:
            # Grow geometrically so a decode loop (offset += 1) rebuilds O(log n) times.
            size = max(length, 2 * self._cache[1].shape[0] if cached else length)
            with torch.no_grad():
                self._cache = (key, self._table(0, size, adtype), self.freqs.detach())
        return self._cache[1][offset:length]

    def clear_cache(self) -> None:
        """Drop the table: needed only after an in-place write into a frozen freqs through ``.data``."""
        self._cache = None


class FastRoPE(nn.Module):
    """Optimized: same parameters (key ``rotary.freqs``), table of e^{i·m·freqs}, complex multiply."""

    def __init__(self, dim, theta=10000, num_freqs=1, learned_freq=True, theta_rescale_factor=1.0, *,
                 device=None, dtype=None):
        super().__init__()
        check_rope_config(dim, theta, num_freqs, theta_rescale_factor)
        self.dim = dim
        self.rotary = RotaryTable(dim, theta, num_freqs, learned_freq, theta_rescale_factor, device=device, dtype=dtype)

    def forward(self, t, offset=0):
        check_features(t, "t", self.dim, dtypes=HALF_OK)
        n, rot = t.shape[-2], 2 * self.rotary.freqs.shape[0]
        cis = self.rotary.cis(n, check_offset(offset), t.dtype)  # (n, F) complex
        head = t[..., :rot].to(cis.real.dtype).contiguous()
        rotated = torch.view_as_real(torch.view_as_complex(head.unflatten(-1, (-1, 2))) * cis).flatten(-2)
        rotated = rotated.to(t.dtype)
        return torch.cat((rotated, t[..., rot:]), dim=-1) if rot < t.shape[-1] else rotated


def _build(config, device, dtype, generator):
    from reprobench.registry import Implementations

    reference = DocumentRoPE(**config, device=device, dtype=dtype).eval()
    optimized = FastRoPE(**config, device=device, dtype=dtype).eval()
    optimized.load_state_dict(reference.state_dict())
    return Implementations(reference=reference, optimized=optimized)


TEST_DIM = 16
FROZEN_DATA_WRITE = ("an in-place write through .data into a frozen freqs: PyTorch gives .data its own version "
                     "counter, so the table's key cannot see it (module docstring; clear_cache() after such a write)")


def _samples(n, device, dtype, generator):
    samples = head_samples(TEST_DIM)(n, device, dtype, generator)
    t = torch.randn(2, 2, n, TEST_DIM, device=device, dtype=dtype, generator=generator)
    return samples + [SampleInput((t,), dict(offset=37), name="offset37")]


def _bad_offset(randn):
    return [ErrorInput(SampleInput((randn(2, 3, 5, TEST_DIM),), dict(offset=-1), name="negative_offset"),
                       ValueError, r"offset must be >= 0")]


register(ComponentSpec(
    name="rotary.rope",
    input_support=InputSupport(low_precision=(torch.float16, torch.bfloat16)),  # see HALF_OK
    claims=("ROPE-01",),
    description="document RotaryEmbedding.rotate_qk (linear freqs, rotate_half); optimized complex multiply, "
                "table cached for frozen freqs",
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
    # Learned freqs: never cached (a cached table once went stale after freqs.data.mul_).
    # Frozen freqs: cached; a write through .data is the one change the key cannot see.
    caches=(CacheUse(blind_to={"frozen_data_write": FROZEN_DATA_WRITE}),
            CacheUse(dict(learned_freq=False), blind_to={"data_write": FROZEN_DATA_WRITE,
                                                         "frozen_data_write": FROZEN_DATA_WRITE})),
))
