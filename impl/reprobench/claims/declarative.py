"""Declarative claims: the common README sentences ("2x faster than SDPA", "O(n) memory", "under
64 MiB", "matches the reference") written as TOML and checked with no Python.

`reprobench verify --claims FILE.toml` (repeatable) reads every `[[claim]]` table:

    [[claim]]
    id = "ACME-10"                    # PREFIX-NN, as for Python claims
    text = "2x faster than its reference at n = 1024"
    source = "acme-attention README"
    kind = "speedup"                  # one of KINDS below, each with its own fields
    component = "acme.window_attention"
    baseline = "reference"
    size = 1024
    at_least = 2.0

Optional fields choose what is measured: `call` (forward, forward_backward, train_step, optimizer_step:
kinds_setup.py), `against` another registered component, `measure` (peak, overhead, optimizer_state:
kinds_counted.py), `config` and `config_per_size` (closed rules, no expressions: kinds_config.py) and
`fresh_inputs` (kinds_timed.py); the README has the full table.

Each claim is added to the ledger with `claims.claim(...)` and measured by an experiment registered
with `claims.experiment(...)` (see declarative_kinds.py), so the runner, the report and `--only`
treat it like any other claim. The whole file is checked before anything runs, and a mistake is one
line naming the file, the claim and the field (unknown kind or key, missing field, wrong type,
unknown component): a typo must not turn into a silently different claim.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

IMPLEMENTATIONS = ("reference", "optimized")


class ClaimFileError(ValueError):
    """A claim file that cannot be used; the message is one line naming the file, claim and field."""


# --- field checks: each returns the value (normalised) or raises ValueError saying what was expected ---

def _string(value, _ctx=None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _positive(value, _ctx=None) -> float:
    number = _number(value)
    if number <= 0:
        raise ValueError(f"expected a number > 0, got {value!r}")
    return number


def _non_negative(value, _ctx=None) -> float:
    number = _number(value)
    if number < 0:
        raise ValueError(f"expected a number >= 0, got {value!r}")
    return number


def _size(value, _ctx=None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected an integer >= 1, got {value!r}")
    return value


def _sizes(minimum: int) -> Callable:
    def check(value, _ctx=None) -> tuple[int, ...]:
        if not isinstance(value, list) or not value:
            raise ValueError(f"expected a list of integers >= 1, got {value!r}")
        sizes = tuple(_size(v) for v in value)
        if len(set(sizes)) < minimum:
            raise ValueError(f"expected at least {minimum} distinct sizes, got {value!r}")
        return sizes
    return check


def _implementation(value, _ctx=None) -> str:
    if value not in IMPLEMENTATIONS:
        raise ValueError(f"expected one of {IMPLEMENTATIONS}, got {value!r}")
    return value


def _component(value, _ctx=None) -> str:
    from reprobench.registry import list_components

    name = _string(value)
    names = [spec.name for spec in list_components()]
    if name not in names:
        family = name.split(".", 1)[0] + "."
        near = [n for n in names if n.startswith(family)]
        hint = f"; registered in that family: {', '.join(near)}" if near else "; `reprobench list` shows the registered ones"
        raise ValueError(f"no registered component {name!r} (load its plugin with --plugin MODULE?){hint}")
    return name


def _baseline(value, _ctx=None) -> str:
    return "reference" if value == "reference" else _component(value)


def _choice(options: tuple[str, ...]) -> Callable:
    def check(value, _ctx=None) -> str:
        if value not in options:
            raise ValueError(f"expected one of {options}, got {value!r}")
        return value
    return check


def _bool(value, _ctx=None) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _table(value, _ctx=None) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"expected a table, got {value!r}")
    return value  # its entries are checked against the component (kinds_config)


def _optimizer(value, _ctx=None) -> str:
    if value in TORCH_OPTIMIZERS:
        return value
    try:
        return _component(value)
    except ValueError as exc:
        raise ValueError(f"expected one of {TORCH_OPTIMIZERS} (torch.optim) or a registered optimizer component; {exc}") from None


# What a claim measures (`call`); see kinds_setup.py for each.
CALLS = ("forward", "forward_backward", "train_step", "optimizer_step")
LOSSES = ("sum", "mean")  # the scalar a backward call starts from: the sum or the mean of the outputs
TORCH_OPTIMIZERS = ("sgd", "adam", "adamw")  # train_step's optimizer, unless a registered optimizer component
MEASURES = ("peak", "overhead", "optimizer_state")  # what a memory kind reads (kinds_counted.py)


@dataclass(frozen=True)
class Kind:
    """What one kind of claim measures: its required and optional fields with their checks."""

    required: dict[str, Callable]
    optional: dict[str, Callable] = field(default_factory=dict)
    summary: str = ""  # one line for the README and error messages
    ratio: bool = False  # a ratio: needs `baseline = "reference"` or `against = "<component>"`


_CALL = {"call": _choice(CALLS), "loss": _choice(LOSSES), "optimizer": _optimizer, "steps": _size,
         "config": _table, "config_per_size": _table}
_AGAINST = {"baseline": _baseline, "baseline_implementation": _implementation, "against": _component,
            "against_implementation": _implementation, "same_output": _bool}
_TIMED = {"fresh_inputs": _bool}
_MEMORY = {"measure": _choice(MEASURES)}
_SWEEP = {"component": _component, "implementation": _implementation, "sizes": _sizes(2), "at_most": _positive}
_SWEEP_OPTIONAL = {"quick_sizes": _sizes(2), **_CALL}
_RATIO = {"component": _component, "size": _size, "at_least": _positive}
_RATIO_OPTIONAL = {"quick_size": _size, **_AGAINST, **_CALL}

KINDS: dict[str, Kind] = {
    "speedup": Kind(_RATIO, {**_RATIO_OPTIONAL, **_TIMED},
                    "baseline time / optimized time at `size`, timed in paired rounds", ratio=True),
    "time_exponent": Kind(_SWEEP, {**_SWEEP_OPTIONAL, **_TIMED}, "log-log slope of time over `sizes` (repeated rounds)"),
    "memory_exponent": Kind(_SWEEP, {**_SWEEP_OPTIONAL, **_MEMORY}, "log-log slope of tensor bytes over `sizes`"),
    "flops_exponent": Kind(_SWEEP, _SWEEP_OPTIONAL, "log-log slope of FLOPs over `sizes`"),
    "peak_memory": Kind({"component": _component, "implementation": _implementation, "size": _size,
                         "at_most_mib": _positive}, {"quick_size": _size, **_CALL, **_MEMORY},
                        "tensor MiB of one call at `size`"),
    "memory_ratio": Kind(_RATIO, {**_RATIO_OPTIONAL, **_MEMORY}, "baseline tensor bytes / optimized tensor bytes",
                         ratio=True),
    "flops_ratio": Kind(_RATIO, _RATIO_OPTIONAL, "baseline FLOPs / optimized FLOPs at `size`", ratio=True),
    "matches_reference": Kind({"component": _component, "sizes": _sizes(1)},
                              {"atol": _non_negative, "rtol": _non_negative, "quick_sizes": _sizes(1),
                               "config": _table, "config_per_size": _table},
                              "optimized == reference within atol + rtol * |reference| at every size"),
}
from reprobench.claims.declared_claim import DeclaredClaim  # noqa: E402  (re-exported: kinds and tests import it here)

COMMON = {"id": _string, "text": _string, "source": _string, "kind": _string}


def parse_claim_file(path: str | Path) -> list[DeclaredClaim]:
    """Read and check one file; every problem is a ClaimFileError naming the file, claim and field."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ClaimFileError(f"--claims {path}: cannot read it ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ClaimFileError(f"{path}: not valid TOML: {exc}") from None
    extra = sorted(set(data) - {"claim"})
    if extra:
        raise ClaimFileError(f"{path}: unknown top-level key {extra[0]!r}; a claim file holds [[claim]] tables only")
    tables = data.get("claim")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise ClaimFileError(f"{path}: expected one or more [[claim]] tables")
    claims, seen = [], {}
    for index, table in enumerate(tables, start=1):
        declared = _parse_table(path, index, table)
        if declared.id in seen:
            raise ClaimFileError(f"{path}: claim #{index} ({declared.id}): field 'id': the same ID as claim "
                                 f"#{seen[declared.id]}; every claim needs its own ID")
        seen[declared.id] = index
        claims.append(declared)
    return claims


