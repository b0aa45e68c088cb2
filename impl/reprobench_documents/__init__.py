"""The five design documents as a reprobench study: their components and claims, registered through the
same public surface any plugin uses, and loaded the same way (the entry point `documents` in the group
`reprobench.plugins`).

Importing this package imports every component module (each ends with one `register(...)`) and every
experiment module (each `@experiment(ID, text=..., source=...)` declares its claim where it is measured).
The documents themselves are described in the README; each claim's `source` names the one it comes from.
"""
from __future__ import annotations

import importlib
import pkgutil

from reprobench.registry import hold_to_strict_hygiene

FAMILIES = ("attention", "rotary", "regularizers", "optim", "equivariant", "models", "experiments")

# Our own code promises clear errors for bad input: its hygiene findings fail the suite like wrong answers.
hold_to_strict_hygiene(__name__)


def _import_all() -> None:
    for family in FAMILIES:
        package = importlib.import_module(f"{__name__}.{family}")
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            importlib.import_module(info.name)


_import_all()
