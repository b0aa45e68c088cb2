"""Attention rollout for GLCA — DCAL-05 (cost), DCAL-11 (what GLCA needs from it).

Source: "Dual Cross-Attention Model Optimizations" (documents/001_128d0a2e45dbf7cd.txt), §2: rollout is
"matrix multiplications across all layers: O(L × N³)", computed for every GLCA forward pass.

Formula (Abnar & Zuidema 2020, as DCAL uses it): per layer l, fuse heads by their mean, add the
residual and renormalise rows, Ā_l = rownorm((mean_h A_l + I) / 2); the rollout is the product
R = Ā_L Ā_{L-1} … Ā_1, a row-stochastic (B, N, N) matrix.

Reference: the full matrix product exactly as the common implementation writes it (start from the
identity, `result = a @ result` per layer): L + 1 products of N × N matrices, O(L·N³).
Optimized: GLCA only ever reads the CLS row of R (which patches the class token accumulates), and
e₀ᵀR = (((e₀ᵀĀ_L) Ā_{L-1}) … Ā_1) is a chain of vector–matrix products, O(L·H·N²) — the same cost
as reading the attention maps once. The residual and the row normalisation are folded into the vector:
with Ā = mean_h A, row sums s = (rowsum(Ā) + 1) / 2 and w = r / s, r·rownorm((Ā + I)/2) = (wᵀĀ + w) / 2,
so no N × N product is ever formed; the last layer contributes only its CLS row. What remains is
one read of each layer's H maps for the head mean (one GEMV into a buffer reused across layers, so
no per-layer page faults; the row sums and wᵀĀ then read Ā from cache) — memory-bound, so the
speedup over the O(L·N³) product grows linearly with N.
Both take the stacked maps (L, B, H, N, N) (or a list of L maps (B, H, N, N)) and return the CLS
row (B, N); `attention_rollout_full` returns all of R for the properties (rows sum to 1, I ↦ I).
"""
from __future__ import annotations

import torch

from reprobench.registry import ComponentSpec, ErrorInput, Implementations, SampleInput, Tolerance, register
from reprobench.validation import check_tensor


def attention_layers(attentions, name: str = "attentions") -> list[torch.Tensor]:
    """Validate per-layer maps, given stacked (L, B, H, N, N) or as a list of L × (B, H, N, N), and
    return them as a list of (B, H, N, N) views — without copying a list into one stacked tensor.
    Every dimension must be >= 1 (no layers, heads or tokens leaves nothing to roll out)."""
    dims = ("L", "batch", "heads", "N", "N")
    if isinstance(attentions, (list, tuple)):
        if len(attentions) == 0:
            raise ValueError(f"{name}: expected at least one layer of shape (batch, heads, N, N), got an empty list")
        for i, a in enumerate(attentions):
            check_tensor(f"{name}[{i}]", a, shape=dims[1:], nonempty=dims[1:],
                         like=attentions[0] if i else None, like_what=f"{name}[0]")
            if a.shape != attentions[0].shape:
                raise ValueError(f"{name}[{i}]: expected shape {tuple(attentions[0].shape)} like {name}[0], got "
                                 f"{tuple(a.shape)}")
        layers, shape = list(attentions), (len(attentions), *attentions[0].shape)
    else:
        check_tensor(name, attentions, shape=dims, nonempty=dims)
        layers, shape = list(attentions.unbind(0)), tuple(attentions.shape)
    if shape[-1] != shape[-2]:
        raise ValueError(f"{name}: expected square maps (..., N, N), got shape {shape}")
    return layers


def stack_attentions(attentions) -> torch.Tensor:
    """Validated maps as one (L, B, H, N, N) tensor (the caches key and store that)."""
    layers = attention_layers(attentions)
    return attentions if isinstance(attentions, torch.Tensor) else torch.stack(layers)


def attention_rollout_full(attentions) -> torch.Tensor:
    """Reference: the full rollout matrix R (B, N, N), as the usual loop writes it. O(L·N³)."""
    layers = attention_layers(attentions)
    b, _, n, _ = layers[0].shape
    eye = torch.eye(n, dtype=layers[0].dtype, device=layers[0].device)
    result = eye.expand(b, n, n)
    for attn in layers:  # layer 1 first, so the last layer ends up leftmost
        fused = attn.mean(dim=1)  # (B, N, N) head fusion "mean"
        a = (fused + eye) / 2  # residual connection
        a = a / a.sum(dim=-1, keepdim=True)
        result = a @ result
    return result


def rollout_cls_reference(attentions) -> torch.Tensor:
    """CLS row of the full product: (B, N)."""
    return attention_rollout_full(attentions)[:, 0]


