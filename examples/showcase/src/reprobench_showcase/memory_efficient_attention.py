"""memory-efficient-attention-pytorch 0.1.6, judged from its README.

README (github.com/lucidrains/memory-efficient-attention-pytorch): "Implementation of a memory
efficient multi-head attention as proposed in the paper, Self-attention Does Not Need O(n^2) Memory
[Rabe & Staats 2021]. In addition, the module will take care of masking, causal masking, as well as
cross attention." `memory_efficient = True` is the chunked path; "(can be turned off to test against
normal attention)". Its examples run 65536 tokens with q_bucket_size 1024 and k_bucket_size 2048.

Components (reference: plain softmax attention over the full score matrix, reference_attention.py):
- `showcase.mea_causal`: the README's first example, `Attention(causal=True, memory_efficient=True)`.
- `showcase.mea_cross`: the README's second example, cross attention with a key mask.
- `showcase.mea_kernel`: the chunked function itself on q, k, v (the paper's claim is about attention
  given q, k, v; the module's projections are O(n) whatever the attention does).
Claims: MEA-* here (those that need code) and in claims.toml.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from memory_efficient_attention_pytorch import Attention, memory_efficient_attention
from reprobench_showcase.reference_attention import key_padding_mask, masked_softmax_attention, uniform_init_
from reprobench_showcase.validation import check_key_mask, check_tensor
from reprobench import (ComponentSpec, Implementations, Outcome, SampleInput, Tolerance, claim, decide,
                        experiment, make_generator, register)

SOURCE = "memory-efficient-attention-pytorch 0.1.6 README"
TEST_CONFIG = dict(dim=16, heads=2, dim_head=8, q_bucket_size=3, k_bucket_size=4)  # buckets that do not divide n
README_CONFIG = dict(dim=512, heads=8, dim_head=64, q_bucket_size=1024, k_bucket_size=2048)

TOLERANCES = {torch.float64: Tolerance(atol=1e-9, rtol=1e-7), torch.float32: Tolerance(atol=2e-5, rtol=2e-4)}
# The chunked path divides by (sum of exponentials + eps), eps = 1e-8, and detaches each chunk's running
# max: deliberate (eps keeps a fully masked row from 0/0), and it moves the output by up to 1e-8 relative
# (within the default tolerances) and the gradients by O(eps), more than reprobench's float64 gradient
# check allows (10 x atol 1e-9).
EPS_GRADIENTS = {"gradients_match_reference": {torch.float64: Tolerance(
    atol=1e-7, rtol=1e-6, reason="memory_efficient_attention normalises by (sum of exponentials + eps), eps=1e-8, "
                                 "and detaches the running max, so its float64 gradients differ by O(eps)")}}


def _causal_allowed(i: int, j: int, device) -> torch.Tensor:
    """Query a may see key b when b <= a (the top-left aligned lower triangle, as torch's SDPA is_causal)."""
    return torch.ones(i, j, dtype=torch.bool, device=device).tril()


class PlainAttention(nn.Module):
    """Multi-head attention with the package's parameter names (to_q, to_kv, to_out: one state_dict)."""

    def __init__(self, *, dim, heads, dim_head, causal, device=None, dtype=None, **_buckets):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.causal = heads, causal
        self.to_q = nn.Linear(dim, inner, bias=False, device=device, dtype=dtype)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False, device=device, dtype=dtype)
        self.to_out = nn.Linear(inner, dim, bias=False, device=device, dtype=dtype)

    def heads_of(self, t):  # (b, n, h*d) -> (b, h, n, d)
        b, n, _ = t.shape
        return t.reshape(b, n, self.heads, -1).transpose(1, 2)

    def attention(self, x, context=None, mask=None):
        weight = self.to_q.weight
        check_tensor("x", x, rank=3, dtype=weight.dtype, device=weight.device, last_dim=weight.shape[1])
        context = x if context is None else context
        check_tensor("context", context, rank=3, dtype=weight.dtype, device=weight.device, last_dim=weight.shape[1])
        if context.shape[0] != x.shape[0]:
            raise ValueError(f"context: expected batch {x.shape[0]} (x's), got shape {tuple(context.shape)}")
        if mask is not None:
            check_key_mask("mask", mask, context.shape[0], context.shape[1], x.device)
        q = self.heads_of(self.to_q(x))
        k, v = (self.heads_of(t) for t in self.to_kv(context).chunk(2, dim=-1))
        allowed = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=x.device)
        if self.causal:
            allowed = _causal_allowed(q.shape[-2], k.shape[-2], x.device)
        if mask is not None:  # (b, j) key mask, True = attend
            allowed = allowed & mask[:, None, None, :]
        return masked_softmax_attention(q, k, v, allowed)

    def forward(self, x, context=None, mask=None):
        out, _ = self.attention(x, context, mask)  # (b, h, n, d)
        b, h, n, d = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, n, h * d))


