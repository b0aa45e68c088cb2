"""SimpleFAM: the document's "mini version" and a batched, sync-free twin — FAM-05.

Source: "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt), `SimpleFAM(params,
lr=0.001, alpha=0.9, beta=0.99)`. Rule per parameter with a gradient:
  if numel > 1000 and step > 100:  high_ratio = sum |rFFT(g[:1000])|[F//2:] / (sum |rFFT| + 1e-8)
                                   alpha_eff = min(0.98, alpha + 0.05 * high_ratio)
  else alpha_eff = alpha;  exp_avg = alpha_eff * exp_avg + (1 - alpha_eff) * g;  p -= lr * exp_avg.
`beta` is accepted and never used (as written); the sample is the first 1000 elements, not random.

Reference: the document's loop (a 0-d tensor alpha_eff, Python `min` on it: one host sync per
eligible parameter, two with `add_(alpha=tensor)`). Optimized: every eligible sample has length
1000, so one rFFT of a (G, 1000) stack gives all ratios; `torch.where` replaces `min`, and the
updates are `torch._foreach_*`: 0 host syncs. The where/`1 - alpha_eff` are evaluated in the same
float32 arithmetic as the reference's tensor expressions, so the two agree to rounding.
Deviations: print -> logging; arguments checked (also per group, and the parameters: see
impl/reprobench_documents/optim/optimizer_checks.py); sparse gradients raise SparseGradientError; deepcopy/pickle keep
the optimizer's attributes.
"""
from __future__ import annotations

import logging

import torch

from reprobench_documents.optim.fam_reference import check_fam_args
from reprobench_documents.optim.optimizer_checks import CheckedOptimizer, check_dense_gradient, check_number, params_list
from reprobench_documents.optim.fam_runs import OPTIMIZER_INPUT_SUPPORT, OptimizerRun, optimizer_error_inputs, optimizer_samples
from reprobench.registry import ComponentSpec, Implementations, Tolerance, register

log = logging.getLogger(__name__)


def check_simple_group(group: dict) -> None:
    check_number(group["lr"], "lr", 0.0)
    check_number(group["alpha"], "alpha", 0.0, 1.0)
    check_number(group["beta"], "beta", 0.0, 1.0)


class SimpleFAM(CheckedOptimizer):
    """Simplified Frequency-Adaptive Momentum optimizer (the document's code)."""

    def __init__(self, params, lr=0.001, alpha=0.9, beta=0.99):
        params = params_list(params)
        check_fam_args(lr, alpha, beta, eps=0.0, weight_decay=0.0)
        defaults = dict(lr=lr, alpha=alpha, beta=beta)
        super(SimpleFAM, self).__init__(params, defaults)
        log.info("SimpleFAM initialized with lr=%s, alpha=%s", lr, alpha)

    def check_group(self, group):
        check_simple_group(group)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group['params']:
                if p.grad is None:
                    continue
                check_dense_gradient(p.grad, "SimpleFAM")
                state = self.state[p]
                if len(state) == 0:
                    state['step'] = 0
                    state['exp_avg'] = torch.zeros_like(p)
                state['step'] += 1
                exp_avg = state['exp_avg']
                alpha = group['alpha']
                if p.numel() > 1000 and state['step'] > 100:  # only apply FAM to large tensors
                    grad_sample = p.grad.flatten()[:min(1000, p.numel())]
                    freq = torch.fft.rfft(grad_sample.float())
                    power = torch.abs(freq)
                    half = power.shape[0] // 2
                    high_ratio = power[half:].sum() / (power.sum() + 1e-8)
                    effective_alpha = min(0.98, alpha + 0.05 * high_ratio)
                    exp_avg.mul_(effective_alpha).add_(p.grad, alpha=1 - effective_alpha)
                else:
                    exp_avg.mul_(alpha).add_(p.grad, alpha=1 - alpha)
                p.add_(exp_avg, alpha=-group['lr'])
        return loss