def rollout_cls_optimized(attentions) -> torch.Tensor:
    """CLS row as a vector chain, e₀ᵀĀ_L … Ā_1 — O(L·H·N²), no N × N product. (B, N)."""
    layers = attention_layers(attentions)
    b, h, n, _ = layers[0].shape
    # e₀ᵀĀ_L needs only the CLS row of the last layer: (mean_h A[0] + e₀) / (its sum + 1).
    row = layers[-1][:, :, 0, :].mean(dim=1)  # (B, N)
    row = torch.cat([row[:, :1] + 1, row[:, 1:]], dim=1)
    row = (row / row.sum(dim=-1, keepdim=True)).unsqueeze(1)  # (B, 1, N)
    # The head mean as one GEMV, (1/H, …, 1/H) @ maps viewed as (H, N·N): a single streaming read of the
    # H maps. Its (B, N, N) result goes into ONE buffer reused by every layer: a fresh N × N allocation per
    # layer is a fresh mmap whose page faults cost about as much as the read itself (DCAL-05 measures the chain).
    # `out=` has no autograd, so when gradients are wanted each layer allocates (same values).
    mean_weights = layers[0].new_full((b, 1, h), 1.0 / h)
    reuse = not (torch.is_grad_enabled() and any(a.requires_grad for a in layers))
    mean = layers[0].new_empty(b, 1, n * n) if reuse and len(layers) > 1 else None
    for layer in range(len(layers) - 2, -1, -1):  # a loop over layers (L ≈ 12), never over tokens
        maps = layers[layer].reshape(b, h, n * n)
        mean = torch.bmm(mean_weights, maps, out=mean) if reuse else torch.bmm(mean_weights, maps)
        fused = mean.view(b, n, n)  # Ā, still in cache for the two reads below
        # r·rownorm((Ā + I)/2) = wᵀĀ + w with w = r / (rowsum(Ā) + 1): one baddbmm, no N × N product.
        w = row / (fused.sum(dim=-1).unsqueeze(1) + 1)
        row = torch.baddbmm(w, w, fused)
    return row.squeeze(1)


def random_attentions(depth: int, batch: int, heads: int, n: int, *, dtype=torch.float32, device="cpu",
                      generator: torch.Generator | None = None, sharpness: float = 2.0) -> torch.Tensor:
    """Softmax-normalised random maps (L, B, H, N, N), rows summing to 1 like real attention."""
    logits = torch.randn(depth, batch, heads, n, n, dtype=dtype, device=device, generator=generator)
    return (sharpness * logits).softmax(dim=-1)


def _sample_inputs(n, device, dtype, generator):
    return [
        SampleInput((random_attentions(3, 2, 2, n, dtype=dtype, device=device, generator=generator),), name="L3_B2_H2"),
        SampleInput((random_attentions(1, 1, 3, n, dtype=dtype, device=device, generator=generator),), name="L1_B1_H3"),
    ]


def _bench_inputs(n, device, dtype, generator):
    """DeiT-Small's maps: 12 layers, 6 heads, one image."""
    return [SampleInput((random_attentions(12, 1, 6, n, dtype=dtype, device=device, generator=generator),),
                        name="L12_B1_H6")]


def _error_inputs(device, dtype, generator):
    good = random_attentions(2, 1, 2, 5, dtype=dtype, device=device, generator=generator)
    return [
        ErrorInput(SampleInput((good[0],), name="rank4"), ValueError,
                   r"attentions: expected .* shape \(L, batch, heads, N, N\)"),
        ErrorInput(SampleInput((good[..., :4],), name="not_square"), ValueError, r"attentions: expected square maps"),
        ErrorInput(SampleInput(([good[0], good[1, :, :, :4, :4]],), name="layer_mismatch"), ValueError,
                   r"attentions\[1\]: expected shape \(1, 2, 5, 5\) like attentions\[0\]"),
        ErrorInput(SampleInput(("maps",), name="not_tensor"), TypeError,
                   r"attentions: expected a float32 or float64 tensor"),
        ErrorInput(SampleInput(([],), name="no_layers"), ValueError, r"attentions: expected at least one layer"),
        ErrorInput(SampleInput((good.long(),), name="int_maps"), TypeError,
                   r"attentions: expected a float32 or float64 tensor"),
    ]


def _build(config, device, dtype, generator):
    return Implementations(reference=rollout_cls_reference, optimized=rollout_cls_optimized)


register(ComponentSpec(
    name="models.dcal_rollout",
    claims=("DCAL-05", "DCAL-11"),
    description="attention rollout CLS row: reference full L·N³ matrix product, optimized L·N² vector chain",
    build=_build,
    sample_inputs=_sample_inputs,
    bench_inputs=_bench_inputs,
    error_inputs=_error_inputs,
    test_sizes=(1, 2, 7, 17),
    bench_sizes=(197, 393, 785),
    size_name="N",
    tolerances={torch.float64: Tolerance(1e-10, 1e-8),
                torch.float32: Tolerance(1e-6, 1e-4)},
    time_exponent={"reference": 3.0, "optimized": 2.0},
    memory_exponent={"reference": 2.0, "optimized": 2.0},
))