def build_module(causal: bool):
    def build(config, device, dtype, generator) -> Implementations:
        reference = uniform_init_(PlainAttention(**config, causal=causal, dtype=dtype), generator).to(device).eval()
        # Built on 'meta' so the package's own initialisation draws nothing from the global RNG; its
        # values come from the reference's state_dict.
        with torch.device("meta"):
            optimized = Attention(**config, causal=causal, memory_efficient=True)
        optimized = optimized.to_empty(device=device).to(dtype).eval()
        optimized.load_state_dict(reference.state_dict())

        def probabilities(sample):
            _, probs = reference.attention(*sample.args, **sample.kwargs)
            mask = sample.kwargs.get("mask")
            allowed = torch.ones_like(probs, dtype=torch.bool)
            if causal:
                allowed = allowed & _causal_allowed(probs.shape[-2], probs.shape[-1], probs.device)
            if mask is not None:
                allowed = allowed & mask[:, None, None, :]
            return probs, allowed

        return Implementations(reference=reference, optimized=optimized, probabilities=probabilities)
    return build


def token_inputs(dim: int, cross: bool):
    def sample_inputs(n, device, dtype, generator):
        def draw(batch, length):  # on the CPU from the CPU generator, then moved: the same values on any device
            return torch.randn(batch, length, dim, dtype=dtype, generator=generator).to(device)
        if not cross:
            return [SampleInput((draw(2, n),), name="self")]
        # Context longer than the queries, padded at the end of some batch rows, as in the README.
        context_length = n + 3
        return [SampleInput((draw(2, n),), dict(context=draw(2, context_length),
                                                mask=key_padding_mask(2, context_length, device)), name="cross_masked")]
    return sample_inputs


register(ComponentSpec(
    name="showcase.mea_causal",
    claims=(),
    description="memory-efficient-attention-pytorch 0.1.6 Attention(causal, memory_efficient) vs plain softmax",
    build=build_module(causal=True),
    sample_inputs=token_inputs(TEST_CONFIG["dim"], cross=False),
    default_config=TEST_CONFIG,
    test_sizes=(1, 5, 12),  # shorter than a bucket, not a multiple of either bucket, a multiple of both
    bench_config=README_CONFIG,
    bench_inputs=token_inputs(README_CONFIG["dim"], cross=False),
    bench_sizes=(1024, 2048, 4096, 8192),
    tolerances=TOLERANCES,
    test_tolerances=EPS_GRADIENTS,
    time_exponent={"reference": 2.0, "optimized": 2.0},
    memory_exponent={"reference": 2.0, "optimized": 1.0},
))

register(ComponentSpec(
    name="showcase.mea_cross",
    claims=(),
    description="memory-efficient-attention-pytorch 0.1.6 cross attention with a key mask vs plain softmax",
    build=build_module(causal=False),
    sample_inputs=token_inputs(TEST_CONFIG["dim"], cross=True),
    default_config=TEST_CONFIG,
    test_sizes=(1, 5, 12),
    bench_config=README_CONFIG,
    bench_inputs=token_inputs(README_CONFIG["dim"], cross=True),
    bench_sizes=(1024, 2048, 4096, 8192),
    tolerances=TOLERANCES,
    test_tolerances=EPS_GRADIENTS,
    time_exponent={"reference": 2.0, "optimized": 2.0},
    memory_exponent={"reference": 2.0, "optimized": 1.0},
))


# --- the chunked function on q, k, v -----------------------------------------------------------------

def _reference_kernel(q, k, v, *, causal):
    check_tensor("q", q, rank=4)
    check_tensor("k", k, rank=4, dtype=q.dtype, device=q.device, last_dim=q.shape[-1])
    check_tensor("v", v, rank=4, dtype=q.dtype, device=q.device, like=k)
    if k.shape[:2] != q.shape[:2]:
        raise ValueError(f"k: expected batch and heads {tuple(q.shape[:2])} (q's), got shape {tuple(k.shape)}")
    allowed = _causal_allowed(q.shape[-2], k.shape[-2], q.device) if causal else torch.ones(
        q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device)
    return masked_softmax_attention(q, k, v, allowed)[0]


