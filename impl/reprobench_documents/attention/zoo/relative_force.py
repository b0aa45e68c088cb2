"""RelativeForce: force-field + multi-hop topological attention — ZOO-04.

Source: documents/002_3edd67eb5ef57768.txt, "Dynamic Force Interactions in Multi-Point Systems.. attention",
``RelativeForce(dims, heads, hop_levels=3)``, given in full. Reference: the document's forward line by
line, with the smallest changes that let it run (recorded in ZOO-04's deviations):

1. ``direction_scores * torch.exp(-force_magnitudes)`` multiplies (B, n, H, n, d) by (B, n, n, 1), which
   does not broadcast unless B = n = H; we insert the head axis: ``exp(-force_magnitudes).unsqueeze(2)``.
2. ``force_field.sum(-1)`` is (B, n, H, n), commented "[batch, heads, seq, seq]"; we transpose(1, 2)
   so it lines up with ``topo_attention`` (B, H, n, n).
3. A 3-D mask (B, n, n) is read as (B, 1, n, n) (the raw sum would align it as (1, B, n, n)); a bool
   mask is refused, since ``combined_attention + mask`` adds 0/1 to it instead of masking. The mask is
   additive: 0 where a key is allowed, -inf where it is masked, which gives masked keys exactly 0.
4. A row whose every key is masked gets all-zero weights (zero output, zero gradients) instead of the
   softmax's 0/0 = NaN, in both twins (``masked_softmax``).

Defects the reference keeps (measured in ZOO-04): ``einsum('bstn,hd->bshtn', ...)`` sums the
modulator over its own index d, so each head's "direction" collapses to the scalar c_h = Σ_d M[h, d]:
force[b,h,s,t] = c_h · exp(−|f_st|) · Σ_n f_st,n / (|f_st| + 1e-8), with f_st = emit_s − recv_t — only
the sum of the force vector's components matters, not its direction. ``directional=True`` is the
corrected variant (attention.zoo_relative_force_directional): einsum 'bstn,hn->bshtn', a dot product of
the force direction with each head's modulator. ``q_proj`` and ``k_proj`` are
computed and never used. The reference materialises (B, n, n, d) forces and (B, n, H, n, d) scores.

Optimized: the same values with no (B, n, n, d) tensor, by algebra: |f_st| = cdist(emit, recv)
(computed pairwise, not through the |a|² + |b|² − 2ab expansion that cancels badly), Σ_n f_st,n =
Σ emit_s − Σ recv_t, and the edge projector of cat(x_s, x_t) splits into W₁x_s + W₂x_t + b. Every
tensor is at most (B, H, n, n): memory O(H·n²) instead of O(H·n²·d).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reprobench_documents.attention.base import PATHS, check_positive_int, check_tokens, init_linear_, masked_softmax, \
    token_error_inputs
from reprobench_documents.attention.zoo.base_attention import attention_mask_4d, build_zoo_pair, check_dims_heads
from reprobench.registry import ComponentSpec, ErrorInput, SampleInput, register


class RelativeForce(nn.Module):
    """RelativeForce(dims, heads, hop_levels). x (B, n, dims), additive mask -> (B, n, dims)."""

    def __init__(self, dims: int, heads: int, hop_levels: int = 3, directional: bool = False, path: str = "optimized"):
        super().__init__()
        self.directional = bool(directional)  # corrected variant: Σ_n f_n · M[h, n] instead of Σ_n f_n · Σ_d M[h, d]
        check_dims_heads(dims, heads, "heads")
        self.dims, self.heads = dims, heads
        self.hop_levels = check_positive_int(hop_levels, "hop_levels")
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        self.path = path
        self.force_emitter = nn.Linear(dims, dims)
        self.force_receptor = nn.Linear(dims, dims)
        self.direction_modulator = nn.Parameter(torch.randn(heads, dims))
        self.edge_projector = nn.Linear(dims * 2, heads)
        self.hop_weights = nn.Parameter(torch.ones(hop_levels) / hop_levels)
        self.force_topo_balance = nn.Parameter(torch.tensor(0.5))
        self.q_proj = nn.Linear(dims, dims)
        self.k_proj = nn.Linear(dims, dims)
        self.v_proj = nn.Linear(dims, dims)
        self.output = nn.Linear(dims, dims)

    def reset_parameters(self, generator: torch.Generator) -> "RelativeForce":
        for linear in (self.force_emitter, self.force_receptor, self.edge_projector, self.q_proj, self.k_proj,
                       self.v_proj, self.output):
            init_linear_(linear, generator)
        with torch.no_grad():
            self.direction_modulator.normal_(generator=generator)
        return self

    def check(self, x, mask):
        # batch 0 is refused: the document's forward infers the head dim with view(..., -1), which
        # cannot be inferred from an empty tensor
        check_tokens(x, "x", self.dims, self.v_proj.weight)
        if isinstance(mask, torch.Tensor) and mask.dtype == torch.bool:
            raise TypeError("mask is added to the scores: pass a float mask (0 = attend, -inf = masked), not bool")
        batch, n = x.shape[:2]
        return attention_mask_4d(mask, batch, self.heads, n, n, like=x)

    def forward(self, x, mask=None):
        mask = self.check(x, mask)
        return self.forward_reference(x, mask) if self.path == "reference" else self.forward_optimized(x, mask)

    def forward_reference(self, x, mask=None, return_weights=False):
        batch, seq_len = x.shape[:2]
        q = self.q_proj(x).view(batch, seq_len, self.heads, -1).transpose(1, 2)  # noqa: F841 (unused, as written)
        k = self.k_proj(x).view(batch, seq_len, self.heads, -1).transpose(1, 2)  # noqa: F841
        v = self.v_proj(x).view(batch, seq_len, self.heads, -1).transpose(1, 2)
        emissions = self.force_emitter(x)
        receptivity = self.force_receptor(x)
        token_i = emissions.unsqueeze(2)  # [batch, seq, 1, dim]
        token_j = receptivity.unsqueeze(1)  # [batch, 1, seq, dim]
        force_directions = token_i - token_j  # [batch, seq, seq, dim]
        force_magnitudes = torch.norm(force_directions, dim=-1, keepdim=True)
        normalized_forces = force_directions / (force_magnitudes + 1e-8)
        equation = 'bstn,hn->bshtn' if self.directional else 'bstn,hd->bshtn'  # as written: 'hd' sums M over d
        direction_scores = torch.einsum(equation, normalized_forces, self.direction_modulator)
        force_field = direction_scores * torch.exp(-force_magnitudes).unsqueeze(2)  # deviation 1
        force_attention = torch.sum(force_field, dim=-1).transpose(1, 2)  # deviation 2: [batch, heads, seq, seq]
        xi = x.unsqueeze(2).expand(-1, -1, seq_len, -1)
        xj = x.unsqueeze(1).expand(-1, seq_len, -1, -1)
        pairs = torch.cat([xi, xj], dim=-1)
        edge_logits = self.edge_projector(pairs).permute(0, 3, 1, 2)  # [batch, heads, seq, seq]
        direct_edges = torch.sigmoid(edge_logits)
        topo_paths = [direct_edges]
        current_paths = direct_edges
        for i in range(1, self.hop_levels):
            next_hop = torch.matmul(current_paths, direct_edges) / (seq_len ** 0.5)
            topo_paths.append(next_hop)
            current_paths = next_hop
        topo_attention = sum(w * path for w, path in zip(F.softmax(self.hop_weights, dim=0), topo_paths))
        balance = torch.sigmoid(self.force_topo_balance)
        combined_attention = balance * force_attention + (1 - balance) * topo_attention
        if mask is not None:
            combined_attention = combined_attention + mask
        weights = masked_softmax(combined_attention)  # deviation 4: a fully masked row gets zero weights
        output = torch.matmul(weights, v)
        output = output.transpose(1, 2).contiguous().reshape(batch, seq_len, -1)
        return (self.output(output), weights) if return_weights else self.output(output)

    def forward_optimized(self, x, mask=None):
        batch, n = x.shape[:2]
        v = self.v_proj(x).view(batch, n, self.heads, -1).transpose(1, 2)  # (B, H, n, hd)
        emit, recv = self.force_emitter(x), self.force_receptor(x)  # (B, n, d)
        distance = torch.cdist(emit, recv, compute_mode="donot_use_mm_for_euclid_dist")  # (B, n, n)
        radial = (torch.exp(-distance) / (distance + 1e-8)).unsqueeze(1)  # (B, 1, n, n)
        if self.directional:  # Σ_n (emit_s - recv_t)_n M[h, n] = emit_s·M_h - recv_t·M_h
            em, rm = emit @ self.direction_modulator.T, recv @ self.direction_modulator.T  # (B, n, H)
            force = radial * (em.transpose(1, 2).unsqueeze(-1) - rm.transpose(1, 2).unsqueeze(-2))
        else:  # c_h · Σ_n f_st,n with Σ_n f_st,n = Σ emit_s − Σ recv_t
            component_sum = emit.sum(-1, keepdim=True) - recv.sum(-1).unsqueeze(1)  # (B, n, n)
            force = self.direction_modulator.sum(-1).view(1, -1, 1, 1) * radial * component_sum.unsqueeze(1)
        w_i, w_j = self.edge_projector.weight.split(self.dims, dim=1)  # cat([x_s, x_t]) @ Wᵀ = x_s W₁ᵀ + x_t W₂ᵀ
        row = F.linear(x, w_i, self.edge_projector.bias).transpose(1, 2).unsqueeze(-1)  # (B, H, n, 1)
        col = F.linear(x, w_j).transpose(1, 2).unsqueeze(-2)  # (B, H, 1, n)
        direct = torch.sigmoid(row + col)  # (B, H, n, n)
        hop_w = F.softmax(self.hop_weights, dim=0)
        topo, current = hop_w[0] * direct, direct
        for level in range(1, self.hop_levels):  # hops, not tokens: hop_levels is a small constant
            current = (current @ direct) / (n ** 0.5)
            topo = topo + hop_w[level] * current
        balance = torch.sigmoid(self.force_topo_balance)
        combined = balance * force + (1 - balance) * topo
        if mask is not None:
            combined = combined + mask
        out = masked_softmax(combined) @ v  # (B, H, n, hd); a fully masked row gets zero weights
        return self.output(out.transpose(1, 2).reshape(batch, n, self.dims))

    def attention_probs(self, x, mask=None):
        mask4 = self.check(x, mask)
        _, weights = self.forward_reference(x, mask4, return_weights=True)
        allowed = torch.ones(1, dtype=torch.bool, device=x.device) if mask4 is None else torch.isfinite(mask4)
        return weights, allowed


TEST_DIMS = 32


def _samples(n, device, dtype, generator):
    x = torch.randn(2, n, TEST_DIMS, device=device, dtype=dtype, generator=generator)
    blocked = torch.rand(n, n, generator=generator, device=device) < 0.3
    additive = torch.zeros(n, n, device=device, dtype=dtype).masked_fill(blocked, float("-inf")).fill_diagonal_(0.0)
    padding = torch.zeros(2, 1, n, device=device, dtype=dtype)
    padding[1, 0, n - n // 3:] = float("-inf")
    return [SampleInput((x,), name="plain"), SampleInput((x,), dict(mask=additive), name="additive_nn"),
            SampleInput((x,), dict(mask=padding), name="additive_key_padding")]


def _errors(device, dtype, generator):
    errors = token_error_inputs(TEST_DIMS, {
        "heads_not_dividing": (dict(dims=TEST_DIMS, heads=3), ValueError, r"dims \(32\) must be divisible by heads"),
        "hop_levels_zero": (dict(dims=TEST_DIMS, heads=4, hop_levels=0), ValueError, r"hop_levels must be >= 1"),
    })(device, dtype, generator)
    x = torch.randn(2, 5, TEST_DIMS, device=device, dtype=dtype, generator=generator)
    errors += [
        ErrorInput(SampleInput((x,), dict(mask=torch.zeros(5, 4, device=device, dtype=dtype)), name="mask_wrong_shape"),
                   ValueError, r"mask has shape"),
        ErrorInput(SampleInput((x,), dict(mask=torch.ones(5, 5, dtype=torch.bool, device=device)), name="mask_bool"),
                   TypeError, r"pass a float mask"),
    ]
    return errors


def _spec(name, directional):
    return ComponentSpec(
        name=name,
        claims=("ZOO-04",),
        description=("RelativeForce " + ("with a direction-sensitive modulator (corrected)" if directional else "as written")
                     + "; optimized factored, no (B, n, n, dims) tensor"),
        build=lambda config, device, dtype, generator: build_zoo_pair(RelativeForce, config, device, dtype, generator),
        sample_inputs=_samples,
        error_inputs=_errors,
        default_config=dict(dims=TEST_DIMS, heads=4, hop_levels=3, directional=directional),
        bench_config=dict(dims=256, heads=8, hop_levels=3, directional=directional),
        bench_inputs=lambda n, device, dtype, generator: [
            SampleInput((torch.randn(1, n, 256, device=device, dtype=dtype, generator=generator),), name="batch1")],
        test_sizes=(1, 7, 16),
        bench_sizes=(64, 128, 256),
        time_exponent={"reference": 2.0, "optimized": 2.0},
        memory_exponent={"reference": 2.0, "optimized": 2.0},
    )


register(_spec("attention.zoo_relative_force", False))
register(_spec("attention.zoo_relative_force_directional", True))
