"""The document's rotary code as written: the oracle every rotary reference calls (ROPE-01 … ROPE-07).

Source: "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt), section
"nDimensional Rotary Embedding (Givens-Quaternion with regular RoPE fall back)" — class
``RotaryEmbedding`` — and "mini version" — class ``CompactRotation``.

This module registers nothing; it is shared by the components in this package. The code below is
the document's, line for line, except where it cannot run; every such change is marked
``# DEVIATION(n)`` and listed in :data:`DEVIATIONS` (the experiments copy them into the ledger).
The document's defects (a "quaternion" rotation that is not a rotation, the dims == 3 average of
two matrices, zero-initialised direction, a one-frequency default) are kept on purpose.
"""
from __future__ import annotations

import math

import torch
from einops import rearrange, repeat
from torch import einsum, nn
from torch.nn import Linear  # DEVIATION(1)

DEVIATIONS = (
    "(1) the document uses Linear, exists, einsum, rearrange, repeat without defining or importing them; "
    "we import nn.Linear, torch.einsum, einops.rearrange/repeat and define exists(val) = val is not None.",
    "(2) rotation_matrix/q_rotation build torch.eye(dims) in the default dtype (float32), so x @ G fails "
    "for float64 inputs; we pass dtype=theta.dtype (no change in float32).",
    "(3) torch.cross(u, x) without dim is deprecated; we pass dim=-1, which gives the same result for "
    "the (1, 3) x (N, 3) calls the document makes.",
    "(4) _ensure_projection draws proj_down/proj_up lazily from the global RNG inside the first forward; "
    "we create them at construction (head_dim = dim) with nn.init.orthogonal_(..., generator=...), so "
    "reference and optimized share a state_dict and runs are reproducible. Same formula otherwise.",
    "(5) CompactRotation.rotate calls torch.cos on a Python float (TypeError); we wrap the angle in a "
    "tensor of x's dtype. q_rotate builds u in x's dtype.",
    "(6) RotaryEmbedding takes device= and dtype= (as torch.nn layers do) and creates freqs, thetas, dparam and "
    "the projection weights in that dtype: built in float32 and cast, float64 freqs carry float32 rounding "
    "instead of being arange(num_freqs)·2π/θ in float64. Same values in float32.",
)


def exists(val):  # DEVIATION(1)
    return val is not None


