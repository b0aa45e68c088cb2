"""EFF-06 (efficiency table) and EFF-09 (crossover lengths) on the same full layers: paired-round time ratios
decide both; a one-round sweep over n gives EFF-09's crossover lengths and figure."""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment, pyplot
from reprobench_documents.experiments.eff._common import decide_time_ratio, min_estimate, seconds_per_call
from reprobench.measure import count_host_syncs, decide, decide_speedup, fit_exponent, peak_tensor_bytes
from reprobench.measure.stats import MIN_R2, fit_exponent_estimate
from reprobench.registry import get, make_generator

SWEEP_DIM, SWEEP_HEADS = 256, 4  # head dim 64 as in the document; 4 heads keep dense n=4096 affordable
VARIANTS = (  # label, component, overrides, quadratic in n
    ("Standard", "attention.dense", {}, True),
    ("Strided", "attention.strided", {"stride": 4}, True),
    ("Local+Global", "attention.local_global", {"local_window": 128, "num_global_tokens": 4}, False),
    ("Performer", "attention.performer", {"num_random_features": 256}, False),
    ("Mamba", "attention.mamba", {"state_size": 16, "expand_factor": 2.0}, False),
)
# EFF-06's speed column, fastest last: each decided pair is (slower row, faster row) by the table.
SPEED_ORDER_PAIRS = (("Standard", "Strided"), ("Strided", "Local+Global"), ("Local+Global", "Performer"),
                     ("Local+Global", "Mamba"))
CLAIMED_PEAK_EXPONENT = {"Standard": 2.0, "Strided": 2.0, "Local+Global": 1.0, "Performer": 1.0, "Mamba": 1.0}
EXPONENT_SLACK = 0.15
STANDARD_WITHIN = 1.1  # EFF-09 (a): "standard below 512" holds if dense is within 10% of the fastest variant


def _layer(name, overrides, g, device, which="optimized"):
    spec = get(name)
    impls = spec.build(spec.config(overrides, bench=True), device, torch.float32, g)
    return getattr(impls, which)


_LAYER_CACHE: dict = {}


def _layers(ctx: RunContext) -> dict:
    """Every variant's optimized layer at dim 256, built once per (seed, device) for EFF-06 and EFF-09."""
    key = (ctx.seed, str(ctx.device))
    if key not in _LAYER_CACHE:
        g = make_generator(ctx.seed)
        layers = {}
        for label, name, overrides, _ in VARIANTS:
            extra = {"num_heads": SWEEP_HEADS} if name != "attention.mamba" else {}
            layers[label] = _layer(name, dict(overrides, dim=SWEEP_DIM, **extra), g, ctx.device)
        _LAYER_CACHE[key] = layers
    return _LAYER_CACHE[key]


def _input(ctx: RunContext, n: int, g) -> torch.Tensor:
    return torch.randn(1, n, SWEEP_DIM, generator=g).to(ctx.device)


def _forward(layer, x):
    def call():
        with torch.no_grad():
            return layer(x)
    return call


def _sweep(ctx: RunContext, sizes, quad_max):
    """Forward ms of every variant's optimized layer (dim 256) per n, one interleaved round each (supporting
    evidence: crossovers and the figure); quadratic ones only up to quad_max (strided, a quarter of dense's
    cost, one size further)."""
    layers = _layers(ctx)
    g = make_generator(ctx.seed + 1)
    times = {label: {} for label in layers}
    for n in sizes:
        x = _input(ctx, n, g)
        limit = {"Standard": quad_max, "Strided": 2 * quad_max}
        calls = {label: _forward(layer, x) for (label, _, _, quad), layer in zip(VARIANTS, layers.values())
                 if not quad or n <= limit[label]}
        # Small sizes get >= 0.05 s of calls each (their noise is what moves crossovers); big ones one call.
        seconds = seconds_per_call(calls, min_run_time=0.05 if n <= 2048 else 0.01, device=ctx.device)
        for label, s in seconds.items():
            times[label][n] = s * 1e3
    return times


def _extrapolated(times: dict, sizes):
    """Fill missing sizes of quadratic variants from a power-law fit of their last three measured points."""
    full, flagged = {}, {}
    for label, points in times.items():
        ns = sorted(points)
        fit = fit_exponent(ns[-3:], [points[n] for n in ns[-3:]]) if len(ns) >= 3 else None
        full[label] = {n: points.get(n, fit.predict(n) if fit else float("nan")) for n in sizes}
        flagged[label] = [n for n in sizes if n not in points]
    return full, flagged


_SWEEP_CACHE: dict = {}


def _cached_sweep(ctx, sizes, quad_max):
    key = (tuple(sizes), quad_max, ctx.seed, str(ctx.device))
    if key not in _SWEEP_CACHE:
        _SWEEP_CACHE[key] = (sizes, _sweep(ctx, sizes, quad_max))
    return _SWEEP_CACHE[key]


