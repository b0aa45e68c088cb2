"""What each declarative claim kind measures and how it decides (the file format is in declarative.py).

Every kind measures the claim's `call` (kinds_setup.py: forward by default, forward_backward, train_step,
optimizer_step) of the component's bench configuration, with the claim's `config` / `config_per_size`
(kinds_config.py), on its bench inputs, on `ctx.device`, like `reprobench bench`. Deterministic measures
(tensor bytes, FLOPs, element counts) are zero-width decisions (kinds_counted.py); times come from paired,
interleaved rounds on fresh inputs (kinds_timed.py). A forward whose tensor peak would not fit in memory
here is measured under FakeTensorMode (nothing is allocated): the peak is estimated that way first.

How a kind's parts combine: every kind is one statement, declared `logic="all-of"` (`declaration_for`):
- `speedup`, `flops_ratio`, `memory_ratio`: one decision. Their match checks are preconditions, all of
  which must hold: the first mismatch is the claim's only decision, so it fails and no ratio is reported.
- `time_exponent`, `memory_exponent`, `flops_exponent`, `peak_memory`: one decision.
- `matches_reference`: one property over all its sizes ("exact for any n"): one decision on the elements
  outside the tolerance summed over the sizes; one bad size fails the claim, never `partial`.
A `--quick` run is judged only where it measures what the full run does: a deterministic kind without
`quick_size`/`quick_sizes`. Otherwise (other sizes, or fewer timed rounds) its figures are reported unjudged.
"""
from __future__ import annotations

from typing import Callable

from reprobench.claims.declared_claim import DeclaredClaim
from reprobench.claims.experiment import Outcome, RunContext
# The shared helpers are re-exported: code that imported them from here keeps working.
from reprobench.claims.kinds_common import (LOGIC, MEMORY_FRACTION, MIB, TIMED_KINDS, TOLERANCE_FACTOR,  # noqa: F401
                                            available_bytes, describe_call, outside_tolerance, size_label, tolerance,
                                            wrong_answer)

def experiment_for(item: DeclaredClaim) -> Callable[[RunContext], Outcome]:
    from reprobench.claims import kinds_counted, kinds_timed

    measure = {"speedup": kinds_timed.speedup, "time_exponent": kinds_timed.time_exponent,
               "flops_ratio": kinds_counted.ratio, "memory_ratio": kinds_counted.ratio,
               "memory_exponent": kinds_counted.exponent, "flops_exponent": kinds_counted.exponent,
               "peak_memory": kinds_counted.peak_memory, "matches_reference": kinds_counted.matches_reference}[item.kind]

    def run(ctx: RunContext) -> Outcome:
        return measure(item, ctx).with_logic(LOGIC)

    run.__name__ = run.__qualname__ = f"declared_{item.id.replace('-', '_')}"
    return run


def declaration_for(item: DeclaredClaim) -> dict:
    """The keywords of `experiment(...)` for a declared claim: its logic, and whether --quick is judged."""
    same_in_quick = not ({"quick_size", "quick_sizes"} & set(item.fields))
    return {"logic": LOGIC, "quick_judged": same_in_quick and item.kind not in TIMED_KINDS}


# --- shared by the kinds ----------------------------------------------------------------------------

