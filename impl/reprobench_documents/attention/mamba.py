"""Mamba layer: a selective state-space model block — EFF-05, EFF-06/07/08/09.

Source: "Efficient Attention Mechanisms" (documents/004_7701952726fa4164.txt), `MambaLayer(dim, state_size,
expand_factor, dropout, dt_init)`: "selective state updates based on input", O(n), "efficient even for
very long sequences". Method: Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces" (arXiv 2312.00752; the document links 2312.08129 by mistake), the block of its Figure 3:

  x, z = in_proj(u)                       (B, L, d_inner) each, d_inner = expand_factor · dim
  x = silu(causal depthwise conv1d(x))    kernel 4, left-padded so position t sees t-3..t only
  Δ, B, C = x_proj(x)                     Δ (B, L, dt_rank) -> softplus(dt_proj(Δ)) (B, L, d_inner);
                                          B, C (B, L, state): data-dependent, the "selective" part
  h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t x_t Bᵀ_t     h (B, d_inner, state), A = -exp(A_log) diagonal
  y_t = h_t C_t + D ⊙ x_t;  out = out_proj(y ⊙ silu(z)), then dropout.
dt_init ('random' | 'constant') is the paper's dt_proj weight init (uniform ±dt_rank^-½ or the
constant dt_rank^-½); the bias is always softplus⁻¹ of dt ~ log-uniform[1e-3, 1e-1].

Reference: the sequential scan above, one Python step per time step, float64-safe.
Optimized (inference, no autograd): chunks of T = chunk_size steps, processed in groups of K = group_len / T
chunks (default T = 16, K = 8); the state carried between groups is exact, and per group:
  0. a = exp(Δ A) for the group's K·T steps, ONCE, into a (K, B, T, N, d_inner) workspace;
  1. the end states from zero of its chunks (T in-place steps on all K chunks at once);
  2. the state entering each chunk: h_in[j+1] = exp(A ΣΔ_j) ⊙ h_in[j] + h_end[j] (K small steps);
  3. the true states, T in-place steps written over the stored decays, then y_t = C_t h_t for the whole
     group as one batched matmul.
Python runs L·(2/K + 1/T) steps, each on K time steps' states, and never over single tokens. Memory:
O(B·d_inner·L) for inputs/outputs plus the O(B·group_len·d_inner·N) workspace (never the (B, d_inner, L, N)
tensor). Only products of decays <= 1 are formed (no division by cumulative decays): as stable as the loop.
Why it is fast on CPU: the floor is one exp per (t, d, n) element (exp2 is the cheaper kernel on AVX2), then a
few elementwise passes over the same elements and the C contraction as one batched matmul per group, plus
L·(2/K + 1/T) Python steps; the earlier two-pass scan computed the exp twice and streamed per-step tensors.
How much faster than the sequential loop, and how close to the exp floor: EFF-05 in reports/claims.md.
Training (autograd): the two-pass out-of-place scan, all L/T chunks in parallel (pass 1 checkpointed, recomputed
in backward), so autograd keeps per-step states of one pass, like the reference (O(B·L·d_inner·N); the
training peak against the reference's is in EFF-06/EFF-07).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from reprobench_documents.attention.base import build_module_pair, check_dropout, check_path, check_positive_int, check_tokens, \
    init_linear_, token_error_inputs, token_samples
from reprobench.registry import ComponentSpec, Tolerance, register

DT_INITS = ("random", "constant")


def sequential_scan(x, delta, A, B, C):
    """Reference. x, delta (b, L, D); A (D, N); B, C (b, L, N) -> y (b, L, D)."""
    h = x.new_zeros(x.shape[0], x.shape[2], A.shape[1])  # (b, D, N)
    ys = []
    for t in range(x.shape[1]):
        decay = torch.exp(delta[:, t, :, None] * A)
        h = decay * h + (delta[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    return torch.stack(ys, dim=1)


def _chunked_scan_autograd(x, delta, A, B, C, chunk_size: int = 64):
    """Training path (autograd through out-of-place ops). Loops over T steps (twice) and L/T chunks, never over L."""
    b, L, D = x.shape
    N = A.shape[1]
    T = max(1, min(chunk_size, L))
    nc = -(-L // T)
    pad = nc * T - L

    def steps(t):  # (b, L, k) -> (T, b, nc, k): time-major so each step reads one contiguous slice.
        # Padded steps have Δ = 0: decay 1 and no input, so they leave the state unchanged.
        return F.pad(t, (0, 0, 0, pad)).view(b, nc, T, -1).permute(2, 0, 1, 3).contiguous()

    dx, delta, B, C = steps(delta * x), steps(delta), steps(B), steps(C)
    A_t = A.T.contiguous()  # (N, D): the state is kept as (b, nc, N, D) so the long D axis is innermost

    def step(h, t):  # one time step in every chunk at once: h (b, nc, N, D)
        decay = torch.exp(delta[t].unsqueeze(-2) * A_t)
        return torch.addcmul(decay * h, B[t].unsqueeze(-1), dx[t].unsqueeze(-2))

    def chunk_end_states(dx, delta, B):  # 1. each chunk from a zero state (arguments: for the checkpoint)
        h = x.new_zeros(b, nc, N, D)
        for t in range(T):
            h = step(h, t)
        return h

    # Only reached with autograd on (see chunked_scan): keep only the end states of pass 1 and recompute its steps
    # in backward, so autograd stores per-step tensors for one pass (as the sequential reference does), not two.
    h = checkpoint(chunk_end_states, dx, delta, B, use_reentrant=False)
    chunk_decay = torch.exp(delta.sum(dim=0).unsqueeze(-2) * A_t)  # (b, nc, N, D): exp(A ΣΔ) over the chunk
    carry, h_in = x.new_zeros(b, N, D), []
    for c in range(nc):  # 2. the state entering each chunk
        h_in.append(carry)
        carry = chunk_decay[:, c] * carry + h[:, c]
    h = torch.stack(h_in, dim=1)
    ys = []
    for t in range(T):  # 3. rescan from the true entering states, emit y_t = C_t h_t
        h = step(h, t)
        ys.append((C[t].unsqueeze(-2) @ h).squeeze(-2))  # (b, nc, D)
    return torch.stack(ys, dim=2).reshape(b, nc * T, D)[:, :L]


def chunked_scan(x, delta, A, B, C, chunk_size: int = 16, group_len: int = 128):
    """Optimized, same values. Loops over chunk steps and groups of chunks, never over single time steps."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, delta, A, B, C)):
        return _chunked_scan_autograd(x, delta, A, B, C, chunk_size)
    b, L, D = x.shape
    N = A.shape[1]
    T = max(1, min(chunk_size, L))
    nc = -(-L // T)
    K = max(1, min(group_len // T, nc))  # chunks per group

    def chunks(t):  # (b, L, k) -> (nc, b, T, k) chunk-major views; padded steps have Δ = 0: decay 1, no input
        return F.pad(t, (0, 0, 0, nc * T - L)).view(b, nc, T, -1).transpose(0, 1) if nc * T > L else \
            t.reshape(b, nc, T, -1).transpose(0, 1)

    x, dl, B, C = chunks(x), chunks(delta), chunks(B).unsqueeze(-1), chunks(C).unsqueeze(-2)
    # (N, D): states are kept as (N, D) so the long D axis is innermost. exp(Δ A) = 2^(Δ · A log2 e): exp2 is
    # twice as fast as exp on CPU (AVX2), and these exps are the floor of the scan.
    A_t = (A.T * math.log2(math.e)).contiguous()
    dl_sum = dl.sum(2).unsqueeze(-2)  # (nc, b, 1, D): ΣΔ over each chunk
    # Every buffer is allocated once, outside the loop, and is O(group_len) (fresh pages are costly on CPU).
    ws = x.new_empty(K, b, T, N, D)  # the group's decays, overwritten in place by its states
    dx = x.new_empty(K, b, T, 1, D)
    h, h_in, decay = x.new_empty(K, b, N, D), x.new_empty(K, b, N, D), x.new_empty(K, b, N, D)
    y = x.new_empty(nc, b, T, 1, D)
    h_in[0].zero_()
    for c0 in range(0, nc, K):  # groups of k chunks, in order; h_in[0] is the state entering the group
        k = min(K, nc - c0)
        a, Bg, dxg = ws[:k], B[c0:c0 + k], dx[:k]
        torch.exp2(torch.mul(dl[c0:c0 + k].unsqueeze(-2), A_t, out=a), out=a)  # the only exp per (t, d, n)
        torch.mul(dl[c0:c0 + k], x[c0:c0 + k], out=dxg.squeeze(-2))
        if k > 1:  # 1. end states from zero of chunks 0..k-2, all at once, T steps
            a1, B1, dx1, h1 = a[:k - 1].unbind(2), Bg[:k - 1].unbind(2), dxg[:k - 1].unbind(2), h[:k - 1]
            torch.mul(B1[0], dx1[0], out=h1)
            for t in range(1, T):
                h1.mul_(a1[t]).addcmul_(B1[t], dx1[t])
            torch.exp2(torch.mul(dl_sum[c0:c0 + k - 1], A_t, out=decay[:k - 1]), out=decay[:k - 1])  # exp(A ΣΔ)
            for j in range(1, k):  # 2. the state entering each chunk of the group
                torch.addcmul(h1[j - 1], decay[j - 1], h_in[j - 1], out=h_in[j])
        prev = h_in[:k]
        for cur, Bt, dxt in zip(a.unbind(2), Bg.unbind(2), dxg.unbind(2)):  # 3. true states, over the decays
            cur.mul_(prev).addcmul_(Bt, dxt)
            prev = cur
        h_in[0].copy_(prev[k - 1])
        torch.matmul(C[c0:c0 + k], a, out=y[c0:c0 + k])  # y_t = C_t h_t for the whole group
    return y.view(nc, b, T, D).transpose(0, 1).reshape(b, nc * T, D)[:, :L]


class MambaLayer(nn.Module):
    """MambaLayer(dim, state_size, expand_factor, dropout, dt_init). x (B, L, dim) -> (B, L, dim)."""

    def __init__(self, dim: int, state_size: int = 16, expand_factor: float = 2.0, dropout: float = 0.0,
                 dt_init: str = "random", conv_kernel: int = 4, chunk_size: int = 16, group_len: int = 128,
                 path: str = "optimized"):
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        self.state_size = check_positive_int(state_size, "state_size")
        if isinstance(expand_factor, bool) or not isinstance(expand_factor, (int, float)) or expand_factor <= 0:
            raise ValueError(f"expand_factor must be a positive number, got {expand_factor!r}")
        self.d_inner = int(expand_factor * dim)
        if self.d_inner < 1:
            raise ValueError(f"expand_factor·dim must be >= 1, got {expand_factor} · {dim}")
        if dt_init not in DT_INITS:
            raise ValueError(f"dt_init must be one of {DT_INITS}, got {dt_init!r}")
        self.dt_init, self.expand_factor = dt_init, expand_factor
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")
        self.group_len = check_positive_int(group_len, "group_len")  # inference scan: steps per group (whole chunks)
        self.path = check_path(path)
        self.dt_rank = math.ceil(dim / 16)
        self.in_proj = nn.Linear(dim, 2 * self.d_inner)
        self.conv = nn.Conv1d(self.d_inner, self.d_inner, check_positive_int(conv_kernel, "conv_kernel"),
                              groups=self.d_inner, padding=conv_kernel - 1)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * state_size, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, state_size))
        self.D = nn.Parameter(torch.empty(self.d_inner))
        self._init_state_matrix()
        self.out_proj = nn.Linear(self.d_inner, dim)
        self.drop = nn.Dropout(check_dropout(dropout))

    def _init_state_matrix(self) -> None:
        """A = -(1..N) on every channel (S4D-real, the paper's init) and D = 1, computed in the parameters' own
        dtype: log(n) computed in float32 and cast up is off by ~1e-8 in a float64 build."""
        with torch.no_grad():
            n = torch.arange(1, self.state_size + 1, dtype=self.A_log.dtype, device=self.A_log.device)
            self.A_log.copy_(torch.log(n).expand_as(self.A_log))
            self.D.fill_(1.0)

    def reset_parameters(self, generator: torch.Generator) -> "MambaLayer":
        """Creates every parameter in the module's current dtype (move first, then reset): a float64 build is exact."""
        self._init_state_matrix()
        for linear in (self.in_proj, self.x_proj, self.out_proj):
            init_linear_(linear, generator)
        with torch.no_grad():
            bound = 1.0 / math.sqrt(self.conv.kernel_size[0])  # fan_in of a depthwise filter
            self.conv.weight.uniform_(-bound, bound, generator=generator)
            self.conv.bias.uniform_(-bound, bound, generator=generator)
            std = self.dt_rank ** -0.5
            if self.dt_init == "constant":
                self.dt_proj.weight.fill_(std)
            else:
                self.dt_proj.weight.uniform_(-std, std, generator=generator)
            u = torch.rand(self.d_inner, generator=generator, dtype=torch.float64)
            dt = torch.exp(u * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tokens(x, "x", self.dim, self.in_proj.weight.dtype)
        L = x.shape[1]
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # (B, L, d_inner) each
        xs = F.silu(self.conv(xs.transpose(1, 2))[..., :L].transpose(1, 2))  # causal: drop the right padding
        dt, B, C = self.x_proj(xs).split([self.dt_rank, self.state_size, self.state_size], dim=-1)
        delta = F.softplus(self.dt_proj(dt))  # (B, L, d_inner)
        A = -torch.exp(self.A_log)  # (d_inner, N)
        if self.path == "optimized":
            y = chunked_scan(xs, delta, A, B, C, self.chunk_size, self.group_len)
        else:
            y = sequential_scan(xs, delta, A, B, C)
        y = (y + xs * self.D) * F.silu(z)
        return self.drop(self.out_proj(y))

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, state_size={self.state_size}, d_inner={self.d_inner}, dt_init={self.dt_init!r}, "
                f"chunk_size={self.chunk_size}, group_len={self.group_len}, path={self.path}")


def _build(config, device, dtype, generator):
    # Moved to the dtype before reset_parameters, so a float64 build creates its parameters in float64.
    def make(**kwargs):
        return MambaLayer(**kwargs).to(dtype=dtype)  # on the CPU: reset draws from the CPU generator, then moves
    pair = build_module_pair(make, config, device, dtype, generator)
    pair.probabilities = None  # a state-space model forms no attention probabilities
    return pair


TEST_DIM = 16

register(ComponentSpec(
    name="attention.mamba",
    claims=("EFF-05", "EFF-06", "EFF-07", "EFF-08", "EFF-09", "EFF-10"),
    description="Mamba selective SSM block; reference sequential scan, optimized chunked scan (no per-step loop)",
    build=_build,
    sample_inputs=token_samples(TEST_DIM),
    error_inputs=token_error_inputs(TEST_DIM, {
        "state_zero": (dict(dim=TEST_DIM, state_size=0), ValueError, r"state_size must be >= 1"),
        "expand_negative": (dict(dim=TEST_DIM, expand_factor=-1.0), ValueError, r"expand_factor must be"),
        "unknown_dt_init": (dict(dim=TEST_DIM, dt_init="zeros"), ValueError, r"dt_init must be one of"),
        "group_zero": (dict(dim=TEST_DIM, group_len=0), ValueError, r"group_len must be >= 1"),
    }),
    # chunk_size=4, group_len=8 (2 chunks per group) in tests, so the test sizes reach every path of both scans:
    # n=1, 2 one chunk; n=7 one group of two chunks, the last one partial; n=16 two full groups; n=17 three
    # groups, the last of one partial chunk (the carry between groups is exercised). Gradients take the
    # training path with the same chunks.
    bench_inputs=token_samples(768),
    default_config=dict(dim=TEST_DIM, state_size=4, expand_factor=2.0, dropout=0.0, dt_init="random", chunk_size=4,
                        group_len=8),
    bench_config=dict(dim=768, state_size=16, expand_factor=2.0, dropout=0.0, dt_init="random"),
    test_sizes=(1, 2, 7, 16, 17),
    bench_sizes=(256, 512, 1024, 2048, 4096),
    tolerances={torch.float64: Tolerance(atol=1e-9, rtol=1e-7), torch.float32: Tolerance(atol=2e-5, rtol=2e-4)},
    time_exponent={"reference": 1.0, "optimized": 1.0},
    memory_exponent={"reference": 1.0, "optimized": 1.0},
))