@experiment("EFF-06", timed=True,
            sizes={"full": {"n_compared": 4096, "min_run_time": 0.05, "peak_seq_lens": (1024, 2048, 4096)},
                   "quick": {"n_compared": 1024, "min_run_time": 0.02, "peak_seq_lens": (512, 1024)}},
            source='documents/004_7701952726fa4164.txt (Efficient Attention Mechanisms)',
            text=(
                'Efficiency table: Standard slow < Strided medium < Local+Global fast < Performer, Mamba very '
                'fast; memory O(n^2) / O(n^2/k) / O(n.w) / O(n) / O(n).'))
def efficiency_table(ctx: RunContext) -> Outcome:
    layers = _layers(ctx)
    g = make_generator(ctx.seed + 2)
    n_cmp = ctx.sizes["n_compared"]
    x = _input(ctx, n_cmp, g)
    measured = {"n_compared": n_cmp, "sweep_dim": SWEEP_DIM, "sweep_heads": SWEEP_HEADS}
    decisions, fwd_ms = [], {}
    for slower, faster in SPEED_ORDER_PAIRS:
        decision, cmp = decide_speedup(_forward(layers[slower], x), _forward(layers[faster], x),
                                       quantity=f"time_ratio_{slower}_over_{faster}_n{n_cmp}", at_least=1.0,
                                       min_run_time=ctx.sizes["min_run_time"], budget_s=ctx.decision_budget_s,
                                       device=ctx.device)
        decisions.append(decision)
        measured[f"time_ratio_{slower}_over_{faster}_n{n_cmp}"] = decision.estimate.point
        fwd_ms.setdefault(slower, cmp.baseline.median_ms)
        fwd_ms.setdefault(faster, cmp.candidate.median_ms)
    measured.update({f"{label}_fwd_ms_n{n_cmp}": fwd_ms[label] for label, *_ in VARIANTS})
    # Memory column: the optimized layers' tensor-peak exponents (tensor bytes, deterministic; real tensors).
    mem_sizes = ctx.sizes["peak_seq_lens"]
    for label, *_ in VARIANTS:
        peaks = []
        for n in mem_sizes:
            xm = _input(ctx, n, g)
            with torch.no_grad():
                peaks.append(peak_tensor_bytes(lambda: layers[label](xm)).peak_bytes)
        fit = fit_exponent_estimate(mem_sizes, peaks, deterministic=True)
        decisions.append(decide(f"{label}_optimized_peak_exponent", fit.estimate,
                                at_most=CLAIMED_PEAK_EXPONENT[label] + EXPONENT_SLACK, min_r2=MIN_R2))
        measured[f"{label}_optimized_peak_exponent"] = fit.exponent
        with torch.no_grad():
            measured[f"{label}_host_syncs_fwd"] = count_host_syncs(lambda: layers[label](xm))
    ranking = " < ".join(f"{label} {v:.0f} ms" for label, v in sorted(fwd_ms.items(), key=lambda kv: kv[1]))
    pairs = "; ".join(d.describe() for d in decisions[:len(SPEED_ORDER_PAIRS)])
    return Outcome(
        decisions=decisions,
        headline=f"time_ratio_Local+Global_over_Performer_n{n_cmp}",
        claimed="Efficiency table: Standard slow < Strided medium < Local+Global fast < Performer, Mamba very fast; "
                "memory O(n²) / O(n²/k) / O(n·w) / O(n) / O(n)",
        measured=measured,
        rule=f"Speed column (the table's words are about speed, so time decides): at n={n_cmp}, four paired-round "
             f"time ratios (median of round ratios, order-statistic interval, rounds added while undecided), each "
             f">= 1: Standard/Strided, Strided/Local+Global, Local+Global/Performer, Local+Global/Mamba (the order "
             f"Standard > Strided > Local+Global > max(Performer, Mamba)); memory column (tensor bytes, deterministic): "
             f"every optimized layer's tensor-peak exponent <= its row's claimed exponent + {EXPONENT_SLACK} (2, 2, 1, "
             f"1, 1), log-log fit with r² >= {MIN_R2}. Each holds if its whole interval passes, fails if wholly "
             f"below, else inconclusive; all hold -> holds, all decisive fail -> fails, a mix -> partial, an undecided "
             f"one keeps it from holds",
        evidence=f"Optimized full layers, dim {SWEEP_DIM}, {SWEEP_HEADS} heads x 64, fp32 forward, 1 thread, n={n_cmp}: "
                 f"{ranking}; {pairs}. Inference tensor-peak exponents of the same layers over "
                 f"n={mem_sizes[0]}..{mem_sizes[-1]}.",
    )