def build_kernel(config, device, dtype, generator) -> Implementations:
    causal = config["causal"]
    optimized = functools.partial(memory_efficient_attention, causal=causal,
                                  q_bucket_size=config["q_bucket_size"], k_bucket_size=config["k_bucket_size"])

    def probabilities(sample):
        q, k, v = sample.args
        allowed = _causal_allowed(q.shape[-2], k.shape[-2], q.device)
        return masked_softmax_attention(q, k, v, allowed if causal else torch.ones_like(allowed))[1], (
            allowed if causal else torch.ones_like(allowed))

    return Implementations(reference=functools.partial(_reference_kernel, causal=causal), optimized=optimized,
                           probabilities=probabilities)


def qkv_inputs(heads: int, dim_head: int):
    def sample_inputs(n, device, dtype, generator):
        q, k, v = (torch.randn(1, heads, n, dim_head, dtype=dtype, generator=generator).to(device) for _ in range(3))
        return [SampleInput((q, k, v), name="qkv")]
    return sample_inputs


register(ComponentSpec(
    name="showcase.mea_kernel",
    claims=(),
    description="memory_efficient_attention(q, k, v, causal) of memory-efficient-attention-pytorch 0.1.6",
    build=build_kernel,
    sample_inputs=qkv_inputs(2, 8),
    default_config=dict(causal=True, q_bucket_size=3, k_bucket_size=4),
    test_sizes=(1, 5, 12),
    bench_config=dict(causal=True, q_bucket_size=1024, k_bucket_size=2048),
    bench_inputs=qkv_inputs(8, 64),
    bench_sizes=(1024, 2048, 4096, 8192),
    tolerances=TOLERANCES,
    test_tolerances=EPS_GRADIENTS,
    time_exponent={"reference": 2.0, "optimized": 2.0},
    memory_exponent={"reference": 2.0, "optimized": 1.0},
))


# --- claims that need code ---------------------------------------------------------------------------

claim("MEA-01", "memory_efficient = False is normal attention, to test the memory-efficient path against: both "
                "paths give the same result, with masking, causal masking and cross attention.", source=SOURCE)


@experiment("MEA-01")
def both_paths_agree(ctx) -> Outcome:
    """The package's two paths, on one module, for the README's cases: causal self attention, cross
    attention with a key mask, and causal cross attention (queries and context of different lengths)."""
    dtype, config = torch.float64, dict(TEST_CONFIG)
    generator = make_generator(ctx.seed)
    tol = TOLERANCES[dtype]
    n, context_length = 12, 20
    x = torch.randn(2, n, config["dim"], dtype=dtype, generator=generator).to(ctx.device)
    context = torch.randn(2, context_length, config["dim"], dtype=dtype, generator=generator).to(ctx.device)
    mask = key_padding_mask(2, context_length, ctx.device)
    cases = {"causal_self": (True, dict()), "cross_masked": (False, dict(context=context, mask=mask)),
             "causal_cross": (True, dict(context=context))}
    decisions, measured = [], {}
    for label, (causal, kwargs) in cases.items():
        with torch.device("meta"):
            layer = Attention(**config, causal=causal)
        layer = layer.to_empty(device=ctx.device).to(dtype).eval()
        uniform_init_(layer, generator)
        with torch.no_grad():
            normal = layer(x, memory_efficient=False, **kwargs)
            chunked = layer(x, memory_efficient=True, **kwargs)
        outside = int((~torch.isclose(chunked, normal, atol=tol.atol, rtol=tol.rtol)).sum())
        measured[f"{label}_elements_outside_tolerance"] = outside
        measured[f"{label}_max_abs_difference"] = float((chunked - normal).abs().max())
        decisions.append(decide(f"{label}_elements_outside_tolerance", outside, at_most=0))
    return Outcome(
        claimed="memory_efficient=True gives what memory_efficient=False (normal attention) gives, with masking, "
                "causal masking and cross attention",
        measured=measured,
        rule=f"Deterministic counts, each holds if 0: output elements of one Attention module (float64, n={n}, "
             f"context {context_length}, buckets q={config['q_bucket_size']} k={config['k_bucket_size']}) where the "
             f"two paths differ by more than atol={tol.atol} + rtol={tol.rtol} * |normal|, per case.",
        evidence="; ".join(d.describe() for d in decisions),
        decisions=decisions)
