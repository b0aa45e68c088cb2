"""The deterministic declarative kinds: FLOPs and tensor bytes (ratios, exponents, a ceiling) and the match
with the reference. Each is a zero-width decision.

What a memory kind reads (`measure`):
- ``peak`` (default): the peak of live tensor bytes created during the call (inputs and parameters, which
  exist before it, are not counted);
- ``overhead``: that peak minus the bytes the call leaves alive (its outputs, gradients, new state), i.e.
  memory excluding the inputs and the outputs: what a README means by "memory overhead";
- ``optimizer_state``: the bytes of the tensors in the optimizer's state after the `steps` steps (call
  optimizer_step or train_step), each storage counted once.
A forward whose estimated peak does not fit in memory by the bench's rule (reprobench.bench.cost:
MEMORY_FRACTION of the device's available memory) is measured under FakeTensorMode; the other calls always
run for real (their sizes must fit).
"""
from __future__ import annotations

from typing import Any

from reprobench.bench.cost import fake_forward, fits_in_memory
from reprobench.claims.declared_claim import DeclaredClaim
from reprobench.claims.kinds_common import MIB, describe_call, size_label, wrong_answer
from reprobench.claims.experiment import Outcome, RunContext
from reprobench.claims.kinds_config import config_at, describe_config
from reprobench.claims.kinds_checks import first_mismatch
from reprobench.claims.kinds_setup import Setup, draw_sample
from reprobench.measure.memory import available_bytes
from reprobench.measure.stats import MIN_R2, decide, fit_exponent_estimate

MEASURE_WORDS = {"peak": "the peak of live tensor bytes created during",
                 "overhead": "the peak tensor bytes minus those left alive (outputs, gradients, state) after",
                 "optimizer_state": "the bytes of the optimizer's state tensors after",
                 "flops": "the FLOPs (torch.utils.flop_counter) of"}


def _what(item: DeclaredClaim) -> str:
    return "flops" if item.kind.startswith("flops") else item.fields.get("measure", "peak")


def _count(what: str, call) -> int:
    from reprobench.measure import count_flops, peak_tensor_bytes

    if what == "flops":
        return count_flops(call)
    memory = peak_tensor_bytes(call)
    return memory.overhead_bytes if what == "overhead" else memory.peak_bytes


def _fake(item: DeclaredClaim, ctx: RunContext, size: int, of: tuple[str, str], what: str | None) -> float:
    """`what` of one forward of `of` = (component, implementation) on the claim component's bench input, under
    FakeTensorMode (the bench's fake_forward, on a fresh build); with `what` None, the peak tensor bytes plus
    the input's bytes (what a real run would hold)."""
    from reprobench.bench.cases import BENCH_SEED, bench_dtype
    from reprobench.registry import get, make_generator

    spec, target = get(item.fields["component"]), get(of[0])
    dtype = bench_dtype(spec)
    config = config_at(spec.name, item.fields, size, of=of[0])
    fn = getattr(target.build(config, ctx.device, dtype, make_generator(BENCH_SEED)), of[1])
    return fake_forward(fn, lambda: draw_sample(spec, size, ctx.device, dtype, make_generator(BENCH_SEED)),
                        None if what is None else lambda call: _count(what, call))


def measure_value(item: DeclaredClaim, ctx: RunContext, setup: Setup, of: tuple[str, str], what: str
                  ) -> tuple[float, bool]:
    """(`what` of the claim's call of `of`, measured under FakeTensorMode?)."""
    from reprobench.measure import optimizer_state_bytes

    if what == "optimizer_state":
        return float(optimizer_state_bytes(setup.subject(*of).optimizer)), False
    if setup.call == "forward":
        try:
            estimate = _fake(item, ctx, setup.size, of, None)
        except Exception:  # noqa: BLE001 - ops fake tensors cannot run (data-dependent): measure for real
            estimate = None
        if estimate is not None and not fits_in_memory(estimate, available_bytes(ctx.device)):
            return float(_fake(item, ctx, setup.size, of, what)), True
    return float(_count(what, setup.subject(*of).run)), False


def ratio(item: DeclaredClaim, ctx: RunContext) -> Outcome:
    """flops_ratio and memory_ratio: baseline / optimized, after the match checks."""
    size = item.sizes(ctx.quick)[0]
    setup = Setup(item, ctx, size)
    component, what = item.fields["component"], _what(item)
    label = size_label(component, size, setup.call)
    noun = "FLOP ratio" if what == "flops" else "memory ratio"
    checks = setup.checks()
    mismatch, _ = first_mismatch(checks, setup.inputs.seed)
    if mismatch is not None:
        return wrong_answer(item, label, mismatch, noun)
    of = setup.against() or (component, "reference")
    base, base_fake = measure_value(item, ctx, setup, of, what)
    cand, cand_fake = measure_value(item, ctx, setup, (component, "optimized"), what)
    if cand <= 0:
        raise ValueError(f"{component} (optimized) measures 0 for {what} at {label}: no ratio to take"
                         + (" (torch's FLOP counter sees matmul-like ops only)" if what == "flops" else ""))
    unit = "flops" if what == "flops" else f"{what}_bytes"
    quantity = f"{what}_ratio_vs_{of[0].replace('.', '_')}_{of[1]}_{label}"
    decision = decide(quantity, base / cand, at_least=item.fields["at_least"])
    config = describe_config(item.fields, size)
    return Outcome(
        claimed=item.text, measured={f"baseline_{unit}_{label}": base, f"optimized_{unit}_{label}": cand,
                                     "fake_tensor_mode": base_fake or cand_fake},
        rule=f"Primary (deterministic): {MEASURE_WORDS[what]} {describe_call(item)} of {of[0]} ({of[1]}) / the same of "
             f"{component} (optimized), on the bench input at {label}{f' ({config})' if config else ''}; holds if >= "
             f"{item.fields['at_least']:g}, else fails. Precondition: "
             f"{'; '.join(f'{c.what} within {c.tolerance}' for c in checks)} (else the claim fails on that alone).",
        evidence=decision.describe(), decisions=[decision])