def crossover_sizes(full: dict, sizes) -> dict:
    """The smallest n from which each variant stays faster than dense at every larger n (a single noisy point
    below the line does not count); None when it never does within the sweep."""
    dense = full["Standard"]
    crossovers = {}
    for label in full:
        if label != "Standard":
            stays = [n for i, n in enumerate(sizes) if all(full[label][m] < dense[m] for m in sizes[i:])]
            crossovers[label] = stays[0] if stays else None
    return crossovers


def crossover_fields(crossovers: dict, sizes) -> dict:
    """Measured values of one JSON type in every run: the crossover n (an int) or None, and always a note."""
    fields = {}
    for label, c in crossovers.items():
        fields[f"crossover_n_{label}"] = int(c) if c is not None else None
        fields[f"crossover_n_{label}_note"] = ("first n from which it stays faster than dense" if c is not None
                                               else f"beyond the sweep (> {sizes[-1]})")
    return fields


def _all_faster(ctx: RunContext, n: int, slower: tuple[str, ...], faster: tuple[str, ...], quantity: str):
    """"The fastest of `faster` beats each of `slower` at n", as the smallest of the ratios
    time(slower_i) / time(fastest of `faster`) (min_estimate), each from paired rounds. The cheapest
    comparison goes first and the rest are timed only while every part so far holds: once one part is
    undecided or fails the conjunction cannot hold, and timing dense at n=16384 seven times would not change that.
    """
    layers = _layers(ctx)
    x = _input(ctx, n, make_generator(ctx.seed + n))
    parts, timed = [], []
    for label in slower:
        part, _ = decide_time_ratio({label: _forward(layers[label], x)},
                                    {f: _forward(layers[f], x) for f in faster}, quantity=f"{quantity}[{label}]",
                                    at_least=1.0, budget_s=ctx.decision_budget_s, device=ctx.device,
                                    min_run_time=0.05 if n <= 2048 else 0.01)
        parts.append(part)
        timed.append(label)
        if part.outcome != "holds":
            break
    skipped = [label for label in slower if label not in timed]
    note = "; ".join(f"{p.quantity}: {p.outcome}" + (f" ({p.note})" if p.note else "") for p in parts)
    if skipped:
        note += f"; not timed (the conjunction cannot hold once a part does not): {', '.join(skipped)}"
    extra = {"rounds": sum(p.extra.get("rounds", 0) for p in parts),
             "seconds": round(sum(p.extra.get("seconds", 0.0) for p in parts), 3),
             "budget_s": ctx.decision_budget_s, "parts_timed": timed}
    return decide(quantity, min_estimate([p.estimate for p in parts]), at_least=1.0, note=note, extra=extra)


@experiment("EFF-09", timed=True,
            # full run: every variant measured at every n, none extrapolated (quadratic_max_n = the last n)
            sizes={"full": {"sweep_seq_lens": (256, 512, 1024, 2048, 4096, 8192, 16384), "quadratic_max_n": 16384},
                   "quick": {"sweep_seq_lens": (256, 512, 1024, 2048), "quadratic_max_n": 1024}},
            source='documents/004_7701952726fa4164.txt (Efficient Attention Mechanisms)',
            text=(
                'Guidance: standard below 512 tokens, strided / local+global for 512-2048, Performer / Mamba '
                'above 2048. Measure the crossover lengths.'))
