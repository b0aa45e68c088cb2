"""What each declarative claim kind measures and how it decides (the file format is in declarative.py).

Every kind measures one forward call (under no_grad) of the component's bench configuration on its
bench inputs, on `ctx.device`, like `reprobench bench`. Deterministic measures (tensor bytes, FLOPs,
element counts) are zero-width decisions; times come from paired, interleaved rounds. A size whose
tensor peak would not fit in memory here is measured under FakeTensorMode (nothing is allocated):
the peak is estimated that way first, before anything real runs at that size.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable

import torch
from torch.utils._pytree import tree_flatten

from reprobench.claims.declarative import DeclaredClaim
from reprobench.claims.experiment import Outcome, RunContext
from reprobench.measure.stats import MIN_R2, decide, fit_exponent_estimate

MEMORY_FRACTION = 0.5  # a size whose estimated peak exceeds this share of free memory is measured fake
TOLERANCE_FACTOR = 10  # the bench's pair check: bench sizes accumulate more float error than test sizes
MIB = 2 ** 20


def experiment_for(item: DeclaredClaim) -> Callable[[RunContext], Outcome]:
    measure = {"speedup": _speedup, "flops_ratio": _flops_ratio, "time_exponent": _time_exponent,
               "memory_exponent": _deterministic_exponent, "flops_exponent": _deterministic_exponent,
               "peak_memory": _peak_memory, "matches_reference": _matches_reference}[item.kind]

    def run(ctx: RunContext) -> Outcome:
        return measure(item, ctx)

    run.__name__ = run.__qualname__ = f"declared_{item.id.replace('-', '_')}"
    return run


# --- building and calling ---------------------------------------------------------------------------

def _case(component: str, size: int, implementation: str, ctx: RunContext):
    from reprobench.bench import bench_case

    return bench_case(component, size, implementation, str(ctx.device))


def _forward(fn, sample) -> Callable[[], Any]:
    def call():
        with torch.no_grad():
            return fn(*sample.args, **sample.kwargs)
    return call


def _size_label(component: str, size: int) -> str:
    from reprobench.registry import get

    return f"{get(component).size_name}{size}"


def _tensors(output) -> list:
    return [t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)]


def outside_tolerance(reference_out, optimized_out, atol: float, rtol: float) -> tuple[int, float | None]:
    """(elements where |optimized - reference| > atol + rtol * |reference|, largest absolute error).

    Equal values (infinities included) and NaN where the reference has NaN agree; a shape or structure
    mismatch counts every element. The largest error is None where it is not a finite number.
    """
    refs, opts = _tensors(reference_out), _tensors(optimized_out)
    if len(refs) != len(opts):
        return sum(t.numel() for t in refs + opts), None
    outside, worst = 0, 0.0
    for r, o in zip(refs, opts):
        if r.shape != o.shape:
            outside += max(r.numel(), o.numel())
            worst = math.inf
            continue
        r64, o64 = r.detach().double(), o.detach().double()
        same = (r64 == o64) | (r64.isnan() & o64.isnan())
        diff = (o64 - r64).abs()
        bad = ~same & ~(diff <= atol + rtol * r64.abs())  # NaN differences count as outside
        outside += int(bad.sum())
        if diff.numel():
            worst = max(worst, float(torch.where(same, torch.zeros_like(diff), diff).nan_to_num(math.inf).max()))
    return outside, worst if math.isfinite(worst) else None


def _tolerance(component: str, item: DeclaredClaim) -> tuple[float, float, str]:
    from reprobench.bench import bench_dtype
    from reprobench.registry import get

    spec = get(component)
    tol = spec.tolerances[bench_dtype(spec)]
    atol = item.fields.get("atol", tol.atol * TOLERANCE_FACTOR)
    rtol = item.fields.get("rtol", tol.rtol * TOLERANCE_FACTOR)
    given = "atol" in item.fields or "rtol" in item.fields
    how = "as given in the claim" if given else f"{TOLERANCE_FACTOR}x the component's test tolerance, as the bench"
    return atol, rtol, how


def _pair_check(item: DeclaredClaim, size: int, ctx: RunContext):
    """Reference and optimized on the same bench input: (cases, outside count, max error, tolerance words)."""
    component = item.fields["component"]
    reference, optimized = _case(component, size, "reference", ctx), _case(component, size, "optimized", ctx)
    atol, rtol, how = _tolerance(component, item)
    count, worst = outside_tolerance(reference.forward()(), optimized.forward()(), atol, rtol)
    return reference, optimized, count, worst, f"atol={atol:g}, rtol={rtol:g} ({how})"


# --- deterministic measures, fake where a size does not fit -----------------------------------------

def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _fake(component: str, of: tuple[str, str], size: int, ctx: RunContext, measure=None) -> float:
    """`measure(call)` of one forward of `of` = (component, implementation) on `component`'s bench input,
    under FakeTensorMode; without `measure`, the peak tensor bytes of the call plus the input's bytes (what a
    real run would hold). The module is built for real (parameters do not grow with the size); only the
    inputs are fake."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from reprobench.bench import BENCH_SEED, bench_dtype
    from reprobench.registry import get, make_generator

    spec, target = get(component), get(of[0])
    dtype = bench_dtype(spec)
    fn = getattr(target.build(target.config(bench=True), ctx.device, dtype, make_generator(BENCH_SEED)), of[1])
    with FakeTensorMode(allow_non_fake_inputs=True):
        sample = spec.inputs(size, ctx.device, dtype, make_generator(BENCH_SEED), bench=True)[-1]
        if measure is None:
            inputs = sum(t.untyped_storage().nbytes() for t in _tensors((sample.args, sample.kwargs)))
            return inputs + _peak_bytes(_forward(fn, sample))
        return measure(_forward(fn, sample))