class RotaryEmbedding(nn.Module):

    def __init__(self, dim, theta=10000, num_freqs=1, learned_freq=True, theta_rescale_factor=1.,
                 use_quaternion=False, rot_scale=1.0, rot_count=1, use_projection=False, proj_dim=3,
                 proj_scale=0.1, generator=None, device=None, dtype=None):  # DEVIATION(6)
        super().__init__()
        factory = dict(device=device, dtype=dtype or torch.get_default_dtype())  # DEVIATION(6)
        theta *= theta_rescale_factor ** (dim / (dim - 2))
        self.freqs = nn.Parameter(torch.arange(0, num_freqs, **factory) * (2 * math.pi / theta), requires_grad=learned_freq)
        self.register_buffer('dummy', torch.tensor(0, device=device), persistent=False)
        self.use_quaternion = use_quaternion
        self.use_projection = use_projection
        self.proj_dim = proj_dim
        self.proj_scale = proj_scale

        if use_quaternion:
            self.dparam = nn.Parameter(torch.zeros(1, **factory))
            self.rscale = rot_scale
            self.rot = rot_count
            self.tscale = 1.0
            pairs = []
            for i in range(0, dim - 1, 2):
                pairs.append(torch.tensor([i, i + 1], device=device))
            self.pairs = nn.Parameter(torch.stack(pairs), requires_grad=False)
            self.thetas = nn.Parameter(torch.ones(len(self.pairs), **factory) * (2 * math.pi / len(self.pairs)),
                                       requires_grad=False)
            if use_projection:
                self.proj_down = None
                self.proj_up = None
                self._ensure_projection(torch.empty(0, dim, **factory), generator)  # DEVIATION(4), (6)

    @property
    def device(self):
        return self.dummy.device

    def q_rotation(self, x, theta, u, v=None):
        eps = 1e-8
        u_norm = torch.norm(u, p=2)
        u = u / (u_norm + eps)
        w = torch.cos(theta / 2)
        vec = torch.sin(theta / 2) * u  # noqa: F841 — computed and never used, as in the document
        x_shape = x.shape
        x = x.reshape(-1, 3)
        uv_cross = torch.cross(u.unsqueeze(0), x, dim=-1)  # DEVIATION(3)
        uuv_cross = torch.cross(u.unsqueeze(0), uv_cross, dim=-1)
        x_rot = x + torch.clamp(2 * (w * uv_cross + uuv_cross), min=-10.0, max=10.0)
        return x_rot.reshape(*x_shape)

    def rotation_matrix(self, dims, i, j, theta):
        G = torch.eye(dims, device=theta.device, dtype=theta.dtype)  # DEVIATION(2)
        c, s = torch.cos(theta), torch.sin(theta)
        G[i, i], G[j, j] = c, c
        G[i, j], G[j, i] = -s, s
        if dims == 3:
            u = torch.eye(dims, device=theta.device, dtype=theta.dtype)[i]
            v = torch.eye(dims, device=theta.device, dtype=theta.dtype)[j]
            eye = torch.eye(dims, device=theta.device, dtype=theta.dtype)
            if theta < 0:
                Q = self.q_rotation(eye, theta=abs(theta), u=u, v=v)
            else:
                Q = self.q_rotation(eye, theta=theta, u=u, v=v)
            G = (G + Q) / 2
        return G

    def rotations(self, x):
        direction = torch.sigmoid(self.dparam) * 2 - 1
        rotate = int(round(self.rscale * self.rot))
        head_dim = x.shape[-1]
        for k in range(min(rotate, len(self.pairs))):
            i, j = self.pairs[k].long()
            if i >= head_dim or j >= head_dim:
                continue
            theta = direction * self.thetas[k] * self.tscale
            G = self.rotation_matrix(dims=head_dim, i=i.item(), j=j.item(), theta=theta)
            x_shape = x.shape
            x = x.reshape(-1, head_dim)
            x = x @ G
            x = x.reshape(*x_shape)
        return x

    def _ensure_projection(self, x, generator=None):
        if self.proj_down is None or self.proj_down.weight.device != x.device:
            head_dim = x.shape[-1]
            self.proj_down = Linear(head_dim, self.proj_dim, bias=False, device=x.device, dtype=x.dtype)  # DEVIATION(6)
            self.proj_up = Linear(self.proj_dim, head_dim, bias=False, device=x.device, dtype=x.dtype)
            with torch.no_grad():
                nn.init.orthogonal_(self.proj_down.weight, gain=self.proj_scale, generator=generator)
                nn.init.orthogonal_(self.proj_up.weight, gain=self.proj_scale, generator=generator)
                U, S, V = torch.svd(self.proj_down.weight)
                S_inv = 1.0 / (S + 1e-6)
                S_inv = torch.clamp(S_inv, max=10.0)
                pseudo_inv = V @ torch.diag(S_inv) @ U.t()
                self.proj_up.weight.copy_(pseudo_inv * self.proj_scale)

    def project_and_rotate(self, x):
        orig_shape = x.shape
        x_flat = x.reshape(-1, x.shape[-1])
        with torch.no_grad():
            x_norm = torch.norm(x_flat, dim=1, keepdim=True)
            if torch.max(x_norm) > 1e3:
                x_flat = x_flat * (1e3 / torch.max(x_norm))
        if x.shape[-1] > 3 and self.use_projection:
            self._ensure_projection(x)
            x_3d = self.proj_down(x_flat)
            if torch.isnan(x_3d).any():
                return x.reshape(*orig_shape)
            x_3d_rot = self.rotations(x_3d)
            if torch.isnan(x_3d_rot).any():
                x_rot = self.proj_up(x_3d)
            else:
                x_rot = self.proj_up(x_3d_rot)
            alpha = 0.9
            x_rot = alpha * x_rot + (1 - alpha) * x_flat
            if torch.isnan(x_rot).any():
                return x.reshape(*orig_shape)
        else:
            x_rot = self.rotations(x_flat)
        return x_rot.reshape(*orig_shape)

    def apply_rotary(self, freqs, t, start_index=0, scale=1., seq_dim=-2, freqs_seq_dim=None):
        dtype = t.dtype

        def _exists(val):
            return val is not None

        def _slice_at_dim(tensor, dim_slice, dim):
            dim += (tensor.ndim if dim < 0 else 0)
            colons = [slice(None)] * tensor.ndim
            colons[dim] = dim_slice
            return tensor[tuple(colons)]

        def _rotate_half(x):
            x = rearrange(x, '... (d r) -> ... d r', r=2)
            x1, x2 = x.unbind(dim=-1)
            x = torch.stack((-x2, x1), dim=-1)
            return rearrange(x, '... d r -> ... (d r)')

        if not _exists(freqs_seq_dim):
            if freqs.ndim == 2 or t.ndim == 3:
                freqs_seq_dim = 0

        if t.ndim == 3 or _exists(freqs_seq_dim):
            ctx = t.shape[seq_dim]
            freqs = _slice_at_dim(freqs, slice(-ctx, None), dim=freqs_seq_dim)
        rot_dim = freqs.shape[-1]
        end_index = start_index + rot_dim

        assert rot_dim <= t.shape[-1], f'feature dimension {t.shape[-1]} is not of sufficient size to rotate in all the positions {rot_dim}'
        t_left = t[..., :start_index]
        t_middle = t[..., start_index:end_index]
        t_right = t[..., end_index:]
        t_transformed = (t_middle * freqs.cos() * scale) + (_rotate_half(t_middle) * freqs.sin() * scale)
        out = torch.cat((t_left, t_transformed, t_right), dim=-1)
        return out.type(dtype)

    def rotate_qk(self, t, seq_dim=None, offset=0, scale=None):
        if self.use_quaternion:
            if self.use_projection and t.shape[-1] > 3:
                return self.project_and_rotate(t)
            else:
                return self.rotations(t)
        else:
            ctx = t.shape[2]
            device, dtype = t.device, t.dtype
            seq = torch.arange(ctx, device=device, dtype=dtype) + offset
            freqs = self.forward(seq)
            scale = scale if scale is not None else 1.0
            return self.apply_rotary(freqs, t, scale=scale, seq_dim=2)

    def learned_rotations(self, rotations, t, start_index=0, freq_ranges=None):
        if exists(freq_ranges):
            rotations = einsum('..., f -> ... f', rotations, freq_ranges)
            rotations = rearrange(rotations, '... r f -> ... (r f)')
        rotations = repeat(rotations, '... n -> ... (n r)', r=2)
        return self.apply_rotary(rotations, t, start_index=start_index)

    def forward(self, t):
        freqs = self.freqs
        freqs = torch.einsum('..., f -> ... f', t.type(freqs.dtype), freqs)
        freqs = torch.repeat_interleave(freqs, 2, dim=-1)
        return freqs


