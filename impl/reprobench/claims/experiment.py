"""Experiments and verdict rules.

An experiment is a function ``(ctx: RunContext) -> Outcome`` registered for one claim ID with
``@experiment("EFF-01")``. It measures, and judges each quantity with ``decide`` from
reprobench.measure.stats (an estimate with its interval against a threshold and a direction); the
claim's verdict is derived from those decisions (`combine_outcomes`), never typed in. Only
`not-checkable-here` (with the reason in the evidence) is given directly.
A study (the five design documents are one, a user's plugin another) keeps its experiment modules
where it likes and imports them when it is loaded; the decorator declares the claim with them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch

from reprobench.measure.stats import Decision, combine_outcomes

VERDICTS = ("holds", "fails", "partial", "inconclusive", "unjudged", "not-checkable-here", "not-implemented", "error")
LOGICS = ("separate", "all-of")  # how a claim's parts combine: separate statements, or one property
DECIDED_VERDICTS = ("holds", "fails", "partial", "inconclusive")  # what decisions can give


@dataclass
class RunContext:
    """What every experiment receives.

    Reading `quick` is recorded (`quick_read`): an experiment that branches on it in a quick run measured
    at other sizes than its claim speaks of, so the runner reports its figures unjudged rather than let a
    smaller size contradict the full run."""

    quick: bool  # smoke run: smaller sizes, fewer repeats; verdict rules stay the same
    device: torch.device  # where to measure
    figures_dir: Path  # write figures here (the report writer moves them into place atomically)
    seed: int = 0  # base seed for every torch.Generator the experiment makes
    # Wall-clock budget of one sequentially sampled timed decision (stats.sample_ratio_until_decided):
    # rounds are added while the interval straddles the rule, until this is spent.
    decision_budget_s: float = 20.0
    # This claim's declared sizes for this run's mode (`experiment(..., sizes=...)`); set for each claim.
    sizes: "Sizes" = field(default_factory=lambda: Sizes({}, {}, quick=False))

    def __getattribute__(self, name):
        if name == "quick":
            object.__setattr__(self, "quick_read", True)
        return object.__getattribute__(self, name)

    def measured_at_other_sizes(self) -> bool:
        """Whether this run measured at other sizes than a full run would: the experiment branched on `quick`,
        or read a declared size whose quick value differs from its full one."""
        return bool(getattr(self, "quick_read", False) or self.sizes.read_at_other_size)

    def figure_path(self, name: str) -> Path:
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        return self.figures_dir / name


@dataclass(kw_only=True)
class Outcome:
    claimed: str  # what the document says, in its own numbers
    measured: dict  # name -> number, bool, None (with a note) or a short units-free label; one JSON type per key
    rule: str  # the stated rule: which quantity is primary, its threshold and direction, and why
    evidence: str  # one or two sentences: what was run, on what, and what came out
    decisions: list[Decision] = field(default_factory=list)  # one per judged quantity (stats.decide)
    # Derived from `decisions` when None; given directly only as "not-checkable-here".
    verdict: str | None = None
    headline: str | None = None  # quantity of the decision the summary shows; default: the first
    figures: list[str] = field(default_factory=list)  # file names inside figures_dir
    deviations: list[str] = field(default_factory=list)  # where our reference departs from the document
    # How the decisions combine: "separate" statements (some hold -> partial) or "all-of" parts of one
    # property (any decisive failure fails the claim). The experiment's declaration sets it.
    logic: str = "separate"

    def __post_init__(self):
        if self.logic not in LOGICS:
            raise ValueError(f"Outcome.logic={self.logic!r}; expected one of {LOGICS}")
        self._derived = self.verdict is None
        if self.verdict is None:
            if not self.decisions:
                raise ValueError("Outcome: give decisions (stats.decide) to derive the verdict from")
            self.verdict = combine_outcomes([d.outcome for d in self.decisions], self.logic)
        elif self.verdict not in VERDICTS:
            raise ValueError(f"Outcome.verdict={self.verdict!r}; expected one of {VERDICTS}")
        elif self.decisions and self.verdict != "not-checkable-here":
            raise ValueError(f"Outcome.verdict={self.verdict!r} given beside decisions: leave verdict=None and let "
                             "the decisions give it (only 'not-checkable-here' is set directly)")
        for decision in self.decisions:
            if not isinstance(decision, Decision):
                raise TypeError(f"Outcome.decisions holds a {type(decision).__name__}; use stats.decide(...)")
        names = [d.quantity for d in self.decisions]
        if len(set(names)) != len(names):
            raise ValueError(f"Outcome.decisions: a quantity is judged twice in {names}")
        if self.headline is not None and self.headline not in names:
            raise ValueError(f"Outcome.headline={self.headline!r} is not one of the decided quantities {names}")
        for key, value in self.measured.items():
            if isinstance(value, torch.Tensor):
                raise TypeError(f"Outcome.measured[{key!r}] is a tensor; convert to a Python number")

    def with_logic(self, logic: str) -> "Outcome":
        """The same outcome with its parts combined by `logic` (a derived verdict is re-derived)."""
        if logic not in LOGICS:
            raise ValueError(f"logic={logic!r}; expected one of {LOGICS}")
        self.logic = logic
        if self._derived:
            self.verdict = combine_outcomes([d.outcome for d in self.decisions], logic)
        return self

    def headline_decision(self) -> Decision | None:
        for decision in self.decisions:
            if decision.quantity == (self.headline or decision.quantity):
                return decision
        return None


class Sizes(Mapping):
    """A claim's declared sizes (and repeats) for one run: the full values, or the quick ones in a quick run.

    Reading a name whose quick value differs from its full value, in a quick run, is recorded
    (`read_at_other_size`): the claim was then measured at another size than its rule speaks of, and the
    runner reports it unjudged, naming the sizes, unless it is declared `quick_judged`."""

    def __init__(self, full: Mapping[str, Any], quick_values: Mapping[str, Any], *, quick: bool):
        self.full, self.quick_values, self.quick = dict(full), dict(quick_values), quick
        self.read_at_other_size: dict[str, dict] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self.full:
            raise KeyError(f"size {name!r} is not declared; this claim declares {sorted(self.full)} "
                           "(experiment(..., sizes={'full': {...}, 'quick': {...}}))")
        if not self.quick:
            return self.full[name]
        value = self.quick_values.get(name, self.full[name])
        if value != self.full[name]:
            self.read_at_other_size[name] = {"full": self.full[name], "quick": value}
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.full)

    def __len__(self) -> int:
        return len(self.full)

    def for_mode(self) -> dict:
        """This mode's values (what the report records), without marking anything read."""
        return {name: (self.quick_values.get(name, value) if self.quick else value) for name, value in self.full.items()}