def _peak_bytes(call) -> int:
    from reprobench.measure import peak_tensor_bytes

    return peak_tensor_bytes(call).peak_bytes


def _count_flops(call) -> int:
    from reprobench.measure import count_flops

    return count_flops(call)


def measure_forward(component: str, size: int, ctx: RunContext, measure, of: tuple[str, str]) -> tuple[float, bool]:
    """(measure of one forward, measured under FakeTensorMode?): real when the FakeTensorMode estimate of the
    peak fits in MEMORY_FRACTION of the free memory (or fake tensors cannot run it), else fake."""
    try:
        estimate = _fake(component, of, size, ctx)
    except Exception:  # noqa: BLE001 - ops fake tensors cannot run (data-dependent): measure for real
        estimate = None
    if estimate is not None and estimate > MEMORY_FRACTION * available_bytes(ctx.device):
        return float(_fake(component, of, size, ctx, measure)), True
    sample = _case(component, size, "optimized", ctx).sample
    fn = _case(of[0], size, of[1], ctx).fn
    return float(measure(_forward(fn, sample))), False


# --- the kinds --------------------------------------------------------------------------------------

def _baseline(item: DeclaredClaim) -> tuple[tuple[str, str], str]:
    component, baseline = item.fields["component"], item.fields["baseline"]
    if baseline == "reference":
        return (component, "reference"), f"{component} (reference)"
    implementation = item.fields.get("baseline_implementation", "optimized")
    return (baseline, implementation), f"{baseline} ({implementation})"


def _wrong_answer(item: DeclaredClaim, size: int, count: int, worst, tolerance: str, what: str) -> Outcome:
    label = _size_label(item.fields["component"], size)
    return Outcome(
        claimed=item.text, measured={f"elements_outside_tolerance_{label}": count, f"max_abs_error_{label}": worst},
        rule=f"Precondition: the optimized output equals the reference's within {tolerance}; a {what} of a wrong "
             "answer is not reported, so the claim fails on this decision alone (count at most 0).",
        evidence=f"{item.fields['component']} at {label}: {count} output elements outside the tolerance; no {what} "
                 "was measured.",
        decisions=[decide(f"elements_outside_tolerance_{label}", count, at_most=0)])


