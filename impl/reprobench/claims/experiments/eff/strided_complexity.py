"""EFF-01: strided attention's FLOPs, time and tensor peak against dense SDPA, over stride and n."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reprobench.attention.strided import strided_sdpa
from reprobench.claims.experiment import Outcome, RunContext, combine, experiment, pyplot, verdict_if
from reprobench.claims.experiments.eff._common import HEAD_DIM, _qkv
from reprobench.measure import compare_interleaved, count_flops, fake_peak_tensor_bytes, fit_exponent, time_interleaved
from reprobench.registry import make_generator

HEADS = 12  # the document's examples: dim 768, 12 heads


def _dense_masked_reference(q, k, v, stride):
    from reprobench.attention.base import explicit_attention
    from reprobench.attention.strided import strided_mask

    return explicit_attention(q, k, v, strided_mask(q.shape[2], stride, q.device))


@experiment("EFF-01")
def strided_complexity(ctx: RunContext) -> Outcome:
    plt = pyplot()

    g = make_generator(ctx.seed)
    n_big = 1024 if ctx.quick else 4096
    strides = (4,) if ctx.quick else (2, 4, 8)
    measured: dict = {"n": n_big, "heads": HEADS, "head_dim": HEAD_DIM, "batch": 1, "pass": "forward, float32, attention core"}
    flop_ok, time_ok = [], []
    q, k, v = _qkv(n_big, HEADS, g)
    dense_flops = count_flops(lambda: F.scaled_dot_product_attention(q, k, v))
    for stride in strides:
        flops = count_flops(lambda: strided_sdpa(q, k, v, stride))
        cmp = compare_interleaved(lambda: F.scaled_dot_product_attention(q, k, v), lambda: strided_sdpa(q, k, v, stride),
                                  rounds=2 if ctx.quick else 3, min_run_time=0.05)
        measured[f"flop_ratio_dense_over_strided_s{stride}"] = dense_flops / flops
        measured[f"speedup_vs_dense_sdpa_s{stride}"] = cmp.speedup
        measured[f"strided_ms_s{stride}"] = cmp.candidate.median_ms
        measured[f"dense_sdpa_ms_s{stride}"] = cmp.baseline.median_ms
        flop_ok.append(abs(dense_flops / flops - stride) <= 0.05 * stride)
        time_ok.append(cmp.speedup >= 0.75 * stride)

    # Scaling in n at stride 4: tensor peak (fake mode, up to 16k) and time (real, smaller sweep).
    stride = 4
    mem_sizes = (512, 1024, 2048, 4096) if ctx.quick else (1024, 2048, 4096, 8192, 16384)
    peaks = {"strided optimized": [], "strided reference (masked dense)": [], "dense SDPA": []}
    for n in mem_sizes:
        def make(fn):
            def make_call():
                fq, fk, fv = [torch.empty(1, HEADS, n, HEAD_DIM) for _ in range(3)]
                return lambda: fn(fq, fk, fv)
            return make_call
        peaks["strided optimized"].append(fake_peak_tensor_bytes(make(lambda a, b, c: strided_sdpa(a, b, c, stride))).peak_bytes)
        peaks["strided reference (masked dense)"].append(fake_peak_tensor_bytes(make(lambda a, b, c: _dense_masked_reference(a, b, c, stride))).peak_bytes)
        peaks["dense SDPA"].append(fake_peak_tensor_bytes(make(F.scaled_dot_product_attention)).peak_bytes)
    mem_fits = {label: fit_exponent(mem_sizes, values) for label, values in peaks.items()}
    time_sizes = (256, 512, 1024) if ctx.quick else (512, 1024, 2048, 4096)
    times, dense_times = [], []
    for n in time_sizes:
        tq, tk, tv = _qkv(n, HEADS, g)
        pair = time_interleaved({"strided": lambda: strided_sdpa(tq, tk, tv, stride),
                                 "dense": lambda: F.scaled_dot_product_attention(tq, tk, tv)},
                                rounds=1, min_run_time=0.05)
        times.append(pair["strided"].median_s)
        dense_times.append(pair["dense"].median_s)
    time_fit = fit_exponent(time_sizes, times)
    dense_fit = fit_exponent(time_sizes, dense_times)
    measured["time_exponent_dense_sdpa"] = dense_fit.exponent
    measured["time_exponent_strided_optimized"] = time_fit.exponent
    measured["time_exponent_r2"] = time_fit.r_squared
    for label, fit in mem_fits.items():
        measured[f"peak_exponent_{label.split(' (')[0].replace(' ', '_')}"] = fit.exponent
    peak_ratio = peaks["strided reference (masked dense)"][-1] / peaks["strided optimized"][-1]
    measured["peak_bytes_ratio_reference_over_optimized_at_max_n"] = peak_ratio

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, values in peaks.items():
        axes[0].loglog(mem_sizes, [v / 2**20 for v in values], "o-", label=f"{label} (slope {mem_fits[label].exponent:.2f})")
    axes[0].set(xlabel="n", ylabel="peak tensor MiB (forward, fp32)", title="tensor peak, 12 heads x 64, stride 4")
    axes[0].legend(fontsize=7)
    axes[1].loglog(time_sizes, [t * 1e3 for t in times], "o-", label=f"strided optimized (slope {time_fit.exponent:.2f})")
    axes[1].loglog(time_sizes, [t * 1e3 for t in dense_times], "o-", label=f"dense SDPA (slope {dense_fit.exponent:.2f})")
    axes[1].set(xlabel="n", ylabel="ms (1 thread)", title="forward time, stride 4")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ctx.figure_path("eff01_strided_scaling.png"), dpi=90)
    plt.close(fig)

    # O(n²/stride) time: FLOPs fall by exactly `stride` and wall time by >= 0.75 x stride.
    # O(n²/stride) memory: the optimized tensor peak never exceeds dense scores / stride (it is O(n)).
    memory_ok = mem_fits["strided optimized"].exponent <= 2.0 + 0.15
    verdict = combine(verdict_if(all(flop_ok)), verdict_if(all(time_ok)), verdict_if(memory_ok))
    speedup4 = measured.get("speedup_vs_dense_sdpa_s4")
    return Outcome(
        verdict=verdict,
        claimed="StridedAttention costs O(n²/stride) time and memory",
        measured=measured,
        rule="holds if, for every stride tested, dense/strided FLOPs = stride ±5% AND measured forward speedup over "
             "dense SDPA >= 0.75 x stride AND the optimized tensor-peak exponent in n is <= 2.15; partial if some hold",
        evidence=f"Attention core, batch 1, 12 heads x 64, fp32 forward, 1 thread, n={n_big}: folded-SDPA strided attention "
                 f"is {speedup4:.2f}x faster than dense SDPA at stride 4 (FLOP bound 4x); tensor peak exponents: optimized "
                 f"{mem_fits['strided optimized'].exponent:.2f}, masked-dense reference "
                 f"{mem_fits['strided reference (masked dense)'].exponent:.2f} (FakeTensorMode sweep to n={mem_sizes[-1]}).",
        figures=["eff01_strided_scaling.png"],
    )
