"""BaseAttention and calculate_attention: the core the attention zoo builds on — ZOO-01, ZOO-03.

Source: "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt), attention section.
The document never shows these two; it only calls them: subclasses run
``super().__init__(dims, head, max_dist)`` and read ``self.head``, and MyelinatedLayer calls
``calculate_attention(q, k, v, mask, 1.0, BaseAttention.use_sdpa, is_causal=is_causal)`` and unpacks
``(output, weights)``. We give them the least behaviour those calls need, and say so:

- ``calculate_attention(q, k, v, mask, temperature, use_sdpa, is_causal)`` on (B, H, n, hd) tensors is
  softmax(QKᵀ / (√hd · temperature)) V. The mask follows SDPA's convention, because ``use_sdpa`` is
  the document's default: a bool mask masks (True = may attend), a float mask is *added* to the
  scores. So a 0/1 float mask does not mask — ZOO-03 measures what that does to MyelinatedLayer.
  Mask shapes: (n, m), (B, n|1, m) (read as (B, 1, n|1, m), i.e. per batch item, which is what
  MyelinatedLayer's ``[batch, 1, ctx]`` node mask needs to broadcast) or (B|1, H|1, n|1, m).
  SDPA refuses ``attn_mask`` together with ``is_causal``; we fold causality into the mask instead.
  A query whose every key is masked attends to nothing: zero weights, zero output, zero gradients
  (what SDPA gives it), in both twins — not the explicit softmax's 0/0 = NaN.
- ``BaseAttention(dims, head, max_dist)``: q/k/v/out projections around calculate_attention, called
  ``forward(x, xa=None, mask=None, kv_cache=None, is_causal=False)`` on batch-first (B, n, dims)
  tensors, returning one tensor. That is NOT nn.MultiheadAttention's call (query, key, value,
  key_padding_mask, need_weights, attn_mask) -> (output, weights) with seq-first default: ZOO-01.
  ``max_dist`` is stored for the subclasses (AdaptiveSpan reads it as its maximum span).

Reference: explicit scores and softmax (use_sdpa=False), returns the weights too. Optimized: the same
call through torch's fused scaled_dot_product_attention, which never materialises the n × n weights.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from reprobench_documents.attention.base import PATHS, check_positive_int, check_tokens, init_linear_, masked_softmax, \
    token_error_inputs
from reprobench.registry import ComponentSpec, ErrorInput, Implementations, InputSupport, SampleInput, register
from reprobench.validation import check_size, describe


def check_dims_heads(dims, head, head_name: str = "head") -> int:
    check_positive_int(dims, "dims")
    check_positive_int(head, head_name)
    if dims % head:
        raise ValueError(f"dims ({dims}) must be divisible by {head_name} ({head})")
    return dims // head


def attention_mask_4d(mask, batch: int, heads: int, n: int, m: int, like: torch.Tensor | None = None) -> torch.Tensor | None:
    """A user mask as (B|1, H|1, n|1, m); ValueError naming the expected shapes otherwise. like: the
    queries, whose device a mask must share and whose dtype a float mask must have (SDPA's rule)."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor (bool: True = attend; float: added to scores), got {type(mask).__name__}")
    if like is not None:
        if mask.dtype != torch.bool and mask.dtype != like.dtype:
            raise TypeError(f"mask: expected a bool mask (True = attend) or a {str(like.dtype).replace('torch.', '')} "
                            f"mask added to the scores, got {describe(mask)}")
        if mask.device != like.device:
            raise ValueError(f"mask: expected a tensor on {like.device} like x, got {describe(mask)}")
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    elif mask.dim() == 2:
        mask = mask.view(1, 1, *mask.shape)
    expected = f"(n, m), (batch, n|1, m) or (batch|1, heads|1, n|1, m) with batch={batch}, heads={heads}, n={n}, m={m}"
    if mask.dim() != 4:
        raise ValueError(f"mask has rank {mask.dim()}; expected {expected}")
    for size, full, label in zip(mask.shape, (batch, heads, n, m), ("batch", "heads", "n", "m")):
        if size not in (1, full) or (label == "m" and size != full):
            raise ValueError(f"mask has shape {tuple(mask.shape)}; expected {expected}")
    return mask


def calculate_attention(q, k, v, mask=None, temperature: float = 1.0, use_sdpa: bool = True, is_causal: bool = False):
    """(output (B, H, n, hd), weights (B, H, n, m) or None under SDPA)."""
    batch, heads, n, hd = q.shape
    m = k.shape[2]
    mask = attention_mask_4d(mask, batch, heads, n, m, like=q)
    scale = 1.0 / (math.sqrt(hd) * temperature)
    if is_causal and mask is not None:  # SDPA takes one or the other: fold causality into the mask
        causal = torch.ones(n, m, dtype=torch.bool, device=q.device).tril(m - n)
        mask = mask & causal if mask.dtype == torch.bool else mask.masked_fill(~causal, float("-inf"))
        is_causal = False
    if use_sdpa:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale), None
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, n, m)
    if is_causal:
        scores = scores.masked_fill(~torch.ones(n, m, dtype=torch.bool, device=q.device).tril(m - n), float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = masked_softmax(scores)  # a row with every key masked: zero weights, as SDPA gives it
    return weights @ v, weights


class BaseAttention(nn.Module):
    """BaseAttention(dims, head, max_dist). x (B, n, dims) -> (B, n, dims)."""

    use_sdpa = True  # the document reads BaseAttention.use_sdpa as a class attribute
    accepts_empty_batch = True  # batch 0 gives an empty output; a subclass whose document code cannot says so

    def __init__(self, dims: int, head: int, max_dist: int = 512, path: str = "optimized"):
        super().__init__()
        self.head_dim = check_dims_heads(dims, head)
        self.dims, self.head = dims, head
        self.max_dist = check_positive_int(max_dist, "max_dist")
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        self.path = path
        self.query, self.key, self.value, self.out = (nn.Linear(dims, dims) for _ in range(4))

    def reset_parameters(self, generator: torch.Generator) -> "BaseAttention":
        for linear in (self.query, self.key, self.value, self.out):
            init_linear_(linear, generator)
        return self

    def heads(self, t: torch.Tensor) -> torch.Tensor:  # (B, n, dims) -> (B, H, n, hd)
        return t.view(t.shape[0], t.shape[1], self.head, self.head_dim).transpose(1, 2)

    def merge(self, t: torch.Tensor) -> torch.Tensor:  # (B, H, n, hd) -> (B, n, dims)
        return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], self.dims)

    def project(self, x, xa=None, kv_cache=None):
        check_tokens(x, "x", self.dims, self.query.weight, empty_batch=self.accepts_empty_batch)
        if xa is not None:
            check_tokens(xa, "xa", self.dims, self.query.weight, empty_batch=self.accepts_empty_batch)
            check_size("xa", xa, 0, x.shape[0], "the batch of x")
        if kv_cache is not None:
            raise ValueError("kv_cache is not supported: the document never shows its format; pass None")
        source = x if xa is None else xa
        return self.heads(self.query(x)), self.heads(self.key(source)), self.heads(self.value(source))

    def forward(self, x, xa=None, mask=None, kv_cache=None, is_causal: bool = False):
        q, k, v = self.project(x, xa, kv_cache)
        out, _ = calculate_attention(q, k, v, mask, 1.0, self.path == "optimized", is_causal=is_causal)
        return self.out(self.merge(out))

    def attention_probs(self, x, xa=None, mask=None, kv_cache=None, is_causal: bool = False):
        """(weights (B, H, n, m), allowed bool mask) as the reference forms them."""
        q, k, v = self.project(x, xa, kv_cache)
        _, weights = calculate_attention(q, k, v, mask, 1.0, use_sdpa=False, is_causal=is_causal)
        allowed = torch.isfinite(_logit_mask(mask, q, k, is_causal))
        return weights, allowed