def _parse_table(path: Path, index: int, table: dict) -> DeclaredClaim:
    label = f"claim #{index}" + (f" ({table['id']})" if isinstance(table.get("id"), str) else "")

    def error(name: str, problem: str) -> ClaimFileError:
        return ClaimFileError(f"{path}: {label}: field {name!r}: {problem}")

    common = {}
    for name, check in COMMON.items():
        if name not in table:
            return_kinds = f" (one of {', '.join(KINDS)})" if name == "kind" else ""
            raise error(name, f"missing{return_kinds}")
        try:
            common[name] = check(table[name])
        except ValueError as exc:
            raise error(name, str(exc)) from None
    kind = KINDS.get(common["kind"])
    if kind is None:
        raise error("kind", f"unknown kind {common['kind']!r}; expected one of {', '.join(KINDS)}")
    allowed = {**kind.required, **kind.optional}
    unknown = [name for name in table if name not in COMMON and name not in allowed]
    if unknown:
        raise error(unknown[0], f"unknown key for kind {common['kind']!r}; its fields are {', '.join(allowed)}")
    fields = {}
    for name, check in allowed.items():
        if name not in table:
            if name in kind.required:
                raise error(name, f"missing (kind {common['kind']!r} needs {', '.join(kind.required)})")
            continue
        try:
            fields[name] = check(table[name])
        except ValueError as exc:
            raise error(name, str(exc)) from None
    if kind.ratio:
        _normalise_against(fields, error)
    _check_together(fields, error)
    _check_id_format(common["id"], error)
    return DeclaredClaim(id=common["id"], text=common["text"], source=common["source"], kind=common["kind"],
                         fields=fields, origin=f"{path}: {label}")


