"""Dynamic-weighting attention: cosine + covariance + variance scores mixed by predicted per-head
weights, with chunking and an out-of-memory fallback — DW-05, DW-06, DW-07, DW-08.

Source: "Dynamic Weighting Formula Implementation" (documents/000_294012e263fd6301.txt):
``Attention(dim, heads, dim_head, variant="cosine", dynamic_weight=True)`` called as
``attention(q, k, v, use_advanced=True, gamma=1.0, epsilon=1e-8)``, scores
``dots = w_cos·cosine_sim + w_cov·cov_component + w_var·var_component`` with ``weights =
weight_predictor_forward(qk_features)`` softmaxed over the 3 components.

Which [n, n] terms. The document's regularizers return one number per embedding set. Broadcasting
that number over the (query, key) scores does nothing at all: softmax is invariant to adding the
same constant to every key of a row, so the "advanced" layer would equal the basic one. We take
the reading in which every pair gets its own term: the term of (i, j) is the document's regularizer
evaluated on the two-sample embedding set E_ij = [q_i; k_j] (K = 2, m = 2 samples). With
δ = q_i - k_j this is, in closed form (E_ij centered is ±δ/2, C = δδᵀ/2):
    cov_ij = Σ_{a≠b} C_ab² = ((Σ_a δ_a²)² - Σ_a δ_a⁴) / 4
    var_ij = Σ_a max(0, γ - sqrt(δ_a²/4 + ε)) / 2
The terms are added with positive weights, as in the document. "cosine" variant: q, k are
L2-normalised first (every term bounded), similarity ``cosine_scale · cos(q_i, k_j)``; "dot": raw
features, q·k/√dim_head. Weights: a shared two-layer predictor maps each head's pooled (mean q,
mean k) to softmax([3]) -> [batch, heads, 3] (the document's [heads, 3] per sample, so no sample's
output depends on its batch-mates). dynamic_weight=False uses fixed weights 1/3.

Reference: builds every E_ij ([B, H, n, m, 2, d]) and applies the document's torch formulas to it
verbatim — including the d x d covariance per pair, O(n·m·d²) memory. Optimized: the closed forms,
with Σδ² and Σδ⁴ expanded into matmuls (|q|², q·k, q³·k, q²·k², q·k³; float64 where the expansion
cancels), so covariance costs O(n·m·d) time and O(n·m) memory; the variance hinge is elementwise in
δ, so it is computed over query chunks whose size is derived from the free memory (OOM prevention),
each chunk checkpointed under autograd so the saved activations stay bounded too.
If the advanced path still runs out of memory, forward warns and returns basic attention
(softmax of the similarity alone), the documented fallback; other errors are not swallowed.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from reprobench_documents.attention.base import build_module_pair, check_path, check_positive_int, check_tokens, init_linear_
from reprobench_documents.regularizers._common import check_gamma_epsilon, chunk_columns
from reprobench.registry import ComponentSpec, ErrorInput, InputSupport, SampleInput, Tolerance, register

VARIANTS = ("cosine", "dot")


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA OOM, a failed CPU allocation, or Python's MemoryError."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def pairwise_terms_reference(q, k, gamma, epsilon):
    """Document's regularizers on every E_ij = [q_i; k_j]. q (B,H,n,d), k (B,H,m,d) -> 2 x (B,H,n,m)."""
    E = torch.stack(torch.broadcast_tensors(q[:, :, :, None, :], k[:, :, None, :, :]), dim=-2)  # (B,H,n,m,2,d)
    K = E.shape[-2]
    # variance_component_torch, batched over pairs
    variance_per_dim = torch.var(E, dim=-2, unbiased=False)
    regularized_std = torch.sqrt(variance_per_dim + epsilon)
    hinge_values = torch.clamp(gamma - regularized_std, min=0.0)
    var_component = torch.sum(hinge_values, dim=-1) / K
    # covariance_component_torch, batched over pairs: a d x d covariance per (i, j)
    E_centered = E - torch.mean(E, dim=-2, keepdim=True)
    cov_matrix = torch.matmul(E_centered.transpose(-1, -2), E_centered) / (K - 1)  # (B,H,n,m,d,d)
    mask = torch.ones_like(cov_matrix) - torch.eye(E.shape[-1], device=E.device, dtype=E.dtype)
    cov_component = torch.sum((cov_matrix * mask) ** 2, dim=(-1, -2))
    return cov_component, var_component


