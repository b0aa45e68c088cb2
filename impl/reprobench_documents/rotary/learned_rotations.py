"""Learned rotations: the document's ``RotaryEmbedding.learned_rotations`` — ROPE-07.

Source: "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt):
``learned_rotations(rotations, t, start_index=0, freq_ranges=None)`` "supports learnable rotation
parameters, allowing the model to adapt positional embeddings to specific sequence patterns".
``rotations`` holds one angle per (position, pair): shape (seq, r); with ``freq_ranges`` (f,) each
angle is multiplied by every frequency range first, giving r·f pairs. The angles are repeated per
pair and go through ``apply_rotary`` (rotate_half), aligned to the last ``seq`` positions of t.
The rotation is differentiable in ``rotations`` and ``freq_ranges`` and acts per position (ROPE-07).

Reference: the document's method, called as rot(rotations (n, r), t (B, H, n, dim), freq_ranges=None).
Optimized: the angles become e^{i·angle} and rotate the interleaved pairs by one complex multiply
(float32 arithmetic for half-precision inputs), no rearrange/stack/cat round trip.
"""
from __future__ import annotations

import torch
from torch import nn

from reprobench.registry import ComponentSpec, ErrorInput, Implementations, SampleInput, register
from reprobench_documents.rotary.common import check_dim, check_features
from reprobench_documents.rotary.document import RotaryEmbedding


def check_learned_args(rotations, t, dim, freq_ranges) -> int:
    """Returns the number of rotated features."""
    check_features(t, "t", dim)
    if not isinstance(rotations, torch.Tensor) or not rotations.is_floating_point():
        raise TypeError("rotations must be a floating torch.Tensor of shape [seq, pairs]")
    if rotations.dim() != 2 or rotations.shape[0] != t.shape[-2]:
        raise ValueError(f"rotations must have shape [seq={t.shape[-2]}, pairs], got {tuple(rotations.shape)}")
    width = rotations.shape[-1]
    if freq_ranges is not None:
        if not isinstance(freq_ranges, torch.Tensor) or freq_ranges.dim() != 1 or not freq_ranges.is_floating_point():
            raise TypeError("freq_ranges must be a floating 1-D torch.Tensor [f] or None")
        width *= freq_ranges.shape[0]
    if 2 * width > dim:
        raise ValueError(f"rotations rotate {2 * width} features but t has dim={dim}; expected 2*pairs(*f) <= dim")
    return 2 * width


class DocumentLearnedRotations(nn.Module):
    def __init__(self, dim, *, device=None, dtype=None):
        super().__init__()
        self.dim = check_dim(dim)
        self.rotary = RotaryEmbedding(dim, device=device, dtype=dtype)  # only for its methods; freqs is unused here

    def forward(self, rotations, t, freq_ranges=None):
        check_learned_args(rotations, t, self.dim, freq_ranges)
        return self.rotary.learned_rotations(rotations, t, freq_ranges=freq_ranges)


class FastLearnedRotations(DocumentLearnedRotations):
    def forward(self, rotations, t, freq_ranges=None):
        rot = check_learned_args(rotations, t, self.dim, freq_ranges)
        compute = torch.promote_types(t.dtype, torch.float32)
        angles = rotations.to(compute)
        if freq_ranges is not None:
            angles = (angles[..., :, None] * freq_ranges.to(compute)).flatten(-2)  # (n, r·f)
        cis = torch.polar(torch.ones_like(angles), angles)  # (n, rot/2)
        head = torch.view_as_complex(t[..., :rot].to(compute).contiguous().unflatten(-1, (-1, 2)))
        rotated = torch.view_as_real(head * cis).flatten(-2).to(t.dtype)
        return torch.cat((rotated, t[..., rot:]), dim=-1) if rot < t.shape[-1] else rotated


def _build(config, device, dtype, generator):
    reference = DocumentLearnedRotations(**config, device=device, dtype=dtype).eval()
    optimized = FastLearnedRotations(**config, device=device, dtype=dtype).eval()
    optimized.load_state_dict(reference.state_dict())
    return Implementations(reference=reference, optimized=optimized)


TEST_DIM = 16


def _samples(n, device, dtype, generator):
    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

    return [
        SampleInput((randn(n, TEST_DIM // 2), randn(2, 3, n, TEST_DIM)), name="all_pairs"),
        SampleInput((randn(n, 3), randn(1, 2, n, TEST_DIM)), name="partial"),
        SampleInput((randn(n, 2), randn(2, 1, n, TEST_DIM)), dict(freq_ranges=randn(4)), name="freq_ranges"),
    ]


def _errors(device, dtype, generator):
    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

    return [
        ErrorInput(SampleInput((randn(5, 8), randn(2, 3, 6, TEST_DIM))), ValueError, r"rotations must have shape \[seq=6"),
        ErrorInput(SampleInput((randn(5, 9), randn(2, 3, 5, TEST_DIM))), ValueError, r"rotations rotate 18 features"),
        ErrorInput(SampleInput((randn(5, 8), randn(3, 5, TEST_DIM))), ValueError, r"t must have shape .*rank 4"),
        ErrorInput(SampleInput((torch.ones(5, 8, dtype=torch.long), randn(2, 3, 5, TEST_DIM))), TypeError,
                   r"rotations must be a floating"),
        ErrorInput(SampleInput((randn(5, 2), randn(2, 3, 5, TEST_DIM)), dict(freq_ranges=randn(5))), ValueError,
                   r"rotations rotate 20 features"),
    ]


def _bench_inputs(n, device, dtype, generator):
    rotations = torch.randn(n, 32, device=device, dtype=dtype, generator=generator)
    t = torch.randn(1, 8, n, 64, device=device, dtype=dtype, generator=generator)
    return [SampleInput((rotations, t), name=f"1x8x{n}x64")]


register(ComponentSpec(
    name="rotary.learned_rotations",
    claims=("ROPE-07",),
    description="document learned_rotations (per-position learned angles via rotate_half); optimized complex multiply",
    build=_build,
    sample_inputs=_samples,
    error_inputs=_errors,
    default_config=dict(dim=TEST_DIM),
    bench_inputs=_bench_inputs,
    bench_config=dict(dim=64),
    test_sizes=(1, 7, 16),
    bench_sizes=(512, 1024, 2048, 4096),
    size_name="seq",
    time_exponent={"reference": 1.0, "optimized": 1.0},
    memory_exponent={"reference": 1.0, "optimized": 1.0},
))
