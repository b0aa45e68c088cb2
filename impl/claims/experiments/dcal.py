"""Experiments for DCAL-01 … DCAL-11 ("Dual Cross-Attention Model Optimizations", seeds/001_128d0a2e45dbf7cd.txt).

Sizes. The document's setting is DeiT-Small (dim 384, 12 blocks, 6 heads) fine-tuned at 448×448,
i.e. N = 785 tokens. Where that fits the 40 s budget on one core we use it (rollout benchmark,
parameter bytes, the PWCA block); a full training step is measured under FakeTensorMode with the
DeiT-Small width at 448×448 but 2 blocks (every quantity compared is per block, so the ratio does
not depend on depth); timing whole-model evaluation uses `vit_mini_patch16` (dim 96, 12 blocks,
3 heads, 224×224, N = 197), which keeps DeiT-Small@448's N / dim ≈ 2 — the ratio that decides
how much of an evaluation the rollout is. Each experiment's evidence names its sizes.
"""
from __future__ import annotations

import functools
import statistics
import warnings

import torch

from impl.claims.experiment import (Outcome, RunContext, at_least, combine, experiment, exponent_matches, verdict_if,
                                    within_factor)
from impl.measure import (Comparison, compare_interleaved, count_flops, fake_peak_tensor_bytes, fit_exponent,
                          peak_tensor_bytes, time_callable, time_interleaved)
from impl.registry import make_generator

DEIT_S = "deit_small_patch16_224"
MINI = "vit_mini_patch16"


def one_thread(fn):
    """Run the experiment on one intra-op thread (restored afterwards): the budgets are for one core, and
    on a shared machine tiny ops with several OpenMP threads spend their time waiting for each other."""
    @functools.wraps(fn)
    def run(ctx: RunContext) -> Outcome:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(ctx)
        finally:
            torch.set_num_threads(threads)

    return run


def _model(ctx: RunContext, seed_offset: int = 0, dtype=torch.float32, **config):
    from impl.models.dcal.model import DualAttentionModel

    model = DualAttentionModel(**config).reset_parameters(make_generator(ctx.seed + seed_offset))
    return model.to(device=ctx.device, dtype=dtype)


def _images(ctx: RunContext, batch: int, side: int, seed_offset: int = 0, dtype=torch.float32):
    g = make_generator(ctx.seed + 100 + seed_offset)
    return torch.randn(batch, 3, side, side, generator=g, dtype=dtype).to(ctx.device)


def _param_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


# --- DCAL-01: parameter storage ---------------------------------------------------------------------

@experiment("DCAL-01")
@one_thread
def pwca_parameter_storage(ctx: RunContext) -> Outcome:
    from impl.models.dcal.model import DualAttentionModel
    from impl.models.dcal.pwca import copy_attention

    with torch.device("meta"):  # parameter counts need no storage
        model = DualAttentionModel(DEIT_S, num_classes=200, task_type="fgvc")
    persistent = _param_bytes(model)
    attn_persistent = sum(_param_bytes(b.attn) for b in model.blocks)
    # Measured: the bytes the "before" allocates per block when it copies SA's weights.
    sa = _model(ctx, backbone_name=DEIT_S, depth=1).blocks[0].attn
    copy_bytes_per_block = peak_tensor_bytes(lambda: copy_attention(sa)).retained_bytes
    copies = copy_bytes_per_block * len(model.blocks)  # one copy per block lives until backward
    model_reduction = copies / (persistent + copies)
    attention_reduction = copies / (attn_persistent + copies)
    verdict = combine(at_least(model_reduction, 0.5), at_least(attention_reduction, 0.5))
    return Outcome(
        verdict=verdict,
        claimed="PWCA reusing SA's qkv directly: 50% reduction in parameter storage during training",
        measured={"model_param_MB_after": persistent / 2**20, "model_param_MB_before": (persistent + copies) / 2**20,
                  "copied_MB_per_training_step": copies / 2**20, "copied_bytes_per_block": copy_bytes_per_block,
                  "reduction_whole_model": model_reduction, "reduction_attention_modules": attention_reduction},
        rule="per level, holds if the reduction >= 0.8 × 50%; both levels hold -> holds, one -> partial",
        evidence=(f"DualAttentionModel on DeiT-Small (448×448, 200 classes, GLCA block + heads): {persistent / 2**20:.1f} MB of "
                  f"parameters; the 'before' PWCA allocates a copy of each block's attention (measured "
                  f"{copy_bytes_per_block / 2**20:.2f} MB/block, 12 live until backward). Removing them saves "
                  f"{model_reduction:.1%} of the model's parameter storage, {attention_reduction:.1%} of the attention "
                  f"modules' — the 50% holds only for the attention modules PWCA touches."),
    )


# --- DCAL-02: PWCA time ----------------------------------------------------------------------------

