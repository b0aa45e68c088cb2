"""ZOO-04: RelativeForce: tensor peak of the reference against the factored version, and the direction
modulator's gradient."""
from __future__ import annotations

import torch

from reprobench.claims import Outcome, RunContext, experiment, pyplot
from reprobench_documents.experiments.zoo._common import pair
from reprobench.measure import compare_interleaved, decide, fake_peak_tensor_bytes, fit_exponent, peak_tensor_bytes
from reprobench.registry import make_generator


MiB = 2 ** 20
PEAK_SHARE_MAX = 0.25  # an implementation with equal values needs <= 25% of the reference's tensor peak
MAX_ABS_DIFF = 1e-4  # float32: "equal values"
GRAD_SPREAD_MIN = 1e-6  # direction-sensitive: the modulator's gradient varies across dims within a head


@experiment("ZOO-04", quick_judged=True,
            # the direction modulator's gradient spread is told from zero at float64 rounding
            needs=("float64",),
            sizes={"full": {"peak_seq_lens": (64, 128, 256, 512), "value_check_n": 192, "speed_rounds": 2,
                            "values_at_benchmark_n": True},
                   "quick": {"peak_seq_lens": (256, 512), "value_check_n": 64, "speed_rounds": 1,
                             "values_at_benchmark_n": False}},
            source='documents/002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)',
            text=(
                'RelativeForce: force + multi-hop topological attention; cost of the [batch, seq, seq, dim] '
                'tensors; memory against standard attention.'))