def _normalise_against(fields: dict, error) -> None:
    """One spelling for the ratio's baseline: no `against` means the component's own reference; `baseline` (the
    older field) naming a component is `against`."""
    if "baseline" in fields and "against" in fields:
        raise error("against", "give either baseline or against, not both")
    baseline = fields.pop("baseline", None)
    if baseline is None and "against" not in fields:
        raise error("against", 'missing: name what the ratio is against, `against = "<component>"` (another registered '
                               'component) or `baseline = "reference"` (the component\'s own reference)')
    if baseline not in (None, "reference"):
        fields["against"] = baseline
    if "baseline_implementation" in fields:
        if "against_implementation" in fields:
            raise error("baseline_implementation", "give either baseline_implementation or against_implementation")
        fields["against_implementation"] = fields.pop("baseline_implementation")
    if fields.get("against") == fields["component"]:
        raise error("against", 'the component itself; use baseline = "reference" to compare it with its own reference')
    for name in ("against_implementation", "same_output"):
        if name in fields and "against" not in fields:
            raise error(name, "only with `against` (the component's optimized twin is always checked against its own "
                              "reference)")


def _check_together(fields: dict, error) -> None:
    """Fields that only mean something beside others, and the component's config keys."""
    from reprobench.claims.kinds_config import ConfigFieldError, check_config, check_config_per_size

    call = fields.get("call", "forward")
    if "loss" in fields and call not in ("forward_backward", "train_step"):
        raise error("loss", f"only with call = \"forward_backward\" or \"train_step\" (call is {call!r})")
    if "optimizer" in fields and call != "train_step":
        raise error("optimizer", f"only with call = \"train_step\" (call is {call!r})")
    if fields.get("measure") == "optimizer_state" and call not in ("train_step", "optimizer_step"):
        raise error("measure", f"\"optimizer_state\" needs call = \"optimizer_step\" or \"train_step\" (call is {call!r})")
    if "steps" in fields and call not in ("train_step", "optimizer_step"):
        raise error("steps", f"only with call = \"optimizer_step\" or \"train_step\" (call is {call!r})")
    try:
        if "config" in fields:
            fields["config"] = check_config(fields["config"], fields["component"])
        if "config_per_size" in fields:
            fields["config_per_size"] = check_config_per_size(fields["config_per_size"], fields["component"])
    except ConfigFieldError as exc:
        raise error(exc.field, exc.problem) from None
    both = sorted(set(fields.get("config", {})) & set(fields.get("config_per_size", {})))
    if both:
        raise error(f"config_per_size.{both[0]}", "also set in `config`; give it one value or one rule")


def _check_id_format(claim_id: str, error) -> None:
    from reprobench.claims.ledger import CLAIM_ID_PATTERN

    if not CLAIM_ID_PATTERN.match(claim_id):
        raise error("id", f"expected PREFIX-NN, an upper-case prefix and a number or name (e.g. 'ACME-01'), "
                          f"got {claim_id!r}")


_LOADED: dict[str, DeclaredClaim] = {}  # claim ID -> the declaration that registered it (this process)


def load_claim_files(paths: list[str] | None) -> list[str]:
    """Check every file, then add its claims to the ledger and register their experiments; returns the IDs.

    Nothing is registered until every file has been read and checked, so a bad file leaves no half-loaded
    claims. An ID already in the ledger (a built-in claim, a plugin's, another file's) is an error naming
    both places.
    """
    from reprobench.claims.declarative_kinds import declaration_for, experiment_for
    from reprobench.claims.experiment import experiment
    from reprobench.claims.ledger import CLAIM_TEXTS, DECLARED_BY, claim

    declared: list[DeclaredClaim] = []
    for path in paths or ():
        declared.extend(parse_claim_file(path))
    ids = []
    for item in declared:
        previous = _LOADED.get(item.id)
        if previous is not None and previous == item:
            ids.append(item.id)  # the same file loaded twice in one process
            continue
        if previous is not None or item.id in CLAIM_TEXTS:
            other = previous.origin if previous is not None else DECLARED_BY.get(item.id, "?")
            raise ClaimFileError(f"{item.origin}: field 'id': {item.id} is already defined by {other}; "
                                 "choose another ID prefix")
        try:
            claim(item.id, item.text, source=item.source)
        except ValueError as exc:
            raise ClaimFileError(f"{item.origin}: {exc}") from None
        experiment(item.id, **declaration_for(item))(experiment_for(item))
        _LOADED[item.id] = item
        ids.append(item.id)
    return ids
