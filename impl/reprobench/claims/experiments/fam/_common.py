"""Shared by the FAM experiments: the deviations every outcome lists, and the float64 device check."""
from __future__ import annotations

from reprobench.claims.experiment import Outcome, RunContext

DEVIATIONS = [
    "FAM sampling draws from an explicit torch.Generator held by the optimizer (state saved in state_dict) "
    "instead of the global RNG.",
    "print -> logging; arguments are validated up front (ValueError/TypeError naming the argument); an unknown "
    "handler name fails at construction, not as a KeyError inside step().",
    "Sparse gradients raise SparseGradientError, a RuntimeError (as written) that is also a TypeError.",
]

FLOAT64_DEVICES_MISSING = ("mps",)  # devices without float64 kernels


def float64_unavailable(ctx: RunContext) -> str | None:
    """Why a float64 experiment cannot run on ctx.device (its tolerances assume float64), or None."""
    if ctx.device.type in FLOAT64_DEVICES_MISSING:
        return f"{ctx.device.type} has no float64; this check's tolerances assume float64"
    return None


def not_checkable(claimed: str, rule: str, reason: str) -> Outcome:
    return Outcome(verdict="not-checkable-here", claimed=claimed, measured={}, rule=rule,
                   evidence=f"Not run on this device: {reason}.", deviations=DEVIATIONS)