def _speedup(item: DeclaredClaim, ctx: RunContext) -> Outcome:
    from reprobench.measure.timing import decide_speedup

    size = item.sizes(ctx.quick)[0]
    reference, optimized, count, worst, tolerance = _pair_check(item, size, ctx)
    if count:
        return _wrong_answer(item, size, count, worst, tolerance, "speed figure")
    (base_component, base_impl), base_label = _baseline(item)
    base_fn = reference.fn if base_component == item.fields["component"] else _case(base_component, size, base_impl, ctx).fn
    _check_same_inputs(base_label, base_fn, optimized)
    label = _size_label(item.fields["component"], size)
    quantity = f"speedup_vs_{base_component.replace('.', '_')}_{base_impl}_{label}"
    decision, comparison = decide_speedup(
        _forward(base_fn, optimized.sample), optimized.forward(), quantity=quantity, at_least=item.fields["at_least"],
        min_run_time=0.01 if ctx.quick else 0.05, budget_s=ctx.decision_budget_s, device=ctx.device)
    return Outcome(
        claimed=item.text,
        measured={f"baseline_ms_{label}": comparison.baseline.median_ms, f"optimized_ms_{label}": comparison.candidate.median_ms,
                  f"max_abs_error_{label}": worst},
        rule=f"Primary: speedup = time of {base_label} / time of {item.fields['component']} (optimized), one forward "
             f"under no_grad on the bench input at {label}, median of paired interleaved rounds (>= 7, more while "
             f"undecided); holds if the whole interval is >= {item.fields['at_least']:g}, fails if it is wholly below, "
             f"else inconclusive. Precondition: optimized equals reference within {tolerance} (else the claim fails).",
        evidence=f"{decision.describe()}; {decision.extra.get('rounds', '?')} rounds on {ctx.device}.",
        decisions=[decision])


def _check_same_inputs(base_label: str, base_fn, optimized) -> None:
    try:
        base_out = _forward(base_fn, optimized.sample)()
    except Exception as exc:
        raise ValueError(f"baseline {base_label} does not take the inputs of {optimized.spec.name} "
                         f"({optimized.sample.summary()}): {type(exc).__name__}: {exc}") from None
    shapes = [tuple(t.shape) for t in _tensors(base_out)]
    want = [tuple(t.shape) for t in _tensors(optimized.forward()())]
    if shapes != want:
        raise ValueError(f"baseline {base_label} returns shapes {shapes} where {optimized.spec.name} returns {want}: "
                         "not the same computation")


def _flops_ratio(item: DeclaredClaim, ctx: RunContext) -> Outcome:
    size = item.sizes(ctx.quick)[0]
    _, _, count, worst, tolerance = _pair_check(item, size, ctx)
    if count:
        return _wrong_answer(item, size, count, worst, tolerance, "FLOP ratio")
    component = item.fields["component"]
    of, base_label = _baseline(item)
    base, base_fake = measure_forward(component, size, ctx, _count_flops, of)
    cand, cand_fake = measure_forward(component, size, ctx, _count_flops, (component, "optimized"))
    if cand <= 0:
        raise ValueError(f"{component} (optimized) counts 0 FLOPs at {_size_label(component, size)}: no ratio to take "
                         "(torch's FLOP counter sees matmul-like ops only)")
    label = _size_label(component, size)
    decision = decide(f"flops_ratio_vs_{of[0].replace('.', '_')}_{of[1]}_{label}", base / cand,
                      at_least=item.fields["at_least"])
    return Outcome(
        claimed=item.text, measured={f"baseline_flops_{label}": base, f"optimized_flops_{label}": cand,
                                     "fake_tensor_mode": base_fake or cand_fake},
        rule=f"Primary (deterministic): FLOPs of {base_label} / FLOPs of {component} (optimized), one forward on the "
             f"bench input at {label} (torch.utils.flop_counter); holds if >= {item.fields['at_least']:g}, else fails. "
             f"Precondition: optimized equals reference within {tolerance}.",
        evidence=decision.describe(), decisions=[decision])


