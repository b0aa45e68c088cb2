"""FAM-03: gating, gradient sampling, and the step cost of the optimized FAM against SGD and the reference."""
from __future__ import annotations

import math
import statistics

import torch

from reprobench.claims import Outcome, RunContext, experiment, pyplot
from reprobench_documents.experiments.fam._common import DEVIATIONS
from reprobench.measure import count_host_syncs, decide, mean_interval, ratio_from_rounds, time_interleaved
from reprobench.registry import make_generator

GATE_TOL = 1e-12  # float64: "plain momentum" means equal to a hand-written EMA momentum step to rounding
SAMPLE_SIZES = {(128, 128): 4096, (20000,): 1000, (50, 50): 2500}  # 64 x 64 block, 1000 elements, all
SHARE_BAND = 0.1  # the sample's high-frequency share may differ from the full tensor's by this much
DRAWS = 5  # random samples of the smooth gradient
CLAIMED = ("FAM only after fam_start_step and for numel > min_size, else plain momentum; large tensors sampled "
           "(64 x 64 block or 1000 elements)")
RULE = (f"(a), (b) exact values (float64, deterministic draws), (c) a mean over random samples; five decisions: "
        f"(a1) max |param - manual EMA momentum| before fam_start_step and for numel <= min_size: at most {GATE_TOL:g}; "
        f"(a2) the update differs from it after fam_start_step (0/1): at least 1; (b) sample sizes as stated (4096 for "
        f"128x128, 1000 for 20000 elements, all 2500 for 50x50): at least {len(SAMPLE_SIZES)} of {len(SAMPLE_SIZES)}; "
        f"(c) the document sample's high-frequency share (default handler, bands 4-7) minus the full tensor's, mean "
        f"over {DRAWS} random samples with its Student-t 95% interval: in [-{SHARE_BAND:g}, {SHARE_BAND:g}] (holds if "
        f"the whole interval is inside, fails if wholly outside, else inconclusive). All hold -> holds, all fail -> "
        f"fails, else partial. The step benchmark (optimized FAM against SGD foreach and the reference, interleaved "
        f"rounds) is supporting evidence, not judged: the claim is about what FAM computes, not its speed")