def relative_force_memory(ctx: RunContext) -> Outcome:
    plt = pyplot()

    from reprobench_documents.attention.zoo.base_attention import BaseAttention
    from reprobench_documents.attention.zoo.relative_force import RelativeForce

    device = ctx.device
    dims, heads, n = 256, 8, 512

    def fake_peak(make_module, size):
        def make_call():
            with torch.device(device):  # parameters made on the device (a fake module cannot be moved)
                module = make_module()
            x = torch.empty(1, size, dims, device=device)  # fake: bytes do not depend on values

            def call():
                with torch.no_grad():
                    return module(x)
            return call
        return fake_peak_tensor_bytes(make_call).peak_bytes

    sizes = ctx.sizes["peak_seq_lens"]  # ends at the benchmark size n
    ref_sweep = [fake_peak(lambda: RelativeForce(dims, heads, path="reference"), s) for s in sizes]
    opt_sweep = [fake_peak(lambda: RelativeForce(dims, heads, path="optimized"), s) for s in sizes]
    peaks = {"reference": ref_sweep[-1], "optimized": opt_sweep[-1],
             "standard attention (SDPA)": fake_peak(lambda: BaseAttention(dims, heads, path="optimized"), n)}
    g = make_generator(ctx.seed)
    ref, opt = pair(RelativeForce, g, dims=dims, heads=heads)
    ref, opt = ref.to(device), opt.to(device)
    x_real = torch.randn(1, n, dims, generator=g).to(device)
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
    n_val = ctx.sizes["value_check_n"]
    x = torch.randn(2, n_val, dims, generator=g).to(device)
    with torch.no_grad():
        measured[f"max_abs_diff_float32_n{n_val}"] = float((opt(x) - ref(x)).abs().max())
        cmp = compare_interleaved(lambda: ref(x), lambda: opt(x), rounds=ctx.sizes["speed_rounds"], min_run_time=0.05,
                                  device=device)
    measured[f"speedup_optimized_vs_reference_n{n_val}"] = cmp.speedup  # supporting evidence, not judged
    # the benchmark size itself, when the host has room for the reference's ~5 GiB (full CPU runs only)
    import os
    free_bytes = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    measured[f"max_abs_diff_float32_n{n}"] = None
    if not ctx.sizes["values_at_benchmark_n"]:
        measured[f"max_abs_diff_float32_n{n}_note"] = "not run in quick mode"
    elif device.type != "cpu":
        measured[f"max_abs_diff_float32_n{n}_note"] = f"not run on {device.type}: the free-memory check reads host RAM"
    elif free_bytes <= 3 * peaks["reference"]:
        measured[f"max_abs_diff_float32_n{n}_note"] = (f"not run: {free_bytes / 2**30:.1f} GiB free, under 3x the "
                                                       f"reference's peak")
    else:
        with torch.no_grad():
            measured[f"max_abs_diff_float32_n{n}"] = float((opt(x_real) - ref(x_real)).abs().max())
        measured[f"max_abs_diff_float32_n{n}_note"] = "measured"
    # documented-code defects, measured
    ref64 = pair(RelativeForce, make_generator(ctx.seed), torch.float64, dims=32, heads=4)[0].to(device)
    xs = torch.randn(2, 10, 32, generator=g, dtype=torch.float64).to(device)
    ref64(xs).sum().backward()
    grad = ref64.direction_modulator.grad  # (heads, dims): equal across dims if only Σ_d M[h, d] matters
    measured["direction_modulator_grad_spread_within_head"] = float((grad - grad.mean(1, keepdim=True)).abs().max()
                                                                    / grad.abs().max())
    fixed = pair(RelativeForce, make_generator(ctx.seed), torch.float64, dims=32, heads=4, directional=True)[0].to(device)
    fixed(xs).sum().backward()
    grad = fixed.direction_modulator.grad
    measured["corrected_variant_grad_spread_within_head"] = float((grad - grad.mean(1, keepdim=True)).abs().max()
                                                                  / grad.abs().max())
    pad = torch.zeros(2, 1, 10, dtype=torch.float64, device=device)
    pad[:, :, 7:] = float("-inf")
    xs2 = xs.clone()
    xs2[:, 7:] += 5.0
    with torch.no_grad():
        measured["masked_tokens_leak_into_real_outputs"] = float(
            (ref64(xs2, pad)[:, :7] - ref64(xs, pad)[:, :7]).abs().max())
    try:
        doc_runs = True
        e = torch.ones(1, 5, 5, 8, device=device)  # a broadcasting check: the values do not matter
        torch.einsum('bstn,hd->bshtn', e, torch.ones(2, 8, device=device)) * torch.exp(-e.norm(dim=-1, keepdim=True))
    except RuntimeError:
        doc_runs = False
    measured["documented_forward_runs_as_written"] = int(doc_runs)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(["reference\n(as written)", "optimized\n(factored)", "standard attention\n(SDPA)"],
           [v / MiB for v in peaks.values()], color=["tab:red", "tab:green", "tab:gray"])
    ax.axhline(PEAK_SHARE_MAX * peaks["reference"] / MiB, color="r", ls="--",
               label=f"rule: optimized <= {PEAK_SHARE_MAX:.0%} of the reference")
    ax.legend(fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("peak tensor MiB (log)")
    ax.set_title(f"RelativeForce forward, n={n}, dims={dims}, {heads} heads")
    fig.tight_layout()
    fig.savefig(ctx.figure_path("zoo04_relative_force_peak.png"), dpi=110)
    plt.close(fig)
    worst_diff = max(d for d in (measured[f"max_abs_diff_float32_n{n_val}"], measured[f"max_abs_diff_float32_n{n}"])
                     if d is not None)
    decisions = [decide("documented_forward_runs_as_written", doc_runs, at_least=1),
                 decide("optimized_over_reference_peak", measured["optimized_over_reference_peak"],
                        at_most=PEAK_SHARE_MAX),
                 decide("max_abs_diff_optimized_vs_reference_float32", worst_diff, at_most=MAX_ABS_DIFF),
                 decide("direction_modulator_grad_spread_within_head",
                        measured["direction_modulator_grad_spread_within_head"], at_least=GRAD_SPREAD_MIN)]
    return Outcome(
        decisions=decisions,
        headline="optimized_over_reference_peak",
        claimed="RelativeForce: force-field + multi-hop topological attention over [batch, seq, seq, dim] force "
                "tensors",
        measured=measured,
        rule=f"four deterministic decisions: (1) the documented forward runs as written (0/1); (2) tensor bytes, the "
             f"claim being about the cost of [batch, seq, seq, dim] tensors: an implementation with equal values needs "
             f"<= {PEAK_SHARE_MAX:.0%} of the reference's tensor peak at n=512, dims=256, 8 heads (FakeTensorMode); "
             f"(3) and its values are equal: max abs diff <= {MAX_ABS_DIFF:g} (float32, at n=192 and, in full CPU runs "
             f"with room for it, at n=512); (4) the direction modulator is direction-sensitive (its gradient varies "
             f"across dims within a head, relative spread >= {GRAD_SPREAD_MIN:g}). All hold -> holds, all fail -> "
             f"fails, else partial",
        evidence=f"Tensor peak (FakeTensorMode, forward) at n={n}: reference {peaks['reference'] / MiB:.0f} MiB, "
                 f"optimized {peaks['optimized'] / MiB:.1f} MiB "
                 f"({100 * measured['optimized_over_reference_peak']:.1f}%), standard SDPA attention "
                 f"{peaks['standard attention (SDPA)'] / MiB:.1f} MiB. The documented forward fails to broadcast; "
                 f"after the fix its einsum collapses each head's direction to Σ_d M[h, d] (gradient identical across "
                 f"dims); attention.zoo_relative_force_directional restores the dot product.",
        figures=["zoo04_relative_force_peak.png"],
        deviations=["exp(-force_magnitudes).unsqueeze(2) (the document's (B,n,H,n,d) x (B,n,n,1) does not broadcast).",
                    "force_field.sum(-1).transpose(1, 2) to the commented [batch, heads, seq, seq] layout.",
                    "A 3-D mask is read as (B, 1, n, n); a bool mask is refused (adding it would not mask)."])
