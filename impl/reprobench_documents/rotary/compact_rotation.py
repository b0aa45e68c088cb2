"""The document's "mini version": ``CompactRotation(dim, rot_pairs, rot_scale, rot_count)`` — ROPE-06.

Source: "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt), section "mini
version": "a lightweight implementation option that maintains the core benefits while reducing
computational overhead". It is ``RotaryEmbedding.rotations`` with a fixed direction of +1 and plain
Python angles θ_k = 2π/len(pairs): for k < round(rot_scale·rot_count) it still builds a dense
``dim × dim`` Givens matrix and multiplies ``x @ G`` once per pair, so its cost per pair is the same
O(N·d²) as the full class (measured in ROPE-06). ``rot_pairs`` may be any list of (i, j) pairs,
overlapping or not; the loop applies them in order.

Reference: the document's class (a plain object, not an nn.Module), one change to run: the angle is
wrapped in a tensor (torch.cos of a Python float raises). Optimized: each pair is a 2-column element
update, O(N) per pair, applied in the same order (so overlapping pairs give the same result); for the
default disjoint pairs (2k, 2k+1) all updates happen at once through
:func:`impl.rotary.common.pairwise_givens`. Angles are fixed, so cos/sin are Python floats computed
once in the constructor — no per-call tensors, no host syncs.
"""
from __future__ import annotations

import math

import torch

from reprobench.registry import ComponentSpec, Implementations, register
from reprobench_documents.rotary.common import bench_head_inputs, check_features, check_finite, check_int, head_error_inputs, head_samples, \
    pairwise_givens
from reprobench_documents.rotary.document import CompactRotation


def check_compact_config(dim, rot_pairs, rot_scale, rot_count) -> None:
    check_int(dim, "dim", 2)
    check_finite(rot_scale, "rot_scale")
    if rot_scale < 0:
        raise ValueError(f"rot_scale must be >= 0, got {rot_scale}")
    check_int(rot_count, "rot_count", 0)
    if rot_pairs is None:
        return
    if not rot_pairs:
        raise ValueError("rot_pairs must be a non-empty list of (i, j) index pairs (or None for (0,1), (2,3), ...)")
    for pair in rot_pairs:
        if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < dim for v in pair) \
                or pair[0] == pair[1]:
            raise ValueError(f"rot_pairs entries must be two distinct ints in [0, dim={dim}), got {pair!r}")


class DocumentCompactRotation(CompactRotation):
    """Reference: the document's class; rotation(t (B, H, n, dim))."""

    def __init__(self, dim, rot_pairs=None, rot_scale=1.0, rot_count=1):
        check_compact_config(dim, rot_pairs, rot_scale, rot_count)
        super().__init__(dim, rot_pairs=rot_pairs, rot_scale=rot_scale, rot_count=rot_count)
        self.dim = dim

    def __call__(self, t):
        check_features(t, "t", self.dim)
        return self.rotate(t)


class FastCompactRotation:
    """Optimized: 2-column updates per pair; disjoint canonical pairs all at once."""

    def __init__(self, dim, rot_pairs=None, rot_scale=1.0, rot_count=1):
        check_compact_config(dim, rot_pairs, rot_scale, rot_count)
        self.dim = dim
        pairs = list(rot_pairs) if rot_pairs is not None else [(i, i + 1) for i in range(0, dim - 1, 2)]
        theta = 2 * math.pi / len(pairs)  # the document's fixed angle, direction +1
        steps = min(int(round(rot_scale * rot_count)), len(pairs))
        self.pairs = [(int(i), int(j)) for i, j in pairs[:max(steps, 0)]]
        self.cos, self.sin = math.cos(theta), math.sin(theta)
        self.canonical = self.pairs == [(2 * k, 2 * k + 1) for k in range(len(self.pairs))]

    def __call__(self, t):
        check_features(t, "t", self.dim)
        if not self.pairs:
            return t
        if self.canonical:
            r = len(self.pairs)
            cos = torch.full((r,), self.cos, dtype=t.dtype, device=t.device)
            return pairwise_givens(t, cos, torch.full_like(cos, self.sin))
        columns = list(t.unbind(-1))
        for i, j in self.pairs:  # in order: overlapping pairs do not commute
            xi, xj = columns[i], columns[j]
            columns[i], columns[j] = xi * self.cos + xj * self.sin, xj * self.cos - xi * self.sin
        return torch.stack(columns, dim=-1)


def _build(config, device, dtype, generator):
    return Implementations(reference=DocumentCompactRotation(**config), optimized=FastCompactRotation(**config))


TEST_DIM = 16

register(ComponentSpec(
    name="rotary.compact_rotation",
    claims=("ROPE-06",),
    description="document CompactRotation (dense d×d matrix per pair); optimized pairwise element updates",
    build=_build,
    sample_inputs=head_samples(TEST_DIM),
    error_inputs=head_error_inputs(TEST_DIM, {
        "rot_count_negative": (dict(dim=TEST_DIM, rot_count=-2), ValueError, r"rot_count must be >= 0"),
        "rot_scale_nan": (dict(dim=TEST_DIM, rot_scale=float("nan")), ValueError, r"rot_scale must be a finite"),
        "pairs_empty": (dict(dim=TEST_DIM, rot_pairs=[]), ValueError, r"rot_pairs must be a non-empty"),
        "pair_out_of_range": (dict(dim=TEST_DIM, rot_pairs=[(0, 16)]), ValueError, r"rot_pairs entries"),
        "pair_repeated_index": (dict(dim=TEST_DIM, rot_pairs=[(3, 3)]), ValueError, r"rot_pairs entries"),
    }),
    default_config=dict(dim=TEST_DIM, rot_scale=1.0, rot_count=TEST_DIM // 2),
    bench_inputs=bench_head_inputs(64),
    bench_config=dict(dim=64, rot_scale=1.0, rot_count=32),
    test_sizes=(1, 7, 16),
    bench_sizes=(256, 512, 1024, 2048),
    size_name="seq",
    time_exponent={"reference": 1.0, "optimized": 1.0},
    memory_exponent={"reference": 1.0, "optimized": 1.0},
))