def exponent(item: DeclaredClaim, ctx: RunContext) -> Outcome:
    """memory_exponent and flops_exponent: the log-log slope over the sizes."""
    component, implementation = item.fields["component"], item.fields["implementation"]
    what = _what(item)
    sizes = item.sizes(ctx.quick)
    values, faked = {}, []
    for size in sizes:
        values[size], fake = measure_value(item, ctx, Setup(item, ctx, size), (component, implementation), what)
        if fake:
            faked.append(size)
    zero = [s for s, v in values.items() if v <= 0]
    if zero:
        raise ValueError(f"{what} of {component} ({implementation}) is 0 at sizes {zero}: no exponent to fit")
    fit = fit_exponent_estimate(list(sizes), [values[s] for s in sizes], deterministic=True)
    name = "peak_tensor_bytes" if what == "peak" else f"{what}_bytes" if what != "flops" else "flops"
    decision = decide(f"{name}_exponent_{implementation}", fit.estimate, at_most=item.fields["at_most"], min_r2=MIN_R2)
    call = item.fields.get("call", "forward")
    measured: dict[str, Any] = {f"{name}_{size_label(component, s, call)}": values[s] for s in sizes}
    measured["fake_tensor_mode_sizes"] = len(faked)
    configs = [describe_config(item.fields, s) for s in sizes]
    return Outcome(
        claimed=item.text, measured=measured,
        rule=f"Primary (deterministic): the log-log slope of {MEASURE_WORDS[what]} {describe_call(item)} of "
             f"{component} ({implementation}) over sizes {list(sizes)}"
             f"{f' (configs: {configs})' if any(configs) else ''}; holds if <= {item.fields['at_most']:g}, else "
             f"fails; a fit with r² under {MIN_R2} (not one power law) is inconclusive.",
        evidence=decision.describe() + (f"; sizes {faked} measured under FakeTensorMode (they do not fit here)"
                                        if faked else ""),
        decisions=[decision])


def peak_memory(item: DeclaredClaim, ctx: RunContext) -> Outcome:
    component, implementation = item.fields["component"], item.fields["implementation"]
    size = item.sizes(ctx.quick)[0]
    setup = Setup(item, ctx, size)
    what = _what(item)
    value, fake = measure_value(item, ctx, setup, (component, implementation), what)
    label = size_label(component, size, setup.call)
    name = {"peak": "peak_tensor", "overhead": "overhead_tensor", "optimizer_state": "optimizer_state"}[what]
    decision = decide(f"{name}_mib_{implementation}_{label}", value / MIB, at_most=item.fields["at_most_mib"])
    return Outcome(
        claimed=item.text, measured={f"{name}_bytes_{label}": value, "fake_tensor_mode": fake},
        rule=f"Primary (deterministic): {MEASURE_WORDS[what]} {describe_call(item)} of {component} ({implementation}) "
             f"at {label} (inputs and parameters excluded), in MiB; holds if <= {item.fields['at_most_mib']:g}, else "
             "fails.",
        evidence=decision.describe() + (" (measured under FakeTensorMode)" if fake else ""), decisions=[decision])


def matches_reference(item: DeclaredClaim, ctx: RunContext) -> Outcome:
    """All of the sizes: one decision on the elements outside the tolerance, summed over them."""
    component = item.fields["component"]
    measured, total, words = {}, 0, ""
    for size in item.sizes(ctx.quick):
        setup = Setup(item, ctx, size)
        (check,) = setup.checks()
        mismatch, worst = first_mismatch([check])
        count = mismatch.count if mismatch else 0
        label = size_label(component, size)
        measured[f"elements_outside_tolerance_{label}"] = count
        measured[f"max_abs_error_{label}"] = mismatch.worst if mismatch else worst
        total, words = total + count, check.tolerance
    decision = decide("elements_outside_tolerance_all_sizes", total, at_most=0)
    bad = [key.rsplit("_", 1)[1] for key, value in measured.items() if key.startswith("elements_") and value]
    return Outcome(
        claimed=item.text, measured=measured,
        rule=f"Primary (deterministic), one property over all sizes: the output elements of {component} (optimized) "
             f"outside {words} of the reference on the same bench input, summed over sizes "
             f"{list(item.sizes(ctx.quick))}; holds if 0, else fails (one bad size fails the claim).",
        evidence=decision.describe() + (f"; outside at {', '.join(bad)}" if bad else "; every size within"),
        decisions=[decision])
