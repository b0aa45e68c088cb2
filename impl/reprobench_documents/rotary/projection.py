"""The document's ``project_and_rotate``: project to 3D, rotate, project back — ROPE-04, ROPE-05.

Source: "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt),
``RotaryEmbedding(dim, use_quaternion=True, use_projection=True, proj_dim=3, proj_scale=0.1)``:
"projects high-dimensional embeddings into 3D space for rotation, then projects back ... enabling
true geometric rotations even for high-dimensional embeddings", with "SVD for orthogonal
initialization, aimed at maintaining numerical stability".

What the code computes. proj_down = W (proj_dim × d, orthogonal rows × proj_scale), proj_up =
proj_scale · pinv(W) = Wᵀ/proj_scale. Output = 0.9 · proj_up(R · proj_down(x)) + 0.1 · x, so with
proj_scale = 0.1 it is 0.09·V R Vᵀ x + 0.1·x (V the orthonormal basis of W's rows): norms shrink to
roughly 10–19 % and angles change — not a rotation, though invertible (measured in ROPE-04). Inputs
whose largest row norm exceeds 1e3 are all rescaled by the same factor (under no_grad); a NaN
anywhere makes it return the input unchanged (ROPE-05). The 3D rotation R is the document's
``rotations`` on 3-vectors, i.e. the dims == 3 average of Givens and the document's quaternion.

Reference: the document's method (projection weights created at construction from an explicit
generator: the only change). Optimized: identical arithmetic with the three data-dependent branches
(rescale, two NaN fallbacks) as ``torch.where`` on device tensors instead of Python ``if`` on
``.any()``/``max()`` (3 host syncs per call, plus one ``.item()`` per rotated pair); the 3D rotation
goes through :func:`impl.rotary.givens.doc_rotations_fast`. Corrected variant:
``rotary.projection_corrected``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reprobench.registry import ComponentSpec, Implementations, make_generator, register
from reprobench_documents.rotary.common import bench_head_inputs, check_features, check_finite, check_int, head_error_inputs, head_samples
from reprobench_documents.rotary.document import RotaryEmbedding
from reprobench_documents.rotary.givens import ROTATION_CONFIG_ERRORS, check_rotation_config, doc_rotations_fast, draw_dparam_


def check_projection_config(dim, proj_dim, proj_scale, rot_scale, rot_count) -> None:
    check_rotation_config(dim, rot_scale, rot_count)
    check_int(proj_dim, "proj_dim", 2)
    if proj_dim > dim:
        raise ValueError(f"proj_dim={proj_dim} must be <= dim={dim}: the projection goes down, not up")
    check_finite(proj_scale, "proj_scale", positive=True)


class DocumentProjection(nn.Module):
    """Reference: RotaryEmbedding(use_quaternion=True, use_projection=True).rotate_qk(t)."""

    def __init__(self, dim, proj_dim=3, proj_scale=0.1, rot_scale=1.0, rot_count=1, generator=None, *,
                 device=None, dtype=None):
        super().__init__()
        check_projection_config(dim, proj_dim, proj_scale, rot_scale, rot_count)
        self.dim = dim
        generator = generator if generator is not None else make_generator(0)
        self.rotary = RotaryEmbedding(dim, use_quaternion=True, use_projection=True, proj_dim=proj_dim,
                                      proj_scale=proj_scale, rot_scale=rot_scale, rot_count=rot_count,
                                      generator=generator, device=device, dtype=dtype)

    def reset_parameters(self, generator: torch.Generator):
        draw_dparam_(self.rotary.dparam, generator)  # the document's zeros give direction 0 (see givens.py)
        return self

    def forward(self, t):
        check_features(t, "t", self.dim, like=self.rotary.dparam)
        return self.rotary.rotate_qk(t)


class FastProjection(DocumentProjection):
    """Optimized: the same arithmetic, branches as torch.where, no host syncs."""

    def forward(self, t):
        check_features(t, "t", self.dim, like=self.rotary.dparam)
        rotary = self.rotary
        x_flat = t.reshape(-1, t.shape[-1])
        with torch.no_grad():
            peak = torch.linalg.vector_norm(x_flat, dim=1).max()
            too_large = peak > 1e3
            rescaled = x_flat * (1e3 / peak)
        x_in = torch.where(too_large, rescaled, x_flat)  # rescaled rows carry no gradient, as in the document
        x_3d = F.linear(x_in, rotary.proj_down.weight)
        x_3d_rot = doc_rotations_fast(rotary, x_3d)
        x_3d_rot = torch.where(torch.isnan(x_3d_rot).any(), x_3d, x_3d_rot)
        alpha = 0.9
        x_rot = alpha * F.linear(x_3d_rot, rotary.proj_up.weight) + (1 - alpha) * x_in
        give_up = torch.isnan(x_3d).any() | torch.isnan(x_rot).any()
        return torch.where(give_up, x_flat, x_rot).reshape(t.shape)


def _build(config, device, dtype, generator):
    # Built on the CPU, where the CPU generators draw, then moved (a CPU generator cannot draw on a GPU).
    reference = DocumentProjection(**config, generator=generator, dtype=dtype).reset_parameters(generator).to(device)
    optimized = FastProjection(**config, generator=make_generator(0), dtype=dtype).to(device)
    optimized.load_state_dict(reference.state_dict())
    return Implementations(reference=reference.eval(), optimized=optimized.eval())


TEST_DIM = 16

register(ComponentSpec(
    name="rotary.projection",
    claims=("ROPE-04", "ROPE-05"),
    description="document project_and_rotate (0.09·VRVᵀx + 0.1·x); optimized without host syncs",
    build=_build,
    sample_inputs=head_samples(TEST_DIM),
    error_inputs=head_error_inputs(TEST_DIM, {
        **ROTATION_CONFIG_ERRORS,
        "proj_dim_above_dim": (dict(dim=TEST_DIM, proj_dim=TEST_DIM + 1), ValueError, r"proj_dim=17 must be <= dim"),
        "proj_dim_one": (dict(dim=TEST_DIM, proj_dim=1), ValueError, r"proj_dim must be >= 2"),
        "proj_scale_inf": (dict(dim=TEST_DIM, proj_scale=float("inf")), ValueError, r"proj_scale must be a finite"),
    }),
    default_config=dict(dim=TEST_DIM, proj_dim=3, proj_scale=0.1, rot_count=1),
    bench_inputs=bench_head_inputs(64),
    bench_config=dict(dim=64, proj_dim=3, proj_scale=0.1, rot_count=1),
    test_sizes=(1, 7, 16),
    bench_sizes=(256, 512, 1024, 2048),
    size_name="seq",
    time_exponent={"reference": 1.0, "optimized": 1.0},
    memory_exponent={"reference": 1.0, "optimized": 1.0},
))