def _check_sizes(claim_id: str, sizes) -> tuple[dict, dict]:
    if sizes is None:
        return {}, {}
    if not isinstance(sizes, Mapping) or not set(sizes) <= {"full", "quick"} or "full" not in sizes:
        raise TypeError(f"experiment({claim_id!r}): sizes must be a dict {{'full': {{name: value}}, 'quick': "
                        f"{{name: value}}}} ('quick' optional), got {sizes!r}")
    full, quick = sizes["full"], sizes.get("quick", {})
    if not isinstance(full, Mapping) or not isinstance(quick, Mapping):
        raise TypeError(f"experiment({claim_id!r}): sizes['full'] and sizes['quick'] must be dicts")
    unknown = set(quick) - set(full)
    if unknown:
        raise ValueError(f"experiment({claim_id!r}): quick sizes {sorted(unknown)} have no full value; every "
                         "size needs a full value (the one the claim speaks of)")
    return dict(full), dict(quick)


FLOAT64_DEVICES_MISSING = ("mps",)  # devices without float64 kernels
NEEDS = ("float64",)  # what an experiment can declare it needs of the device


def _no_float64(device: torch.device) -> str | None:
    if device.type in FLOAT64_DEVICES_MISSING:
        return f"{device.type} has no float64; this check's tolerances assume float64"
    return None


def float64_unavailable(ctx: RunContext) -> str | None:
    """Why a float64 experiment cannot run on ctx.device (its tolerances assume float64), or None. A claim
    that always needs float64 declares `needs=("float64",)` instead; this is for an optional float64 part."""
    return _no_float64(ctx.device)


def not_checkable(claimed: str, rule: str, reason: str, deviations=()) -> Outcome:
    """The outcome of an experiment that cannot run on ctx.device, with the reason as its evidence."""
    return Outcome(verdict="not-checkable-here", claimed=claimed, measured={}, rule=rule,
                   evidence=f"Not run on this device: {reason}.", deviations=list(deviations))


# --- discovery -------------------------------------------------------------------------------------

_EXPERIMENTS: dict[str, Callable[[RunContext], Outcome]] = {}


