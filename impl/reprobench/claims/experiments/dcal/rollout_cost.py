"""DCAL-05: the attention rollout's cost in N and L, and the CLS-row chain against its memory floor."""
from __future__ import annotations

import os

import torch

from reprobench.claims.experiment import Outcome, RunContext, combine, experiment, exponent_matches, pyplot
from reprobench.measure import Comparison, count_flops, fit_exponent, time_interleaved
from reprobench.registry import make_generator


@experiment("DCAL-05")
def rollout_cost(ctx: RunContext) -> Outcome:
    plt = pyplot()

    from reprobench.models.dcal.rollout import random_attentions, rollout_cls_optimized, rollout_cls_reference

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
    bench, roofline, cores = {}, {}, os.cpu_count() or 1
    for n in bench_sizes:
        maps = random_attentions(12, 1, 6, n, generator=g).to(ctx.device)
        torch.testing.assert_close(rollout_cls_optimized(maps), rollout_cls_reference(maps), atol=1e-6, rtol=1e-4)
        # Roofline: the chain must read every map of layers 1..L-1 at least once, so one streaming read of
        # those bytes (a plain sum) bounds it from below, and full / read-once bounds the speedup from above.
        # All three are timed in the same interleaved rounds, so a noisy neighbour hits them alike.
        calls = {"full": lambda: rollout_cls_reference(maps), "chain": lambda: rollout_cls_optimized(maps),
                 "read_once": lambda: maps[:-1].sum()}
        t = time_interleaved(calls, rounds=1 if ctx.quick else 5, min_run_time=0.05 if ctx.quick else 0.2,
                             device=ctx.device)
        bench[n] = Comparison(baseline=t["full"], candidate=t["chain"])
        roofline[n] = t["read_once"]
        if n == n_bench:  # secondary figure: every core of the machine for all three
            read_bytes = maps[:-1].numel() * maps.element_size()  # the last layer needs only its CLS row
            all_cores = time_interleaved(calls, threads=cores, rounds=1 if ctx.quick else 3,
                                         min_run_time=0.05 if ctx.quick else 0.2, device=ctx.device)
        del maps, calls
    cmp, read_once = bench[n_bench], roofline[n_bench]
    speedup_all_cores = all_cores["full"].median_s / all_cores["chain"].median_s
    ceiling_all_cores = all_cores["full"].median_s / all_cores["read_once"].median_s
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
                  f"bench_N{n_bench}_L12_speedup_round_min": min(cmp.round_speedups),
                  f"bench_N{n_bench}_L12_speedup_round_max": max(cmp.round_speedups),
                  f"bench_N{n_bench}_L12_read_once_ms": read_once.median_ms,
                  "read_once_GB_per_s": read_bytes / read_once.median_s / 1e9,
                  f"bench_N{n_bench}_L12_speedup_ceiling": ceiling,
                  "chain_time_over_read_once": cmp.candidate.median_s / read_once.median_s,
                  "issue_target_speedup": 20.0, "threads_all_cores": cores,
                  f"bench_N{n_bench}_L12_speedup_all_cores": speedup_all_cores,
                  f"bench_N{n_bench}_L12_speedup_ceiling_all_cores": ceiling_all_cores,
                  **{f"bench_N{n}_L12_speedup": bench[n].speedup for n in bench_sizes[:-1]}},
        rule="holds if the full product's FLOP exponents are 3 ± 0.15 in N and 1 ± 0.15 in L",
        evidence=(f"FLOPs (torch flop counter) of the documented full-matrix rollout over N = {n_sizes} (L = 4) and "
                  f"L = {l_sizes} (N = 65): N^{fit_n_ref.exponent:.2f}, L^{fit_l_ref.exponent:.2f} — as documented. "
                  f"But GLCA reads only the CLS row, which a vector chain gives in O(L·N²) (N^{fit_n_opt.exponent:.2f}): "
                  f"at N={n_bench}, L=12, 6 heads, float32, one thread it takes {cmp.candidate.median_ms:.0f} ms vs "
                  f"{cmp.baseline.median_ms:.0f} ms ({cmp.speedup:.1f}×, timed interleaved; "
                  f"{min(cmp.round_speedups):.1f}–{max(cmp.round_speedups):.1f}× within single rounds), "
                  f"equal values. The chain "
                  f"is memory-bound (it reads the L·H·N² maps once), so the ratio grows about linearly with N: "
                  f"one plain streaming read of the {read_bytes / 2**20:.0f} MiB it must read takes "
                  f"{read_once.median_ms:.1f} ms ({read_bytes / read_once.median_s / 1e9:.1f} GB/s), so no "
                  f"implementation that reads the maps can beat {ceiling:.1f}× here; the chain takes "
                  f"{cmp.candidate.median_s / read_once.median_s:.2f}× that read. The benchmark target of ≥ 20× "
                  f"is {'met' if cmp.speedup >= 20 else 'not met'} on one thread in this run; with all {cores} "
                  f"cores the chain is {speedup_all_cores:.1f}× faster (ceiling {ceiling_all_cores:.1f}×)."),
        figures=["dcal05_rollout_flops.png"],
    )
