"""ZOO-01 .. ZOO-07: the attention zoo of "Neural Network Optimizations and Embeddings"
(002_3edd67eb5ef57768.txt): drop-in compatibility, adaptive span cost, MyelinatedLayer's masks,
RelativeForce's memory, Refiner's convergence, IntegratedAttention's windows, and how much computation
the content-dependent gates and jumps really skip (and whether they can be learned)."""
from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from impl.claims.experiment import Outcome, RunContext, combine, experiment, verdict_if
from impl.measure import compare_interleaved, count_flops, count_host_syncs, fake_peak_tensor_bytes, fit_exponent, \
    peak_tensor_bytes, time_callable
from impl.registry import make_generator

MiB = 2 ** 20


def _pair(cls, generator, dtype=torch.float32, **config):
    ref = cls(**config, path="reference").reset_parameters(generator).to(dtype).eval()
    opt = cls(**config, path="optimized").to(dtype).eval()
    opt.load_state_dict(ref.state_dict())
    return ref, opt


def _zoo_modules(dims, heads):
    from impl.attention.zoo.adaptive_span import AdaptiveSpan
    from impl.attention.zoo.base_attention import BaseAttention
    from impl.attention.zoo.integrated import IntegratedAttention
    from impl.attention.zoo.myelinated import MyelinatedLayer
    from impl.attention.zoo.relative_force import RelativeForce

    return {"BaseAttention": BaseAttention(dims, heads, 64), "AdaptiveSpan": AdaptiveSpan(dims, heads, 64),
            "MyelinatedLayer": MyelinatedLayer(dims, heads), "RelativeForce": RelativeForce(dims, heads),
            "IntegratedAttention": IntegratedAttention(dims, heads, win_size=4, max_span=4)}


