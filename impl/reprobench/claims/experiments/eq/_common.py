"""Helpers shared by the EQ experiments: the ARC colour count and the float64 device check."""
from __future__ import annotations

from reprobench.claims.experiment import Outcome, RunContext

ARC_COLORS = 10  # ARC grids: 10 colours as input channels, the document's setting
FLOAT64_DEVICES_MISSING = ("mps",)  # devices without float64 kernels


def float64_unavailable(ctx: RunContext) -> str | None:
    """Why a float64 experiment cannot run on ctx.device (its tolerances assume float64), or None."""
    if ctx.device.type in FLOAT64_DEVICES_MISSING:
        return f"{ctx.device.type} has no float64; this check's tolerances assume float64"
    return None


def not_checkable(claimed: str, rule: str, reason: str) -> Outcome:
    return Outcome(verdict="not-checkable-here", claimed=claimed, measured={}, rule=rule,
                   evidence=f"Not run on this device: {reason}.")