class SimpleFAMFast(CheckedOptimizer):
    """SimpleFAM's rule with one batched rFFT per group and foreach updates; 0 host syncs."""

    def __init__(self, params, lr=0.001, alpha=0.9, beta=0.99):
        params = params_list(params)
        check_fam_args(lr, alpha, beta, eps=0.0, weight_decay=0.0)
        super().__init__(params, dict(lr=lr, alpha=alpha, beta=beta))

    def check_group(self, group):
        check_simple_group(group)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                check_dense_gradient(p.grad, "SimpleFAM")
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"], state["exp_avg"] = 0, torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
            alpha = group["alpha"]
            adaptive = [p for p in params if p.numel() > 1000 and self.state[p]["step"] > 100]
            plain = [p for p in params if not (p.numel() > 1000 and self.state[p]["step"] > 100)]
            by_dtype: dict = {}
            for p in adaptive:
                by_dtype.setdefault(p.dtype, []).append(p)
            for dtype, ps in by_dtype.items():
                power = torch.fft.rfft(torch.stack([p.grad.flatten()[:1000] for p in ps]).float()).abs()  # (G, 501)
                ratio = power[:, power.shape[-1] // 2:].sum(-1) / (power.sum(-1) + 1e-8)
                raw = 0.05 * ratio + alpha  # float32, as the reference's tensor expression
                below = raw < 0.98
                alpha_eff = torch.where(below, raw.to(dtype), raw.new_full((), 0.98, dtype=dtype))
                one_minus = torch.where(below, (1 - raw).to(dtype), raw.new_full((), 1 - 0.98, dtype=dtype))
                buffers = [self.state[p]["exp_avg"] for p in ps]
                torch._foreach_mul_(buffers, list(alpha_eff.unbind(0)))
                torch._foreach_addcmul_(buffers, [p.grad for p in ps], list(one_minus.unbind(0)))
            if plain:
                buffers = [self.state[p]["exp_avg"] for p in plain]
                torch._foreach_mul_(buffers, alpha)
                torch._foreach_add_(buffers, [p.grad for p in plain], alpha=1 - alpha)
            if params:
                torch._foreach_add_(params, [self.state[p]["exp_avg"] for p in params], alpha=-group["lr"])
        return loss


# --- registration ---------------------------------------------------------------------------------

DEFAULT_CONFIG = dict(lr=0.01, alpha=0.9, beta=0.99)


def _build(config, device, dtype, generator):
    check_fam_args(config["lr"], config["alpha"], config["beta"], eps=0.0, weight_decay=0.0)

    # the document's rule adapts from step 101 on ("state['step'] > 100")
    return Implementations(*(OptimizerRun(cls, dict(config), adaptive_from=101) for cls in (SimpleFAM, SimpleFAMFast)))


register(ComponentSpec(
    name="optim.simple_fam",
    claims=("FAM-05",),
    description="SimpleFAM as written (per-parameter rFFT, Python min on a tensor) vs one batched rFFT, foreach",
    build=_build,
    sample_inputs=optimizer_samples,
    error_inputs=optimizer_error_inputs(DEFAULT_CONFIG, {
        "negative_lr": (dict(lr=-1.0), ValueError, r"lr must be >= 0"),
        "alpha_above_one": (dict(alpha=1.5), ValueError, r"alpha must be in \[0.0, 1.0\)"),
        "beta_one": (dict(beta=1.0), ValueError, r"beta must be in \[0.0, 1.0\)"),
    }),
    default_config=DEFAULT_CONFIG,
    test_sizes=(2, 101, 104),
    bench_sizes=(110,),
    size_name="steps",
    tolerances={torch.float64: Tolerance(atol=1e-9, rtol=1e-7), torch.float32: Tolerance(atol=1e-5, rtol=1e-4)},
    supports_backward=False,
    input_support=OPTIMIZER_INPUT_SUPPORT,
))