def _logit_mask(mask, q, k, is_causal):
    """The additive mask calculate_attention applies (0 / -inf / float), for the allowed set."""
    b, h, n, _ = q.shape
    m = k.shape[2]
    extra = torch.zeros(1, 1, n, m, dtype=q.dtype, device=q.device)
    mask = attention_mask_4d(mask, b, h, n, m)
    if mask is not None:
        extra = extra.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else extra + mask
    if is_causal:
        extra = extra.masked_fill(~torch.ones(n, m, dtype=torch.bool, device=q.device).tril(m - n), float("-inf"))
    return extra


# --- registration ----------------------------------------------------------------------------------

def build_zoo_pair(cls, config, device, dtype, generator, probabilities=True) -> Implementations:
    """Reference (seeded init) and optimized (loads the reference's state_dict), both in eval mode."""
    reference = cls(**config, path="reference").to(dtype=dtype).reset_parameters(generator).to(device=device).eval()
    optimized = cls(**config, path="optimized").to(device=device, dtype=dtype).eval()
    optimized.load_state_dict(reference.state_dict())
    probs = (lambda s: reference.attention_probs(*s.args, **s.kwargs)) if probabilities else None
    return Implementations(reference=reference, optimized=optimized, probabilities=probs)


def _build(config, device, dtype, generator):
    return build_zoo_pair(BaseAttention, config, device, dtype, generator)


