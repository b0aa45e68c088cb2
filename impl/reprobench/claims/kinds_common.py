"""What the declarative kinds share: the bench pair check's tolerance, size labels, the wrong-answer outcome.
Imports no kind module, so every kind can import it. The memory rule and the tolerance factor are the
bench's own (reprobench.bench.cost, reprobench.bench.pair_check), re-exported here for code that imported
them from the kinds."""
from __future__ import annotations

import math

import torch
from torch.utils._pytree import tree_flatten

from reprobench.bench.cost import MEMORY_FRACTION  # noqa: F401
from reprobench.bench.pair_check import TOLERANCE_FACTOR, pair_tolerance
from reprobench.claims.declared_claim import DeclaredClaim
from reprobench.claims.experiment import Outcome
from reprobench.measure.memory import available_bytes  # noqa: F401
from reprobench.measure.stats import decide

MIB = 2 ** 20
LOGIC = "all-of"  # every kind is one statement; its preconditions and sizes are parts of it
TIMED_KINDS = ("speedup", "time_exponent")  # --quick times fewer or shorter rounds



def tensors(output) -> list[torch.Tensor]:
    return [t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)]


def size_label(component: str, size: int, call: str = "forward") -> str:
    from reprobench.registry import get

    return f"n{size}" if call == "optimizer_step" else f"{get(component).size_name}{size}"


def outside_tolerance(reference_out, optimized_out, atol: float, rtol: float) -> tuple[int, float | None]:
    """(elements where |optimized - reference| > atol + rtol * |reference|, largest absolute error).

    Equal values (infinities included) and NaN where the reference has NaN agree; a shape or structure
    mismatch counts every element. The largest error is None where it is not a finite number.
    """
    refs, opts = tensors(reference_out), tensors(optimized_out)
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


def tolerance(component: str, item: DeclaredClaim, dtype: torch.dtype | None = None) -> tuple[float, float, str]:
    """(atol, rtol, words) of the match check: the claim's atol/rtol, else 10x the component's test tolerance
    at `dtype` (default: its bench dtype), as the bench's pair check."""
    from reprobench.registry import get

    pair_atol, pair_rtol = pair_tolerance(get(component), dtype)
    atol = item.fields.get("atol", pair_atol)
    rtol = item.fields.get("rtol", pair_rtol)
    given = "atol" in item.fields or "rtol" in item.fields
    how = "as given in the claim" if given else f"{TOLERANCE_FACTOR}x the component's test tolerance, as the bench"
    return atol, rtol, f"atol={atol:g}, rtol={rtol:g} ({how})"


def wrong_answer(item: DeclaredClaim, label: str, mismatch, what: str, when: str = "before timing") -> Outcome:
    """The outcome of a ratio whose match check failed: the mismatch is the only decision (count at most 0)."""
    seed = f" (inputs drawn with seed {mismatch.seed})" if mismatch.seed is not None else ""
    return Outcome(
        claimed=item.text, measured={mismatch.quantity: mismatch.count, f"max_abs_error_{label}": mismatch.worst},
        rule=f"Precondition: {mismatch.what} agree within {mismatch.tolerance} on the measured inputs; a {what} of a "
             "wrong answer is not reported, so the claim fails on this decision alone (count at most 0).",
        evidence=f"{mismatch.what} at {label}, {when}{seed}: {mismatch.count} result elements outside the tolerance "
                 f"(largest difference {mismatch.worst}); no {what} was measured.",
        decisions=[decide(mismatch.quantity, mismatch.count, at_most=0)])


def describe_call(item: DeclaredClaim) -> str:
    """The measured call in words, for rules."""
    fields = item.fields
    call = fields.get("call", "forward")
    loss = fields.get("loss", "sum")
    return {"forward": "one forward under no_grad",
            "forward_backward": f"one forward + backward of the {loss} of the outputs",
            "train_step": f"one training step (forward, {loss} of the outputs, backward, "
                          f"{fields.get('optimizer', 'sgd')} step) after {fields.get('steps', 1)} untimed step(s)",
            "optimizer_step": f"one optimizer step over an (n, n) weight and an (n,) bias after "
                              f"{fields.get('steps', 1)} untimed step(s)"}[call]
