"""Helpers shared by the EQ experiments: the ARC colour count and the float64 device check."""
from __future__ import annotations


ARC_COLORS = 10  # ARC grids: 10 colours as input channels, the document's setting
from reprobench.claims import float64_unavailable, not_checkable  # noqa: F401  (the family imports them from here)


