"""Performer attention (FAVOR+) and its elu / relu linear-attention variants — EFF-04, EFF-06..09.

Source: "Efficient Attention Mechanisms" (documents/004_7701952726fa4164.txt), `PerformerAttention(dim, num_heads,
num_random_features, kernel_type, dropout)`: "approximates softmax(QKᵀ)V using random features",
O(n·num_features). Method: Choromanski et al., "Rethinking Attention with Performers" (2020), FAVOR+.

Feature maps φ: (B, H, n, d) -> (B, H, n, r), with ω the (r, d) random projection (a buffer, so it
is in the state_dict and both twins use the same draw):
  * 'softmax' (default, FAVOR+): x' = x / d^¼, φ(x) = r^-½ · (exp(x'ωᵀ - |x'|²/2 - s) + ε), so that
    E[φ(q)·φ(k)] ∝ exp(q·k/√d). ω has blocks of orthogonal rows (Haar-random: sign-corrected QR of
    Gaussian d × d matrices) rescaled by the norms of Gaussian rows, as in the paper. Numerically stabilised as in the paper's
    code (and performer-pytorch): s is the max of x'ωᵀ over the features (queries) or over all keys and
    features of a head (keys), so every exponent is <= 0; s cancels in the normalisation.
    ε = 1e-4 as in that code keeps the denominator positive when exp underflows. (Subtracting the max
    of the whole exponent instead makes ε relatively smaller: we tried it; at |q|, |k| ~ √d it gave a
    larger error against softmax, because ε damps the estimator's heavy tail.)
  * 'elu' / 'relu': φ(x) = elu(xωᵀ) + 1, or relu(xωᵀ) + 1e-3 — the document offers these as
    kernel_type; they are linear attentions, not softmax approximations (Katharopoulos et al., 2020;
    the Performer paper's generalised ReLU kernel). Both use the same r random features so the
    O(n·r) cost is the same for every kernel.
The document's default (kernel_type='elu') is not FAVOR+; we default to 'softmax', the method named.

Reference: the explicit (n × n) matrix A = φ(Q)φ(K)ᵀ, rows normalised, then A V (same features).
Optimized: φ(Q) (φ(K)ᵀ V) / (φ(Q) (φ(K)ᵀ 1)) — associativity, O(n·r·d), no n × n tensor; for the
softmax kernel the constant r^-½ (it cancels) and ε (added to the small (r, d) products) never touch
the (n, r) feature tensors, which are the memory-bound part of the cost.
Features are redrawn only by `redraw_features(generator)`; the draw uses that explicit generator.
Dropout (training only) is applied to the attention output, as there is no probability matrix
in the optimized path. Non-causal, as in the document.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reprobench_documents.attention.base import SelfAttentionLayer, build_module_pair, check_positive_int, token_error_inputs, \
    token_samples
from reprobench.registry import ComponentSpec, register

KERNELS = ("softmax", "elu", "relu")
SOFTMAX_EPS = 1e-4  # the paper's code: keeps φ > 0 where exp underflows
RELU_EPS = 1e-3  # keeps the relu kernel's normaliser positive


def draw_features(num_features: int, head_dim: int, generator: torch.Generator, orthogonal: bool = True,
                  dtype=torch.float64) -> torch.Tensor:
    """(r, d) projection ω whose every row is marginally N(0, I_d): FAVOR+ is unbiased only then.

    i.i.d.: Gaussian rows. Orthogonal (the paper's ORFs, Sec. 2.4, after Yu et al. 2016): blocks of d exactly
    orthogonal directions, each block the Gram–Schmidt orthogonalisation of a Gaussian matrix, i.e. a Haar-random
    orthogonal matrix, and each row rescaled by an independent χ(d) length (the norm of an independent Gaussian
    row), so a row is distributed as a Gaussian row while the rows of a block are orthogonal. Householder QR
    (LAPACK) equals Gram–Schmidt only up to the signs of R's diagonal; without fixing them Q is not Haar and row i
    of a block leans toward -e_i, which biases every kernel estimate. Multiplying Q's columns by
    sign(diag R) is Gram–Schmidt's Q (Mezzadri 2007). Drawn in float64 and cast once, so a float64 ω is exact.
    """
    gaussian = torch.randn(num_features, head_dim, generator=generator, dtype=torch.float64)
    if not orthogonal:
        return gaussian.to(dtype)
    num_blocks = -(-num_features // head_dim)  # the last block is cut to the rows still needed
    squares = torch.randn(num_blocks, head_dim, head_dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(squares)  # batched: a few small QRs at init, never in forward
    haar = q * r.diagonal(dim1=-2, dim2=-1).sign().unsqueeze(-2)  # column j times sign(R_jj)
    directions = haar.transpose(-2, -1).reshape(-1, head_dim)[:num_features]  # the rows of each block
    lengths = gaussian.norm(dim=1, keepdim=True)  # χ(d), independent of the directions
    return (directions * lengths).to(dtype)


def feature_map(x: torch.Tensor, omega: torch.Tensor, kernel: str, is_query: bool) -> torch.Tensor:
    """φ(x): (B, H, n, d) -> (B, H, n, r)."""
    if kernel == "elu":
        return F.elu(x @ omega.T) + 1.0
    if kernel == "relu":
        return F.relu(x @ omega.T) + RELU_EPS
    x = x * x.shape[-1] ** -0.25
    projected = x @ omega.T  # (B, H, n, r)
    dims = (-1,) if is_query else (-2, -1)
    # As in the paper's code: subtract the max of xωᵀ (not of the whole exponent), so exp() <= 1.
    stabiliser = projected.detach().amax(dim=dims, keepdim=True)  # cancels in the normalisation
    return (torch.exp(projected - (x * x).sum(-1, keepdim=True) / 2 - stabiliser) + SOFTMAX_EPS) * omega.shape[0] ** -0.5


def favor_explicit(q, k, v, omega, kernel: str, return_probs: bool = False):
    """Reference: A = φ(Q)φ(K)ᵀ (n × n), rows normalised, times V."""
    scores = feature_map(q, omega, kernel, True) @ feature_map(k, omega, kernel, False).transpose(-2, -1)
    probs = scores / scores.sum(-1, keepdim=True)
    return (probs @ v, probs) if return_probs else probs @ v


def _softmax_exponentials(x, omega, is_query: bool) -> torch.Tensor:
    """exp(x'ωᵀ - |x'|²/2 - s): the softmax features without ε and r^-½, in two passes over (n, r)."""
    x = x * x.shape[-1] ** -0.25
    projected = x @ omega.T  # matmul's backward needs only its inputs, so the in-place sub_ below is safe
    stabiliser = projected.detach().amax(dim=(-1,) if is_query else (-2, -1), keepdim=True)
    return torch.exp(projected.sub_(stabiliser + (x * x).sum(-1, keepdim=True) / 2))


def favor_linear(q, k, v, omega, kernel: str):
    """Optimized: φ(Q)(φ(K)ᵀV) / φ(Q)(φ(K)ᵀ1), O(n·r·d), no (n × n) tensor.

    Softmax kernel: with φ = r^-½(E + ε), r^-½ cancels between numerator and denominator and ε is
    added to the small (r, d) products instead of to the (n, r) features: (E_Q + ε)ᵀ(E_K + ε)V =
    E_Q(E_KᵀV + ε ΣV) + ε Σ_f(E_KᵀV + ε ΣV)_f — the same value with three fewer passes over (n, r)."""
    if kernel != "softmax":
        q_feat, k_feat = feature_map(q, omega, kernel, True), feature_map(k, omega, kernel, False)
        kv = k_feat.transpose(-2, -1) @ v  # (B, H, r, dv)
        normaliser = q_feat @ k_feat.sum(dim=-2).unsqueeze(-1)  # (B, H, n, 1)
        return (q_feat @ kv) / normaliser
    eps = SOFTMAX_EPS
    e_q, e_k = _softmax_exponentials(q, omega, True), _softmax_exponentials(k, omega, False)
    kv = e_k.transpose(-2, -1) @ v + eps * v.sum(dim=-2, keepdim=True)  # (B, H, r, dv) = (E_K + ε)ᵀV
    k_sum = e_k.sum(dim=-2) + eps * k.shape[-2]  # (B, H, r) = (E_K + ε)ᵀ1
    numerator = e_q @ kv + eps * kv.sum(dim=-2, keepdim=True)  # (B, H, n, dv)
    denominator = e_q @ k_sum.unsqueeze(-1) + eps * k_sum.sum(dim=-1)[..., None, None]  # (B, H, n, 1)
    return numerator / denominator


class PerformerAttention(SelfAttentionLayer):
    """PerformerAttention(dim, num_heads, num_random_features, kernel_type, dropout). x (B, n, dim) -> (B, n, dim)."""

    def __init__(self, dim: int, num_heads: int, num_random_features: int = 256, kernel_type: str = "softmax",
                 dropout: float = 0.0, path: str = "optimized"):
        super().__init__(dim, num_heads, dropout, path)
        self.num_random_features = check_positive_int(num_random_features, "num_random_features")
        if kernel_type not in KERNELS:
            raise ValueError(f"kernel_type must be one of {KERNELS}, got {kernel_type!r}")
        self.kernel_type = kernel_type
        self.register_buffer("omega", torch.zeros(num_random_features, self.head_dim))

    def redraw_features(self, generator: torch.Generator) -> None:
        """Draw a fresh ω from ``generator`` (orthogonal blocks); the only place features change."""
        omega = draw_features(self.num_random_features, self.head_dim, generator)
        self.omega.copy_(omega.to(self.omega))

    def reset_parameters(self, generator: torch.Generator) -> "PerformerAttention":
        """Draws every parameter and ω in the module's current dtype: move first, then reset."""
        super().reset_parameters(generator)
        with torch.no_grad():
            self.redraw_features(generator)
        return self

    def attend_reference(self, q, k, v):
        return self.attn_drop(favor_explicit(q, k, v, self.omega, self.kernel_type))

    def attend_optimized(self, q, k, v):
        return self.attn_drop(favor_linear(q, k, v, self.omega, self.kernel_type))

    def attention_probs(self, x):
        q, k, v = self.split_heads(x)
        _, probs = favor_explicit(q, k, v, self.omega, self.kernel_type, return_probs=True)
        return probs, torch.ones(1, dtype=torch.bool, device=x.device)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_heads={self.num_heads}, num_random_features={self.num_random_features}, "
                f"kernel_type={self.kernel_type!r}, path={self.path}")