class CompactRotation:
    def __init__(self, dim, rot_pairs=None, rot_scale=1.0, rot_count=1):
        self.scale = rot_scale
        self.count = rot_count

        if rot_pairs is None:
            pairs = []
            for i in range(0, dim - 1, 2):
                pairs.append((i, i + 1))
            self.pairs = pairs
        else:
            self.pairs = rot_pairs

        self.thetas = [2 * math.pi / len(self.pairs)] * len(self.pairs)
        self.direction = 1.0  # Fixed direction instead of learned

    def __call__(self, x):
        """Apply rotations to input tensor"""
        return self.rotate(x)

    def rotate(self, x):
        rotate_steps = min(int(round(self.scale * self.count)), len(self.pairs))
        head_dim = x.shape[-1]

        for k in range(rotate_steps):
            i, j = self.pairs[k]
            if i >= head_dim or j >= head_dim:
                continue

            # Create rotation matrix
            theta = torch.tensor(self.direction * self.thetas[k], dtype=x.dtype, device=x.device)  # DEVIATION(5)
            device = x.device
            G = torch.eye(head_dim, device=device, dtype=x.dtype)  # DEVIATION(2)
            c, s = torch.cos(theta), torch.sin(theta)
            G[i, i], G[j, j] = c, c
            G[i, j], G[j, i] = -s, s

            # Apply rotation
            x_shape = x.shape
            x = x.reshape(-1, head_dim)
            x = x @ G
            x = x.reshape(*x_shape)

        return x

    @staticmethod
    def q_rotate(x, theta, axis_idx, dims=3):
        """Quaternion rotation in 3D space (simplified)"""
        device = x.device
        u = torch.zeros(dims, device=device, dtype=x.dtype)  # DEVIATION(5)
        u[axis_idx] = 1.0

        x_shape = x.shape
        x = x.reshape(-1, dims)

        # Quaternion rotation formula
        uv_cross = torch.cross(u.unsqueeze(0), x, dim=-1)  # DEVIATION(3)
        uuv_cross = torch.cross(u.unsqueeze(0), uv_cross, dim=-1)
        w = torch.cos(theta / 2)
        x_rot = x + 2 * (w * uv_cross + uuv_cross)

        return x_rot.reshape(*x_shape)