def pairwise_covariance(q, k):
    """((Σδ²)² - Σδ⁴)/4 for δ = q_i - k_j via matmuls, float64 where the expansion cancels."""
    q64, k64 = q.to(torch.float64), k.to(torch.float64)
    qk = q64 @ k64.transpose(-1, -2)  # (B,H,n,m)
    q2, k2 = q64.square(), k64.square()
    sq = q2.sum(-1)[..., :, None] + k2.sum(-1)[..., None, :] - 2 * qk  # Σ δ²
    fourth = ((q2.square().sum(-1))[..., :, None] + (k2.square().sum(-1))[..., None, :]
              - 4 * (q2 * q64) @ k64.transpose(-1, -2) + 6 * q2 @ k2.transpose(-1, -2)
              - 4 * q64 @ (k2 * k64).transpose(-1, -2))  # Σ δ⁴
    return ((sq.square() - fourth) / 4).to(q.dtype)


def _variance_chunk(q, k, gamma, epsilon):
    delta = q[:, :, :, None, :] - k[:, :, None, :, :]  # (B,H,c,m,d)
    std = (delta.square() / 4 + epsilon).sqrt()
    return (gamma - std).relu().sum(-1) / 2


def pairwise_variance(q, k, gamma, epsilon, chunk_rows):
    """Σ_a max(0, γ - sqrt(δ_a²/4 + ε)) / 2, over query chunks of ``chunk_rows`` rows.

    Under autograd every chunk's δ would be saved for backward, so chunking alone would not bound
    training memory; with more than one chunk each is checkpointed (recomputed in backward).
    """
    if chunk_rows >= q.shape[2]:
        return _variance_chunk(q, k, gamma, epsilon)
    recompute = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad)
    parts = []
    for start in range(0, q.shape[2], chunk_rows):
        rows = q[:, :, start:start + chunk_rows]
        parts.append(checkpoint(_variance_chunk, rows, k, gamma, epsilon, use_reentrant=False) if recompute
                     else _variance_chunk(rows, k, gamma, epsilon))
    return torch.cat(parts, dim=2)


class WeightPredictor(nn.Module):
    """Pooled (mean q, mean k) of each head -> softmax over (cosine, covariance, variance)."""

    def __init__(self, dim_head: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * dim_head, hidden), nn.GELU(), nn.Linear(hidden, 3))

    def forward(self, q, k):  # (B,H,n,d), (B,H,m,d) -> (B,H,3)
        return self.net(torch.cat([q.mean(dim=2), k.mean(dim=2)], dim=-1)).softmax(dim=-1)


