"""EQ-01 … EQ-10: equivariant conv and its cache, top-k sparse attention, shared encoder + adapters,
group-aware homotopy distance.

Source: "Sparse Attention + Group-Aware Homotopy" (003_cfb6f10add0ba6bf.txt). Components live in
impl/equivariant/. All data are synthetic and made here: random grids labelled by a fixed random
C4-equivariant teacher network.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from impl.claims.experiment import Outcome, RunContext, combine, exponent_matches, experiment, verdict_if
from impl.equivariant.equivariant_conv import EquivariantBlock, EquivariantConv2d, act_on_features, rotate
from impl.equivariant.homotopy import PlainCNN, homotopy_distance, orbit_homotopy_distance, two_phase_training
from impl.equivariant.shared_encoder import (AdapterLearner, EquivariantNet, FreshMorphism, IndividualMorphismWrapper,
                                             SeparateNetworks, count_parameters)
from impl.equivariant.sparse_attention import SparseAttention
from impl.measure import compare_interleaved, count_flops, count_host_syncs, fake_peak_tensor_bytes, fit_exponent, peak_tensor_bytes, time_callable
from impl.registry import make_generator

ARC_COLORS = 10  # ARC grids: 10 colours as input channels, the document's setting


def _single_thread(fn):
    """Run an experiment on one thread (restored after): the runner does not pin threads, and on a shared
    2-core machine two threads per op made the training loops ~10x slower."""
    @functools.wraps(fn)
    def run(ctx: RunContext) -> Outcome:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(ctx)
        finally:
            torch.set_num_threads(previous)
    return run


class _KernelOnlyNet(nn.Module):
    """lift -> relu -> group -> relu -> 1x1 group -> mean over G; kernels only (no biases), so every
    trainable parameter goes through the filter-bank cache under test."""

    def __init__(self, channels: int, hidden: int, cache: str):
        super().__init__()
        self.layers = nn.ModuleList([EquivariantConv2d(channels, hidden, 3, lifting=True, bias=False, cache=cache),
                                     EquivariantConv2d(hidden, hidden, 3, lifting=False, bias=False, cache=cache),
                                     EquivariantConv2d(hidden, channels, 1, lifting=False, bias=False, cache=cache)])

    def forward(self, x):
        x = torch.relu(self.layers[0](x))
        return self.layers[2](torch.relu(self.layers[1](x))).mean(2)


def _train_losses(cache: str, seed: int, epochs: int, dtype=torch.float64):
    """Adam on ||net(X) - Y||² from one seeded init; returns the loss per epoch and the final kernel grad norm."""
    g = make_generator(seed)
    teacher = EquivariantNet(3, 3, 6).reset_parameters(g).to(dtype)
    x = torch.randn(4, 3, 7, 7, generator=g, dtype=dtype)
    with torch.no_grad():
        y = teacher(x)
    net = _KernelOnlyNet(3, 6, cache).to(dtype)
    for layer in net.layers:
        layer.reset_parameters(make_generator(seed + 1))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(epochs):
        loss = (net(x) - y).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    grad_norm = float(sum(p.grad.norm() ** 2 for p in net.parameters()) ** 0.5)
    return losses, grad_norm


@experiment("EQ-01")
@_single_thread
def pointer_cache_freezes_training(ctx: RunContext) -> Outcome:
    epochs = 20 if ctx.quick else 60
    ref, _ = _train_losses("none", ctx.seed, epochs)
    ptr, ptr_grad = _train_losses("pointer", ctx.seed, epochs)
    spread = (max(ptr) - min(ptr)) / ptr[0]
    ref_drop = 1 - ref[-1] / ref[0]
    measured = {"epochs": epochs, "pointer_loss_first": ptr[0], "pointer_loss_last": ptr[-1],
                "pointer_relative_spread": spread, "pointer_final_grad_norm": ptr_grad,
                "reference_loss_first": ref[0], "reference_loss_last": ref[-1], "reference_drop_fraction": ref_drop}
    return Outcome(
        verdict=verdict_if(spread < 1e-9 and ptr_grad > 0 and ref_drop >= 0.5),
        claimed="cache keyed by hash(data_ptr()) never refreshes: canonical loss 47.13 -> 47.13 -> 47.13 despite gradients flowing",
        measured=measured,
        rule="holds if, from the same init, the pointer-keyed net's loss is constant ((max-min)/first < 1e-9) with a "
             "non-zero kernel gradient, while the uncached reference's loss falls by >= 50%",
        evidence=f"Kernel-only C4 net (lift 3->6, group 6->6, 1x1 group 6->3, float64), Adam lr 1e-2, {epochs} epochs on "
                 f"4 synthetic 7x7 grids: pointer cache loss {ptr[0]:.4g} -> {ptr[-1]:.4g} (grad norm {ptr_grad:.3g}); "
                 f"uncached {ref[0]:.4g} -> {ref[-1]:.4g}.",
        deviations=["The document's network and data are not given; the net is kernel-only so every trainable "
                    "parameter sits behind the cache (a learnable bias would still move the loss)."])


# --- in-place changes of a kernel, shared by EQ-02 --------------------------------------------------
def _changes(layer, g):
    def optimizer_step():
        opt = torch.optim.SGD(layer.parameters(), lr=0.1)
        layer(torch.randn(1, layer.in_channels, 3, 3, generator=g, dtype=layer.kernel.dtype)).pow(2).sum().backward()
        opt.step()

    def ulp_nudge():
        flat = layer.kernel.view(-1)
        flat[0] = torch.nextafter(flat[0], flat[0] + 1)

    return {
        "optimizer_step": optimizer_step,
        "copy_": lambda: layer.kernel.copy_(torch.randn(layer.kernel.shape, generator=g, dtype=layer.kernel.dtype)),
        "mul_": lambda: layer.kernel.mul_(2.0),
        "sign_flip": lambda: layer.kernel.neg_(),
        "permutation": lambda: layer.kernel.copy_(layer.kernel.flatten()[torch.randperm(layer.kernel.numel(), generator=g)]
                                                  .view_as(layer.kernel)),
        "filter_swap": lambda: layer.kernel.copy_(layer.kernel.flip(0)),
        "ulp_nudge": ulp_nudge,
    }


def _stale_after(cache: str, change: str, seed: int, dtype=torch.float32) -> bool:
    g = make_generator(seed)
    layer = EquivariantConv2d(2, 2, 3, lifting=True, cache=cache).reset_parameters(g).to(dtype)
    x = torch.randn(1, 2, 3, 3, generator=g, dtype=dtype)
    with torch.no_grad():
        layer(x)
    if change == "optimizer_step":
        _changes(layer, g)[change]()
    else:
        with torch.no_grad():
            _changes(layer, g)[change]()
    with torch.no_grad():
        layer(x)
        return not torch.equal(layer.filter_bank(), layer.build_bank_reference())


@experiment("EQ-02")
@_single_thread
def norm_keyed_cache(ctx: RunContext) -> Outcome:
    epochs = 20 if ctx.quick else 60
    ref, _ = _train_losses("none", ctx.seed, epochs)
    norm, _ = _train_losses("norm", ctx.seed, epochs)
    training_gap = max(abs(a - b) / abs(b) for a, b in zip(norm, ref))
    changes = list(_changes(EquivariantConv2d(1, 1, 3), make_generator(0)))
    seeds = range(3 if ctx.quick else 10)
    measured: dict = {"epochs": epochs, "training_max_relative_gap_vs_uncached": training_gap,
                      "norm_loss_first": norm[0], "norm_loss_last": norm[-1]}
    stale_rates = {}
    for cache in ("norm", "version"):
        for change in changes:
            rate = sum(_stale_after(cache, change, ctx.seed + s) for s in seeds) / len(seeds)
            stale_rates[(cache, change)] = rate
            measured[f"stale_rate_{cache}_{change}"] = rate
    layer = EquivariantConv2d(2, 2, 3, cache="norm").reset_parameters(make_generator(ctx.seed))
    x = torch.randn(1, 2, 5, 5)
    with torch.no_grad():
        measured["host_syncs_per_forward_norm"] = count_host_syncs(lambda: layer(x))
        layer.cache = "version"
        measured["host_syncs_per_forward_version"] = count_host_syncs(lambda: layer(x))
    # Benchmark (informative, not part of the verdict): eval forward of a lift+group block on 16x16 grids.
    blocks = {c: EquivariantBlock(ARC_COLORS, 32, 32, cache=c).reset_parameters(make_generator(ctx.seed)).eval()
              for c in ("none", "norm", "version")}
    xb = torch.randn(8, ARC_COLORS, 16, 16, generator=make_generator(ctx.seed))
    with torch.no_grad():
        rounds = 2 if ctx.quick else 3
        vs_uncached = compare_interleaved(lambda: blocks["none"](xb), lambda: blocks["version"](xb), rounds=rounds, min_run_time=0.05)
        vs_norm = compare_interleaved(lambda: blocks["norm"](xb), lambda: blocks["version"](xb), rounds=rounds, min_run_time=0.05)
    measured.update({"bench_eval_uncached_ms": vs_uncached.baseline.median_ms, "bench_eval_version_cached_ms":
                     vs_uncached.candidate.median_ms, "bench_eval_norm_cached_ms": vs_norm.baseline.median_ms,
                     "bench_speedup_version_cache_vs_uncached": vs_uncached.speedup,
                     "bench_speedup_version_cache_vs_norm_cache": vs_norm.speedup})
    missed = [c for c in changes if stale_rates[("norm", c)] > 0]
    measured["norm_cache_missed_changes"] = ", ".join(missed) or "none"
    version_ok = all(stale_rates[("version", c)] == 0 for c in changes)
    measured["version_cache_never_stale"] = int(version_ok)
    return Outcome(
        verdict=combine(verdict_if(training_gap < 1e-9 and norm[-1] < 0.5 * norm[0]), verdict_if(not missed)),
        claimed="keying the cache by (data_ptr, norm().item()) fixes training: 421 -> 0.10; the cache should refresh after every change of the kernel's values",
        measured=measured,
        rule="two parts, combined: (1) training with the norm key follows the uncached reference (relative loss gap < 1e-9) "
             "and the loss halves; (2) after every kind of in-place value change the served bank equals a rebuild "
             "(stale rate 0). Both -> holds; one -> partial",
        evidence=f"Same training as EQ-01 with the norm key; then {len(changes)} kinds of in-place change on a float32 "
                 f"lifting layer, {len(seeds)} seeds each, comparing the served bank with a rebuild. The norm key misses: "
                 f"{measured['norm_cache_missed_changes']}; it also costs {measured['host_syncs_per_forward_norm']} host "
                 f"sync per forward. Our version-counter key: never stale, 0 syncs. Eval forward (batch 8, 10->32->32 "
                 f"channels, 16x16): version cache {measured['bench_speedup_version_cache_vs_uncached']:.2f}x vs uncached, "
                 f"{measured['bench_speedup_version_cache_vs_norm_cache']:.2f}x vs the norm key.",
        deviations=["Writes through kernel.data bypass the version counter (PyTorch gives .data its own counter); "
                    "our version key does not see them either (documented, tested)."])


@experiment("EQ-03")
@_single_thread
def c4_equivariance(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    measured: dict = {}
    worst64 = 0.0
    for n in ((7,) if ctx.quick else (7, 8, 15)):
        for k in (3, 5):
            block = EquivariantBlock(3, 4, 2, k).reset_parameters(g)
            for dtype in (torch.float64, torch.float32):
                block = block.to(dtype)
                x = torch.randn(2, 3, n, n, generator=g).to(dtype)
                with torch.no_grad():
                    err = max(float((block(rotate(x, r)) - act_on_features(block(x), r)).abs().max()) for r in (1, 2, 3))
                    scale = float(block(x).abs().max())
                measured[f"max_error_{str(dtype)[6:]}_n{n}_k{k}"] = err / scale
                if dtype == torch.float64:
                    worst64 = max(worst64, err / scale)
    # What odd kernels buy: an even kernel with 'same' padding is rotated about a half-pixel.
    w = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    x = torch.randn(1, 3, 8, 8, generator=g, dtype=torch.float64)
    def even(t):  # 'same' padding for a 4x4 kernel is asymmetric: 1 before, 2 after
        t = F.pad(t, (1, 2, 1, 2))
        return torch.cat([F.conv2d(t, rotate(w, r)) for r in range(4)], 1).unflatten(1, (4, 2)).transpose(1, 2)
    measured["even_kernel_relative_error_float64"] = float((even(rotate(x, 1)) - act_on_features(even(x), 1)).abs().max()
                                                           / even(x).abs().max())
    measured["worst_relative_error_float64"] = worst64
    return Outcome(
        verdict=verdict_if(worst64 <= 1e-12),
        claimed="EquivariantConv2d is equivariant to C4 rotations: f(g.x) = g.f(x)",
        measured=measured,
        rule="holds if max |f(g.x) - g.f(x)| / max |f(x)| <= 1e-12 in float64 for g = 90/180/270 degrees, lifting + group layer, odd kernels, stride 1",
        evidence=f"Lifting (3->4) + ReLU + group (4->2) layer, kernel 3 and 5, grids {(7,) if ctx.quick else (7, 8, 15)}: "
                 f"worst float64 relative error {worst64:.2g}; an even 4x4 kernel with 'same' padding gives "
                 f"{measured['even_kernel_relative_error_float64']:.2g}.",
        deviations=["Equivariance needs odd kernels, symmetric padding, stride 1 and square inputs; we reject even "
                    "kernels and non-square inputs (the document does not state these conditions)."])


def _counts(n, feature_dim=16, rank=8):
    separate = count_parameters(SeparateNetworks(n, ARC_COLORS, ARC_COLORS, feature_dim))
    learner = AdapterLearner(n, ARC_COLORS, ARC_COLORS, feature_dim, rank, k_neighbors=1)
    return separate, count_parameters(learner), learner


@experiment("EQ-04")
@_single_thread
def parameter_counts(ctx: RunContext) -> Outcome:
    sizes = (1, 3, 10, 30)
    rows = [_counts(n) for n in sizes]
    per_net = rows[0][0]
    learner = rows[0][2]
    fixed = rows[0][1] - 256
    encoder = count_parameters(learner.shared_encoder)
    separate_linear = all(s == per_net * n for (s, _, _), n in zip(rows, sizes))
    learner_affine = all(c == fixed + 256 * n for (_, c, _), n in zip(rows, sizes))
    doc_arith = 48_384 * 10 == 483_840 and 14_976 + 256 * 10 == 17_536
    doc_reduction = 1 - 17_536 / 483_840
    ours10 = rows[2]
    measured = {"our_params_per_separate_network": per_net, "our_learner_fixed_params": fixed,
                "our_learner_params_per_example": 256, "our_shared_encoder_params": encoder,
                "our_fixed_params_outside_encoder(attention+output_proj)": fixed - encoder,
                "our_separate_N10": ours10[0], "our_learner_N10": ours10[1],
                "our_reduction_N10": 1 - ours10[1] / ours10[0], "documented_reduction_N10": doc_reduction,
                "separate_is_linear_in_N": int(separate_linear), "learner_is_fixed_plus_256N": int(learner_affine),
                "documented_arithmetic_consistent": int(doc_arith)}
    return Outcome(
        verdict=verdict_if(separate_linear and learner_affine and doc_arith and round(doc_reduction, 2) == 0.96),
        claimed="separate networks 48,384 x N; shared encoder + adapters 14,976 + 256 x N; N = 10: 483,840 -> 17,536 (96% reduction)",
        measured=measured,
        rule="holds if our separate-network count is exactly P·N, our learner's is exactly F + 256·N (adapter rank 8, D = 16), "
             "and the document's figures are arithmetically consistent (48,384·10, 14,976 + 2,560, 96% to two digits)",
        evidence=f"Counted nn.Parameter elements for N in {sizes} with 10 input/output colours and D = 16: separate "
                 f"{per_net}·N, learner {fixed} + 256·N (N = 10: {ours10[0]} -> {ours10[1]}, "
                 f"{100 * measured['our_reduction_N10']:.1f}% fewer). Document: 96.38%.",
        deviations=["The document gives no layer sizes, so 48,384 and 14,976 cannot be rebuilt; we check the forms "
                    "a·N and b + 256·N on our networks and the document's arithmetic. Its 14,976 + 256·N formula "
                    f"covers encoder and adapters only; in ours the attention and output projection add {fixed - encoder}."])


@experiment("EQ-05")
@_single_thread
def quick_test_numbers(ctx: RunContext) -> Outcome:
    n = 3
    learner = AdapterLearner(n, ARC_COLORS, ARC_COLORS, 16, 8, k_neighbors=2)
    individual = (list(learner.shared_encoder.parameters()) + list(learner.sparse_attention.parameters())
                  + [learner.example_adapters_down, learner.example_adapters_up] + list(learner.output_proj.parameters()))
    conv_biases = sum(1 for name, _ in learner.named_parameters() if name.endswith("bias") and "attention" not in name)
    ratio = 12 / 14_976
    measured = {"documented_ratio_percent": 100 * ratio, "documented_reduction_x": 14_976 / 12,
                "adapter_params_alone_N3_per_EQ04": 256 * n, "our_individual_param_tensors": len(individual),
                "our_individual_param_tensors_without_conv_biases": len(individual) - conv_biases,
                "our_individual_param_elements": sum(p.numel() for p in individual)}
    consistent = 12 >= 256 * n
    return Outcome(
        verdict=verdict_if(consistent),
        claimed="quick test (3 examples): individual params 12 (shared + adapters), canonical 14,976, ratio 0.08% (1248x reduction)",
        measured=measured,
        rule="consistent with EQ-04 (holds) only if 12 >= the adapters' own 256·N = 768 elements for N = 3 (let alone the shared encoder)",
        evidence=f"12/14,976 = {100 * ratio:.3f}% and 14,976/12 = 1248 are arithmetically right, but 3 examples' adapters "
                 f"alone have 768 parameters. The document's optimizer list (encoder + attention + 2 adapters + output "
                 f"projection) has {len(individual) - conv_biases} tensors in our learner without conv biases "
                 f"({len(individual)} with): '12' is the size of a tensor count, not of a parameter count.",
    )


@experiment("EQ-06")
@_single_thread
def topk_complexity(ctx: RunContext) -> Outcome:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = make_generator(ctx.seed)
    dim, k = 32, 5
    attn = {p: SparseAttention(dim, k, path=p, chunk_size=256).reset_parameters(make_generator(ctx.seed)).eval()
            for p in ("reference", "optimized")}
    time_sizes = (128, 256, 512) if ctx.quick else (512, 1024, 2048, 4096)
    times = {p: [] for p in attn}
    for n in time_sizes:
        x = torch.randn(n, dim, generator=g)
        for p, module in attn.items():
            with torch.no_grad():
                times[p].append(time_callable(lambda: module(x), min_run_time=0.02 if ctx.quick else 0.05).median_s)
    mem_sizes = (512, 1024, 2048) if ctx.quick else (1024, 2048, 4096, 8192, 16384)
    peaks = {p: [] for p in attn}
    for n in mem_sizes:
        for p in attn:
            def make_call(p=p, n=n):
                module = SparseAttention(dim, k, path=p, chunk_size=256)
                x = torch.empty(n, dim)
                return lambda: module(x)
            with torch.no_grad():  # quick: real tensors (small N; fake mode costs ~1 s per call here)
                peak = peak_tensor_bytes(make_call()) if ctx.quick else fake_peak_tensor_bytes(make_call)
            peaks[p].append(peak.peak_bytes)
    sweeps = [("time", time_sizes, times), ("memory", mem_sizes, peaks)]
    if not ctx.quick:  # informative, outside the rule; the flop counter's first use costs seconds
        flops = {p: [] for p in attn}
        for n in time_sizes:
            x = torch.randn(n, dim, generator=g)
            for p, module in attn.items():
                with torch.no_grad():
                    flops[p].append(count_flops(lambda: module(x)))
        sweeps.append(("flops", time_sizes, flops))
    fits = {f"{kind}_{p}": fit_exponent(s, v[p]) for kind, s, v in sweeps for p in attn}
    measured = {f"{key}_exponent": fit.exponent for key, fit in fits.items()}
    measured.update({f"{key}_r2": fit.r_squared for key, fit in fits.items()})
    if not ctx.quick:
        n_top = time_sizes[-1]
        measured.update({f"flops_reference_N{n_top}": flops["reference"][-1],
                         f"flops_surviving_attention_2NkD_N{n_top}": 2 * n_top * k * dim})
    measured.update({"k": k, "feature_dim": dim, f"reference_peak_MiB_N{mem_sizes[-1]}": peaks["reference"][-1] / 2**20,
                     f"optimized_peak_MiB_N{mem_sizes[-1]}": peaks["optimized"][-1] / 2**20})
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for p in attn:
        axes[0].loglog(time_sizes, times[p], "o-", label=f"{p} (slope {fits['time_' + p].exponent:.2f})")
        axes[1].loglog(mem_sizes, peaks[p], "o-", label=f"{p} (slope {fits['memory_' + p].exponent:.2f})")
    for ax, title in zip(axes, ("forward time [s]", "peak tensor bytes")):
        ax.set_xlabel("N examples"), ax.set_title(title), ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ctx.figure_path("eq06_topk_scaling.png"), dpi=110)
    plt.close(fig)
    ref_t, ref_m = fits["time_reference"].exponent, fits["memory_reference"].exponent
    return Outcome(
        verdict=combine(exponent_matches(ref_t, 1.0, 0.2), exponent_matches(ref_m, 1.0, 0.2)),
        claimed="SparseAttention keeps the top-k (k = 5) neighbours per example: O(N.k) vs O(N^2)",
        measured=measured,
        rule="holds if the documented forward's fitted time and tensor-peak exponents in N are both within 0.2 of 1 (O(N·k)); "
             "partial if one is; fails if neither",
        evidence=f"SparseAttention(D={dim}, k={k}) forward, float32, one thread: documented forward time slope {ref_t:.2f} "
                 f"(N {time_sizes[0]}..{time_sizes[-1]}), peak-bytes slope {ref_m:.2f} ({'real' if ctx.quick else 'fake'} tensors, N up to "
                 f"{mem_sizes[-1]}). The exact chunked twin: memory slope {fits['memory_optimized'].exponent:.2f}, time "
                 f"slope {fits['time_optimized'].exponent:.2f} (finding the top-k still scores all N² pairs)."
                 + ("" if ctx.quick else f" Counted FLOPs of the documented forward: slope {fits['flops_reference'].exponent:.2f}; "
                    "the attention that survives is 2·N·k·D."),
        figures=["eq06_topk_scaling.png"],
        deviations=["topk(...) returns (values, indices); the threshold is the k-th value of .values. k > N raises ValueError."])


@experiment("EQ-07")
@_single_thread
def shared_forward_speed(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    measured: dict = {"grid": 10, "channels": ARC_COLORS, "feature_dim": 16, "pass": "forward, eval, no_grad, float32"}
    speedups = {}
    for n in ((10,) if ctx.quick else (3, 10, 30)):
        separate = SeparateNetworks(n, ARC_COLORS, ARC_COLORS, 16).reset_parameters(g).eval()
        learner = AdapterLearner(n, ARC_COLORS, ARC_COLORS, 16, 8, k_neighbors=min(5, n)).reset_parameters(g).eval()
        looped = AdapterLearner(n, ARC_COLORS, ARC_COLORS, 16, 8, k_neighbors=min(5, n), path="reference").eval()
        looped.load_state_dict(learner.state_dict())
        x = torch.randn(n, ARC_COLORS, 10, 10, generator=g)
        with torch.no_grad():
            vs_separate = compare_interleaved(lambda: separate(x), lambda: learner(x), rounds=2 if ctx.quick else 3,
                                              min_run_time=0.05)
            vs_loop = compare_interleaved(lambda: looped(x), lambda: learner(x), rounds=2, min_run_time=0.05)
        speedups[n] = vs_separate.speedup
        measured[f"speedup_vs_separate_N{n}"] = vs_separate.speedup
        measured[f"shared_ms_N{n}"] = vs_separate.candidate.median_ms
        measured[f"separate_ms_N{n}"] = vs_separate.baseline.median_ms
        measured[f"speedup_vs_per_example_loop_N{n}"] = vs_loop.speedup
    return Outcome(
        verdict=verdict_if(speedups[10] >= 1.2),
        claimed="shared encoder: 1 shared forward pass instead of N separate passes (speed)",
        measured=measured,
        rule="holds if the shared-encoder learner's forward is >= 1.2x faster than N separate networks at N = 10 (interleaved medians)",
        evidence=f"N examples of 10x10 grids with 10 colours, D = 16; forward only, one thread: shared vs N separate "
                 f"networks {', '.join(f'N={n}: {s:.2f}x' for n, s in speedups.items())}.",
        deviations=["The per-example networks have the shared network's architecture (the document's 48,384-parameter "
                    "network is not specified), so the ratio isolates batching, not network size."])


@experiment("EQ-08")
@_single_thread
def homotopy_distance_invariance(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    x = torch.randn(4, 2, 7, 7, generator=g, dtype=torch.float64)
    pairs = {"equivariant": (EquivariantNet(2, 2, 4).reset_parameters(g).double(), EquivariantNet(2, 2, 4).reset_parameters(g).double()),
             "plain_cnn": (PlainCNN(2).reset_parameters(g).double(), PlainCNN(2).reset_parameters(g).double())}
    measured: dict = {}
    with torch.no_grad():
        for label, (f_star, f_i) in pairs.items():
            for name, dist in (("documented", homotopy_distance), ("orbit", orbit_homotopy_distance)):
                base = float(dist(f_star, f_i, x))
                gap = max(abs(float(dist(f_star, f_i, rotate(x, r))) - base) for r in (1, 2, 3)) / base
                measured[f"{name}_relative_invariance_gap_{label}"] = gap
            f_star = pairs[label][0]
            measured[f"equivariance_term_{label}"] = float(homotopy_distance(f_star, f_star, x))
    invariant = max(measured["documented_relative_invariance_gap_equivariant"],
                    measured["documented_relative_invariance_gap_plain_cnn"]) <= 1e-9
    vanishes = measured["equivariance_term_equivariant"] <= 1e-20
    return Outcome(
        verdict=combine(verdict_if(invariant), verdict_if(vanishes)),
        claimed="d_H = E_{x,g}[|f*(x) - f_i(x)|^2 + |f*(g.x) - g.f*(x)|^2] is G-invariant; its equivariance term vanishes for equivariant f*",
        measured=measured,
        rule="two parts combined: (1) G-invariant: |d_H(g.x) - d_H(x)| / d_H(x) <= 1e-9 for both an equivariant and a "
             "non-equivariant pair; (2) d_H(f*, f*) (= the equivariance term) <= 1e-20 for equivariant f*, float64",
        evidence=f"float64, 4 grids 7x7: the documented d_H moves by {measured['documented_relative_invariance_gap_plain_cnn']:.2g} "
                 f"(relative) under rotation of x for plain CNNs, {measured['documented_relative_invariance_gap_equivariant']:.2g} "
                 f"for C4 nets; the orbit-averaged variant by {measured['orbit_relative_invariance_gap_plain_cnn']:.2g}. "
                 f"Equivariance term for a C4 net: {measured['equivariance_term_equivariant']:.2g}.",
        deviations=["As written the geometric term does not depend on g; invariance holds only when f* and f_i are "
                    "equivariant. equivariant.homotopy_distance_orbit averages both terms over the orbit and is exactly invariant."])


@experiment("EQ-09")
@_single_thread
def two_phase_collapse(ctx: RunContext) -> Outcome:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = [ctx.seed + s for s in range(2 if ctx.quick else 4)]
    epochs = (12, 12) if ctx.quick else (25, 25)
    measured: dict = {"epochs_phase1": epochs[0], "epochs_phase2": epochs[1], "seeds": len(seeds)}
    collapses, canon_ok, histories = [], [], []
    for seed in seeds:
        h = two_phase_training(seed, grid=5, epochs=epochs)
        histories.append(h)
        start, mid, end = h.homotopy[0], h.homotopy[epochs[0]], h.homotopy[-1]
        c0, c1, c2 = h.canonical[0], h.canonical[epochs[0]], h.canonical[-1]
        collapses.append(1 - end / mid)
        canon_ok.append(c1 < c0 and c2 < c1)
        measured.update({f"seed{seed}_homotopy_start": start, f"seed{seed}_homotopy_phase1_end": mid,
                         f"seed{seed}_homotopy_end": end, f"seed{seed}_canonical_start": c0,
                         f"seed{seed}_canonical_phase1_end": c1, f"seed{seed}_canonical_end": c2,
                         f"seed{seed}_phase2_collapse_percent": 100 * (1 - end / mid),
                         f"seed{seed}_phase1_change_percent": 100 * (mid / start - 1),
                         f"seed{seed}_homotopy_phase1_max": max(h.homotopy[:epochs[0] + 1])})
    if not ctx.quick:  # informative, outside the rule: the same loop with the corrected wrapper
        fresh = two_phase_training(seeds[0], grid=5, epochs=epochs, fresh_wrapper=True)
        measured[f"seed{seeds[0]}_phase2_collapse_percent_fresh_wrapper"] = 100 * (1 - fresh.homotopy[-1] / fresh.homotopy[epochs[0]])
    measured["min_phase2_collapse_percent"] = 100 * min(collapses)
    measured["documented_phase2_collapse_percent"] = 100 * (1 - 0.0055 / 594)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for seed, h in zip(seeds, histories):
        axes[0].semilogy(h.homotopy, label=f"seed {seed}")
        axes[1].semilogy(h.canonical, label=f"seed {seed}")
    for ax, title in zip(axes, ("sum_i d_H(f*, f_i)", "canonical loss")):
        ax.axvline(epochs[0], color="grey", ls="--"), ax.set_title(title), ax.set_xlabel("epoch"), ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ctx.figure_path("eq09_two_phase.png"), dpi=110)
    plt.close(fig)
    if all(canon_ok) and min(collapses) >= 0.99999:
        verdict = "holds"
    elif all(canon_ok) and min(collapses) >= 0.9:
        verdict = "partial"
    else:
        verdict = "fails"
    return Outcome(
        verdict=verdict,
        claimed="phase 1 fits, phase 2 collapses the homotopy distance by 99.999% (60,913 -> 594 -> 0.0055) while the canonical loss falls (421 -> 7 -> 0.10)",
        measured=measured,
        rule="holds if in every seed phase 2 cuts d_H by >= 99.999% and the canonical loss falls in both phases; "
             "partial if every seed collapses >= 90% with the canonical loss falling; fails otherwise",
        evidence=f"3 examples of 5x5 grids (3 channels) labelled by a random C4 teacher; AdapterLearner (D=8, rank 4, k=2) "
                 f"with the documented wrappers as f_i and an EquivariantNet as f*, Adam 1e-2, {epochs[0]}+{epochs[1]} epochs, "
                 f"{len(seeds)} seeds: phase-2 collapse {', '.join(f'{100 * c:.2f}%' for c in collapses)}; "
                 f"in phase 1 d_H first jumps (up to {max(max(h.homotopy[:epochs[0] + 1]) / h.homotopy[0] for h in histories):.1f}x its "
                 f"start) and then falls below its start (the document calls phase 1 'diverging' while its own numbers fall "
                 f"60,913 -> 594).",
        figures=["eq09_two_phase.png"],
        deviations=["Synthetic grids from a random equivariant teacher instead of ARC tasks; d_H is measured on the "
                    "training examples (the document does not say where)."])


@experiment("EQ-10")
@_single_thread
def cached_pooled_features(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    learner = AdapterLearner(3, 2, 2, 4, 2, k_neighbors=2).reset_parameters(g).double()
    examples = torch.randn(3, 2, 5, 5, generator=g, dtype=torch.float64)
    wrapper, fresh = IndividualMorphismWrapper(learner, 1), FreshMorphism(learner, 1, examples)
    learner(examples)
    with torch.no_grad():
        same_batch = float((wrapper(examples[1:2]) - learner(examples)[1:2]).abs().max())
        other = torch.randn(1, 2, 5, 5, generator=g, dtype=torch.float64)
        new_input = float((wrapper(other) - fresh(other)).abs().max() / fresh(other).abs().max())
    optimizer = torch.optim.SGD(learner.parameters(), lr=0.1)
    learner(examples).pow(2).sum().backward()
    optimizer.step()
    with torch.no_grad():
        after_step = float((wrapper(examples[1:2]) - fresh(examples[1:2])).abs().max() / fresh(examples[1:2]).abs().max())
    grads = {}
    for label, fn in (("documented", wrapper), ("fresh", fresh)):
        learner(examples)
        learner.zero_grad()
        fn(examples[1:2]).sum().backward()
        grads[label] = torch.cat([p.grad.flatten() for p in learner.shared_encoder.parameters()])
    pooled_path = float((grads["fresh"] - grads["documented"]).norm() / grads["fresh"].norm())
    measured = {"max_abs_diff_same_batch_no_update": same_batch, "relative_diff_new_input": new_input,
                "relative_diff_after_one_step": after_step,
                "encoder_grad_share_through_pooled_features_fresh": pooled_path,
                "cached_pooled_features_require_grad": int(learner._cached_pooled_features.requires_grad)}
    equals_fresh = max(new_input, after_step) <= 1e-9
    return Outcome(
        verdict=combine(verdict_if(equals_fresh), verdict_if(pooled_path < 1e-12)),
        claimed="the adapter wrapper reuses pooled features cached (detached) by the last forward pass",
        measured=measured,
        rule="two parts combined: (1) the wrapper's output equals a fresh computation (learner on the examples with the "
             "input in slot i) within 1e-9 relative, for a new input and after an optimizer step; (2) the encoder "
             "receives the same gradient as through a fresh computation (relative difference < 1e-12)",
        evidence=f"float64 learner, 3 examples: right after a forward on the same batch the wrapper matches (diff {same_batch:.1g}); "
                 f"on a new input it is off by {new_input:.2g} and after one SGD step by {after_step:.2g} (relative); "
                 f"{100 * pooled_path:.1f}% of the encoder's fresh gradient flows through the pooled features and the "
                 f"documented wrapper drops it.",
        deviations=["FreshMorphism (corrected wrapper) recomputes the pooled features with gradients on every call."])
