"""The claims ledger: every claim ID known to this run, with where it is made and its text.

The ledger holds no claims of its own. A study declares each claim once, with the experiment that
measures it (`@experiment(ID, text=..., source=...)`), or with `claim(...)` / a TOML file; the ledger,
`--only`, the report and the tests all read it from here. An ID declared without an experiment is
reported as `not-implemented`, so the gap stays visible.
"""
import re

# id -> (where the claim is made, the claim's text)
CLAIM_TEXTS: dict[str, tuple[str, str]] = {}
CLAIM_ID_PATTERN = re.compile(r"^[A-Z][A-Z0-9]*-[0-9A-Za-z_]+$")
DECLARED_BY: dict[str, str] = {}  # id -> the module that declared it


def claim(claim_id: str, text: str, *, source: str) -> str:
    """Add a claim to the ledger (plugins and TOML claim files): `ACME-01`, what the README says, and
    where it says it. A second definition of an ID is an error naming both places; returns the ID."""
    if not isinstance(claim_id, str) or not CLAIM_ID_PATTERN.match(claim_id):
        raise ValueError(f"claim id {claim_id!r}: expected PREFIX-NN, an upper-case prefix and a number or name "
                         "(e.g. 'ACME-01')")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"claim {claim_id}: text must be the sentence being checked, got {text!r}")
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"claim {claim_id}: source must say where the claim is made (a README, a paper), got {source!r}")
    return define_claim(claim_id, text, source=source, defined_by=_caller_module())


def define_claim(claim_id: str, text: str, *, source: str, defined_by: str) -> str:
    """`claim` with the declaring module given (the experiment decorator declares for its module)."""
    if not isinstance(claim_id, str) or not CLAIM_ID_PATTERN.match(claim_id):
        raise ValueError(f"claim id {claim_id!r}: expected PREFIX-NN, an upper-case prefix and a number or name "
                         "(e.g. 'ACME-01')")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"claim {claim_id}: text must be the sentence being checked, got {text!r}")
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"claim {claim_id}: source must say where the claim is made (a README, a paper), got {source!r}")
    if claim_id in CLAIM_TEXTS:
        if CLAIM_TEXTS[claim_id] == (source, text) and DECLARED_BY.get(claim_id) == defined_by:
            return claim_id  # the same module imported twice
        raise ValueError(f"claim {claim_id} defined by {defined_by} clashes with the claim of the same ID defined by "
                         f"{DECLARED_BY.get(claim_id, '?')}; choose another ID prefix")
    CLAIM_TEXTS[claim_id] = (source, text)
    DECLARED_BY[claim_id] = defined_by
    return claim_id


def _caller_module() -> str:
    import inspect

    frame = inspect.currentframe()
    try:
        caller = frame.f_back.f_back
        return caller.f_globals.get("__name__", "?") if caller is not None else "?"
    finally:
        del frame
