"""The timed declarative kinds: `speedup` (paired rounds, decide_speedup) and `time_exponent` (a log-log fit
over repeated rounds). Both draw fresh inputs before every round unless the claim says `fresh_inputs =
false`: where the inputs lie in memory can move a kernel's time by 15%, and rounds that share one draw
measure that draw, not the claim.

`speedup` times nothing before its match checks pass (kinds_setup.Setup.checks: the optimized twin against
its reference, an `against` optimized twin against its own reference, and with `same_output` the two
against each other) on the inputs about to be timed; a stateless call (forward, forward_backward) is
checked again on every round's new inputs. A mismatch is the claim's only decision, so it fails with the
mismatch as evidence and no speed figure.
"""
from __future__ import annotations

from reprobench.claims.declared_claim import DeclaredClaim
from reprobench.claims.kinds_common import describe_call, size_label, wrong_answer
from reprobench.claims.experiment import Outcome, RunContext
from reprobench.claims.kinds_config import describe_config
from reprobench.claims.kinds_checks import MismatchFound, first_mismatch, mismatch_in
from reprobench.claims.kinds_setup import Setup, tensors
from reprobench.measure.stats import MIN_R2, decide, fit_exponent_estimate


def _min_run_time(ctx: RunContext) -> float:
    return 0.01 if ctx.quick else 0.05


def speedup(item: DeclaredClaim, ctx: RunContext) -> Outcome:
    from reprobench.measure.timing import decide_speedup

    size = item.sizes(ctx.quick)[0]
    setup = Setup(item, ctx, size)
    component, call = item.fields["component"], setup.call
    label = size_label(component, size, call)
    candidate, baseline = setup.subject(component, "optimized"), setup.baseline()
    checks = setup.checks()
    mismatch, worst = first_mismatch(checks, setup.inputs.seed)
    if mismatch is not None:
        return wrong_answer(item, label, mismatch, "speed figure")
    against = setup.against()
    if against and not item.fields.get("same_output", False):
        _check_same_shapes(baseline, candidate)
    fresh = item.fields.get("fresh_inputs", True)
    recheck = fresh and setup.stateless

    def before_round() -> None:
        setup.redraw()
        if recheck:
            found, _ = first_mismatch(checks, setup.inputs.seed)
            if found is not None:
                raise MismatchFound(found)

    base_component, base_impl = against or (component, "reference")
    base_label = f"{base_component} ({base_impl})"
    quantity = f"speedup_vs_{base_component.replace('.', '_')}_{base_impl}_{label}"
    try:
        decision, comparison = decide_speedup(
            baseline.run, candidate.run, quantity=quantity, at_least=item.fields["at_least"],
            min_run_time=_min_run_time(ctx), budget_s=ctx.decision_budget_s, device=ctx.device,
            before_round=before_round if fresh else None)
    except Exception as exc:  # noqa: BLE001 - raised in this process, or in a round's worker process
        found = mismatch_in(exc)
        if found is None:
            raise
        return wrong_answer(item, label, found, "speed figure", when="on a later round's inputs")
    config = describe_config(item.fields, size)
    checked = "; ".join(f"{c.what} within {c.tolerance}" for c in checks)
    return Outcome(
        claimed=item.text,
        measured={f"baseline_ms_{label}": comparison.baseline.median_ms,
                  f"optimized_ms_{label}": comparison.candidate.median_ms, f"max_abs_error_{label}": worst,
                  "match_checks_before_timing": len(checks), "fresh_inputs_every_round": fresh,
                  "rechecked_every_round": recheck},
        rule=f"Primary: speedup = time of {base_label} / time of {component} (optimized), {describe_call(item)} on "
             f"the bench input at {label}{f' ({config})' if config else ''}, median of paired interleaved rounds "
             f"(>= 7, more while undecided){', new inputs every round' if fresh else ''}; holds if the whole interval "
             f"is >= {item.fields['at_least']:g}, fails if it is wholly below, else inconclusive. Precondition, before "
             f"timing{' and on every round' if recheck else ''}: {checked} (else the claim fails on that alone).",
        evidence=f"{decision.describe()}; {decision.extra.get('rounds', '?')} rounds on {ctx.device}.",
        decisions=[decision])


def _check_same_shapes(baseline, candidate) -> None:
    """Against a component that computes something else (no `same_output`), the two must at least return the
    same shapes from the same inputs: else the ratio compares unrelated work."""
    try:
        base = [tuple(t.shape) for t in tensors(baseline.results(False))]
    except Exception as exc:
        raise ValueError(f"baseline {baseline.label} does not take the inputs of {candidate.label}: "
                         f"{type(exc).__name__}: {exc}") from None
    want = [tuple(t.shape) for t in tensors(candidate.results(False))]
    if base != want:
        raise ValueError(f"baseline {baseline.label} returns shapes {base} where {candidate.label} returns {want}: "
                         "not the same computation")


def time_exponent(item: DeclaredClaim, ctx: RunContext) -> Outcome:
    from reprobench.measure.timing import time_interleaved

    component, implementation = item.fields["component"], item.fields["implementation"]
    sizes = item.sizes(ctx.quick)
    setups = {size: Setup(item, ctx, size) for size in sizes}
    calls = {size: setups[size].subject(component, implementation).run for size in sizes}
    rounds = 3 if ctx.quick else 5
    fresh = item.fields.get("fresh_inputs", True)
    if fresh:  # one interleaved round at a time, every size on new inputs
        medians: dict[int, list[float]] = {size: [] for size in sizes}
        for index in range(rounds):
            if index:
                for setup in setups.values():
                    setup.redraw()
            timings = time_interleaved(calls, rounds=1, min_run_time=_min_run_time(ctx), device=ctx.device)
            for size in sizes:
                medians[size].extend(timings[size].round_medians)
    else:
        timings = time_interleaved(calls, rounds=rounds, min_run_time=_min_run_time(ctx), device=ctx.device)
        medians = {size: list(timings[size].round_medians) for size in sizes}
    xs = [size for size in sizes for _ in medians[size]]
    ys = [t for size in sizes for t in medians[size]]
    fit = fit_exponent_estimate(xs, ys)
    decision = decide(f"time_exponent_{implementation}", fit.estimate, at_most=item.fields["at_most"], min_r2=MIN_R2)
    call = setups[sizes[0]].call
    measured = {f"median_ms_{size_label(component, s, call)}": sorted(medians[s])[len(medians[s]) // 2] * 1e3
                for s in sizes}
    measured["fresh_inputs_every_round"] = fresh
    return Outcome(
        claimed=item.text, measured=measured,
        rule=f"Primary: the log-log slope of the time of {describe_call(item)} of {component} ({implementation}) over "
             f"sizes {list(sizes)}, each interleaved round a separate point (t interval)"
             f"{', new inputs every round' if fresh else ''}; holds if the whole interval is <= "
             f"{item.fields['at_most']:g}, fails if it is wholly above, else inconclusive; a fit with r² under "
             f"{MIN_R2} is inconclusive.",
        evidence=decision.describe(), decisions=[decision])
