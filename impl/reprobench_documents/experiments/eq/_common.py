"""Helpers shared by the EQ experiments: the ARC colour count."""
from __future__ import annotations


ARC_COLORS = 10  # ARC grids: 10 colours as input channels, the document's setting