def _build(config, device, dtype, generator):
    # Moved to the dtype before reset_parameters, so a float64 build draws its weights and ω in float64
    # (reset, then cast, would give float32 values: a float64 build would be no float64 oracle).
    def make(**kwargs):
        return PerformerAttention(**kwargs).to(dtype=dtype)  # on the CPU: reset draws from the CPU generator, then moves
    return build_module_pair(make, config, device, dtype, generator)


def _samples(n, device, dtype, generator):
    samples = token_samples(TEST_DIM)(n, device, dtype, generator)
    # A scaled-up input drives exp() towards overflow: the stabiliser must keep it finite.
    big = torch.randn(1, n, TEST_DIM, device=device, dtype=dtype, generator=generator) * 8
    return samples + [type(samples[0])((big,), name="large_inputs")]


TEST_DIM = 32

register(ComponentSpec(
    name="attention.performer",
    claims=("EFF-04", "EFF-06", "EFF-07", "EFF-08", "EFF-09", "EFF-10"),
    description="Performer FAVOR+ (softmax kernel, orthogonal features) + elu/relu; reference n×n, optimized linear",
    build=_build,
    sample_inputs=_samples,
    error_inputs=token_error_inputs(TEST_DIM, {
        "features_zero": (dict(dim=TEST_DIM, num_heads=4, num_random_features=0), ValueError,
                          r"num_random_features must be >= 1"),
        "unknown_kernel": (dict(dim=TEST_DIM, num_heads=4, kernel_type="gelu"), ValueError,
                           r"kernel_type must be one of"),
        "dim_not_divisible": (dict(dim=TEST_DIM, num_heads=3), ValueError, r"divisible by num_heads"),
    }),
    bench_inputs=token_samples(768),
    default_config=dict(dim=TEST_DIM, num_heads=4, num_random_features=16, kernel_type="softmax", dropout=0.0),
    bench_config=dict(dim=768, num_heads=12, num_random_features=256, kernel_type="softmax", dropout=0.0),
    test_sizes=(1, 2, 7, 16),
    bench_sizes=(256, 512, 1024, 2048, 4096),
    time_exponent={"reference": 2.0, "optimized": 1.0},
    memory_exponent={"reference": 2.0, "optimized": 1.0},
))
