"""The document's quaternion rotation ``q_rotation(x, theta, u)`` — ROPE-02 (also used by ROPE-03).

Source: "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt),
``RotaryEmbedding.q_rotation``: "quaternion rotations ... enabling transformations in
three-dimensional space", said to "better preserve geometric relationships".

What the code computes. With unit axis u, w = cos(θ/2) and vec = sin(θ/2)·u (computed, never used):
``x + clamp(2(w·u×x + u×(u×x)), ±10)``. The textbook quaternion sandwich q x q* with q = (w, vec) is
``x + 2w·vec×x + 2·vec×(vec×x)``, i.e. the document drops sin(θ/2) from both terms. The result is a
rotation only when sin(θ/2) = 1 (θ = π mod 4π); for other angles it scales the component orthogonal
to u by √(1 + 4cos²(θ/2)) after a half-turn, so it is not orthogonal, has det ≠ 1 and does not
compose (measured in ROPE-02). The clamp additionally makes it non-linear for |x| ≳ 5.
``CompactRotation.q_rotate`` repeats the same formula without the clamp.
The corrected variant is ``rotary.quaternion_corrected``.

Reference: the document's method, called as q(x (..., 3), theta (0-dim tensor), u (3,)).
Optimized: the same map in closed form — the increment is x @ Mᵀ with the 3×3 matrix
M = 2(w[u]× + [u]×²), one small matmul and a clamp instead of two broadcast cross products.
"""
from __future__ import annotations

import torch

from reprobench.registry import ComponentSpec, ErrorInput, Implementations, SampleInput, register
from reprobench_documents.rotary.common import doc_quaternion_fast
from reprobench_documents.rotary.document import RotaryEmbedding
from reprobench.validation import check_tensor, describe


def check_quaternion_args(x, theta, u) -> None:
    for name, value in (("x", x), ("theta", theta), ("u", u)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got dtype {value.dtype}")
    if x.dim() == 0 or x.shape[-1] != 3:
        raise ValueError(f"x must have shape [..., 3] (3D vectors), got {tuple(x.shape)}")
    if theta.numel() != 1:
        raise ValueError(f"theta must be a single angle (0-dim or 1-element tensor), got shape {tuple(theta.shape)}")
    if u.shape != (3,):
        raise ValueError(f"u must be a 3-vector of shape (3,), got {tuple(u.shape)}")
    # float32/float64 only, theta and u in x's dtype and on its device, no 'meta', at least one vector:
    # a bad call fails here with a ValueError/TypeError naming the argument, not deep inside torch
    check_tensor("x", x)
    if x.numel() == 0:
        raise ValueError(f"x: expected at least one 3D vector (..., 3), got {describe(x)}")
    check_tensor("theta", theta, like=x, like_what="x")
    check_tensor("u", u, like=x, like_what="x")


class DocumentQuaternion:
    """Reference: ``RotaryEmbedding.q_rotation`` as written (it uses no module state)."""

    def __init__(self, *, device=None, dtype=None):
        self.document = RotaryEmbedding(4, device=device, dtype=dtype)  # only for q_rotation; its freqs is unused

    def __call__(self, x, theta, u):
        check_quaternion_args(x, theta, u)
        return self.document.q_rotation(x, theta.reshape(()), u)


def fast_quaternion(x, theta, u):
    """Optimized: the same map through one 3×3 increment matrix."""
    check_quaternion_args(x, theta, u)
    return doc_quaternion_fast(x, theta.reshape(()), u)


def _build(config, device, dtype, generator):
    return Implementations(reference=DocumentQuaternion(device=device, dtype=dtype), optimized=fast_quaternion)


def quaternion_samples(n, device, dtype, generator):
    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

    return [
        SampleInput((randn(n, 3), randn(()), randn(3)), name="rows"),
        SampleInput((randn(2, n, 3), torch.tensor(3.0, device=device, dtype=dtype), randn(3)), name="batched"),
        SampleInput((randn(n, 3), torch.tensor([0.7], device=device, dtype=dtype),
                     torch.tensor([0.0, 0.0, 2.0], device=device, dtype=dtype)), name="z_axis"),
    ]


def quaternion_error_inputs(device, dtype, generator):
    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

    return [
        ErrorInput(SampleInput((randn(5, 4), randn(()), randn(3)), name="x_not_3d"), ValueError, r"x must have shape \[\.\.\., 3\]"),
        ErrorInput(SampleInput((randn(5, 3), randn(()), randn(4)), name="u_not_3"), ValueError, r"u must be a 3-vector"),
        ErrorInput(SampleInput((randn(5, 3), randn(2), randn(3)), name="theta_vector"), ValueError, r"theta must be a single angle"),
        ErrorInput(SampleInput((randn(5, 3), 0.5, randn(3)), name="theta_float"), TypeError, r"theta must be a torch.Tensor"),
        ErrorInput(SampleInput((torch.ones(5, 3, dtype=torch.long, device=device), randn(()), randn(3)), name="x_int"),
                   TypeError, r"x must be a floating tensor"),
    ]


register(ComponentSpec(
    name="rotary.quaternion",
    claims=("ROPE-02",),
    description="document q_rotation (drops sin(θ/2), clamps ±10: not a rotation); optimized closed-form 3×3",
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
