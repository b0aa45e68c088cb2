"""EQ-06: time and tensor-peak scaling in N of top-k sparse attention (documented forward and chunked twin)."""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment, pyplot
from reprobench_documents.equivariant.sparse_attention import SparseAttention
from reprobench.measure import count_flops, decide, fake_peak_tensor_bytes, fit_exponent_estimate, time_interleaved
from reprobench.measure.stats import MIN_R2
from reprobench.registry import make_generator

EXPONENT_BAND = (0.8, 1.2)  # O(N·k) with k fixed: an exponent in N within 1 ± 0.2


@experiment("EQ-06", quick_judged=True,
            sizes={"full": {"time_examples": (512, 1024, 2048, 4096), "min_run_time": 0.02},
                   "quick": {"time_examples": (128, 256, 512), "min_run_time": 0.01}},
            source='documents/003_cfb6f10add0ba6bf.txt (Sparse Attention + Group-Aware Homotopy)',
            text=(
                'SparseAttention keeps the top-k (k = 5) neighbours per example: "O(N.k) vs O(N^2)". Check '
                'complexity of the documented forward pass, not only of the attention that survives.'))
def topk_complexity(ctx: RunContext) -> Outcome:
    plt = pyplot()

    g = make_generator(ctx.seed)
    dim, k = 32, 5
    attn = {p: SparseAttention(dim, k, path=p, chunk_size=256).reset_parameters(make_generator(ctx.seed)).to(ctx.device)
            .eval() for p in ("reference", "optimized")}
    flop_sizes = (512, 1024, 2048, 4096)  # judged (deterministic): the same sizes in every run
    time_sizes = tuple(ctx.sizes["time_examples"])  # supporting, not judged: a quick run times smaller N
    times = {p: [] for p in attn}  # per size: the median of each interleaved round (one fit point each)
    flops = {p: [] for p in attn}
    for n in time_sizes:
        x = torch.randn(n, dim, generator=g).to(ctx.device)
        with torch.no_grad():
            t = time_interleaved({p: (lambda module=module: module(x)) for p, module in attn.items()}, rounds=3,
                                 min_run_time=ctx.sizes["min_run_time"], device=ctx.device)
            for p in attn:
                times[p].append(t[p].round_medians)
    for n in flop_sizes:  # FLOPs depend on shapes only: zeros need no draw, so the timing inputs stay as they were
        x = torch.zeros(n, dim, device=ctx.device)
        with torch.no_grad():
            for p, module in attn.items():
                flops[p].append(count_flops(lambda: module(x)))
    mem_sizes = (1024, 2048, 4096, 8192, 16384)  # judged: FakeTensorMode in every run
    peaks = {p: [] for p in attn}
    for n in mem_sizes:
        for p in attn:
            def make_call(p=p, n=n):
                with ctx.device:  # built in place (Module.to cannot swap parameters under FakeTensorMode)
                    module = SparseAttention(dim, k, path=p, chunk_size=256)
                    x = torch.empty(n, dim)
                return lambda: module(x)
            with torch.no_grad():
                peak = fake_peak_tensor_bytes(make_call)
            peaks[p].append(peak.peak_bytes)
    fits = {}
    for p in attn:  # bytes and FLOPs are exact (zero-width slopes); time has one point per round
        fits[f"memory_{p}"] = fit_exponent_estimate(mem_sizes, peaks[p], deterministic=True)
        fits[f"flops_{p}"] = fit_exponent_estimate(flop_sizes, flops[p], deterministic=True)
        fits[f"time_{p}"] = fit_exponent_estimate([n for n, rounds in zip(time_sizes, times[p]) for _ in rounds],
                                                  [r for rounds in times[p] for r in rounds])
    measured = {f"{key}_exponent": fit.exponent for key, fit in fits.items()}
    measured.update({f"{key}_r2": fit.r_squared for key, fit in fits.items()})
    n_top = flop_sizes[-1]
    measured.update({f"flops_reference_N{n_top}": flops["reference"][-1],
                     f"flops_surviving_attention_2NkD_N{n_top}": 2 * n_top * k * dim})
    measured.update({"k": k, "feature_dim": dim, f"reference_peak_MiB_N{mem_sizes[-1]}": peaks["reference"][-1] / 2**20,
                     f"optimized_peak_MiB_N{mem_sizes[-1]}": peaks["optimized"][-1] / 2**20})
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    panels = [("flops", flop_sizes, {p: flops[p] for p in attn}, "FLOPs (torch flop counter)"),
              ("memory", mem_sizes, peaks, "peak tensor bytes"),
              ("time", time_sizes, {p: [min(r) for r in times[p]] for p in attn}, "forward time [s] (supporting)")]
    for ax, (kind, sizes, values, title) in zip(axes, panels):
        for p in attn:
            ax.loglog(sizes, values[p], "o-", label=f"{p} (slope {fits[f'{kind}_{p}'].exponent:.2f})")
        if kind != "time":  # the judged slopes: the rule's upper bound drawn through the first point
            ref0 = values["reference"][0]
            ax.loglog(sizes, [ref0 * (n / sizes[0]) ** EXPONENT_BAND[1] for n in sizes], "k:",
                      label=f"rule: slope <= {EXPONENT_BAND[1]:g}")
        ax.set_xlabel("N examples"), ax.set_title(title, fontsize=9), ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ctx.figure_path("eq06_topk_scaling.png"), dpi=110)
    plt.close(fig)
    decisions = [decide("flops_reference_exponent", fits["flops_reference"].estimate, between=EXPONENT_BAND,
                        min_r2=MIN_R2),
                 decide("memory_reference_exponent", fits["memory_reference"].estimate, between=EXPONENT_BAND,
                        min_r2=MIN_R2)]
    return Outcome(
        decisions=decisions,
        claimed="SparseAttention keeps the top-k (k = 5) neighbours per example: O(N.k) vs O(N^2)",
        measured=measured,
        rule=(f"deterministic measures are primary (the claim is about complexity, not this machine): the documented "
              f"forward's log-log exponents in N of FLOPs (torch flop counter) and of peak tensor bytes, each within "
              f"{EXPONENT_BAND[0]:g}–{EXPONENT_BAND[1]:g} (1 ± 0.2, O(N·k)) with r² >= {MIN_R2}. Both hold -> holds, both "
              f"fail -> fails, one -> partial; the time exponent (3 interleaved rounds per size) is supporting, not "
              f"judged"),
        evidence=f"SparseAttention(D={dim}, k={k}) forward, float32, {'one thread' if ctx.device.type == 'cpu' else ctx.device.type}: "
                 f"documented forward FLOP slope {fits['flops_reference'].exponent:.2f} (N {flop_sizes[0]}..{flop_sizes[-1]}; "
                 f"the attention that survives is 2·N·k·D), peak-bytes slope {fits['memory_reference'].exponent:.2f} "
                 f"(fake tensors, N up to {mem_sizes[-1]}), time slope "
                 f"{fits['time_reference'].exponent:.2f} (r² {fits['time_reference'].r_squared:.2f}). The exact chunked "
                 f"twin: memory slope {fits['memory_optimized'].exponent:.2f}, time slope "
                 f"{fits['time_optimized'].exponent:.2f} (finding the top-k still scores all N² pairs).",
        figures=["eq06_topk_scaling.png"],
        deviations=["topk(...) returns (values, indices); the threshold is the k-th value of .values. k > N raises ValueError."])
