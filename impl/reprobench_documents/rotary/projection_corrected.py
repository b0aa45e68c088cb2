"""Corrected projection rotation: a true rotation of R^d inside a low-dimensional subspace —
restores ROPE-04 (norm/angle preservation, invertibility) and ROPE-03 at dims == 3.

Source: "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt),
``project_and_rotate``: "projects high-dimensional embeddings into 3D space for rotation, then
projects back ... enabling true geometric rotations even for high-dimensional embeddings". The
document's version shrinks vectors to 10–19 % of their norm (impl/reprobench_documents/rotary/projection.py). The
construction that does what the sentence says: with V (d × p) an orthonormal basis (VᵀV = I) and R a
proper p × p rotation, rotate the component of x inside span(V) and keep the rest:

    x' = x + (x V)(R − I) Vᵀ,   i.e.  Q = I + V (R − I) Vᵀ,  QᵀQ = I,  det Q = det R = +1.

R is the product of Givens rotations on the pairs (0,1), (2,3), ... of the p coordinates with the
document's angles θ_k = (2σ(dparam) − 1)·2π/n_pairs (no averaging with the quaternion at p = 3), so
its inverse is the same map with −θ. No rescaling, no NaN fallback: NaN in, NaN out, visibly.

Reference: builds the dense d × d matrix Q and multiplies x @ Q (O(N·d²)). Optimized: the low-rank
update, two (N × d)·(d × p) products, O(N·d·p), and no d × d temporary.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from reprobench.registry import ComponentSpec, Implementations, register
from reprobench_documents.rotary.common import bench_head_inputs, check_features, head_error_inputs, head_samples, pairwise_givens
from reprobench_documents.rotary.givens import draw_dparam_
from reprobench_documents.rotary.projection import check_projection_config


class SubspaceRotation(nn.Module):
    """Reference: x @ Q with Q = I + V (R − I) Vᵀ built densely. rotation(t (B, H, n, dim))."""

    def __init__(self, dim, proj_dim=3, rot_scale=1.0, rot_count=1, *, device=None, dtype=None):
        super().__init__()
        check_projection_config(dim, proj_dim, 1.0, rot_scale, rot_count)
        self.dim, self.proj_dim = dim, proj_dim
        n_pairs = proj_dim // 2
        self.rotated_pairs = min(int(round(rot_scale * rot_count)), n_pairs)
        factory = dict(device=device, dtype=dtype or torch.get_default_dtype())  # every constant in the build's dtype
        self.register_buffer("basis", torch.eye(dim, proj_dim, **factory))  # (d, p), VᵀV = I; reset_parameters draws a random one
        self.dparam = nn.Parameter(torch.zeros(1, **factory))
        self.register_buffer("thetas", torch.full((n_pairs,), 2 * math.pi / n_pairs, **factory))

    def reset_parameters(self, generator: torch.Generator) -> "SubspaceRotation":
        with torch.no_grad():  # the basis from a float64 QR, rounded once to the build's dtype
            self.basis.copy_(torch.linalg.qr(torch.randn(self.dim, self.proj_dim, generator=generator,
                                                         dtype=torch.float64))[0])
        draw_dparam_(self.dparam, generator)
        return self

    def angles(self) -> torch.Tensor:
        return (torch.sigmoid(self.dparam) * 2 - 1) * self.thetas[: self.rotated_pairs]  # (r,)

    def small_rotation(self) -> torch.Tensor:
        """R (p × p) for the row convention coords @ R: Givens products, as the document's x @ G."""
        eye = torch.eye(self.proj_dim, dtype=self.basis.dtype, device=self.basis.device)
        theta = self.angles()
        return pairwise_givens(eye, torch.cos(theta), torch.sin(theta))

    def matrix(self) -> torch.Tensor:
        """Q (d × d), the whole map as one orthogonal matrix: x' = x @ Q."""
        eye_p = torch.eye(self.proj_dim, dtype=self.basis.dtype, device=self.basis.device)
        eye_d = torch.eye(self.dim, dtype=self.basis.dtype, device=self.basis.device)
        return eye_d + self.basis @ (self.small_rotation() - eye_p) @ self.basis.T

    def forward(self, t):
        check_features(t, "t", self.dim, like=self.dparam)
        return t @ self.matrix()


class FastSubspaceRotation(SubspaceRotation):
    """Optimized: x + ((x V) R − x V) Vᵀ, O(N·d·p)."""

    def forward(self, t):
        check_features(t, "t", self.dim, like=self.dparam)
        coords = t @ self.basis  # (..., p)
        theta = self.angles()
        moved = pairwise_givens(coords, torch.cos(theta), torch.sin(theta)) - coords
        return t + moved @ self.basis.T


def _build(config, device, dtype, generator):
    reference = SubspaceRotation(**config, device=device, dtype=dtype).reset_parameters(generator).eval()
    optimized = FastSubspaceRotation(**config, device=device, dtype=dtype).eval()
    optimized.load_state_dict(reference.state_dict())
    return Implementations(reference=reference, optimized=optimized)


TEST_DIM = 16

register(ComponentSpec(
    name="rotary.projection_corrected",
    claims=("ROPE-04", "ROPE-03"),
    description="corrected project_and_rotate: x + (xV)(R−I)Vᵀ, orthogonal with det +1; optimized low-rank",
    build=_build,
    sample_inputs=head_samples(TEST_DIM),
    error_inputs=head_error_inputs(TEST_DIM, {
        "dim_odd": (dict(dim=15), ValueError, r"dim must be even"),
        "rot_count_negative": (dict(dim=TEST_DIM, rot_count=-1), ValueError, r"rot_count must be >= 0"),
        "proj_dim_above_dim": (dict(dim=TEST_DIM, proj_dim=TEST_DIM + 2), ValueError, r"proj_dim=18 must be <= dim"),
    }),
    default_config=dict(dim=TEST_DIM, proj_dim=3, rot_count=1),
    bench_inputs=bench_head_inputs(64),
    bench_config=dict(dim=64, proj_dim=3, rot_count=1),
    test_sizes=(1, 7, 16),
    bench_sizes=(256, 512, 1024, 2048),
    size_name="seq",
    time_exponent={"reference": 1.0, "optimized": 1.0},
    memory_exponent={"reference": 1.0, "optimized": 1.0},
))
