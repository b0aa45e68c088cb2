"""DCAL-05: the attention rollout's cost in N and L, and the CLS-row chain against its memory floor."""
from __future__ import annotations

import os

import torch

from reprobench.claims import Outcome, RunContext, experiment, pyplot
from reprobench.measure import (count_flops, decide, decide_speedup, fit_exponent_estimate, ratio_from_rounds,
                                time_interleaved)
from reprobench.measure.stats import MIN_R2
from reprobench.registry import make_generator

EXPONENT_N, EXPONENT_L, TOLERANCE = 3.0, 1.0, 0.15  # O(L × N³), each exponent within ± 0.15
TARGET_SPEEDUP = 20.0  # the optimized twin's benchmark target at DeiT-Small@448 (N = 785, L = 12), one thread


@experiment("DCAL-05", timed=True,
            sizes={"full": {"bench_tokens": (197, 393, 785), "min_run_time": 0.2},
                   "quick": {"bench_tokens": (197,), "min_run_time": 0.02}},
            source='documents/001_128d0a2e45dbf7cd.txt (Dual Cross-Attention Model Optimizations)',
            text=(
                'Attention rollout costs O(L x N^3) per GLCA forward pass (L layers, N tokens).'))
def rollout_cost(ctx: RunContext) -> Outcome:
    plt = pyplot()

    from reprobench_documents.models.dcal.rollout import random_attentions, rollout_cls_optimized, rollout_cls_reference

    g = make_generator(ctx.seed)
    n_sizes, l_sizes = (33, 65, 129, 257), (2, 4, 8, 16)
    flops = {"reference": [], "optimized": []}
    for n in n_sizes:
        maps = random_attentions(4, 1, 6, n, generator=g).to(ctx.device)
        flops["reference"].append(count_flops(lambda: rollout_cls_reference(maps)))
        flops["optimized"].append(count_flops(lambda: rollout_cls_optimized(maps)))
    flops_l = []
    for depth in l_sizes:
        maps = random_attentions(depth, 1, 6, 65, generator=g).to(ctx.device)
        flops_l.append(count_flops(lambda: rollout_cls_reference(maps)))
    fit_n_ref = fit_exponent_estimate(n_sizes, flops["reference"], deterministic=True)
    fit_n_opt = fit_exponent_estimate(n_sizes, flops["optimized"], deterministic=True)
    fit_l_ref = fit_exponent_estimate(l_sizes, flops_l, deterministic=True)
    # Benchmark up to the document's size, N = 785 tokens (448×448, patch 16), L = 12 DeiT-Small layers.
    bench_sizes = tuple(ctx.sizes["bench_tokens"])
    n_bench = bench_sizes[-1]
    min_run = ctx.sizes["min_run_time"]
    speedups, cpu, cores = {}, ctx.device.type == "cpu", os.cpu_count() or 1
    for n in bench_sizes:
        maps = random_attentions(12, 1, 6, n, generator=g).to(ctx.device)
        torch.testing.assert_close(rollout_cls_optimized(maps), rollout_cls_reference(maps), atol=1e-6, rtol=1e-4)
        # Roofline: the chain must read every map of layers 1..L-1 at least once, so one streaming read of
        # those bytes (a plain sum) bounds it from below, and full / read-once bounds the speedup from above.
        # All three are timed in the same interleaved rounds, so a noisy neighbour hits them alike.
        calls = {"full": lambda: rollout_cls_reference(maps), "chain": lambda: rollout_cls_optimized(maps),
                 "read_once": lambda: maps[:-1].sum()}
        t = time_interleaved(calls, rounds=3, min_run_time=min_run if n == n_bench else min_run / 2, device=ctx.device)
        speedups[n] = ratio_from_rounds(t["full"].round_medians, t["chain"].round_medians)
        if n == n_bench:  # the judged ratio: paired rounds until its interval clears the target
            timed, cmp = decide_speedup(calls["full"], calls["chain"], quantity=f"speedup_N{n}_L12",
                                        at_least=TARGET_SPEEDUP, min_run_time=min_run, budget_s=ctx.decision_budget_s,
                                        device=ctx.device)
            speedups[n] = timed.estimate
            read_once = t["read_once"]
            ceiling = ratio_from_rounds(t["full"].round_medians, t["read_once"].round_medians).point
            chain_over_read = ratio_from_rounds(t["chain"].round_medians, t["read_once"].round_medians).point
            read_bytes = maps[:-1].numel() * maps.element_size()  # the last layer needs only its CLS row
            # secondary figure, CPU only: every core of the machine for all three
            all_cores = time_interleaved(calls, threads=cores, rounds=3, min_run_time=min_run) if cpu else None
        del maps, calls
    speedup_all_cores = all_cores["full"].median_s / all_cores["chain"].median_s if cpu else None
    ceiling_all_cores = all_cores["full"].median_s / all_cores["read_once"].median_s if cpu else None
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8, 3))
    ax.loglog(n_sizes, flops["reference"], "o-", label=f"full product (N^{fit_n_ref.exponent:.2f})")
    ax.loglog(n_sizes, flops["optimized"], "s-", label=f"CLS-row chain (N^{fit_n_opt.exponent:.2f})")
    ax.loglog(n_sizes, [flops["reference"][0] * (n / n_sizes[0]) ** EXPONENT_N for n in n_sizes], "k:",
              label=f"rule: N^{EXPONENT_N:g} ± {TOLERANCE:g}")
    ax.set_xticks(n_sizes, [str(n) for n in n_sizes])
    ax.minorticks_off()
    ax.set_xlabel("tokens N (L = 4, 6 heads)")
    ax.set_ylabel("FLOPs")
    ax.legend(fontsize=7)
    points = [speedups[n].point for n in bench_sizes]
    ax2.errorbar(bench_sizes, points, yerr=[[p - speedups[n].low for p, n in zip(points, bench_sizes)],
                                            [speedups[n].high - p for p, n in zip(points, bench_sizes)]],
                 fmt="o-", capsize=3, label="full / CLS-row chain (interval)")
    ax2.axhline(TARGET_SPEEDUP, color="r", ls="--", label=f"rule at N={n_bench}: >= {TARGET_SPEEDUP:g}")
    ax2.set_xlabel(f"tokens N (L = 12, 6 heads, float32, {'1 thread' if cpu else ctx.device.type})")
    ax2.set_ylabel("time: full / CLS-row chain")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ctx.figure_path("dcal05_rollout_flops.png"), dpi=120)
    plt.close(fig)
    decisions = [decide("flop_exponent_N_full", fit_n_ref.estimate, between=(EXPONENT_N - TOLERANCE, EXPONENT_N + TOLERANCE),
                        min_r2=MIN_R2),
                 decide("flop_exponent_L_full", fit_l_ref.estimate, between=(EXPONENT_L - TOLERANCE, EXPONENT_L + TOLERANCE),
                        min_r2=MIN_R2),
                 timed]
    speedup = timed.estimate
    return Outcome(
        decisions=decisions,
        headline=f"speedup_N{n_bench}_L12",
        claimed="Attention rollout costs O(L × N³) per GLCA forward pass",
        measured={"flop_exponent_N_full": fit_n_ref.exponent, "r2_N_full": fit_n_ref.r_squared,
                  "flop_exponent_L_full": fit_l_ref.exponent, "r2_L_full": fit_l_ref.r_squared,
                  "flop_exponent_N_cls_chain": fit_n_opt.exponent,
                  f"bench_N{n_bench}_L12_full_ms": cmp.baseline.median_ms,
                  f"bench_N{n_bench}_L12_cls_chain_ms": cmp.candidate.median_ms,
                  f"bench_N{n_bench}_L12_speedup": speedup.point,
                  f"bench_N{n_bench}_L12_read_once_ms": read_once.median_ms,
                  "read_once_GB_per_s": read_bytes / read_once.median_s / 1e9,
                  f"bench_N{n_bench}_L12_speedup_ceiling": ceiling,
                  "chain_time_over_read_once": chain_over_read,
                  "threads_all_cores": cores if cpu else None,
                  f"bench_N{n_bench}_L12_speedup_all_cores": speedup_all_cores,
                  f"bench_N{n_bench}_L12_speedup_ceiling_all_cores": ceiling_all_cores,
                  **({} if cpu else {"all_cores_note": f"CPU threads only; measured on {ctx.device.type}"}),
                  **{f"bench_N{n}_L12_speedup": speedups[n].point for n in bench_sizes[:-1]}},
        rule=(f"FLOPs are primary for the complexity claim (torch flop counter, deterministic; the claim is about cost, "
              f"not this machine): fitted log-log exponents of the documented full-product rollout, in N (L = 4) in "
              f"[{EXPONENT_N - TOLERANCE:g}, {EXPONENT_N + TOLERANCE:g}] and in L (N = 65) in [{EXPONENT_L - TOLERANCE:g}, "
              f"{EXPONENT_L + TOLERANCE:g}] (± {TOLERANCE:g}), each with r² >= "
              f"{MIN_R2}. Time decides the optimized twin's benchmark target: full / CLS-row-chain time at N = {n_bench}, "
              f"L = 12, one thread, >= {TARGET_SPEEDUP:g}, from paired interleaved rounds (holds if the whole 95% interval "
              f"is >= {TARGET_SPEEDUP:g}, fails if wholly below, else inconclusive). The read-once ceiling is supporting "
              f"evidence, not judged. All three hold -> holds; a decisive failure beside holds -> partial"),
        evidence=(f"FLOPs (torch flop counter) of the documented full-matrix rollout over N = {n_sizes} (L = 4) and "
                  f"L = {l_sizes} (N = 65): N^{fit_n_ref.exponent:.2f}, L^{fit_l_ref.exponent:.2f} — as documented. "
                  f"But GLCA reads only the CLS row, which a vector chain gives in O(L·N²) (N^{fit_n_opt.exponent:.2f}): "
                  f"at N={n_bench}, L=12, 6 heads, float32, {'one thread' if cpu else ctx.device.type} it takes "
                  f"{cmp.candidate.median_ms:.0f} ms vs {cmp.baseline.median_ms:.0f} ms ({speedup}×, "
                  f"{timed.extra.get('rounds')} paired rounds), equal values. The chain is memory-bound (it reads the "
                  f"L·H·N² maps once), so the ratio grows about linearly with N: one plain streaming read of the "
                  f"{read_bytes / 2**20:.0f} MiB it must read takes {read_once.median_ms:.1f} ms "
                  f"({read_bytes / read_once.median_s / 1e9:.1f} GB/s), so no implementation that reads the maps can beat "
                  f"{ceiling:.1f}× here; the chain takes {chain_over_read:.2f}× that read."
                  + (f" With all {cores} cores the chain is {speedup_all_cores:.1f}× faster (ceiling "
                     f"{ceiling_all_cores:.1f}×)." if cpu else "")),
        figures=["dcal05_rollout_flops.png"],
    )