@dataclass(frozen=True)
class Declaration:
    """How a claim's experiment is judged, declared once with it."""

    logic: str = "separate"  # "separate" statements, or "all-of" parts of one property
    # True when the rule holds at any size (a ratio that does not depend on n, a property for every input):
    # a quick run at smaller sizes is then still judged. False: quick figures are reported unjudged.
    quick_judged: bool = False
    full_sizes: Mapping[str, Any] = field(default_factory=dict)  # the sizes the claim speaks of
    quick_sizes: Mapping[str, Any] = field(default_factory=dict)  # what --quick measures instead (missing: full)
    needs: tuple[str, ...] = ()  # "float64": refused as not-checkable on a device without it
    timed: bool = False  # makes a wall-clock decision (its verdict rests on timing this machine)

    def __post_init__(self):
        if self.logic not in LOGICS:
            raise ValueError(f"logic={self.logic!r}; expected one of {LOGICS}")
        unknown = set(self.needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"needs={self.needs!r}: {sorted(unknown)} unknown; expected some of {NEEDS}")

    def sizes(self, quick: bool) -> Sizes:
        return Sizes(self.full_sizes, self.quick_sizes, quick=quick)

    def unmet_need(self, device: torch.device) -> str | None:
        """Why this claim cannot be measured on `device` (a declared need it lacks), or None."""
        return _no_float64(device) if "float64" in self.needs else None


_DECLARATIONS: dict[str, Declaration] = {}


def declaration(claim_id: str) -> Declaration:
    return _DECLARATIONS.get(claim_id, Declaration())


def experiment(claim_id: str, *, text: str | None = None, source: str | None = None, logic: str = "separate",
               quick_judged: bool = False, sizes: Mapping[str, Mapping[str, Any]] | None = None,
               needs: tuple[str, ...] = (), timed: bool = False):
    """Register ``fn`` as the experiment for ``claim_id``, declaring the claim where it is measured.

    `text` and `source`: the claim as written and where (a document, a README); given, they add the claim
    to the ledger, so it is declared once, here. Omitted, the ID must already be in the ledger (declared
    with `claim(...)` or a TOML file).
    `logic`: "separate" when the claim makes several statements (some hold, some fail -> partial);
    "all-of" when its parts together define one property ("a rotation" keeps norms AND angles; "exact for
    any n" must hold at every n): any decisive failure then fails the claim.
    `quick_judged`: the rule is size-free, so a `--quick` run (smaller sizes) is still judged.
    `sizes`: ``{"full": {name: value}, "quick": {name: value}}`` -- the sizes (and repeats) the claim is
    measured at, read in the experiment as ``ctx.sizes[name]``; a quick value differing from the full one
    makes a quick run report the claim unjudged, naming the size. `needs`: ``("float64",)`` when the
    rule's tolerances assume float64 (the claim is not-checkable on a device without it, before the
    experiment runs). `timed`: the verdict rests on a wall-clock decision (tests and asv treat it as slow
    and noisy)."""
    from reprobench.claims.ledger import CLAIM_TEXTS, define_claim

    if text is not None or source is not None:
        import inspect

        caller = inspect.currentframe().f_back
        define_claim(claim_id, text, source=source, defined_by=caller.f_globals.get("__name__", "?"))
    if claim_id not in CLAIM_TEXTS:
        raise ValueError(f"experiment({claim_id!r}): not a claim of the ledger; define it first with "
                         "reprobench.claims.claim(claim_id, text, source=...)")

    full, quick = _check_sizes(claim_id, sizes)
    declared = Declaration(logic=logic, quick_judged=quick_judged, full_sizes=full, quick_sizes=quick,
                           needs=tuple(needs), timed=timed)

    def decorate(fn: Callable[[RunContext], Outcome]) -> Callable[[RunContext], Outcome]:
        if claim_id in _EXPERIMENTS and getattr(_EXPERIMENTS[claim_id], "__wrapped__", None) is not fn:
            raise ValueError(f"claim {claim_id} has two experiments")

        @functools.wraps(fn)
        def run(ctx: RunContext) -> Outcome:
            # The declaration applies however the experiment is called (the runner, a test): its needs are
            # checked before it runs, and it reads this claim's sizes for the run's mode.
            if reason := declared.unmet_need(ctx.device):
                return not_checkable(CLAIM_TEXTS.get(claim_id, claim_id), "not measured: the device lacks what the "
                                     "claim's rule needs", reason)
            object.__setattr__(ctx, "sizes", declared.sizes(object.__getattribute__(ctx, "quick")))
            return fn(ctx)

        _EXPERIMENTS[claim_id] = run
        _DECLARATIONS[claim_id] = declared
        return run

    return decorate


def load_experiments() -> dict[str, Callable[[RunContext], Outcome]]:
    """Every registered experiment: the installed studies (plugins) are loaded first, so their
    experiments and claims are declared."""
    from reprobench.registry import load_all

    load_all()
    return dict(_EXPERIMENTS)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, imported when a figure is drawn (loading the
    experiments stays cheap, and verify runs on machines without a display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
