"""Givens rotations: the document's ``RotaryEmbedding.rotations`` path (use_quaternion=True) — ROPE-03.

Source: "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt): with
``use_quaternion=True`` ``rotate_qk`` calls ``rotations(t)``, which for k < round(rot_scale·rot_count)
builds a dense ``dims × dims`` Givens matrix G_k (cos θ_k on (i,i),(j,j), −sin θ_k at (i,j), sin θ_k at
(j,i)) for pair (i, j) = (2k, 2k+1) and multiplies ``x @ G_k``; θ_k = direction·2π/n_pairs with
direction = 2·sigmoid(dparam) − 1. For dims == 3 (only reached through the projection path) G is
averaged with the document's quaternion matrix, which is not a rotation (measured in ROPE-03).

Two facts the experiments measure: ``dparam`` starts at 0, so direction = 0 and the default
rotation is the identity; and the angle does not depend on the token position, so the same
orthogonal map hits q and k and ⟨Rq, Rk⟩ = ⟨q, k⟩ — the rotation carries no position information.
To exercise the rotation, ``reset_parameters`` draws dparam from the generator (documented choice).

Reference: the document's loop, one d×d matrix and one (N×d)@(d×d) product per pair, plus a
``.item()`` per pair. Optimized: the pairs are disjoint, so all of them rotate at once as element
updates (:func:`impl.rotary.common.pairwise_givens`), O(N·d) instead of O(rot_count·N·d²); the dims == 3
case builds the document's 3×3 average in closed form. No host syncs.
"""
from __future__ import annotations

import torch
from torch import nn

from reprobench.registry import ComponentSpec, Implementations, register
from reprobench_documents.rotary.common import bench_head_inputs, check_dim, check_features, check_finite, check_int, doc_quaternion_fast, \
    head_error_inputs, head_samples, pairwise_givens
from reprobench_documents.rotary.document import RotaryEmbedding


def check_rotation_config(dim, rot_scale, rot_count) -> None:
    check_dim(dim)
    check_finite(rot_scale, "rot_scale")
    check_int(rot_count, "rot_count", 0)
    if rot_scale < 0:
        raise ValueError(f"rot_scale must be >= 0, got {rot_scale}")


def givens_3d_doc(theta: torch.Tensor) -> torch.Tensor:
    """The document's rotation_matrix(3, 0, 1, θ): (Givens(θ) + q_rotation(I, |θ|, e_0)) / 2."""
    c, s = torch.cos(theta).reshape(()), torch.sin(theta).reshape(())
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    g = torch.stack((torch.stack((c, -s, zero)), torch.stack((s, c, zero)), torch.stack((zero, zero, one))))
    eye = torch.eye(3, dtype=theta.dtype, device=theta.device)
    q = doc_quaternion_fast(eye, theta.abs(), eye[0])
    return (g + q) / 2


def doc_rotations_fast(rotary: RotaryEmbedding, x: torch.Tensor) -> torch.Tensor:
    """Same values as ``rotary.rotations(x)`` (canonical pairs (2k, 2k+1)), without loops or syncs."""
    head_dim = x.shape[-1]
    r = min(int(round(rotary.rscale * rotary.rot)), len(rotary.pairs), head_dim // 2)
    if r <= 0:
        return x
    direction = torch.sigmoid(rotary.dparam) * 2 - 1  # (1,)
    theta = direction * rotary.thetas[:r] * rotary.tscale  # (r,)
    if head_dim == 3:
        return (x.reshape(-1, 3) @ givens_3d_doc(theta[0])).reshape(x.shape)
    return pairwise_givens(x, torch.cos(theta), torch.sin(theta))


class DocumentGivens(nn.Module):
    """Reference: the document's RotaryEmbedding(use_quaternion=True).rotate_qk(t)."""

    def __init__(self, dim, rot_scale=1.0, rot_count=1, *, device=None, dtype=None):
        super().__init__()
        check_rotation_config(dim, rot_scale, rot_count)
        self.dim = dim
        self.rotary = RotaryEmbedding(dim, use_quaternion=True, rot_scale=rot_scale, rot_count=rot_count,
                                      device=device, dtype=dtype)

    def reset_parameters(self, generator: torch.Generator) -> "DocumentGivens":
        draw_dparam_(self.rotary.dparam, generator)  # the document's zeros give direction 0: every rotation the identity
        return self

    def forward(self, t):
        check_features(t, "t", self.dim, like=self.rotary.dparam)
        return self.rotary.rotate_qk(t)


class FastGivens(DocumentGivens):
    """Optimized: same parameters (built by the document's constructor), pairwise updates."""

    def forward(self, t):
        check_features(t, "t", self.dim, like=self.rotary.dparam)
        return doc_rotations_fast(self.rotary, t)


def draw_dparam_(dparam: nn.Parameter, generator: torch.Generator) -> None:
    """dparam ~ N(0, 1) drawn in its own dtype (a float64 build is not a float32 draw cast)."""
    with torch.no_grad():
        dparam.copy_(torch.randn(dparam.shape, generator=generator, dtype=dparam.dtype))


def build_pair(reference_cls, optimized_cls, config, device, dtype, generator) -> Implementations:
    reference = reference_cls(**config, device=device, dtype=dtype).reset_parameters(generator).eval()
    optimized = optimized_cls(**config, device=device, dtype=dtype).eval()
    optimized.load_state_dict(reference.state_dict())
    return Implementations(reference=reference, optimized=optimized)


def _build(config, device, dtype, generator):
    return build_pair(DocumentGivens, FastGivens, config, device, dtype, generator)


TEST_DIM = 16

ROTATION_CONFIG_ERRORS = {
    "dim_odd": (dict(dim=15), ValueError, r"dim must be even"),
    "rot_count_negative": (dict(dim=TEST_DIM, rot_count=-1), ValueError, r"rot_count must be >= 0"),
    "rot_scale_nan": (dict(dim=TEST_DIM, rot_scale=float("nan")), ValueError, r"rot_scale must be a finite"),
    "rot_scale_inf": (dict(dim=TEST_DIM, rot_scale=float("inf")), ValueError, r"rot_scale must be a finite"),
}

register(ComponentSpec(
    name="rotary.givens",
    claims=("ROPE-03",),
    description="document rotations(): dense d×d Givens matrix per pair; optimized pairwise element updates",
    build=_build,
    sample_inputs=head_samples(TEST_DIM),
    error_inputs=head_error_inputs(TEST_DIM, ROTATION_CONFIG_ERRORS),
    # rot_count = dim/2 rotates every pair (the document's default 1 rotates only the first).
    default_config=dict(dim=TEST_DIM, rot_scale=1.0, rot_count=TEST_DIM // 2),
    bench_inputs=bench_head_inputs(64),
    bench_config=dict(dim=64, rot_scale=1.0, rot_count=32),
    test_sizes=(1, 7, 16),
    bench_sizes=(256, 512, 1024, 2048),
    size_name="seq",
    time_exponent={"reference": 1.0, "optimized": 1.0},
    memory_exponent={"reference": 1.0, "optimized": 1.0},
))