def _bench_model(n_params: int, generator, device):
    """A transformer-like parameter set of ~n_params: square matrices, biases, an embedding (drawn on the CPU from
    `generator`, then moved to `device`)."""
    side = 1024 if n_params >= 4_000_000 else 512
    n_mats = max(1, round(0.95 * n_params / side ** 2))
    shapes = ([(side, side)] * n_mats + [(side,)] * n_mats
              + [(4096, max(1, (n_params - n_mats * side * (side + 1)) // 4096))])
    params = [torch.randn(s, generator=generator).to(device).requires_grad_() for s in shapes]
    grads = [torch.randn(s, generator=generator).to(device) for s in shapes]
    return params, grads


@experiment("FAM-03", quick_judged=True, needs=("float64",),
            sizes={"full": {"bench_params": 10_000_000, "min_run_time": 0.1},
                   "quick": {"bench_params": 1_000_000, "min_run_time": 0.05}},
            source='documents/002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)',
            text=(
                'FAM applies only after `fam_start_step` and to tensors with more than `min_size` elements; large'
                ' tensors are sampled (64 x 64 sub-block, or 1000 elements); otherwise plain momentum (the text '
                'says it falls back to "regular Maxfactor").'))
def gating_sampling_and_step_cost(ctx: RunContext) -> Outcome:
    from reprobench_documents.optim.fam import FAM
    from reprobench_documents.optim.fam_corrected import window_sample
    from reprobench_documents.optim.fam_handlers import FrequencyHandler
    from reprobench_documents.optim.fam_reference import FAMOptimizer

    plt = pyplot()
    device = ctx.device
    g = make_generator(ctx.seed)  # data: drawn on the CPU, moved to the device (the same values everywhere)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # (a) gating: before fam_start_step and for numel <= min_size the update is EMA momentum
        f64 = dict(dtype=torch.float64, device=device)
        small, large = torch.zeros(200, **f64), torch.zeros(64, 64, **f64)
        ps = [small.clone().requires_grad_(), large.clone().requires_grad_()]
        opt = FAMOptimizer(ps, lr=0.1, alpha=0.9, fam_start_step=5, min_size=256,
                           generator=make_generator(ctx.seed, device))
        bufs, manual = [torch.zeros_like(small), torch.zeros_like(large)], [small.clone(), large.clone()]
        gate_err, after_start = 0.0, 0.0
        for t in range(8):
            for i, p in enumerate(ps):
                p.grad = torch.randn(p.shape, dtype=torch.float64, generator=g).to(device)
                bufs[i] = 0.9 * bufs[i] + 0.1 * p.grad
                manual[i] = manual[i] - 0.1 * bufs[i]
            opt.step()
            for i, p in enumerate(ps):
                err = float((p.detach() - manual[i]).abs().max())
                if t < 5 or i == 0:
                    gate_err = max(gate_err, err)
                else:
                    after_start = max(after_start, err)
        # (b) sample sizes
        sampler = FAMOptimizer([torch.zeros(1, device=device, requires_grad=True)],
                               generator=make_generator(ctx.seed, device))
        sizes = {shape: sampler._sample_gradient(torch.randn(shape, generator=g).to(device),
                                                 torch.empty(shape, device=device)).numel()
                 for shape in SAMPLE_SIZES}
        sizes_as_stated = sum(sizes[shape] == expected for shape, expected in SAMPLE_SIZES.items())
        # (c) does the sample carry the gradient's spectrum? a gradient smooth along rows and columns
        i, j = torch.arange(256.0, device=device)[:, None], torch.arange(256.0, device=device)[None, :]
        smooth = sum(torch.sin(2 * math.pi * (a * i + b * j) / 256 + 6 * float(torch.rand(1, generator=g)))
                     for a, b in ((1, 2), (3, 1), (2, 5), (4, 3)))
        high = lambda sample: sum(FrequencyHandler().analyze(sample, 8)[4:])  # noqa: E731
        full_high = high(smooth.flatten())
        doc_draws = [high(sampler._sample_gradient(smooth, smooth)) for _ in range(DRAWS)]
        doc_high = statistics.mean(doc_draws)
        fixed_high = statistics.mean(high(window_sample(sampler.generator, smooth, smooth)) for _ in range(DRAWS))
        share_gap = mean_interval([d - full_high for d in doc_draws])

        # (d) step cost on ~10M parameters (FAM active on every tensor): optimized vs SGD and the reference
        n_params = ctx.sizes["bench_params"]
        params, grads = _bench_model(n_params, make_generator(ctx.seed), device)
        for p, gr in zip(params, grads):
            p.grad = gr
        groups = lambda: [{"params": params[:len(params) // 2], "handler": "attention"},  # noqa: E731
                          {"params": params[len(params) // 2:], "handler": "default"}]
        kw = dict(lr=1e-4, fam_start_step=0, min_size=256)
        fam = FAM(groups(), **kw, generator=make_generator(ctx.seed, device))
        ref = FAMOptimizer(groups(), **kw, generator=make_generator(ctx.seed, device))
        sgd = torch.optim.SGD(params, lr=1e-4, momentum=0.9, foreach=True)
        for opt_ in (fam, ref, sgd):
            opt_.step()
        timed = time_interleaved({"sgd": sgd.step, "fam": fam.step, "reference": ref.step}, rounds=3,
                                 min_run_time=ctx.sizes["min_run_time"], device=device)
        syncs = {name: count_host_syncs(o.step) for name, o in (("fam", fam), ("reference", ref), ("sgd", sgd))}
    finally:
        torch.set_num_threads(threads)
    total = sum(p.numel() for p in params)
    fam_ms, sgd_ms, ref_ms = (timed[k].median_ms for k in ("fam", "sgd", "reference"))
    fam_over_sgd = ratio_from_rounds(timed["fam"].round_medians, timed["sgd"].round_medians)
    ref_over_fam = ratio_from_rounds(timed["reference"].round_medians, timed["fam"].round_medians)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].bar(["full tensor", "document sample\n(randperm rows/cols)", "contiguous block\n(corrected)"],
                [full_high, doc_high, fixed_high], color=["gray", "tab:red", "tab:green"])
    axes[0].axhspan(full_high - SHARE_BAND, full_high + SHARE_BAND, color="tab:blue", alpha=0.15,
                    label=f"rule: document sample within {SHARE_BAND:g} of the full tensor")
    axes[0].legend(fontsize=7)
    axes[0].set(ylabel="high-frequency share (bands 4-7)", title="256x256 gradient smooth in rows and columns")
    axes[1].bar(["FAMOptimizer\n(reference)", "FAM\n(optimized)", "SGD momentum\nforeach"], [ref_ms, fam_ms, sgd_ms],
                color=["tab:red", "tab:green", "gray"])
    axes[1].set(ylabel=f"ms per step (1 thread, {device.type})",
                title=f"optimizer step, {total / 1e6:.1f}M params, FAM active (not judged)")
    fig.tight_layout()
    fig.savefig(ctx.figure_path("fam03_sampling_and_step.png"), dpi=110)
    plt.close(fig)

    decisions = [decide("gating_max_abs_diff_vs_ema_momentum", gate_err, at_most=GATE_TOL),
                 decide("update_differs_after_start", int(after_start > 0), at_least=1),
                 decide("sample_sizes_as_stated", sizes_as_stated, at_least=len(SAMPLE_SIZES)),
                 decide("high_share_document_sample_minus_full", share_gap, between=(-SHARE_BAND, SHARE_BAND))]
    return Outcome(
        decisions=decisions,
        headline="high_share_document_sample_minus_full",
        claimed=CLAIMED,
        measured={"gating_max_abs_diff_vs_ema_momentum": gate_err, "post_start_diff": after_start,
                  "sample_numel_128x128": sizes[(128, 128)], "sample_numel_20000": sizes[(20000,)],
                  "sample_numel_50x50": sizes[(50, 50)], "high_share_full": full_high,
                  "high_share_document_sample": doc_high,
                  "high_share_contiguous_sample": fixed_high, "bench_params": total, "fam_step_ms": fam_ms,
                  "sgd_foreach_step_ms": sgd_ms, "reference_step_ms": ref_ms, "fam_over_sgd_time": fam_over_sgd.point,
                  "fam_speedup_over_reference": ref_over_fam.point, "host_syncs_per_step_fam": syncs["fam"],
                  "host_syncs_per_step_reference": syncs["reference"], "host_syncs_per_step_sgd": syncs["sgd"]},
        rule=RULE,
        evidence=f"On {device.type}: gating exact (max diff {gate_err:.1e}); {sizes_as_stated}/{len(SAMPLE_SIZES)} "
                 f"sample sizes as stated. A 256x256 gradient smooth in both directions (4 low 2-D sinusoids) has "
                 f"high-frequency share {full_high:.3f}; the document's randperm sample shows {doc_high:.3f} (shuffled "
                 f"order: a flat spectrum, whatever the gradient), a contiguous 64x64 block {fixed_high:.3f} (row seams "
                 f"every 64 elements). Step on {total / 1e6:.1f}M float32 params, 1 thread, FAM active, 3 interleaved "
                 f"rounds: optimized {fam_ms:.1f} ms ({syncs['fam']} host syncs) vs SGD(momentum, foreach) "
                 f"{sgd_ms:.1f} ms = {fam_over_sgd}x (median of round ratios [min, max]); reference {ref_ms:.1f} ms "
                 f"({syncs['reference']} syncs), {ref_over_fam}x the optimized time. The text's 'fallback to regular "
                 f"Maxfactor' is plain EMA momentum in the code.",
        figures=["fam03_sampling_and_step.png"], deviations=DEVIATIONS)