class Attention(nn.Module):
    """Attention(dim, heads, dim_head, variant, dynamic_weight). q (B,n,dim), k, v (B,m,dim) -> (B,n,dim)."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, variant: str = "cosine",
                 dynamic_weight: bool = True, predictor_hidden: int = 32, cosine_scale: float = 10.0,
                 memory_budget_bytes: int | None = None, path: str = "optimized"):
        super().__init__()
        self.dim, self.heads = check_positive_int(dim, "dim"), check_positive_int(heads, "heads")
        self.dim_head = check_positive_int(dim_head, "dim_head")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if not isinstance(dynamic_weight, bool):
            raise TypeError(f"dynamic_weight must be a bool, got {dynamic_weight!r}")
        self.variant, self.dynamic_weight, self.cosine_scale = variant, dynamic_weight, float(cosine_scale)
        self.memory_budget_bytes, self.path = memory_budget_bytes, check_path(path)
        inner = heads * dim_head
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, inner, bias=False) for _ in range(3))
        self.to_out = nn.Linear(inner, dim)
        self.weight_predictor = WeightPredictor(dim_head, predictor_hidden) if dynamic_weight else None

    def reset_parameters(self, generator: torch.Generator) -> "Attention":
        for module in self.modules():
            if isinstance(module, nn.Linear):
                init_linear_(module, generator)
        return self

    def split_heads(self, q, k, v):
        for name, t in (("q", q), ("k", k), ("v", v)):
            check_tokens(t, name, self.dim, self.to_q.weight, empty_batch=True)
        if not (q.shape[0] == k.shape[0] == v.shape[0]) or k.shape[1] != v.shape[1]:
            raise ValueError(f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}: batch must agree "
                             "and k, v must have the same sequence length")

        def heads(t, proj):  # (B, n, dim) -> (B, H, n, dh)
            return proj(t).view(t.shape[0], t.shape[1], self.heads, self.dim_head).transpose(1, 2)

        return heads(q, self.to_q), heads(k, self.to_k), heads(v, self.to_v)

    def features(self, q, k):
        return (F.normalize(q, dim=-1), F.normalize(k, dim=-1)) if self.variant == "cosine" else (q, k)

    def similarity(self, q, k):
        scale = self.cosine_scale if self.variant == "cosine" else self.dim_head ** -0.5
        fq, fk = self.features(q, k)
        return scale * fq @ fk.transpose(-1, -2)

    def component_weights(self, q, k):  # (B, H, 3)
        if self.weight_predictor is None:
            return q.new_full((q.shape[0], self.heads, 3), 1.0 / 3.0)
        return self.weight_predictor(q, k)

    def advanced_scores(self, q, k, gamma, epsilon, path):
        fq, fk = self.features(q, k)
        if path == "reference":
            cov, var = pairwise_terms_reference(fq, fk, gamma, epsilon)
        else:
            b, h, n, d = fq.shape
            rows = chunk_columns(b * h * fk.shape[2] * d * 3, n, fq.element_size(), fq.device, self.memory_budget_bytes)
            cov, var = pairwise_covariance(fq, fk), pairwise_variance(fq, fk, gamma, epsilon, rows)
        w = self.component_weights(q, k)[..., None, None]  # (B, H, 3, 1, 1)
        return w[:, :, 0] * self.similarity(q, k) + w[:, :, 1] * cov + w[:, :, 2] * var

    def attention_probs(self, q, k, v, use_advanced=True, gamma=1.0, epsilon=1e-8):
        """(probabilities (B, H, n, m) as the reference forms them, allowed mask (all True))."""
        gamma, epsilon = check_gamma_epsilon(gamma, epsilon)
        qh, kh, _ = self.split_heads(q, k, v)
        scores = self.advanced_scores(qh, kh, gamma, epsilon, "reference") if use_advanced else self.similarity(qh, kh)
        return scores.softmax(dim=-1), torch.ones(1, dtype=torch.bool, device=q.device)

    def forward(self, q, k, v, use_advanced: bool = True, gamma: float = 1.0, epsilon: float = 1e-8):
        gamma, epsilon = check_gamma_epsilon(gamma, epsilon)
        qh, kh, vh = self.split_heads(q, k, v)
        scores = None
        if use_advanced:  # the documented fallback: basic attention, with a warning, when memory runs out
            try:
                scores = self.advanced_scores(qh, kh, gamma, epsilon, self.path)
            except Exception as error:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
                if not is_out_of_memory(error):
                    raise
                warnings.warn(f"dynamic-weighting attention ran out of memory ({type(error).__name__}: {error}); "
                              f"falling back to basic {self.variant} attention", RuntimeWarning, stacklevel=2)
                if qh.device.type == "cuda":
                    torch.cuda.empty_cache()
        if scores is None:
            scores = self.similarity(qh, kh)
        out = scores.softmax(dim=-1) @ vh  # (B, H, n, dh)
        return self.to_out(out.transpose(1, 2).reshape(q.shape[0], q.shape[1], self.heads * self.dim_head))


# --- registry ---------------------------------------------------------------------------------------

def _build(config, device, dtype, generator):
    return build_module_pair(Attention, config, device, dtype, generator)


TEST_DIM = 16


def _sample_inputs(n, device, dtype, generator):
    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

    x = randn(2, n, TEST_DIM)
    return [
        SampleInput((x, x, x), dict(use_advanced=True, gamma=1.0, epsilon=1e-8), name="self"),
        SampleInput((randn(1, n, TEST_DIM), randn(1, n + 3, TEST_DIM), randn(1, n + 3, TEST_DIM)),
                    dict(use_advanced=True, gamma=0.5, epsilon=1e-6), name="cross_batch1"),
    ]


def _error_inputs(device, dtype, generator):
    x = torch.randn(2, 5, TEST_DIM, device=device, dtype=dtype, generator=generator)
    config = dict(dim=TEST_DIM, heads=2, dim_head=8)
    return [
        ErrorInput(SampleInput((x, x, x), dict(gamma=-1.0), name="gamma_negative"), ValueError, r"gamma must be a finite"),
        ErrorInput(SampleInput((x[0], x, x), name="q_rank2"), ValueError, r"q: expected .* shape \(batch, seq, 16\)"),
        ErrorInput(SampleInput((x, x, x[:, :3]), name="kv_length"), ValueError, r"k, v must have the same sequence"),
        ErrorInput(SampleInput((x, torch.cat([x, x[..., :1]], -1), x), name="k_dim"), ValueError, r"k: expected .* shape \(batch, seq, 16\)"),
        ErrorInput(SampleInput((x.long(), x, x), name="int_q"), TypeError, r"q: expected a float32 or float64 tensor"),
        ErrorInput(SampleInput((x, x, x), name="bad_variant"), ValueError, r"variant must be one of",
                   config=dict(config, variant="euclid")),
        ErrorInput(SampleInput((x, x, x), name="heads_zero"), ValueError, r"heads must be >= 1",
                   config=dict(config, heads=0)),
    ]


def _bench_inputs(n, device, dtype, generator):
    x = torch.randn(1, n, 64, device=device, dtype=dtype, generator=generator)
    return [SampleInput((x, x, x), dict(use_advanced=True, gamma=1.0, epsilon=1e-8), name="self")]


register(ComponentSpec(
    name="attention.dynamic_weighting",
    input_support=InputSupport(empty_batch=True),  # batch 0 gives an empty output, as torch layers do
    claims=("DW-05", "DW-06", "DW-07", "DW-08"),
    description="cosine + pairwise covariance + pairwise variance scores, per-head predicted weights; OOM fallback",
    build=_build,
    sample_inputs=_sample_inputs,
    bench_inputs=_bench_inputs,
    error_inputs=_error_inputs,
    default_config=dict(dim=TEST_DIM, heads=2, dim_head=8, variant="cosine", dynamic_weight=True,
                        memory_budget_bytes=4096),  # tiny budget: the tests cross query chunks
    # Small: the reference holds a d x d covariance per (query, key) pair, H·n²·d² floats.
    bench_config=dict(dim=64, heads=4, dim_head=16, variant="cosine", dynamic_weight=True),
    test_sizes=(1, 7, 16),
    bench_sizes=(32, 64, 128),
    tolerances={torch.float64: Tolerance(atol=1e-9, rtol=1e-7), torch.float32: Tolerance(atol=1e-4, rtol=1e-4)},
    time_exponent={"reference": 2.0, "optimized": 2.0},
    memory_exponent={"reference": 2.0, "optimized": 2.0},
))