TEST_DIMS = 32


def _samples(n, device, dtype, generator):
    x = torch.randn(2, n, TEST_DIMS, device=device, dtype=dtype, generator=generator)
    keep = torch.ones(2, 1, n, dtype=torch.bool, device=device)
    keep[1, :, n - n // 3:] = False  # batch item 1: the last third of the keys is padding
    additive = torch.zeros(n, n, device=device, dtype=dtype).masked_fill(
        torch.rand(n, n, generator=generator, device=device) < 0.3, float("-inf")).fill_diagonal_(0.0)
    xa = torch.randn(2, max(1, n // 2 + 1), TEST_DIMS, device=device, dtype=dtype, generator=generator)
    return [
        SampleInput((x,), name="plain"),
        SampleInput((x,), dict(mask=keep), name="key_padding_bool"),
        SampleInput((x,), dict(mask=additive), name="additive_float"),
        SampleInput((x,), dict(mask=keep, is_causal=True), name="causal_and_mask"),
        SampleInput((x, xa), name="cross"),
    ]


def _errors(device, dtype, generator):
    errors = token_error_inputs(TEST_DIMS, {
        "head_not_dividing": (dict(dims=TEST_DIMS, head=3, max_dist=16), ValueError, r"dims \(32\) must be divisible by head"),
        "max_dist_zero": (dict(dims=TEST_DIMS, head=4, max_dist=0), ValueError, r"max_dist must be >= 1"),
    })(device, dtype, generator)
    x = torch.randn(2, 5, TEST_DIMS, device=device, dtype=dtype, generator=generator)
    errors.append(ErrorInput(SampleInput((x,), dict(mask=torch.ones(2, 1, 4, dtype=torch.bool, device=device)),
                                         name="mask_wrong_len"), ValueError, r"mask has shape"))
    errors.append(ErrorInput(SampleInput((x,), dict(mask=torch.ones(3, 5, 5, dtype=torch.bool, device=device)),
                                         name="mask_wrong_batch"), ValueError, r"mask has shape"))
    return errors


register(ComponentSpec(
    name="attention.zoo_base",
    input_support=InputSupport(empty_batch=True),  # batch 0 gives an empty output, as torch layers do
    claims=("ZOO-01", "ZOO-03"),
    description="zoo BaseAttention/calculate_attention; reference explicit softmax, optimized SDPA",
    build=_build,
    sample_inputs=_samples,
    error_inputs=_errors,
    default_config=dict(dims=TEST_DIMS, head=4, max_dist=16),
    bench_config=dict(dims=256, head=8, max_dist=512),
    bench_inputs=lambda n, device, dtype, generator: [
        SampleInput((torch.randn(1, n, 256, device=device, dtype=dtype, generator=generator),), name="batch1")],
    test_sizes=(1, 7, 16),
    bench_sizes=(256, 512, 1024, 2048),
    time_exponent={"reference": 2.0, "optimized": 2.0},
    memory_exponent={"reference": 2.0, "optimized": 1.0},
))