def _time_exponent(item: DeclaredClaim, ctx: RunContext) -> Outcome:
    from reprobench.measure.timing import time_interleaved

    component, implementation = item.fields["component"], item.fields["implementation"]
    sizes = item.sizes(ctx.quick)
    calls = {size: _case(component, size, implementation, ctx).forward() for size in sizes}
    timings = time_interleaved(calls, rounds=3 if ctx.quick else 5, min_run_time=0.01 if ctx.quick else 0.05,
                               device=ctx.device)
    xs = [size for size in sizes for _ in timings[size].round_medians]
    ys = [t for size in sizes for t in timings[size].round_medians]
    fit = fit_exponent_estimate(xs, ys)
    decision = decide(f"time_exponent_{implementation}", fit.estimate, at_most=item.fields["at_most"], min_r2=MIN_R2)
    return Outcome(
        claimed=item.text,
        measured={f"median_ms_{_size_label(component, s)}": timings[s].median_ms for s in sizes},
        rule=f"Primary: the log-log slope of the time of one forward of {component} ({implementation}) over sizes "
             f"{list(sizes)}, each interleaved round a separate point (t interval); holds if the whole interval is "
             f"<= {item.fields['at_most']:g}, fails if it is wholly above, else inconclusive; a fit with r² under "
             f"{MIN_R2} is inconclusive.",
        evidence=decision.describe(), decisions=[decision])


def _deterministic_exponent(item: DeclaredClaim, ctx: RunContext) -> Outcome:
    component, implementation = item.fields["component"], item.fields["implementation"]
    what, measure = (("peak_tensor_bytes", _peak_bytes) if item.kind == "memory_exponent" else ("flops", _count_flops))
    sizes = item.sizes(ctx.quick)
    values, faked = {}, []
    for size in sizes:
        values[size], fake = measure_forward(component, size, ctx, measure, (component, implementation))
        if fake:
            faked.append(size)
    zero = [s for s, v in values.items() if v <= 0]
    if zero:
        raise ValueError(f"{what} of {component} ({implementation}) is 0 at sizes {zero}: no exponent to fit")
    fit = fit_exponent_estimate(list(sizes), [values[s] for s in sizes], deterministic=True)
    decision = decide(f"{what}_exponent_{implementation}", fit.estimate, at_most=item.fields["at_most"], min_r2=MIN_R2)
    measured: dict[str, Any] = {f"{what}_{_size_label(component, s)}": values[s] for s in sizes}
    measured["fake_tensor_mode_sizes"] = len(faked)
    return Outcome(
        claimed=item.text, measured=measured,
        rule=f"Primary (deterministic): the log-log slope of {what} of one forward of {component} ({implementation}) "
             f"over sizes {list(sizes)}; holds if <= {item.fields['at_most']:g}, else fails; a fit with r² under "
             f"{MIN_R2} (not one power law) is inconclusive.",
        evidence=decision.describe() + (f"; sizes {faked} measured under FakeTensorMode (they do not fit here)"
                                        if faked else ""),
        decisions=[decision])


def _peak_memory(item: DeclaredClaim, ctx: RunContext) -> Outcome:
    component, implementation = item.fields["component"], item.fields["implementation"]
    size = item.sizes(ctx.quick)[0]
    peak, fake = measure_forward(component, size, ctx, _peak_bytes, (component, implementation))
    label = _size_label(component, size)
    decision = decide(f"peak_tensor_mib_{implementation}_{label}", peak / MIB, at_most=item.fields["at_most_mib"])
    return Outcome(
        claimed=item.text, measured={f"peak_tensor_bytes_{label}": peak, "fake_tensor_mode": fake},
        rule=f"Primary (deterministic): the peak of live tensor bytes created during one forward of {component} "
             f"({implementation}) at {label} (inputs and parameters excluded), in MiB; holds if <= "
             f"{item.fields['at_most_mib']:g}, else fails.",
        evidence=decision.describe() + (" (measured under FakeTensorMode)" if fake else ""), decisions=[decision])


def _matches_reference(item: DeclaredClaim, ctx: RunContext) -> Outcome:
    component = item.fields["component"]
    decisions, measured, tolerance = [], {}, ""
    for size in item.sizes(ctx.quick):
        _, _, count, worst, tolerance = _pair_check(item, size, ctx)
        label = _size_label(component, size)
        measured[f"max_abs_error_{label}"] = worst
        decisions.append(decide(f"elements_outside_tolerance_{label}", count, at_most=0))
    return Outcome(
        claimed=item.text, measured=measured,
        rule=f"Primary (deterministic): at every size, the count of output elements of {component} (optimized) "
             f"outside {tolerance} of the reference on the same bench input; each holds if 0, else fails.",
        evidence="; ".join(d.describe() for d in decisions), decisions=decisions)
