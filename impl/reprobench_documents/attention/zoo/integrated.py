"""IntegratedAttention: sliding-window adaptive span + content-dependent global attention — ZOO-06, ZOO-07.

Source: documents/002_3edd67eb5ef57768.txt, "4. Integrated Local-Global Attention": the signature
``IntegratedAttention(dims, head, max_dist=512, win_size=256, max_span=384, temp_scale=0.01)``, the
heads of ``slide_win(x, win_size, span_len, span_scale, mask)`` (``num_windows = ceil(ctx / win_size)``),
``should_update_key(x)`` (``predictor(x.mean(1)) > update_threshold``) and ``decide_jump``, each with a
one-line description. What we built from them, since the bodies are not given:

- local branch = ``slide_win``: queries in windows of ``win_size``; window [s, e) attends to keys
  [s − span_len, e + span_len) ∩ [0, n) with the AdaptiveSpan soft ramp (span_scale, max_dist, ramp)
  on |i − j|; ``span_len = max_span``. A window covering the sequence with span 1 (and max_dist ≥ n − 1)
  is plain full attention.
- global branch = full attention whose keys/values get a learned content update ``key_update(x)`` /
  ``value_update(x)`` only for the batch items where ``should_update_key`` / ``should_update_value``
  say so (threshold 0.5); elsewhere the update is not computed.
- ``decide_jump``: a policy (Linear + softmax over 3 actions on the pooled input) and one uniform per
  batch item; if any u < p(jump), the global branch is skipped for the batch (the layer "jumps" over
  it), as MyelinatedLayer's jump test. Randomness from ``seed=`` or the module's own generator.
- output = local + out(global); ``mask`` is an optional (B, n) bool key-padding mask for both branches.
  The Refiner (ZOO-05) tunes spans between steps; it is not part of forward.

Reference: Python loops over windows, boolean indexing for the updates and an ``if`` for the jump, so
skipped work is really skipped (at the cost of host syncs). Optimized: windows as one banded batched
matmul (AdaptiveSpan's kernel, cost O(n · (win + 2·span)) instead of O(n²)), the updates and the jump
via torch.where — sync-free, computes both branches always. ZOO-07 measures the difference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reprobench_documents.attention.base import PATHS, check_positive_int, check_tokens, init_linear_, token_error_inputs
from reprobench_documents.attention.zoo.adaptive_span import AdaptiveSpan, banded_attention, soft_weights
from reprobench_documents.attention.zoo.base_attention import build_zoo_pair, calculate_attention, check_dims_heads
from reprobench.registry import ComponentSpec, ErrorInput, InputSupport, SampleInput, make_generator, register


class IntegratedAttention(nn.Module):
    """IntegratedAttention(dims, head, max_dist, win_size, max_span, temp_scale). x (B, n, dims) -> (B, n, dims)."""

    def __init__(self, dims, head, max_dist=512, win_size=256, max_span=384, temp_scale=0.01, ramp=32,
                 span_init=1.0, update_threshold=0.5, seed=0, path="optimized"):
        super().__init__()
        self.head_dim = check_dims_heads(dims, head)
        self.dims, self.head = dims, head
        self.win_size = check_positive_int(win_size, "win_size")
        self.max_span = check_positive_int(max_span, "max_span")
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        self.path, self.seed, self.update_threshold = path, seed, update_threshold
        self.local_attn = AdaptiveSpan(dims, head, max_dist, True, temp_scale, ramp, span_init, path=path)
        self.query, self.key, self.value, self.out = (nn.Linear(dims, dims) for _ in range(4))
        self.key_update, self.value_update = nn.Linear(dims, dims), nn.Linear(dims, dims)
        self.key_update_predictor = nn.Sequential(nn.Linear(dims, 1), nn.Sigmoid())
        self.value_update_predictor = nn.Sequential(nn.Linear(dims, 1), nn.Sigmoid())
        self.policy_net = nn.Linear(dims, 3)
        self.generator: torch.Generator | None = None
        self.last_skipped: dict[str, float] = {}  # reference only: fraction of work skipped (ZOO-07)

    def reset_parameters(self, generator):
        for module in self.modules():
            if isinstance(module, nn.Linear):
                init_linear_(module, generator)
        return self

    # --- the documented pieces ---------------------------------------------------------------------
    def should_update_key(self, x: torch.Tensor) -> torch.Tensor:
        """Predict whether the key should be updated based on content. (B, 1) bool."""
        return self.key_update_predictor(x.mean(dim=1)) > self.update_threshold

    def should_update_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.value_update_predictor(x.mean(dim=1)) > self.update_threshold

    def decide_jump(self, policy, uniform):
        """True (0-d bool) where the global branch is skipped for this batch."""
        return (uniform < policy[:, 1]).any()

    def slide_win(self, x, win_size, span_len, span_scale, mask=None, return_weights=False):
        """Process input with sliding window attention (local branch, out-projected)."""
        batch, ctx, dims = x.size()
        local = self.local_attn
        q, k, v = local.project(x)
        scale = local.logit_scale()

        def soft_fn(i, j):
            return ((local.ramp + span_scale.clamp(0.0, 1.0) * local.max_dist - (i - j).abs().to(x.dtype))
                    / local.ramp).clamp(0.0, 1.0)

        if self.path == "optimized" and not return_weights:
            out = banded_attention(q, k, v, scale, block=win_size, halo=span_len, soft_fn=soft_fn, key_keep=mask)
            return local.out(local.merge(out))
        num_windows = (ctx + win_size - 1) // win_size
        outputs, dense = [], torch.zeros(batch, self.head, ctx, ctx, dtype=x.dtype, device=x.device)
        allowed_dense = torch.zeros(batch, 1, ctx, ctx, dtype=torch.bool, device=x.device)
        for w in range(num_windows):
            start, end = w * win_size, min((w + 1) * win_size, ctx)
            k_start, k_end = max(0, start - span_len), min(ctx, end + span_len)
            rows = torch.arange(start, end, device=x.device)[:, None]
            cols = torch.arange(k_start, k_end, device=x.device)[None, :]
            soft = soft_fn(rows, cols)
            allowed = (soft > 0) if mask is None else (soft > 0) & mask[:, None, None, k_start:k_end]
            scores = (q[:, :, start:end] @ k[:, :, k_start:k_end].transpose(-2, -1)) * scale
            weights = soft_weights(scores, soft, allowed)
            outputs.append(weights @ v[:, :, k_start:k_end])
            dense[:, :, start:end, k_start:k_end] = weights
            allowed_dense[:, :, start:end, k_start:k_end] = allowed.expand(batch, 1, -1, -1)
        if return_weights:
            return dense, allowed_dense
        return local.out(local.merge(torch.cat(outputs, dim=2)))

    # --- forward -----------------------------------------------------------------------------------
    def check(self, x, mask):
        check_tokens(x, "x", self.dims, self.query.weight, empty_batch=True)
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool
                                 or tuple(mask.shape) != tuple(x.shape[:2])):
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"mask must be a bool key-padding mask of shape (batch, n) = {tuple(x.shape[:2])}, got {got}")

    def uniforms(self, x, seed):
        if seed is not None:
            generator = make_generator(seed, x.device)
        else:
            if self.generator is None or self.generator.device != x.device:
                self.generator = make_generator(self.seed, x.device)
            generator = self.generator
        return torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)

    def heads(self, t):
        return t.view(t.shape[0], t.shape[1], self.head, self.head_dim).transpose(1, 2)

    def forward(self, x, mask=None, seed=None):
        self.check(x, mask)
        uniform = self.uniforms(x, seed)
        local = self.slide_win(x, self.win_size, self.max_span, self.local_attn.span_scale, mask)
        policy = F.softmax(self.policy_net(x.mean(dim=1)), dim=-1)
        jump = self.decide_jump(policy, uniform)
        update_k, update_v = self.should_update_key(x).squeeze(-1), self.should_update_value(x).squeeze(-1)
        key_mask = None if mask is None else mask[:, None, None, :]
        if self.path == "reference":
            self.last_skipped = {"global": float(jump), "key_update": 1.0 - update_k.double().mean().item(),
                                 "value_update": 1.0 - update_v.double().mean().item()}
            if jump:
                return local
            k, v = self.key(x), self.value(x)
            if update_k.any():
                k = k.clone()
                k[update_k] = k[update_k] + self.key_update(x[update_k])
            if update_v.any():
                v = v.clone()
                v[update_v] = v[update_v] + self.value_update(x[update_v])
            out, _ = calculate_attention(self.heads(self.query(x)), self.heads(k), self.heads(v), key_mask, use_sdpa=False)
            return local + self.out(out.transpose(1, 2).reshape(x.shape))
        k = self.key(x) + torch.where(update_k[:, None, None], self.key_update(x), 0.0)
        v = self.value(x) + torch.where(update_v[:, None, None], self.value_update(x), 0.0)
        out, _ = calculate_attention(self.heads(self.query(x)), self.heads(k), self.heads(v), key_mask, use_sdpa=True)
        return torch.where(jump, local, local + self.out(out.transpose(1, 2).reshape(x.shape)))

    def attention_probs(self, x, mask=None, seed=None):
        """The local branch's window weights, laid out as (B, H, n, n), and the keys each window allows."""
        self.check(x, mask)
        return self.slide_win(x, self.win_size, self.max_span, self.local_attn.span_scale, mask, return_weights=True)