@experiment("DCAL-02")
@one_thread
def pwca_time(ctx: RunContext) -> Outcome:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from impl.models.dcal.pwca import PairwiseCrossAttention, copy_attention
    from impl.models.dcal.vit import init_vit_

    # The paper's two settings: Re-ID 256×128 (N = 129) and FGVC 448×448 (N = 785), patch 16.
    sizes = (129, 785) if ctx.quick else (50, 129, 785)
    # many short alternating rounds: on a shared machine the median of many A/B blocks is what survives
    rounds, min_run = (3, 0.05) if ctx.quick else (5, 0.2)
    g = make_generator(ctx.seed)
    before = PairwiseCrossAttention(384, 6, weights="copy", kernel="sdpa")
    init_vit_(before, g)
    after = PairwiseCrossAttention(384, 6, weights="shared", kernel="sdpa")
    after.load_state_dict(before.state_dict())
    before, after = before.to(ctx.device).train(), after.to(ctx.device).train()
    savings, speedups, copy_share = [], [], []
    sa = after.sa
    copy_ms = time_callable(lambda: copy_attention(sa), min_run_time=0.05 if ctx.quick else 0.2).median_ms
    for n in sizes:
        x1 = torch.randn(1, n, 384, generator=g).to(ctx.device)
        x2 = torch.randn(1, n, 384, generator=g).to(ctx.device)
        torch.testing.assert_close(after(x1, x2), before(x1, x2))  # no speed figure without equal outputs

        def step(module):  # a training-mode forward (autograd recording): where the copy happens
            return lambda: module(x1, x2)

        # Median of per-pair ratios (each pair an interleaved A/B): a drifting background load on this
        # shared machine moves both halves of a pair alike, so pairs cancel it better than pooled medians.
        pairs = [compare_interleaved(step(before), step(after), rounds=1, min_run_time=min_run, device=ctx.device)
                 for _ in range(rounds)]
        speedup = statistics.median(p.speedup for p in pairs)
        speedups.append(speedup)
        savings.append(1 - 1 / speedup)
        # the same question from two separate timings: the copy's share of a 'before' step
        after_ms = statistics.median(p.candidate.median_ms for p in pairs)
        copy_share.append(copy_ms / (copy_ms + after_ms))
    saved = dict(zip(sizes, savings))
    headline = saved[785]
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot(sizes, [100 * s for s in savings], "o-", label="measured (interleaved A/B)")
    ax.plot(sizes, [100 * s for s in copy_share], "s--", label="copy time / step time")
    ax.axhline(30, color="r", ls="--", label="claimed ~30%")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("tokens per image N")
    ax.set_ylabel("time saved by weight sharing (%)")
    ax.set_title("PWCA layer forward (train mode), dim 384, 6 heads", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(ctx.figure_path("dcal02_pwca_time.png"), dpi=120)
    plt.close(fig)
    measured = {f"time_saved_N{n}": s for n, s in zip(sizes, savings)}
    measured.update({f"speedup_N{n}": s for n, s in zip(sizes, speedups)})
    measured.update({f"copy_share_N{n}": s for n, s in zip(sizes, copy_share)})
    measured["weight_copy_ms"] = copy_ms
    return Outcome(
        verdict=within_factor(max(headline, 1e-9), 0.30, 2.0),
        claimed="~30% faster PWCA computation (no weight copying)",
        measured=measured,
        rule="holds if the time saved at the claims' size (DeiT-Small, 448×448 FGVC: N=785) lies within a factor 2 of "
             "30% (15%–60%); other sizes are reported, not judged",
        evidence=(f"One PWCA layer (DeiT-Small width: dim 384, 6 heads, batch 1, float32), training-mode forward, copy-then-attend "
                  f"vs shared weights, both through SDPA, median of {rounds} interleaved A/B pairs at N = {', '.join(map(str, sizes))}; "
                  f"outputs equal. Copying 2.3 MB of weights ({copy_ms:.2f} ms, O(D²)) against O(N·D² + N²·D) of "
                  f"attention: the saving is {saved[129]:.1%} at N=129 (Re-ID) and {headline:.1%} at N=785 (FGVC, copy share "
                  f"{copy_share[-1]:.1%}); it shrinks as N grows. This machine is shared, so single A/B ratios are noisy; the copy share is the "
                  f"steadier estimate."),
        figures=["dcal02_pwca_time.png"],
    )


# --- DCAL-03: memory overall ------------------------------------------------------------------------

def _training_step_peak(weights: str, side: int, depth: int, fake: bool) -> int:
    def make_call():
        from impl.models.dcal.model import DualAttentionModel

        model = DualAttentionModel(DEIT_S, num_classes=200, img_size=side, pwca_weights=weights, depth=depth).train()
        x, y = torch.randn(1, 3, side, side), torch.randn(1, 3, side, side)

        def call():
            out = model(x, y)
            sum(v.sum() for v in out.values()).backward()

        return call

    return (fake_peak_tensor_bytes(make_call) if fake else peak_tensor_bytes(make_call())).peak_bytes


@experiment("DCAL-03")
@one_thread
def memory_overall(ctx: RunContext) -> Outcome:
    from impl.models.dcal.model import DualAttentionModel

    side, depth = (224, 1) if ctx.quick else (448, 2)
    with torch.device("meta"):
        params = _param_bytes(DualAttentionModel(DEIT_S, num_classes=200, img_size=side, depth=depth))
    # quick: real tensors at 224×224 (same bytes as fake mode there); full: FakeTensorMode at 448×448
    peak = {w: _training_step_peak(w, side, depth, fake=not ctx.quick) for w in ("copy", "shared")}
    total = {w: params + peak[w] for w in peak}  # parameters + peak tensors of one step (grads, activations, copies)
    reduction = 1 - total["shared"] / total["copy"]
    return Outcome(
        verdict=at_least(reduction, 0.25),
        claimed="Memory usage: 25% reduction overall from eliminating weight copying",
        measured={"total_MB_before": total["copy"] / 2**20, "total_MB_after": total["shared"] / 2**20,
                  "peak_step_MB_before": peak["copy"] / 2**20, "peak_step_MB_after": peak["shared"] / 2**20,
                  "param_MB": params / 2**20, "reduction": reduction, "image_side": side, "blocks": depth},
        rule="holds if 1 - (params + step peak after) / (params + step peak before) >= 0.8 × 25%",
        evidence=(f"One training step (SA + GLCA + PWCA forward, backward of the summed logits), batch 1, DeiT-Small width at "
                  f"{side}×{side} with {depth} block(s) (per-block quantities, so the ratio does not depend on depth), "
                  f"peak live tensor bytes ({'real tensors' if ctx.quick else 'FakeTensorMode'}) plus parameters: the weight copies are "
                  f"{(peak['copy'] - peak['shared']) / 2**20:.1f} MB against {total['copy'] / 2**20:.0f} MB, "
                  f"a {reduction:.1%} reduction."),
    )


# --- DCAL-04: PWCA semantics -----------------------------------------------------------------------

@experiment("DCAL-04")
@one_thread
def pwca_semantics(ctx: RunContext) -> Outcome:
    from impl.models.dcal.pwca import PairwiseCrossAttention
    from impl.models.dcal.vit import init_vit_

    g = make_generator(ctx.seed)
    n = 50 if ctx.quick else 197
    ref = PairwiseCrossAttention(384, 6, weights="copy", kernel="explicit")
    init_vit_(ref, g)
    ref = ref.to(torch.float64)
    opt = PairwiseCrossAttention(384, 6, weights="shared", kernel="sdpa").to(torch.float64)
    opt.load_state_dict(ref.state_dict())
    x1 = torch.randn(2, n, 384, generator=g, dtype=torch.float64)
    x2 = torch.randn(2, n, 384, generator=g, dtype=torch.float64)
    perm = torch.randperm(n, generator=g)
    with torch.no_grad():
        sa = ref.self_attention(x1)
        same = max((m(x1, x1.clone()) - sa).abs().max().item() for m in (ref, opt))
        permuted = max((m(x1, x2[:, perm]) - m(x1, x2)).abs().max().item() for m in (ref, opt))
        depends_on_x2 = (opt(x1, x2) - sa).abs().max().item()
    # The document's snippet, literally: chunk (B, N, 3D) then cat on dim 2 = the feature axis.
    k1 = ref.sa.qkv(x1).chunk(3, dim=-1)[1]
    literal_width = torch.cat([k1, k1], dim=2).shape[-1]
    ok = same <= 1e-10 and permuted <= 1e-10 and depends_on_x2 > 1e-6
    return Outcome(
        verdict=verdict_if(ok),
        claimed="PWCA: queries of image 1 attend to the concatenated keys and values of images 1 and 2",
        measured={"max_abs_diff_pwca_same_image_vs_sa": same, "max_abs_diff_image2_tokens_permuted": permuted,
                  "max_abs_diff_pwca_vs_sa_distinct_image": depends_on_x2,
                  "literal_snippet_key_width": literal_width, "dim": 384},
        rule="holds if PWCA(x, x) == SA(x) and PWCA(x1, perm(x2)) == PWCA(x1, x2) within 1e-10 (float64), both twins",
        evidence=(f"float64, dim 384, 6 heads, batch 2, N={n}: PWCA with image 2 = image 1 equals SA to {same:.1e}; "
                  f"permuting image-2 tokens changes nothing ({permuted:.1e}). Read literally, the document's "
                  f"`torch.cat([k1, k2], dim=2)` on the (B, N, D) chunks concatenates features (width {literal_width}), "
                  f"not tokens; we concatenate tokens."),
        deviations=["PWCA concatenates keys/values on the token axis of the per-head layout (B, H, N, hd); the "
                    "document's snippet applies cat(dim=2) to (B, N, D) chunks, which is the feature axis."],
    )


# --- DCAL-05: rollout cost --------------------------------------------------------------------------

@experiment("DCAL-05")
@one_thread
def rollout_cost(ctx: RunContext) -> Outcome:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from impl.models.dcal.rollout import random_attentions, rollout_cls_optimized, rollout_cls_reference

    g = make_generator(ctx.seed)
    n_sizes, l_sizes = (33, 65, 129, 257), (2, 4, 8, 16)
    flops = {"reference": [], "optimized": []}
    for n in n_sizes:
        maps = random_attentions(4, 1, 6, n, generator=g)
        flops["reference"].append(count_flops(lambda: rollout_cls_reference(maps)))
        flops["optimized"].append(count_flops(lambda: rollout_cls_optimized(maps)))
    flops_l = []
    for depth in l_sizes:
        maps = random_attentions(depth, 1, 6, 65, generator=g)
        flops_l.append(count_flops(lambda: rollout_cls_reference(maps)))
    fit_n_ref = fit_exponent(n_sizes, flops["reference"])
    fit_n_opt = fit_exponent(n_sizes, flops["optimized"])
    fit_l_ref = fit_exponent(l_sizes, flops_l)
    # Benchmark up to the document's size, N = 785 tokens (448×448, patch 16), L = 12 DeiT-Small layers.
    bench_sizes = (197,) if ctx.quick else (197, 393, 785)
    n_bench = bench_sizes[-1]
    bench, roofline = {}, {}
    for n in bench_sizes:
        maps = random_attentions(12, 1, 6, n, generator=g).to(ctx.device)
        torch.testing.assert_close(rollout_cls_optimized(maps), rollout_cls_reference(maps), atol=1e-6, rtol=1e-4)
        # Roofline: the chain must read every map of layers 1..L-1 at least once, so one streaming read of
        # those bytes (a plain sum) bounds it from below, and full / read-once bounds the speedup from above.
        # All three are timed in the same interleaved rounds, so a noisy neighbour hits them alike.
        t = time_interleaved({"full": lambda: rollout_cls_reference(maps), "chain": lambda: rollout_cls_optimized(maps),
                              "read_once": lambda: maps[:-1].sum()},
                             rounds=1 if ctx.quick else 5, min_run_time=0.05 if ctx.quick else 0.2, device=ctx.device)
        bench[n] = Comparison(baseline=t["full"], candidate=t["chain"])
        roofline[n] = t["read_once"]
        del maps
    cmp, read_once = bench[n_bench], roofline[n_bench]
    read_bytes = 11 * 6 * n_bench * n_bench * 4  # layers 1..11 of (1, 6, N, N) float32: the last needs one row
    ceiling = cmp.baseline.median_s / read_once.median_s
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8, 3))
    ax.loglog(n_sizes, flops["reference"], "o-", label=f"full product (N^{fit_n_ref.exponent:.2f})")
    ax.loglog(n_sizes, flops["optimized"], "s-", label=f"CLS-row chain (N^{fit_n_opt.exponent:.2f})")
    ax.set_xticks(n_sizes, [str(n) for n in n_sizes])
    ax.minorticks_off()
    ax.set_xlabel("tokens N (L = 4, 6 heads)")
    ax.set_ylabel("FLOPs")
    ax.legend()
    ax2.plot(bench_sizes, [bench[n].speedup for n in bench_sizes], "o-")
    ax2.set_xlabel("tokens N (L = 12, 6 heads, float32, 1 thread)")
    ax2.set_ylabel("time: full / CLS-row chain")
    fig.tight_layout()
    fig.savefig(ctx.figure_path("dcal05_rollout_flops.png"), dpi=120)
    plt.close(fig)
    verdict = combine(exponent_matches(fit_n_ref.exponent, 3.0), exponent_matches(fit_l_ref.exponent, 1.0))
    return Outcome(
        verdict=verdict,
        claimed="Attention rollout costs O(L × N³) per GLCA forward pass",
        measured={"flop_exponent_N_full": fit_n_ref.exponent, "r2_N_full": fit_n_ref.r_squared,
                  "flop_exponent_L_full": fit_l_ref.exponent, "r2_L_full": fit_l_ref.r_squared,
                  "flop_exponent_N_cls_chain": fit_n_opt.exponent,
                  f"bench_N{n_bench}_L12_full_ms": cmp.baseline.median_ms,
                  f"bench_N{n_bench}_L12_cls_chain_ms": cmp.candidate.median_ms,
                  f"bench_N{n_bench}_L12_speedup": cmp.speedup,
                  f"bench_N{n_bench}_L12_read_once_ms": read_once.median_ms,
                  "read_once_GB_per_s": read_bytes / read_once.median_s / 1e9,
                  f"bench_N{n_bench}_L12_speedup_ceiling": ceiling,
                  "chain_time_over_read_once": cmp.candidate.median_s / read_once.median_s,
                  "issue_target_speedup": 20.0,
                  **{f"bench_N{n}_L12_speedup": bench[n].speedup for n in bench_sizes[:-1]}},
        rule="holds if the full product's FLOP exponents are 3 ± 0.15 in N and 1 ± 0.15 in L",
        evidence=(f"FLOPs (torch flop counter) of the documented full-matrix rollout over N = {n_sizes} (L = 4) and "
                  f"L = {l_sizes} (N = 65): N^{fit_n_ref.exponent:.2f}, L^{fit_l_ref.exponent:.2f} — as documented. "
                  f"But GLCA reads only the CLS row, which a vector chain gives in O(L·N²) (N^{fit_n_opt.exponent:.2f}): "
                  f"at N={n_bench}, L=12, 6 heads, float32, one thread it takes {cmp.candidate.median_ms:.0f} ms vs "
                  f"{cmp.baseline.median_ms:.0f} ms ({cmp.speedup:.1f}×, timed interleaved), equal values. The chain "
                  f"is memory-bound (it reads the L·H·N² maps once), so the ratio grows about linearly with N: "
                  f"one plain streaming read of the {read_bytes / 2**20:.0f} MiB it must read takes "
                  f"{read_once.median_ms:.1f} ms ({read_bytes / read_once.median_s / 1e9:.1f} GB/s), so no "
                  f"implementation that reads the maps can beat {ceiling:.1f}× here; the chain takes "
                  f"{cmp.candidate.median_s / read_once.median_s:.2f}× that read. The benchmark target of ≥ 20× "
                  f"is {'met' if cmp.speedup >= 20 else 'not met'} in this run."),
        figures=["dcal05_rollout_flops.png"],
    )