@experiment("ZOO-01")
def drop_in_replacement(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    dims, heads, n, batch = 32, 4, 6, 2
    mha = nn.MultiheadAttention(dims, heads).eval()
    q, k, v = (torch.randn(n, batch, dims, generator=g) for _ in range(3))  # MHA's default: (seq, batch, dim)
    padding = torch.zeros(batch, n, dtype=torch.bool)
    with torch.no_grad():
        mha_out = mha(q, k, v, key_padding_mask=padding)
    measured, drop_in = {}, 0
    for name, module in _zoo_modules(dims, heads).items():
        module.eval()
        params = list(inspect.signature(module.forward).parameters)
        try:
            with torch.no_grad():
                out = module(q, k, v, key_padding_mask=padding)
            accepted = True
        except (TypeError, ValueError, RuntimeError):
            out, accepted = None, False
        try:  # positional (query, key, value) only, the most lenient MHA-style call
            with torch.no_grad():
                positional = module(q, k, v)
            positional_ok = True
        except (TypeError, ValueError, RuntimeError):
            positional, positional_ok = None, False
        tuple_out = isinstance(out, tuple) and len(out) == 2 and out[0].shape == mha_out[0].shape
        measured[f"{name}_signature"] = "(" + ", ".join(params) + ")"
        measured[f"{name}_accepts_mha_call"] = int(accepted)
        measured[f"{name}_accepts_positional_qkv"] = int(positional_ok)
        measured[f"{name}_returns_output_weights"] = int(tuple_out)
        drop_in += int(accepted and tuple_out)
    measured["mha_signature"] = "(" + ", ".join(inspect.signature(mha.forward).parameters) + ")"
    measured["modules_checked"] = len(_zoo_modules(dims, heads))
    measured["drop_in_count"] = drop_in
    verdict = verdict_if(drop_in >= measured["modules_checked"] / 2)
    return Outcome(
        verdict=verdict, claimed="many [blocks] can be used as drop-in replacements for a standard pytorch multiheadattention block",
        measured=measured,
        rule="holds if at least half of the zoo modules accept nn.MultiheadAttention's call "
             "m(query, key, value, key_padding_mask=...) on its (seq, batch, dim) tensors and return (output, weights) "
             "with MHA's output shape; fails otherwise",
        evidence=f"Called each of the 5 zoo modules exactly as nn.MultiheadAttention(32, 4) is called (seq-first "
                 f"q, k, v of shape ({n}, {batch}, {dims}) plus key_padding_mask); {drop_in} of 5 accepted it and returned "
                 "(output, weights). The document's modules take batch-first x (and xa, mask, kv_cache) and return one tensor.",
        deviations=["BaseAttention/calculate_attention are not in the document; their signatures follow the document's "
                    "calls (super().__init__(dims, head, max_dist), forward(x, xa, mask, kv_cache))."])


@experiment("ZOO-02")
def adaptive_span_cost(ctx: RunContext) -> Outcome:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from impl.attention.zoo.adaptive_span import AdaptiveSpan

    g = make_generator(ctx.seed)
    n = 1024 if ctx.quick else 2048
    dims, heads, ramp = 256, 8, 32
    spans = (0.0625, 0.125, 0.25) if ctx.quick else (0.03125, 0.0625, 0.125, 0.25)
    run_time = 0.08 if ctx.quick else 0.2
    ref, opt = _pair(AdaptiveSpan, g, dims=dims, head=heads, max_dist=n, ramp=ramp, span_init=0.5)
    x = torch.randn(1, n, dims, generator=g)
    measured = {"n": n, "dims": dims, "heads": heads, "ramp": ramp, "pass": "forward, float32, no_grad, 1 thread"}
    # (a) the span mask is differentiable: d loss / d span_scale on the reference at span 0.5
    small = torch.randn(1, 256, dims, generator=g)
    ref(small).square().mean().backward()
    grad = ref.span_scale.grad
    measured["span_scale_grad"] = float(grad)
    differentiable = bool(torch.isfinite(grad)) and float(grad) != 0.0
    # (b) values: optimized (trimmed to the span) == dense reference at n=512
    mid = torch.randn(1, 512, dims, generator=g)
    opt.trim_to_span()
    with torch.no_grad():
        measured["max_abs_diff_vs_reference_n512"] = float((opt(mid) - ref(mid)).abs().max())
    # (c) cost of the attention core (projections excluded: they cost the same in both) against the
    # learned window, and against full attention through SDPA
    import torch.nn.functional as F

    from impl.attention.zoo.adaptive_span import banded_attention

    with torch.no_grad():
        q, k, v = opt.project(x)
        full_ms = time_callable(lambda: F.scaled_dot_product_attention(q, k, v), min_run_time=run_time).median_ms
        full_flops = count_flops(lambda: F.scaled_dot_product_attention(q, k, v))
        windows, times, flops = [], [], []
        for s in spans:
            opt.span_scale.fill_(s)
            window = opt.trim_to_span()

            def core():
                return banded_attention(q, k, v, opt.logit_scale(), block=max(window // 4, 32), halo=window,
                                        soft_fn=lambda i, j: opt.span_mask((i - j).abs().to(q.dtype)))
            windows.append(window)
            times.append(time_callable(core, min_run_time=run_time).median_ms)
            flops.append(count_flops(core))
    fit = fit_exponent(windows, times)
    flop_fit = fit_exponent(windows, flops)
    measured.update({"full_sdpa_core_ms": full_ms, "time_exponent_in_window": fit.exponent, "time_fit_r2": fit.r_squared,
                     "flops_exponent_in_window": flop_fit.exponent})
    for s, w, t, f in zip(spans, windows, times, flops):
        measured[f"span{s:g}_window"] = w
        measured[f"span{s:g}_core_ms"] = t
        measured[f"span{s:g}_flops_over_full"] = f / full_flops
    with torch.no_grad():
        opt.span_scale.fill_(0.125)
        window = opt.trim_to_span()
        cmp = compare_interleaved(
            lambda: F.scaled_dot_product_attention(q, k, v),
            lambda: banded_attention(q, k, v, opt.logit_scale(), block=max(window // 4, 32), halo=window,
                                     soft_fn=lambda i, j: opt.span_mask((i - j).abs().to(q.dtype))),
            rounds=2 if ctx.quick else 3, min_run_time=run_time / 2)
    measured["speedup_vs_full_at_span_0.125"] = cmp.speedup  # interleaved A/B: full SDPA core / span core
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(windows, times, "o-", label="AdaptiveSpan optimized (trimmed)")
    ax.axhline(full_ms, color="gray", ls="--", label="full attention core (SDPA)")
    ax.set_xlabel("learned window ⌈z + R⌉ − 1 (tokens)")
    ax.set_ylabel("attention core forward ms")
    ax.set_title(f"AdaptiveSpan, n={n}, dims={dims}, {heads} heads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(ctx.figure_path("zoo02_span_cost.png"), dpi=110)
    plt.close(fig)
    verdict = combine(verdict_if(differentiable), verdict_if(0.8 <= flop_fit.exponent <= 1.2),
                      verdict_if(measured["speedup_vs_full_at_span_0.125"] > 1.0),
                      verdict_if(measured["max_abs_diff_vs_reference_n512"] <= 1e-4))
    return Outcome(
        verdict=verdict, claimed="Dynamic adjustment of attention span based on content, optimizing computation while "
                                 "preserving modeling capacity",
        measured=measured,
        rule="holds if (a) d loss/d span_scale is finite and nonzero, (b) the attention core's FLOPs vs the learned "
             "window fit an exponent in [0.8, 1.2] (linear in the span; the time exponent is reported beside it), "
             "(c) at span 1/8 of n the core beats full SDPA attention in time, and "
             "(d) the span-restricted path equals the dense reference (max abs diff <= 1e-4, float32); all -> holds, "
             "none -> fails, else partial",
        evidence=f"AdaptiveSpan (Sukhbaatar soft ramp, R={ramp}) at n={n}, dims={dims}, {heads} heads, batch 1, forward "
                 f"float32, attention core (projections excluded): FLOPs exponent in the learned window "
                 f"{flop_fit.exponent:.2f}, time exponent {fit.exponent:.2f} (r²={fit.r_squared:.2f}); at span 1/8 "
                 f"{measured['speedup_vs_full_at_span_0.125']:.2f}x full SDPA; span gradient {float(grad):.3g}.",
        figures=["zoo02_span_cost.png"],
        deviations=["The document gives only __init__; the soft ramp mask (Sukhbaatar et al. 2019), |i-j| distance, "
                    "sharpen = logits x (1 + temp_scale (1 - span)) and ramp R are our reading.",
                    "The optimized path's window is trimmed to the learned span by trim_to_span() (one host read, "
                    "outside forward), as the paper trims per batch; forward itself is sync-free."])


@experiment("ZOO-03")
def myelinated_masks(ctx: RunContext) -> Outcome:
    from impl.attention.zoo.myelinated import MyelinatedLayer

    g = make_generator(ctx.seed)
    dims, heads, n = 64, 4, 32
    seeds = range(3 if ctx.quick else 8)
    measured = {"dims": dims, "heads": heads, "n": n, "inputs": len(seeds)}
    for label, bool_mask in (("as_written", False), ("bool_mask_fixed", True)):
        module = MyelinatedLayer(dims, heads, layerA=3, sparsity_threshold=0.5, bool_mask=bool_mask,
                                 path="reference").reset_parameters(make_generator(ctx.seed)).eval()
        worst_row, masked_mass, masked_keys = 0.0, 0.0, 0
        for _ in seeds:
            x = torch.randn(2, n, dims, generator=g)
            with torch.no_grad():
                probs, allowed = module.attention_probs(x)
            allowed = allowed.expand_as(probs)
            worst_row = max(worst_row, float((probs.sum(-1) - 1).abs().max()))
            masked_mass = max(masked_mass, float((probs * ~allowed).sum(-1).max()))
            masked_keys += int((~allowed).sum())
        measured[f"{label}_max_row_sum_error"] = worst_row
        measured[f"{label}_max_weight_on_masked_keys_per_row"] = masked_mass
        measured[f"{label}_masked_query_key_pairs"] = masked_keys
    doc = MyelinatedLayer(dims, heads, path="reference").reset_parameters(make_generator(ctx.seed)).eval()
    x = torch.randn(2, n, dims, generator=g)
    with torch.no_grad():
        measured["doc_threshold_0.1_fraction_keys_masked_at_init"] = float(
            1 - doc.predict_node_importance(x, 0).mean())
        measured["reference_host_syncs_per_forward"] = count_host_syncs(lambda: doc(x, seed=0))
    rows_ok = measured["as_written_max_row_sum_error"] <= 1e-5
    masks_ok = measured["as_written_max_weight_on_masked_keys_per_row"] == 0.0
    return Outcome(
        verdict=combine(verdict_if(rows_ok), verdict_if(masks_ok)),
        claimed="MyelinatedLayer: node-importance gating, policy-driven layer jumps, working memory; every attention row "
                "sums to 1 over unmasked keys; masks do what they say",
        measured=measured,
        rule="holds if, in the document's MyelinatedLayer, every row of the attention it forms sums to 1 (|err| <= 1e-5) "
             "AND keys its masks exclude (node importance 0, causal, user mask) receive exactly 0 weight; one of two -> "
             "partial",
        evidence=f"Layer-0 attention of MyelinatedLayer(dims={dims}, {heads} heads, threshold 0.5 so that about half "
                 f"the tokens are unimportant) on {len(seeds)} random (2, {n}, {dims}) inputs: rows sum to 1, but the "
                 f"float 0/1 node mask is added to the scores, so a row puts up to "
                 f"{measured['as_written_max_weight_on_masked_keys_per_row']:.2f} of its weight on unimportant keys; "
                 "with a bool mask (attention.zoo_myelinated_boolmask) that weight is 0.",
        deviations=["Random jumps use pre-drawn uniforms from an explicit generator and inverse-CDF sampling instead of "
                    "torch.rand_like / torch.multinomial on the global RNG.",
                    "Prints are behind debug=True (logging); compute_attention keeps its default is_causal=True as "
                    "written; calculate_attention (not in the document) folds causality into a given mask because SDPA "
                    "refuses both, and reads a (B, 1, n) mask as (B, 1, 1, n)."])


@experiment("ZOO-04")
def relative_force_memory(ctx: RunContext) -> Outcome:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from impl.attention.zoo.base_attention import BaseAttention
    from impl.attention.zoo.relative_force import RelativeForce

    dims, heads, n = 256, 8, 512

    def fake_peak(make_module, size):
        def make_call():
            module = make_module()
            x = torch.randn(1, size, dims)

            def call():
                with torch.no_grad():
                    return module(x)
            return call
        return fake_peak_tensor_bytes(make_call).peak_bytes

    sizes = (256, n) if ctx.quick else (64, 128, 256, n)
    ref_sweep = [fake_peak(lambda: RelativeForce(dims, heads, path="reference"), s) for s in sizes]
    opt_sweep = [fake_peak(lambda: RelativeForce(dims, heads, path="optimized"), s) for s in sizes]
    peaks = {"reference": ref_sweep[-1], "optimized": opt_sweep[-1],
             "standard attention (SDPA)": fake_peak(lambda: BaseAttention(dims, heads, path="optimized"), n)}
    g = make_generator(ctx.seed)
    ref, opt = _pair(RelativeForce, g, dims=dims, heads=heads)
    x_real = torch.randn(1, n, dims, generator=g)
    with torch.no_grad():
        real_opt_peak = peak_tensor_bytes(lambda: opt(x_real)).peak_bytes
    measured = {"n": n, "dims": dims, "heads": heads, "batch": 1, "pass": "forward, float32, no_grad",
                "reference_peak_MiB": peaks["reference"] / MiB, "optimized_peak_MiB": peaks["optimized"] / MiB,
                "optimized_peak_real_MiB": real_opt_peak / MiB,
                "standard_attention_peak_MiB": peaks["standard attention (SDPA)"] / MiB,
                "optimized_over_reference_peak": peaks["optimized"] / peaks["reference"],
                "reference_over_standard_peak": peaks["reference"] / peaks["standard attention (SDPA)"]}
    measured["reference_peak_exponent_in_n"] = fit_exponent(sizes, ref_sweep).exponent
    measured["optimized_peak_exponent_in_n"] = fit_exponent(sizes, opt_sweep).exponent
    # values: optimized == reference (real run; the reference at n=512 needs ~5 GiB, so a smaller n)
    n_val = 64 if ctx.quick else 192
    x = torch.randn(2, n_val, dims, generator=g)
    with torch.no_grad():
        measured[f"max_abs_diff_float32_n{n_val}"] = float((opt(x) - ref(x)).abs().max())
        cmp = compare_interleaved(lambda: ref(x), lambda: opt(x), rounds=1 if ctx.quick else 2, min_run_time=0.05)
    measured[f"speedup_optimized_vs_reference_n{n_val}"] = cmp.speedup
    # the benchmark size itself, when the machine has room for the reference's ~5 GiB (full runs only)
    import os
    free_bytes = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if not ctx.quick and free_bytes > 3 * peaks["reference"]:
        with torch.no_grad():
            measured[f"max_abs_diff_float32_n{n}"] = float((opt(x_real) - ref(x_real)).abs().max())
    # documented-code defects, measured
    ref64, _ = _pair(RelativeForce, make_generator(ctx.seed), torch.float64, dims=32, heads=4)
    xs = torch.randn(2, 10, 32, generator=g, dtype=torch.float64)
    ref64(xs).sum().backward()
    grad = ref64.direction_modulator.grad  # (heads, dims): equal across dims if only Σ_d M[h, d] matters
    measured["direction_modulator_grad_spread_within_head"] = float((grad - grad.mean(1, keepdim=True)).abs().max()
                                                                    / grad.abs().max())
    fixed, _ = _pair(RelativeForce, make_generator(ctx.seed), torch.float64, dims=32, heads=4, directional=True)
    fixed(xs).sum().backward()
    grad = fixed.direction_modulator.grad
    measured["corrected_variant_grad_spread_within_head"] = float((grad - grad.mean(1, keepdim=True)).abs().max()
                                                                  / grad.abs().max())
    pad = torch.zeros(2, 1, 10, dtype=torch.float64)
    pad[:, :, 7:] = float("-inf")
    xs2 = xs.clone()
    xs2[:, 7:] += 5.0
    with torch.no_grad():
        measured["masked_tokens_leak_into_real_outputs"] = float((ref64(xs2, pad)[:, :7] - ref64(xs, pad)[:, :7]).abs().max())
    try:
        doc_runs = True
        e = torch.randn(1, 5, 5, 8)
        torch.einsum('bstn,hd->bshtn', e, torch.randn(2, 8)) * torch.exp(-e.norm(dim=-1, keepdim=True))
    except RuntimeError:
        doc_runs = False
    measured["documented_forward_runs_as_written"] = int(doc_runs)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(["reference\n(as written)", "optimized\n(factored)", "standard attention\n(SDPA)"],
           [v / MiB for v in peaks.values()], color=["tab:red", "tab:green", "tab:gray"])
    ax.set_yscale("log")
    ax.set_ylabel("peak tensor MiB (log)")
    ax.set_title(f"RelativeForce forward, n={n}, dims={dims}, {heads} heads")
    fig.tight_layout()
    fig.savefig(ctx.figure_path("zoo04_relative_force_peak.png"), dpi=110)
    plt.close(fig)
    ratio_ok = measured["optimized_over_reference_peak"] <= 0.25
    values_ok = max(measured[f"max_abs_diff_float32_n{n_val}"], measured.get(f"max_abs_diff_float32_n{n}", 0.0)) <= 1e-4
    return Outcome(
        verdict=combine(verdict_if(doc_runs), verdict_if(ratio_ok and values_ok),
                        verdict_if(measured["direction_modulator_grad_spread_within_head"] > 1e-6)),
        claimed="RelativeForce: force-field + multi-hop topological attention over [batch, seq, seq, dim] force tensors",
        measured=measured,
        rule="three checks: (1) the documented forward runs as written; (2) an implementation with equal values "
             "(max abs diff <= 1e-4, float32, at n=192 and, in full runs with >15 GiB free, at n=512) needs <= 25% of "
             "the reference's tensor peak at n=512, dims=256, 8 heads; "
             "(3) the direction modulator is direction-sensitive (its gradient varies across dims within a head, "
             "relative spread > 1e-6). All hold -> holds, none -> fails, else partial",
        evidence=f"Tensor peak (FakeTensorMode, forward) at n={n}: reference {peaks['reference'] / MiB:.0f} MiB, "
                 f"optimized {peaks['optimized'] / MiB:.1f} MiB ({100 * measured['optimized_over_reference_peak']:.1f}%), "
                 f"standard SDPA attention {peaks['standard attention (SDPA)'] / MiB:.1f} MiB. The documented forward "
                 "fails to broadcast; after the fix its einsum collapses each head's direction to Σ_d M[h, d] (gradient "
                 "identical across dims); attention.zoo_relative_force_directional restores the dot product.",
        figures=["zoo04_relative_force_peak.png"],
        deviations=["exp(-force_magnitudes).unsqueeze(2) (the document's (B,n,H,n,d) x (B,n,n,1) does not broadcast).",
                    "force_field.sum(-1).transpose(1, 2) to the commented [batch, heads, seq, seq] layout.",
                    "A 3-D mask is read as (B, 1, n, n); a bool mask is refused (adding it would not mask)."])


@experiment("ZOO-05")
def refiner_converges(ctx: RunContext) -> Outcome:
    from impl.attention.zoo.refiner import RefinerRun, span_environment

    states, target, learners = 7, 4, 16
    steps = 1500 if ctx.quick else 3000
    config = dict(states=states, actions=3, alpha=0.3, gamma=0.9, epsilon=0.2, episode_len=10)
    rewards, next_state, optimal = span_environment(states, target)
    uniforms = torch.rand(learners, steps, 3, generator=make_generator(ctx.seed), dtype=torch.float64)
    opt = RefinerRun(**config, path="optimized")
    ref = RefinerRun(**config, path="reference")
    q = opt(rewards, next_state, uniforms)
    q_ref = ref(rewards, next_state, uniforms[:2])
    converged = (q.argmax(-1) == optimal).all(-1)
    checkpoints = [s for s in (250, 500, 1000, 1500, 2000, 3000) if s <= steps]
    first = {}
    for s in checkpoints:
        first[s] = float((opt(rewards, next_state, uniforms[:, :s]).argmax(-1) == optimal).all(-1).double().mean())
    cmp = compare_interleaved(lambda: ref(rewards, next_state, uniforms[:, :200]),
                              lambda: opt(rewards, next_state, uniforms[:, :200]), rounds=1, min_run_time=0.05)
    measured = {"states": states, "actions": 3, "learners": learners, "steps": steps, **config,
                "fraction_learners_optimal": float(converged.double().mean()),
                "max_abs_diff_optimized_vs_reference": float((q[:2] - q_ref).abs().max()),
                "speedup_batched_vs_dict_200_steps": cmp.speedup}
    measured.update({f"fraction_optimal_after_{s}_steps": v for s, v in first.items()})
    return Outcome(
        verdict=verdict_if(measured["fraction_learners_optimal"] >= 0.9 and measured["max_abs_diff_optimized_vs_reference"] == 0.0),
        claimed="Q-learning to dynamically refine attention parameters, learning optimal attention spans through "
                "exploration and exploitation",
        measured=measured,
        rule="holds if >= 90% of independent ε-greedy learners (fixed generator) end with the optimal greedy span "
             "action in every state of the toy span task, and the batched implementation equals the dict reference exactly",
        evidence=f"{learners} Refiner learners, {steps} steps on a {states}-state span task (actions shrink/keep/grow, "
                 f"reward -|span - {target}|/S): {100 * measured['fraction_learners_optimal']:.0f}% reach the optimal policy.",
        deviations=["The document gives only __init__ (states, actions, alpha, gamma, epsilon, R = {}); the update, "
                    "ε-greedy choice and the toy environment are the textbook method (Watkins 1989)."])


@experiment("ZOO-06")
def integrated_windows(ctx: RunContext) -> Outcome:
    from impl.attention.base import explicit_attention
    from impl.attention.zoo.base_attention import BaseAttention
    from impl.attention.zoo.integrated import IntegratedAttention

    g = make_generator(ctx.seed)
    n_small = 96
    ref, opt = _pair(IntegratedAttention, g, torch.float64, dims=64, head=4, max_dist=n_small, win_size=n_small,
                     max_span=16, ramp=8)
    x = torch.randn(2, n_small, 64, generator=g, dtype=torch.float64)
    local = ref.local_attn
    with torch.no_grad():
        q, k, v = local.project(x)
        full = local.out(local.merge(explicit_attention(q, k, v)))
        diff_ref = float((ref.slide_win(x, n_small, 16, local.span_scale) - full).abs().max())
        diff_opt = float((opt.slide_win(x, n_small, 16, opt.local_attn.span_scale) - full).abs().max())
    n = 1024 if ctx.quick else 2048
    dims, heads, win, span = 256, 8, 64, 96
    ref32, opt32 = _pair(IntegratedAttention, g, dims=dims, head=heads, max_dist=128, win_size=win, max_span=span,
                         ramp=32, span_init=0.5)
    base = BaseAttention(dims, heads, path="optimized").eval()
    xb = torch.randn(1, n, dims, generator=g)
    s = opt32.local_attn.span_scale
    with torch.no_grad():
        windowed_diff = float((opt32.slide_win(xb[:, :512], win, span, s) - ref32.slide_win(xb[:, :512], win, span, s)).abs().max())
        local_flops = count_flops(lambda: opt32.slide_win(xb, win, span, s))
        full_flops = count_flops(lambda: base(xb))
        total_flops = count_flops(lambda: opt32(xb, seed=1))
        local_ms = time_callable(lambda: opt32.slide_win(xb, win, span, s), min_run_time=0.1).median_ms
        full_ms = time_callable(lambda: base(xb), min_run_time=0.1).median_ms
        total_ms = time_callable(lambda: opt32(xb, seed=1), min_run_time=0.1).median_ms
    measured = {"max_abs_diff_reference_vs_full_float64": diff_ref, "max_abs_diff_optimized_vs_full_float64": diff_opt,
                "n_equality": n_small, "max_abs_diff_windowed_optimized_vs_reference_float32": windowed_diff,
                "n": n, "dims": dims, "heads": heads, "win_size": win, "max_span": span,
                "local_flops_over_full_attention": local_flops / full_flops,
                "integrated_flops_over_full_attention": total_flops / full_flops,
                "local_ms": local_ms, "full_sdpa_ms": full_ms, "integrated_ms": total_ms}
    equal = diff_ref <= 1e-10 and diff_opt <= 1e-10 and windowed_diff <= 1e-4
    return Outcome(
        verdict=verdict_if(equal),
        claimed="Combines sliding window attention with adaptive spans and global context awareness; equals full "
                "attention when the window covers the sequence",
        measured=measured,
        rule="holds if slide_win with one window covering the sequence (span 1, max_dist >= n) equals full attention "
             "(max abs diff <= 1e-10, float64) in both implementations, and the banded optimized windows equal the "
             "reference's window loop (<= 1e-4, float32)",
        evidence=f"Window = sequence (n={n_small}): max diff to full attention {diff_ref:.1e} (reference), {diff_opt:.1e} "
                 f"(optimized). At n={n}, win {win}, span {span}: local branch {local_flops / full_flops:.2f}x the FLOPs of "
                 f"full attention, but the whole layer (global branch is full attention) "
                 f"{total_flops / full_flops:.2f}x — the hybrid costs more than full attention, not less.",
        deviations=["The document gives only signatures; slide_win's key range [s - span_len, e + span_len), the "
                    "additive content update of keys/values, and skipping the global branch by decide_jump are our reading."])


@experiment("ZOO-07")
def skipped_computation(ctx: RunContext) -> Outcome:
    from impl.attention.zoo.integrated import IntegratedAttention
    from impl.attention.zoo.myelinated import MyelinatedLayer

    g = make_generator(ctx.seed)
    dims, heads, n, batch = 128, 4, 128, 2
    seeds = range(4 if ctx.quick else 12)
    measured = {"dims": dims, "heads": heads, "n": n, "batch": batch, "inputs": len(seeds)}
    for label, threshold in (("doc_threshold_0.1", 0.1), ("threshold_0.5", 0.5)):
        ref, opt = _pair(MyelinatedLayer, make_generator(ctx.seed), dims=dims, head=heads, layerA=3,
                         sparsity_threshold=threshold)
        skipped, ref_flops, syncs = 0, 0, 0
        for seed in seeds:
            x = torch.randn(batch, n, dims, generator=g)
            with torch.no_grad():
                ref_flops += count_flops(lambda: ref(x, seed=seed))
                skipped += sum(action != "attended" for action in ref.last_trace)
                syncs += count_host_syncs(lambda: ref(x, seed=seed))
        with torch.no_grad():
            opt_flops = count_flops(lambda: opt(x, seed=0)) * len(seeds)
            opt_syncs = count_host_syncs(lambda: opt(x, seed=0))
        measured[f"myelinated_{label}_fraction_layers_skipped"] = skipped / (3 * len(seeds))
        measured[f"myelinated_{label}_reference_flops_over_sync_free"] = ref_flops / opt_flops
        measured[f"myelinated_{label}_reference_syncs_per_forward"] = syncs / len(seeds)
        measured[f"myelinated_{label}_sync_free_syncs_per_forward"] = opt_syncs
    iref, iopt = _pair(IntegratedAttention, make_generator(ctx.seed), dims=dims, head=heads, max_dist=32, win_size=32,
                       max_span=32, ramp=8, span_init=0.5)
    skipped_global, ref_flops = 0.0, 0
    for seed in seeds:
        x = torch.randn(batch, n, dims, generator=g)
        with torch.no_grad():
            ref_flops += count_flops(lambda: iref(x, seed=seed))
        skipped_global += iref.last_skipped["global"]
    with torch.no_grad():
        measured["integrated_reference_flops_over_sync_free"] = ref_flops / (count_flops(lambda: iopt(x, seed=0)) * len(seeds))
    measured["integrated_fraction_global_branch_skipped"] = skipped_global / len(seeds)
    # can the skip decisions be learned? gradients reaching the deciders after one backward
    ref, _ = _pair(MyelinatedLayer, make_generator(ctx.seed), dims=dims, head=heads, layerA=3, sparsity_threshold=0.5)
    ref(torch.randn(batch, n, dims, generator=g), seed=0).square().mean().backward()
    iref(torch.randn(batch, n, dims, generator=g), seed=0).square().mean().backward()
    deciders = {"myelinated_policy_net": ref.policy_net, "myelinated_node_predictors": ref.node_predictors,
                "integrated_key_update_predictor": iref.key_update_predictor, "integrated_policy_net": iref.policy_net}
    learnable = 0
    for name, module in deciders.items():
        grad_norm = sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)
        measured[f"grad_abs_sum_{name}"] = grad_norm
        learnable += int(grad_norm > 0)
    measured["deciders_receiving_gradient"] = learnable
    skips = max(1 - measured["myelinated_threshold_0.5_reference_flops_over_sync_free"],
                1 - measured["integrated_reference_flops_over_sync_free"]) > 0.05
    return Outcome(
        verdict=combine(verdict_if(skips), verdict_if(learnable > 0)),
        claimed="Content-dependent key/value updates (should_update_key) and dynamic layer skipping (decide_jump) "
                "learn when to skip unnecessary computation",
        measured=measured,
        rule="two checks: (1) the gates/jumps skip > 5% of the FLOPs of the always-compute twin on random inputs; "
             "(2) the skip decisions are learnable: some decider (policy nets, node predictors, update predictors) "
             "receives a nonzero gradient. both -> holds, neither -> fails, one -> partial",
        evidence=f"MyelinatedLayer (3 layers) and IntegratedAttention at dims={dims}, n={n}, batch {batch}, "
                 f"{len(seeds)} random inputs/seeds: FLOPs of the skipping reference over the sync-free twin "
                 f"{measured['myelinated_threshold_0.5_reference_flops_over_sync_free']:.2f} / "
                 f"{measured['integrated_reference_flops_over_sync_free']:.2f}; the skipping costs "
                 f"{measured['myelinated_threshold_0.5_reference_syncs_per_forward']:.0f} host syncs per forward; "
                 f"{learnable} of {len(deciders)} deciders get any gradient (hard thresholds and sampled jumps).",
        deviations=["Jump randomness pre-drawn from an explicit generator (inverse-CDF in place of multinomial)."])
