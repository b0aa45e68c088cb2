"""The match checks before a declarative ratio: one implementation's results against another's within a
tolerance (what `results()` returns is in kinds_setup.py). A failing check is a `Mismatch`; raised from a
timed round as `MismatchFound`, it may cross a worker process as text, and `mismatch_in` reads it back.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

MISMATCH_MARK = "reprobench-mismatch"  # tags a mismatch's JSON in an exception message, across processes


@dataclass
class Check:
    """One match check: `subject`'s results against `oracle`'s within a tolerance."""

    subject: Any
    oracle: Any
    atol: float
    rtol: float
    tolerance: str  # the tolerance in words, for the rule
    quantity: str  # the decision's name when the check fails
    what: str  # "acme.x (optimized) vs acme.x (reference)"
    with_parameters: bool = True  # compare parameter gradients by name (twins of one component only)


@dataclass
class Mismatch:
    quantity: str  # the decision's name (Check.quantity)
    what: str  # which two results disagree (Check.what)
    tolerance: str  # in words (Check.tolerance)
    count: int  # result elements outside the tolerance
    worst: float | None  # the largest absolute difference, None where it is not finite
    seed: int | None = None  # the seed the disagreeing inputs were drawn with


class MismatchFound(ValueError):
    """Raised from a round's redraw when the new inputs give a mismatch, so the timing stops there. The
    message carries the mismatch as JSON: a round in a worker process comes back as that process's
    traceback text, and `mismatch_in` reads it from there."""

    def __init__(self, mismatch: Mismatch):
        super().__init__(f"{mismatch.what}: {mismatch.count} elements outside {mismatch.tolerance} "
                         f"[{MISMATCH_MARK} {json.dumps(asdict(mismatch))}]")
        self.mismatch = mismatch


def mismatch_in(exc: BaseException) -> Mismatch | None:
    """The Mismatch a MismatchFound carried, raised here or in a worker process; None for other errors."""
    if isinstance(exc, MismatchFound):
        return exc.mismatch
    found = re.search(rf"\[{MISMATCH_MARK} (\{{.*?\}})\]", str(exc))
    return Mismatch(**json.loads(found.group(1))) if found else None


def first_mismatch(checks: list[Check], seed: int | None = None) -> tuple[Mismatch | None, float | None]:
    """(the first failing check, or None; the largest error over all checks that ran)."""
    from reprobench.claims.kinds_common import outside_tolerance

    worst_seen = None
    for check in checks:
        count, worst = outside_tolerance(check.oracle.results(check.with_parameters),
                                         check.subject.results(check.with_parameters), check.atol, check.rtol)
        if count:
            return Mismatch(check.quantity, check.what, check.tolerance, count, worst, seed), worst
        worst_seen = worst if worst_seen is None or (worst is not None and worst > worst_seen) else worst_seen
    return None, worst_seen
