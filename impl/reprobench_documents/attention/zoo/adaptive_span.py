"""AdaptiveSpan: attention whose reach is a learned span with a soft ramp — ZOO-02, ZOO-06.

Source: documents/002_3edd67eb5ef57768.txt, "1. Adaptive Span Attention": the document gives only
``AdaptiveSpan(BaseAttention).__init__(dims, head, max_dist, sharpen=True, temp_scale=0.01)`` with a
learned ``span_scale = nn.Parameter(torch.tensor(1.0))`` and the line "dynamic adjustment of attention
span ... optimizing computation while preserving modeling capacity". We implement the standard method
behind it, the soft ramp mask of Sukhbaatar et al. 2019 ("Adaptive Attention Span in Transformers"):

    z = clamp(span_scale, 0, 1) · max_dist          (learned span, in tokens)
    m(d) = clamp((R + z − d) / R, 0, 1)               (d = |i − j|, R = ramp, 32 in the paper)
    a_ij = m(|i−j|) · exp(s_ij) / Σ_k m(|i−k|) · exp(s_ik)

Choices, since the document is silent: distance is |i − j| (the document's models are encoders, so
both sides; the paper is causal); ``sharpen`` multiplies the logits by 1 + temp_scale·(1 − span), so
a shorter span gives a sharper softmax and span = 1 leaves plain attention; ``mask`` is an optional
(B, n) bool key-padding mask (True = real token). m is differentiable in span_scale on the ramp, so
the span is learned by gradient descent; keys with m = 0 get exactly 0 weight.

Reference: the dense n × n formula above. Optimized: exact, and computes only inside the span — the
queries are cut into blocks and each block meets only the keys within ``window`` = max_dist + R − 1
of it (every key with m > 0): the blocks become the batch of one fused SDPA call whose additive
mask is log m on the (block, block + 2·window) band; cost O(n · window) instead of O(n²).
``trim_to_span()`` shrinks the window to the current learned span (⌈z + R⌉ − 1) with one host read,
outside forward — call it after each optimizer step, as the paper trims its memory per batch; forward
itself never syncs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from reprobench_documents.attention.base import check_positive_int, token_error_inputs
from reprobench_documents.attention.zoo.base_attention import BaseAttention, build_zoo_pair
from reprobench.registry import ComponentSpec, ErrorInput, InputSupport, SampleInput, register


def soft_weights(scores, soft, allowed):
    """soft · exp(s − max) normalised over allowed keys; rows with no allowed key get all zeros."""
    scores = scores.masked_fill(~allowed, float("-inf"))
    peak = scores.amax(dim=-1, keepdim=True).detach()
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    numerator = soft * torch.exp(scores - peak)
    denominator = numerator.sum(dim=-1, keepdim=True)
    return numerator / torch.where(denominator > 0, denominator, torch.ones_like(denominator))


def banded_attention(q, k, v, scale, block: int, halo: int, soft_fn, key_keep=None):
    """Query block [s, s+block) meets keys [s−halo, s+block+halo) only. q,k,v (B,H,n,hd) -> (B,H,n,hd).

    soft_fn(query_pos, key_pos) gives the soft mask (>= 0, 0 = excluded) on broadcast position grids.
    The blocks become SDPA's batch and the soft mask its additive mask log(m) (-inf where m = 0):
    softmax(s + log m) = m·e^s / Σ m·e^s, the reference's formula, through the fused kernel. A row
    with no allowed key attends uniformly inside SDPA and is then zeroed, as the reference does.
    """
    b, h, n, hd = q.shape
    block, halo = min(block, n), min(halo, n - 1)
    nb = -(-n // block)
    npad, width = nb * block, block + 2 * halo
    # scale multiplies q (not SDPA's float `scale`): it is a tensor that depends on span_scale
    qb = F.pad(q * scale, (0, 0, 0, npad - n)).view(b, h, nb, block, hd).transpose(1, 2).reshape(b * nb, h, block, hd)

    def band(t):  # (B, H, n, hd) -> (B*nb, H, width, hd): the keys each query block meets
        t = F.pad(t, (0, 0, halo, npad - n + halo)).unfold(2, width, block)  # (B, H, nb, hd, width)
        return t.permute(0, 2, 1, 4, 3).reshape(b * nb, h, width, hd)

    q_pos = torch.arange(npad, device=q.device).view(nb, block, 1)
    k_pos = (torch.arange(nb, device=q.device) * block - halo).view(nb, 1, 1) + torch.arange(width, device=q.device)
    soft = soft_fn(q_pos, k_pos) * ((k_pos >= 0) & (k_pos < n))  # (nb, block, width)
    allowed = (soft > 0).unsqueeze(0)  # (1, nb, block, width)
    if key_keep is not None:  # (B, n) -> (B, nb, 1, width)
        keep = F.pad(key_keep, (halo, npad - n + halo), value=False).unfold(1, width, block)
        allowed = allowed & keep[:, :, None, :]
    has_key = allowed.any(-1, keepdim=True)
    bias = torch.where(allowed, torch.log(soft.clamp_min(torch.finfo(q.dtype).tiny)), float("-inf"))
    bias = torch.where(has_key, bias, 0.0).expand(b, nb, block, width).reshape(b * nb, 1, block, width)
    out = F.scaled_dot_product_attention(qb, band(k), band(v), attn_mask=bias, scale=1.0)  # (B*nb, H, block, hd)
    out = out.view(b, nb, h, block, hd) * has_key.expand(b, nb, block, 1).reshape(b, nb, 1, block, 1)
    return out.transpose(1, 2).reshape(b, h, npad, hd)[:, :, :n]


class AdaptiveSpan(BaseAttention):
    """AdaptiveSpan(dims, head, max_dist, sharpen, temp_scale). x (B, n, dims) -> (B, n, dims)."""

    def __init__(self, dims: int, head: int, max_dist: int, sharpen: bool = True, temp_scale: float = 0.01,
                 ramp: int = 32, span_init: float = 1.0, path: str = "optimized"):
        super().__init__(dims, head, max_dist, path)
        self.sharpen, self.temp_scale = bool(sharpen), float(temp_scale)
        self.ramp = check_positive_int(ramp, "ramp")
        self.span_scale = nn.Parameter(torch.tensor(float(span_init)))
        self.window: int | None = None  # set by trim_to_span(); None = max_dist + ramp - 1 (any span)

    def span(self) -> torch.Tensor:  # z, in tokens
        return self.span_scale.clamp(0.0, 1.0) * self.max_dist

    def span_mask(self, distance: torch.Tensor) -> torch.Tensor:
        return ((self.ramp + self.span() - distance) / self.ramp).clamp(0.0, 1.0)

    def logit_scale(self) -> torch.Tensor:
        sharpen = 1.0 + self.temp_scale * (1.0 - self.span_scale.clamp(0.0, 1.0))
        return (sharpen if self.sharpen else torch.ones_like(sharpen)) / math.sqrt(self.head_dim)

    def trim_to_span(self) -> int:
        """Shrink the optimized window to the current learned span (one host read; not in forward)."""
        reach = math.ceil(float(self.span().detach()) + self.ramp) - 1
        self.window = max(0, min(reach, self.max_dist + self.ramp - 1))
        return self.window

    def check_key_mask(self, x, mask):
        if mask is None:
            return None
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != tuple(x.shape[:2]):
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"mask must be a bool key-padding mask of shape (batch, n) = {tuple(x.shape[:2])}, got {got}")
        return mask

    def forward(self, x, mask=None):
        q, k, v = self.project(x)
        keep = self.check_key_mask(x, mask)
        if self.path == "reference":
            return self.out(self.merge(self.attend_reference(q, k, v, keep)[0]))
        window = self.max_dist + self.ramp - 1 if self.window is None else self.window
        out = banded_attention(q, k, v, self.logit_scale(), block=max(window // 4, 32), halo=window,
                               soft_fn=lambda i, j: self.span_mask((i - j).abs().to(q.dtype)), key_keep=keep)
        return self.out(self.merge(out))

    def attend_reference(self, q, k, v, keep=None):
        """Dense formula: (output (B, H, n, hd), weights (B, H, n, n), allowed)."""
        n = q.shape[2]
        pos = torch.arange(n, device=q.device)
        soft = self.span_mask((pos[:, None] - pos[None, :]).abs().to(q.dtype))  # (n, n)
        allowed = (soft > 0) if keep is None else (soft > 0) & keep[:, None, None, :]
        weights = soft_weights((q @ k.transpose(-2, -1)) * self.logit_scale(), soft, allowed)
        return weights @ v, weights, allowed

    def attention_probs(self, x, mask=None):
        q, k, v = self.project(x)
        _, weights, allowed = self.attend_reference(q, k, v, self.check_key_mask(x, mask))
        return weights, allowed


def _build(config, device, dtype, generator):
    return build_zoo_pair(AdaptiveSpan, config, device, dtype, generator)


TEST_DIMS = 32


def _samples(n, device, dtype, generator):
    x = torch.randn(2, n, TEST_DIMS, device=device, dtype=dtype, generator=generator)
    keep = torch.ones(2, n, dtype=torch.bool, device=device)
    # batch item 1: the last few keys are padding; fewer than the span reaches, so no query is left
    # with no key at all (such a row gets all-zero weights and a zero output)
    keep[1, n - min(n // 4, 3):] = False
    return [SampleInput((x,), name="plain"), SampleInput((x,), dict(mask=keep), name="key_padding")]


def _errors(device, dtype, generator):
    errors = token_error_inputs(TEST_DIMS, {
        "head_not_dividing": (dict(dims=TEST_DIMS, head=5, max_dist=8), ValueError, r"dims \(32\) must be divisible by head"),
        "ramp_zero": (dict(dims=TEST_DIMS, head=4, max_dist=8, ramp=0), ValueError, r"ramp must be >= 1"),
    })(device, dtype, generator)
    x = torch.randn(2, 5, TEST_DIMS, device=device, dtype=dtype, generator=generator)
    errors.append(ErrorInput(SampleInput((x,), dict(mask=torch.ones(2, 4, dtype=torch.bool, device=device)),
                                         name="mask_wrong_shape"), ValueError, r"mask must be a bool key-padding mask"))
    errors.append(ErrorInput(SampleInput((x,), dict(mask=torch.ones(2, 5, device=device)), name="mask_float"),
                             ValueError, r"mask must be a bool key-padding mask"))
    return errors


register(ComponentSpec(
    name="attention.zoo_adaptive_span",
    input_support=InputSupport(empty_batch=True),  # batch 0 gives an empty output, as torch layers do
    claims=("ZOO-02", "ZOO-06"),
    description="adaptive span (soft ramp mask, Sukhbaatar 2019); reference dense, optimized banded within the span",
    build=_build,
    sample_inputs=_samples,
    error_inputs=_errors,
    # span 0.5 of max_dist 8 with ramp 4: the mask cuts off at |i-j| = 8 < n for the larger test sizes
    default_config=dict(dims=TEST_DIMS, head=4, max_dist=8, ramp=4, span_init=0.5),
    bench_config=dict(dims=256, head=8, max_dist=128, ramp=32, span_init=0.5),
    bench_inputs=lambda n, device, dtype, generator: [
        SampleInput((torch.randn(1, n, 256, device=device, dtype=dtype, generator=generator),), name="batch1")],
    test_sizes=(1, 7, 16, 33),
    bench_sizes=(256, 512, 1024, 2048),
    time_exponent={"reference": 2.0, "optimized": 1.0},
    memory_exponent={"reference": 2.0, "optimized": 1.0},
))