# --- DCAL-06: cache speedup -------------------------------------------------------------------------

@experiment("DCAL-06")
@one_thread
def cache_speedup(ctx: RunContext) -> Outcome:
    from impl.models.dcal.rollout import rollout_cls_reference

    side, depth = (112, 4) if ctx.quick else (224, 12)
    rounds, min_run = (3, 0.02) if ctx.quick else (6, 0.02)
    config = dict(backbone_name=MINI, num_classes=200, img_size=side, depth=depth, top_k_ratio=0.1)
    measured = {}
    with torch.no_grad():
        for rollout in ("full", "cls_chain"):
            plain = _model(ctx, rollout_impl=rollout, **config).eval()
            # max_size=1 and two alternating batches: every lookup misses (the distinct-batch case).
            cached = _model(ctx, rollout_impl=rollout, cache_attention_rollout=True, cache_size=1, **config).eval()
            batches = [_images(ctx, 2, side, i) for i in range(2)]

            def alternate(model):
                state = {"i": 0}  # per model, so each one strictly alternates

                def call():
                    state["i"] ^= 1
                    return model(batches[state["i"]])
                return call

            rep = compare_interleaved(lambda: plain(batches[0]), lambda: cached(batches[0]), rounds=rounds,
                                      min_run_time=min_run, device=ctx.device)
            cached.clear_attention_cache()
            dist = compare_interleaved(alternate(plain), alternate(cached), rounds=rounds, min_run_time=min_run,
                                       device=ctx.device)
            measured[f"speedup_repeated_{rollout}"] = rep.speedup
            measured[f"speedup_distinct_{rollout}"] = dist.speedup
            measured[f"distinct_hit_rate_{rollout}"] = cached.get_cache_stats()["hit_rate"]
    # Upper bound at the document's size: the share of evaluation FLOPs the rollout is (Amdahl), counted on
    # the meta device (shapes only, nothing allocated): DeiT-Small, 448×448, batch 1, full-product rollout.
    from impl.models.dcal.model import DualAttentionModel

    with torch.device("meta"), torch.no_grad():
        model = DualAttentionModel(DEIT_S, num_classes=200, rollout_impl="full").eval()
        eval_flops = count_flops(lambda: model(torch.empty(1, 3, 448, 448)))
        rollout_flops = count_flops(lambda: rollout_cls_reference(torch.empty(12, 1, 6, 785, 785)))
    share = rollout_flops / eval_flops
    measured.update({"rollout_flop_share_deit_s_448": share, "amdahl_bound_speedup_deit_s_448": 1 / (1 - share)})
    with torch.device("meta"), torch.no_grad():  # the same share at the timed size
        small = DualAttentionModel(rollout_impl="full", **config).eval()
        small_share = (count_flops(lambda: rollout_cls_reference(torch.empty(depth, 2, 3, small.pos_embed.shape[1],
                                                                              small.pos_embed.shape[1])))
                       / count_flops(lambda: small(torch.empty(2, 3, side, side))))
    measured["rollout_flop_share_timed_size"] = small_share
    # A hit can remove at most the rollout's share of the work, so the timed speedup (noisy on a shared
    # machine) is capped by that FLOP bound before it is compared with the claim.
    headline = min(measured["speedup_repeated_full"], 1 / (1 - share))
    return Outcome(
        verdict=at_least(headline, 1.6),
        claimed="Rollout caching: up to 60% faster evaluation on repeated patterns",
        measured=measured,
        rule="'60% faster' read as a 1.6× speedup; holds if min(timed eval speedup on a repeated batch with the documented "
             "full-product rollout and statistics-hash cache, FLOP bound 1/(1 − rollout share) at DeiT-S@448) >= 0.8 × 1.6",
        evidence=(f"Eval forward of DualAttentionModel ({MINI}: dim 96, {depth} blocks, 3 heads, {side}×{side}, batch 2, "
                  f"float32; N/dim as DeiT-S@448), cache on vs off, timed interleaved. Repeated batch: "
                  f"{headline:.2f}× with the full rollout, {measured['speedup_repeated_cls_chain']:.2f}× with the CLS-row "
                  f"chain; distinct batches (every lookup a miss): {measured['speedup_distinct_full']:.2f}× / "
                  f"{measured['speedup_distinct_cls_chain']:.2f}×. At DeiT-S@448 the full rollout is {share:.0%} of eval "
                  f"FLOPs, so no cache can exceed {1 / (1 - share):.2f}× there — and the CLS-row chain removes that share "
                  f"without a cache."),
    )