TEST_DIMS = 32


def _samples(n, device, dtype, generator):
    x = torch.randn(2, n, TEST_DIMS, device=device, dtype=dtype, generator=generator)
    keep = torch.ones(2, n, dtype=torch.bool, device=device)
    keep[1, n - min(n // 4, 2):] = False
    return [SampleInput((x,), dict(seed=seed), name=f"seed{seed}") for seed in (1, 2, 3)] + [
        SampleInput((x,), dict(mask=keep, seed=4), name="key_padding")]


def _errors(device, dtype, generator):
    errors = token_error_inputs(TEST_DIMS, {
        "head_not_dividing": (dict(dims=TEST_DIMS, head=3), ValueError, r"dims \(32\) must be divisible by head"),
        "win_size_zero": (dict(dims=TEST_DIMS, head=4, win_size=0), ValueError, r"win_size must be >= 1"),
        "max_span_zero": (dict(dims=TEST_DIMS, head=4, max_span=0), ValueError, r"max_span must be >= 1"),
    })(device, dtype, generator)
    x = torch.randn(2, 5, TEST_DIMS, device=device, dtype=dtype, generator=generator)
    errors.append(ErrorInput(SampleInput((x,), dict(mask=torch.ones(2, 6, dtype=torch.bool, device=device)),
                                         name="mask_wrong_shape"), ValueError, r"mask must be a bool key-padding mask"))
    return errors


register(ComponentSpec(
    name="attention.zoo_integrated",
    input_support=InputSupport(empty_batch=True),  # batch 0 gives an empty output, as torch layers do
    claims=("ZOO-06", "ZOO-07"),
    description="IntegratedAttention: sliding-window adaptive span + content-updated global attention + jump",
    build=lambda config, device, dtype, generator: build_zoo_pair(IntegratedAttention, config, device, dtype, generator),
    sample_inputs=_samples,
    error_inputs=_errors,
    default_config=dict(dims=TEST_DIMS, head=4, max_dist=8, win_size=4, max_span=6, ramp=4, span_init=0.5),
    bench_config=dict(dims=256, head=8, max_dist=128, win_size=64, max_span=96, ramp=32, span_init=0.5),
    bench_inputs=lambda n, device, dtype, generator: [SampleInput(
        (torch.randn(1, n, 256, device=device, dtype=dtype, generator=generator),), dict(seed=0), name="batch1")],
    test_sizes=(1, 7, 16),
    bench_sizes=(256, 512, 1024),
    # The sync-free twin computes skipped branches and drops them with torch.where: zero gradients
    # where the reference has None, which the generic gradient check reads as equal.
    supports_backward=True,
    time_exponent={"reference": 2.0, "optimized": 2.0},
    memory_exponent={"reference": 2.0, "optimized": 2.0},
))