def crossover_lengths(ctx: RunContext) -> Outcome:
    plt = pyplot()
    sizes, times = _cached_sweep(ctx, ctx.sizes["sweep_seq_lens"], ctx.sizes["quadratic_max_n"])
    full, flagged = _extrapolated(times, sizes)
    crossovers = crossover_sizes(full, sizes)
    measured = {"dim": SWEEP_DIM, "heads": SWEEP_HEADS, "sizes_max": sizes[-1], **crossover_fields(crossovers, sizes)}
    measured.update({f"{label}_ms_n{n}": round(full[label][n], 2) for label in full for n in sizes})
    measured["extrapolated_points"] = "; ".join(f"{label}: {ns}" for label, ns in flagged.items() if ns) or "none"

    small, mid, big = sizes[0], 2048 if 2048 in sizes else sizes[-1], sizes[-1]
    layers = _layers(ctx)
    others = [label for label, *_ in VARIANTS if label != "Standard"]
    x_small = _input(ctx, small, make_generator(ctx.seed + small))
    part_a, _ = decide_time_ratio({label: _forward(layers[label], x_small) for label in others},
                                  {"Standard": _forward(layers["Standard"], x_small)},
                                  quantity=f"fastest_variant_over_standard_n{small}", at_least=1 / STANDARD_WITHIN,
                                  budget_s=ctx.decision_budget_s, device=ctx.device, min_run_time=0.05)
    x_mid = _input(ctx, mid, make_generator(ctx.seed + mid))
    part_b, _ = decide_time_ratio({label: _forward(layers[label], x_mid) for label in ("Standard", "Performer", "Mamba")},
                                  {label: _forward(layers[label], x_mid) for label in ("Strided", "Local+Global")},
                                  quantity=f"fastest_of_standard_linear_over_fastest_sparse_n{mid}", at_least=1.0,
                                  budget_s=ctx.decision_budget_s, device=ctx.device, min_run_time=0.05)
    part_c = _all_faster(ctx, big, ("Local+Global", "Strided", "Standard"), ("Performer", "Mamba"),
                         quantity=f"each_other_over_fastest_linear_n{big}")
    decisions = [part_a, part_b, part_c]
    measured.update({d.quantity: d.estimate.point for d in decisions})

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    for label in full:
        real = [n for n in sizes if n not in flagged[label]]
        line, = ax.loglog(real, [full[label][n] for n in real], "o-", label=label)
        if flagged[label]:
            ext = [real[-1]] + flagged[label]
            ax.loglog(ext, [full[label][n] for n in ext], "--", color=line.get_color(), alpha=0.6)
    judged = {}
    for n, tag in ((small, "a"), (mid, "b"), (big, "c")):
        judged.setdefault(n, []).append(tag)
    for n, tags in judged.items():
        ax.axvline(n, color="r", ls=":", lw=1)
        ax.annotate(f"rule ({', '.join(tags)})", (n, ax.get_ylim()[1]), fontsize=7, color="r", ha="center", va="top")
    ax.set(xlabel="sequence length n", ylabel="forward ms (1 thread, batch 1)",
           title=f"optimized layers, dim {SWEEP_DIM}, {SWEEP_HEADS} heads x 64 (one round; dashed: extrapolated)")
    ax.legend(fontsize=8)
    ax = axes[1]
    for i, d in enumerate(decisions):
        est = d.estimate
        ax.errorbar([i], [est.point], yerr=[[est.point - est.low], [est.high - est.point]], fmt="o", capsize=5)
        ax.plot([i - 0.3, i + 0.3], [d.threshold] * 2, "r--", label=f"rule: >= threshold" if i == 0 else None)
    ax.set_xticks(range(3), [f"(a) n={small}\n>= {1 / STANDARD_WITHIN:.3f}", f"(b) n={mid}\n>= 1", f"(c) n={big}\n>= 1"])
    ax.set(ylabel="time ratio (paired rounds, interval)", title="decided ratios")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ctx.figure_path("eff09_crossover.png"), dpi=90)
    plt.close(fig)
    cross_text = ", ".join(f"{label} n={c}" if c is not None else f"{label} none <= {sizes[-1]}"
                           for label, c in crossovers.items())
    return Outcome(
        decisions=decisions,
        headline=part_c.quantity,
        claimed="Guidance: standard below 512 tokens, strided / local+global for 512-2048, Performer / Mamba above 2048",
        measured=measured,
        rule=f"Guidance on speed, so time decides, from paired interleaved rounds (each round times every layer "
             f"involved once; the round's ratio is one sample; median with an order-statistic interval, rounds added "
             f"while undecided). (a) standard at n={small}: time(fastest other variant) / time(dense) >= "
             f"{1 / STANDARD_WITHIN:.3f} (dense within 10% of the fastest); (b) strided/local+global at n={mid}: "
             f"time(fastest of dense, Performer, Mamba) / time(faster of strided, local+global) >= 1; (c) "
             f"Performer/Mamba at n={big}: for each of local+global, strided, dense, time(it) / time(faster of "
             f"Performer, Mamba) >= 1, decided as their minimum (Bonferroni), timed in that order and stopped at the "
             f"first part that does not hold. Each holds if its whole interval passes, fails if wholly below, else "
             f"inconclusive; all hold -> holds, all decisive fail -> fails, a mix -> partial, an undecided one keeps "
             f"it from holds. Crossover lengths come from a one-round sweep and are supporting evidence",
        evidence=f"Optimized full layers (dim {SWEEP_DIM}, {SWEEP_HEADS} heads x 64; Mamba d_inner 512, state 16), fp32 "
                 f"forward, batch 1, 1 thread, sweep n={sizes[0]}..{sizes[-1]}; "
                 + (f"dense measured to {max(times['Standard'])}, strided to {max(times['Strided'])}, extrapolated beyond "
                    f"with the exponent fitted to their last three points. "
                    if any(flagged.values()) else "every variant measured at every n. ")
                 + f"First n from which each stays faster than dense: {cross_text}. Decided: "
                 + "; ".join(d.describe() for d in decisions) + ".",
        figures=["eff09_crossover.png"],
        deviations=[f"Sweep at dim {SWEEP_DIM} / {SWEEP_HEADS} heads instead of 768 / 12 to fit the time budget; "
                    "attention-core costs scale with the head count, so crossovers move little, but the projections' "
                    "share (n·dim²) is smaller than at dim 768."],
    )
