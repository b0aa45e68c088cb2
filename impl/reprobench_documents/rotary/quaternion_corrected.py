"""Corrected quaternion rotation: the proper q x q* the document describes — restores ROPE-02.

Source: "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt), ``q_rotation``.
The document's formula drops sin(θ/2) (see impl/reprobench_documents/rotary/quaternion.py) and is not a rotation. This
variant keeps its signature q(x (..., 3), theta, u) and computes the rotation by θ about the unit
axis u, so it is orthogonal with det +1, preserves norms and angles, composes (R_a R_b = R_{a+b})
and R_{-θ} R_θ = I — the properties checked in suites/properties/test_rotary.py and ROPE-02.

Reference: the textbook Hamilton product q ⊗ (0, x) ⊗ q̄ with q = (cos θ/2, sin θ/2 · u), written out
component by component. Optimized: Rodrigues' formula x cosθ + (u×x) sinθ + u(u·x)(1−cosθ), the same
rotation with one cross and one dot product per vector and no quaternion temporaries.
"""
from __future__ import annotations

import torch

from reprobench.registry import ComponentSpec, Implementations, register
from reprobench_documents.rotary.common import rodrigues
from reprobench_documents.rotary.quaternion import check_quaternion_args, quaternion_error_inputs, quaternion_samples


def hamilton(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Quaternion product p ⊗ q of (..., 4) tensors (w, x, y, z)."""
    pw, px, py, pz = p.unbind(-1)
    qw, qx, qy, qz = q.unbind(-1)
    return torch.stack((pw * qw - px * qx - py * qy - pz * qz,
                        pw * qx + px * qw + py * qz - pz * qy,
                        pw * qy - px * qz + py * qw + pz * qx,
                        pw * qz + px * qy - py * qx + pz * qw), dim=-1)


def sandwich_rotation(x, theta, u):
    """Reference: q ⊗ (0, x) ⊗ q̄ for unit q = (cos θ/2, sin θ/2 · u/|u|)."""
    check_quaternion_args(x, theta, u)
    theta = theta.reshape(())
    u = u / torch.linalg.vector_norm(u)
    q = torch.cat((torch.cos(theta / 2).reshape(1), torch.sin(theta / 2) * u))
    q_conj = q * torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=q.dtype, device=q.device)
    pure = torch.cat((torch.zeros_like(x[..., :1]), x), dim=-1)  # (..., 4)
    return hamilton(hamilton(q.expand_as(pure), pure), q_conj.expand_as(pure))[..., 1:]


def fast_rotation(x, theta, u):
    check_quaternion_args(x, theta, u)
    return rodrigues(x, theta.reshape(()), u)


def _build(config, device, dtype, generator):
    return Implementations(reference=sandwich_rotation, optimized=fast_rotation)


register(ComponentSpec(
    name="rotary.quaternion_corrected",
    claims=("ROPE-02",),
    description="corrected q_rotation: proper q x q* (reference Hamilton products, optimized Rodrigues)",
    build=_build,
    sample_inputs=quaternion_samples,
    error_inputs=quaternion_error_inputs,
    default_config={},
    test_sizes=(1, 7, 16),
    bench_sizes=(1024, 4096, 16384, 65536),
    size_name="vectors",
    time_exponent={"reference": 1.0, "optimized": 1.0},
    memory_exponent={"reference": 1.0, "optimized": 1.0},
))
