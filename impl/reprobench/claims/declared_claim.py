"""One validated `[[claim]]` table of a TOML claim file (parsed by claims.declarative, measured by the kinds)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DeclaredClaim:
    """One validated `[[claim]]` table."""

    id: str
    text: str
    source: str
    kind: str
    fields: dict[str, Any]  # the kind's fields, checked and normalised
    origin: str  # "FILE: claim ID", for messages

    def sizes(self, quick: bool) -> tuple[int, ...]:
        """The sizes to measure: quick_sizes/quick_size in a quick run where given, else sizes/size."""
        if "sizes" in self.fields:
            return self.fields.get("quick_sizes", self.fields["sizes"]) if quick else self.fields["sizes"]
        return (self.fields.get("quick_size", self.fields["size"]) if quick else self.fields["size"],)