# --- DCAL-07: cache correctness ---------------------------------------------------------------------

@experiment("DCAL-07")
@one_thread
def cache_correctness(ctx: RunContext) -> Outcome:
    from hypothesis import HealthCheck, find, settings, strategies as st
    from hypothesis.errors import NoSuchExample

    from impl.models.dcal.rollout_cache import (TRANSFORMS, ExactRolloutCache, StatsHashRolloutCache, agrees,
                                                cached_vs_recomputed, derived_pair)

    space = st.tuples(st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 12)),
                      st.integers(0, 10**6), st.sampled_from(TRANSFORMS))
    search = settings(max_examples=40 if ctx.quick else 200, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
    found = {}
    warnings.filterwarnings("ignore", message=r"std\(\): degrees of freedom")  # 1-element maps in the search
    for label, cls in (("stats", StatsHashRolloutCache), ("exact", ExactRolloutCache)):
        try:
            found[label] = find(space, lambda case, cls=cls: not agrees(*cached_vs_recomputed(cls, *derived_pair(*case))),
                                settings=search)
        except NoSuchExample:
            found[label] = None
    # Model level: the same batch in another order (a shuffled loader) hits the previous batch's entry.
    side = 16
    config = dict(backbone_name="vit_micro_patch4", num_classes=5, img_size=side, top_k_ratio=0.25)
    x = _images(ctx, 4, side, dtype=torch.float64)
    order = torch.tensor([1, 2, 3, 0])
    with torch.no_grad():
        plain = _model(ctx, dtype=torch.float64, **config).eval()
        stats = _model(ctx, dtype=torch.float64, cache_attention_rollout=True, **config).eval()
        stats(x)
        wrong = (stats(x[order])["glca_logits"] - plain(x[order])["glca_logits"]).abs().max().item()
        model_hit = stats.get_cache_stats()["hits"]
        stats.clear_attention_cache()
        stats(x[:1])
        duplicated_shape = tuple(stats(torch.cat([x[:1], x[:1]]))["glca_logits"].shape)
    # "Memory efficient": what a correct key costs to hold at DeiT-S@448 (maps of one image).
    exact_entry_mb = 12 * 6 * 785 * 785 * 4 / 2**20
    counterexample = found["stats"]
    describe = "none" if counterexample is None else (
        f"L,B,H,N={counterexample[0]}, seed {counterexample[1]}, second input = {counterexample[2]} of the first")
    return Outcome(
        verdict=verdict_if(counterexample is None),
        claimed="Cache key = hash of per-layer attention statistics (mean, std, ...), 'memory efficient'; a cache must "
                "never return a result that differs from recomputation",
        measured={"stats_cache_counterexample": describe,
                  "exact_cache_counterexample": "none" if found["exact"] is None else str(found["exact"]),
                  "model_reordered_batch_cache_hits": model_hit, "model_reordered_batch_glca_logit_error": wrong,
                  "model_duplicated_batch_output_shape": str(duplicated_shape),
                  "exact_cache_entry_MB_deit_s_448_per_image": exact_entry_mb},
        rule="holds if a hypothesis search (min-example) finds no pair of inputs where the cached rollout differs from "
             "recomputation (allclose 1e-10) or has another shape",
        evidence=(f"Hypothesis searched pairs (first, second) over L≤4, B≤3, H≤3, N≤12 with the second independent, equal, "
                  f"batch-reordered, token-permuted, row-swapped or batch-duplicated. Documented cache: minimal "
                  f"counterexample {describe} (every statistic is permutation-invariant). In the model, the same 4 images "
                  f"reordered hit the cache and GLCA logits are off by {wrong:.2f}; a batch [x, x] after [x] returns "
                  f"logits of shape {duplicated_shape}. The exact cache (equality-checked) has none, but its entry holds "
                  f"the maps: {exact_entry_mb:.0f} MB per image at DeiT-S@448."),
    )


# --- DCAL-08: LRU and statistics --------------------------------------------------------------------

@experiment("DCAL-08")
@one_thread
def cache_lru_and_stats(ctx: RunContext) -> Outcome:
    side = 16
    config = dict(backbone_name="vit_micro_patch4", num_classes=5, img_size=side, top_k_ratio=0.25)
    batches = [_images(ctx, 2, side, i) for i in range(5)]
    sequence = [0, 1, 0, 2, 3, 1, 0, 4, 4, 2, 0, 3, 3, 1, 2] * (1 if ctx.quick else 4)
    results = {}
    for kind in ("stats", "exact"):
        model = _model(ctx, cache_attention_rollout=True, cache_kind=kind, cache_size=3, **config).eval()
        lru, expect, max_seen = [], {"hits": 0, "misses": 0, "evictions": 0}, 0
        with torch.no_grad():
            for i in sequence:
                model(batches[i])
                if i in lru:
                    expect["hits"] += 1
                    lru.remove(i)
                else:
                    expect["misses"] += 1
                    if len(lru) == 3:
                        lru.pop(0)
                        expect["evictions"] += 1
                lru.append(i)
                max_seen = max(max_seen, model.get_cache_stats()["cache_size"])
        stats = model.get_cache_stats()
        exact = all(stats[k] == expect[k] for k in expect) and max_seen <= 3
        model.clear_attention_cache()
        cleared = model.get_cache_stats()["cache_size"] == 0 == model.get_cache_stats()["hits"]
        results[kind] = dict(stats=stats, expect=expect, exact=exact and cleared, max_seen=max_seen)
    ok = all(r["exact"] for r in results.values())
    s = results["stats"]
    return Outcome(
        verdict=verdict_if(ok),
        claimed="LRU-style cache with configurable size limits; hit/miss statistics (get_cache_stats, clear_attention_cache)",
        measured={"lookups": len(sequence), "hits": s["stats"]["hits"], "misses": s["stats"]["misses"],
                  "evictions": s["stats"]["evictions"], "expected_hits": s["expect"]["hits"],
                  "expected_misses": s["expect"]["misses"], "max_cache_size_seen": s["max_seen"], "max_size": 3,
                  "exact_cache_counters_match": results["exact"]["exact"]},
        rule="holds if, for both caches, hits/misses/evictions equal a model LRU's exactly, the size never exceeds "
             "max_size, and clear_attention_cache empties it",
        evidence=(f"{len(sequence)} eval forwards over 5 distinct batches (vit_micro, 16×16) with cache_size=3: counters "
                  f"{s['stats']['hits']}/{s['stats']['misses']}/{s['stats']['evictions']} (hits/misses/evictions) equal the "
                  f"model LRU's; size peaked at {s['max_seen']}. Distinct random batches never collide in the statistics "
                  f"key, so the counters are right here; DCAL-07 shows inputs where a 'hit' is wrong."),
    )


# --- DCAL-09: compatibility -------------------------------------------------------------------------

@experiment("DCAL-09")
@one_thread
def checkpoint_compatibility(ctx: RunContext) -> Outcome:
    side = 16
    config = dict(backbone_name="vit_micro_patch4", num_classes=5, img_size=side, top_k_ratio=0.25)
    before = _model(ctx, dtype=torch.float64, pwca_weights="copy", **config).train()
    after = _model(ctx, seed_offset=1, dtype=torch.float64, pwca_weights="shared", **config).train()
    keys_equal = list(before.state_dict()) == list(after.state_dict())
    missing = after.load_state_dict(before.state_dict(), strict=False)
    x, y = _images(ctx, 2, side, 0, torch.float64), _images(ctx, 2, side, 1, torch.float64)
    a, b = before(x, y), after(x, y)
    logits_diff = max((a[k] - b[k]).abs().max().item() for k in a)
    cached = _model(ctx, dtype=torch.float64, cache_attention_rollout=True, **config).eval()
    plain = _model(ctx, dtype=torch.float64, **config).eval()
    disabled = _model(ctx, dtype=torch.float64, cache_attention_rollout=False, **config).eval()
    with torch.no_grad():
        off_diff = (disabled(x)["glca_logits"] - plain(x)["glca_logits"]).abs().max().item()
        cached(x)
        on_diff = (cached(x[[1, 0]])["glca_logits"] - plain(x[[1, 0]])["glca_logits"]).abs().max().item()
    ok = keys_equal and not missing.missing_keys and not missing.unexpected_keys and logits_diff <= 1e-10
    return Outcome(
        verdict=verdict_if(ok and off_diff == 0.0),
        claimed="Existing model checkpoints load without modification; default behaviour unchanged (caching can be disabled)",
        measured={"state_dict_keys_equal": keys_equal, "missing_keys": len(missing.missing_keys),
                  "unexpected_keys": len(missing.unexpected_keys), "max_logit_diff_before_vs_after": logits_diff,
                  "cache_disabled_max_diff": off_diff, "cache_enabled_reordered_batch_max_diff": on_diff},
        rule="holds if before/after state_dicts have identical keys, load strictly, give equal logits (1e-10, float64, "
             "training mode with PWCA), and disabling the cache gives bit-identical outputs",
        evidence=(f"vit_micro DualAttentionModel, float64: the 'before' (copy) and 'after' (shared) PWCA add no parameters, so "
                  f"checkpoints are interchangeable and logits agree to {logits_diff:.1e}. With the cache disabled outputs "
                  f"are bit-identical; enabled (the document's recommendation) they are not transparent: a reordered "
                  f"batch differs by {on_diff:.2f} (DCAL-07)."),
    )


# --- DCAL-10: uncertainty weighting -----------------------------------------------------------------

@experiment("DCAL-10")
@one_thread
def uncertainty_weighting(ctx: RunContext) -> Outcome:
    from impl.models.dcal.uncertainty_loss import UncertaintyWeightedLoss

    values = {"sa_loss": 0.5, "glca_loss": 2.0, "pwca_loss": 4.0}
    loss_fn = UncertaintyWeightedLoss(3).to(torch.float64)
    opt = torch.optim.SGD(loss_fn.parameters(), lr=0.5)
    steps = 200 if ctx.quick else 400
    for _ in range(steps):
        opt.zero_grad()
        out = loss_fn({k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()})
        out["total_loss"].backward()
        opt.step()
    weights = loss_fn.get_current_weights()
    weighted = [weights[f"{k}_weight"] * v for k, v in values.items()]  # exp(-s_i) L_i: 1 at the optimum
    spread = max(weighted) / min(weighted)
    reported = sorted(weights) == sorted(f"{k}_weight" for k in values)
    return Outcome(
        verdict=verdict_if(reported and spread <= 1.01),
        claimed="Uncertainty-weighted loss (Kendall et al.) balances the SA, GLCA and PWCA losses automatically; weights reported",
        measured={**{k: w for k, w in weights.items()}, "weighted_loss_max_over_min": spread, "sgd_steps": steps},
        rule="holds if get_current_weights reports one weight per task and, trained on fixed losses, the weighted "
             "losses exp(−s_i)·L_i agree within 1% (the stationary point s_i = log L_i)",
        evidence=(f"Form ½Σ(exp(−s_i)L_i + s_i) (Kendall et al. 2018, as the DCAL paper writes it). Trained on fixed losses "
                  f"0.5 / 2 / 4 for {steps} SGD steps the weights go to 1/L_i ({', '.join(f'{w:.3f}' for w in weights.values())}) "
                  f"and the weighted losses agree to a ratio of {spread:.4f}: balanced, each task scaled by its inverse loss."),
        deviations=["The document gives no formula; we use ½Σ(exp(−s)L + s) with s = log σ², the form in the DCAL paper."],
    )


# --- DCAL-11: evaluation path and query selection ----------------------------------------------------

@experiment("DCAL-11")
@one_thread
def evaluation_path(ctx: RunContext) -> Outcome:
    from impl.models.dcal.glca import num_selected
    from impl.models.dcal.rollout import rollout_cls_optimized

    side = 112 if ctx.quick else 224
    config = dict(backbone_name=MINI, num_classes=200, img_size=side, top_k_ratio=0.1, depth=2)
    model = _model(ctx, **config)
    x, y = _images(ctx, 1, side, 0), _images(ctx, 1, side, 1)
    with torch.no_grad():
        model.eval()
        eval_keys = sorted(model(x, y))
        eval_flops_pair = count_flops(lambda: model(x, y))
        eval_flops_single = count_flops(lambda: model(x))
        model.train()
        train_keys = sorted(model(x, y))
        train_flops_pair = count_flops(lambda: model(x, y))
        model.eval()
    # Query selection at the document's size: N = 785 -> R of the 784 patches.
    n = 785
    r = num_selected(n, 0.1)
    maps = torch.rand(2, 1, 2, n, n, generator=make_generator(ctx.seed)).softmax(-1)
    row = rollout_cls_optimized(maps)
    from impl.models.dcal.glca import select_queries

    index = select_queries(row, 0.1)
    top = set(row[0, 1:].topk(r).indices.add(1).tolist())
    selection_ok = set(index[0, 1:].tolist()) == top and index[0, 0].item() == 0
    ok = (eval_keys == ["glca_logits", "sa_logits"] and eval_flops_pair == eval_flops_single
          and "pwca_logits" in train_keys and train_flops_pair > eval_flops_pair and selection_ok)
    return Outcome(
        verdict=verdict_if(ok),
        claimed="Evaluation runs SA + GLCA only (PWCA is training-only); GLCA keeps the top top_k_ratio (0.1) of queries by rollout",
        measured={"eval_outputs": ",".join(eval_keys), "train_outputs": ",".join(train_keys),
                  "eval_flops_with_pair": eval_flops_pair, "eval_flops_without_pair": eval_flops_single,
                  "train_flops_with_pair": train_flops_pair, "queries_kept_N785": r,
                  "fraction_kept_N785": r / (n - 1), "selection_is_topk": selection_ok},
        rule="holds if eval returns only sa/glca logits with identical FLOPs whether or not a pair is passed, training "
             "adds PWCA, and GLCA keeps CLS + the top ⌈0.1·(N−1)⌉ patches of the rollout's CLS row",
        evidence=(f"{MINI} (2 blocks, {side}×{side}): eval FLOPs {eval_flops_pair:,} with or without a paired image, "
                  f"training {train_flops_pair:,} (PWCA runs). At N=785 GLCA keeps CLS + {r} of 784 patches "
                  f"({r / (n - 1):.1%}), exactly the top-{r} of the rollout row."),
        deviations=["GLCA classifies from the mean of its 1 + R output tokens, not the CLS output alone: with one GLCA "
                    "block the CLS query attends to all keys, so a CLS-only head would ignore the selection."],
    )
