"""asv benchmarks generated from the declared claims: one `track_<ID>` per claim, its headline figure over commits.

Two classes, so that `asv run` over a range of commits stays affordable:
- `Claims`: every claim not declared `timed` (FLOPs, bytes, counts, exact errors, fitted exponents,
  statistics of seeded runs). `asv run --bench Claims` runs these only.
- `ClaimTimings`: the claims declared `timed` (`@experiment(..., timed=True)`: the verdict rests on a
  wall-clock decision). Each of their timing rounds runs in a fresh worker process, so they cost most;
  `asv run --bench ClaimTimings` runs them. asv matches `--bench` as a regular expression searched in
  `claims.<Class>.track_<ID>`, so the class name holds no "Claims".
Both get one track per experiment the installed studies declare, so a new claim needs no edit here. Each
track returns the point of the claim's headline estimate (the decision the claims summary shows). Each
class's `setup_cache` runs its experiments once per commit, and each track reads its figure from that
cache. asv runs a benchmark in a fresh process, so running the experiment inside the track would repeat
it for every benchmark.

Which size is tracked (the same rule in both classes):
- a claim whose headline had a zero-width interval in the last report (FLOPs, bytes, counts, exact errors)
  runs once, at full size: a deterministic figure carries no timing noise, so its full size is affordable;
- any other claim runs at its quick sizes; if its headline then turns out exact and the quick run measured
  at other sizes than the full one (it read `ctx.quick`, or a declared size whose quick value differs),
  it runs again at full size; a quick run that read neither was the full-size run and is not repeated;
- timed and fitted headlines stay at quick sizes.
Every run gets the quick decision budget (`QUICK_DECISION_BUDGET_S`) for its sequentially sampled timed
decisions, full-size runs included: a full-size run is made for a deterministic headline, which the
number of timing rounds of the claim's other decisions does not change.
A run over `RUN_BUDGET_S` is stopped and its track reported as skipped, with the reason.

Unit and rule: asv reads `unit` when it discovers the suite, before anything runs, so both come from the
last committed report (reports/claims.json): the headline quantity's name gives the unit, and its
threshold and direction give `pretty_name`. A claim the report does not have yet gets unit "value" and
its text as the name. `version` names the claim and the suite revision, so editing a rule's wording in
the report does not throw away the claim's history.
"""
from __future__ import annotations

import json
import logging
import re
import signal
import tempfile
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from reprobench.claims.experiment import RunContext, declaration, load_experiments
from reprobench.claims.ledger import CLAIM_TEXTS
from reprobench.claims.runner import MEASURE_THREADS
from reprobench.plugins import ignore_installed_plugins

RUN_BUDGET_S = 60  # one experiment run, quick or full; over it the claim is skipped this commit
QUICK_DECISION_BUDGET_S = 5.0  # what `reprobench verify --quick` gives a sequentially sampled decision
REPORT = Path(__file__).resolve().parents[2] / "reports" / "claims.json"
SUITE_REVISION = 1  # bump when what a track measures changes (asv then starts each claim's history afresh)

# Headline quantity name -> unit: the first rule sharing a word with the name wins (an error of a ratio is an
# error, a difference of shares a difference, a share of FLOPs a ratio). Words, not substrings: "configuration"
# holds "ratio".
UNIT_RULES = [
    ({"exponent", "slope"}, "exponent"),
    ({"pp"}, "percentage points"),
    ({"error", "diff", "gap", "abs", "rel"}, "error"),
    ({"minus"}, "difference"),
    ({"ratio", "speedup", "over", "share", "fraction", "reduction"}, "ratio"),
    ({"flop", "flops"}, "FLOPs"),
    ({"saved"}, "ratio"),
    ({"bytes", "mb", "peak"}, "bytes"),
    ({"count", "counts", "failures", "cases", "departures", "counterexamples", "missing", "kinds", "checks",
      "handlers", "off", "params"}, "count"),
]
METHOD_UNITS = [(r"paired round ratios", "ratio"), (r"proportion", "ratio")]  # when the name says nothing

ignore_installed_plugins()  # this repository's own claims, not whatever plugin is installed beside it

# One line per track on stderr (`asv run --show-stderr` prints it): which size was tracked and what the
# experiment cost, so a claim that makes the suite slow is seen.
log = logging.getLogger("reprobench.asv.claims")
if not log.handlers:
    log.addHandler(logging.StreamHandler())
    log.setLevel(logging.INFO)


def unit_of(quantity: str, method: str = "") -> str:
    """The unit of a headline, from its quantity's name, else from how its estimate was made; "value" if
    neither says."""
    words = set(re.split(r"[^a-z0-9]+", quantity.lower()))
    for rule_words, unit in UNIT_RULES:
        if words & rule_words:
            return unit
    for pattern, unit in METHOD_UNITS:
        if re.search(pattern, method):
            return unit
    return "value"


def reported_headlines(path: Path = REPORT) -> dict[str, dict]:
    """claim ID -> {"quantity", "method", "exact", "rule", "threshold", "direction"} of its headline in the report at
    `path`; empty when there is no report."""
    try:
        claims = json.loads(path.read_text())["claims"]
    except FileNotFoundError:
        return {}
    headlines = {}
    for entry in claims:
        decisions = {d["quantity"]: d for d in entry.get("decisions", [])}
        decision = decisions.get(entry.get("headline"))
        if decision is not None:
            headlines[entry["id"]] = {"quantity": decision["quantity"], "method": decision.get("method", ""),
                                      "exact": decision["low"] == decision["high"],
                                      "rule": entry.get("rule", ""), "threshold": decision["threshold"],
                                      "direction": decision["direction"]}
    return headlines


def describe_rule(headline: dict) -> str:
    """`quantity >= 0.4` (or `in [a, b]`), the headline's decision rule in one phrase."""
    symbol = {"at_least": ">=", "at_most": "<="}.get(headline["direction"])
    threshold = headline["threshold"]
    rule = f"{symbol} {threshold:.4g}" if symbol else f"in [{threshold[0]:.4g}, {threshold[1]:.4g}]"
    return f"{headline['quantity']} {rule}"


class RunTooLong(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """Raise RunTooLong in the main thread after `seconds` of wall time (SIGALRM); no limit elsewhere (signals
    reach only the main thread)."""
    def expire(signum, frame):
        raise RunTooLong(f"over {seconds:g} s")

    try:
        previous = signal.signal(signal.SIGALRM, expire)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run_once(fn, claim_id: str, quick: bool):
    """One run of `fn`, with the threads `reprobench verify` uses and its quick decision budget; -> (Outcome,
    ctx, seconds)."""
    with tempfile.TemporaryDirectory() as figures:
        ctx = RunContext(quick=quick, device=torch.device("cpu"), figures_dir=Path(figures),
                         decision_budget_s=QUICK_DECISION_BUDGET_S,
                         sizes=declaration(claim_id).sizes(quick))  # the experiment's decorator sets the same
        object.__setattr__(ctx, "quick_read", False)
        torch.set_num_threads(MEASURE_THREADS)
        start = time.perf_counter()
        with time_limit(RUN_BUDGET_S):
            outcome = fn(ctx).with_logic(declaration(claim_id).logic)
        return outcome, ctx, time.perf_counter() - start


def measure_headline(fn, claim_id: str, exact_before: bool = False) -> dict:
    """The claim's headline figure: {"point", "quantity", "size", "seconds"}, or {"skip": reason} when there is
    nothing to track (no decision, over budget), or {"error": message} when the experiment raised.
    `exact_before`: the last report's headline was exact, so the experiment runs at full size straight away."""
    size = "full" if exact_before else "quick"
    try:
        outcome, ctx, seconds = _run_once(fn, claim_id, quick=not exact_before)
        decision = outcome.headline_decision()
        if decision is None:
            return {"skip": f"{claim_id}: no decision to track ({outcome.verdict}: {outcome.evidence})"}
        if decision.estimate.exact and not exact_before:
            if ctx.measured_at_other_sizes():
                size = "full"
                outcome, _, full_seconds = _run_once(fn, claim_id, quick=False)
                seconds += full_seconds
                decision = outcome.headline_decision()
                if decision is None:
                    return {"skip": f"{claim_id}: no decision to track at full size ({outcome.verdict})"}
            size = "full"  # a quick run that measured at no other size was the full-size run
        return {"point": float(decision.estimate.point), "quantity": decision.quantity, "size": size,
                "seconds": seconds}
    except RunTooLong as exc:
        return {"skip": f"{claim_id}: its {size}-size run took {exc} (RUN_BUDGET_S); not tracked at this commit"}
    except Exception as exc:  # a crashed experiment is this track's failure, not the whole suite's
        return {"error": f"{claim_id}: experiment raised {type(exc).__name__}: {exc}"}


def _make_track(claim_id: str, headline: dict | None):
    def track(self, headlines):
        return headlines[claim_id]["point"]

    def setup(headlines):
        result = headlines[claim_id]
        if "skip" in result:
            raise NotImplementedError(result["skip"])  # asv reports the track as skipped, with this reason
        if "error" in result:
            raise RuntimeError(result["error"])  # asv reports the track as failed
        log.info("%s: %s at %s size; the experiment took %.1f s", claim_id, result["quantity"], result["size"],
                 result["seconds"])

    source, text = CLAIM_TEXTS[claim_id]
    rule = describe_rule(headline) if headline else "the first decision of its outcome"
    track.__name__ = f"track_{claim_id.replace('-', '_')}"
    track.__doc__ = (f"{claim_id} ({source}): {text}\n\nHeadline: {rule}"
                     + (f"\nRule: {headline['rule']}" if headline else ""))
    track.pretty_name = f"{claim_id}: {rule}"
    track.unit = unit_of(headline["quantity"], headline["method"]) if headline else "value"
    track.version = f"{claim_id}/{SUITE_REVISION}"
    track.setup = setup
    # asv shows a benchmark's source beside its graph: show what this track returns, with the claim and rule.
    docstring = textwrap.indent(f'"""{track.__doc__}"""', "    ")
    track.pretty_source = (f"def {track.__name__}(self, headlines):\n{docstring}\n"
                           f"    return headlines[{claim_id!r}][\"point\"]\n")
    return track


def is_timed(claim_id: str) -> bool:
    """The claim's verdict rests on a wall-clock decision (declared `timed`): its track goes in `ClaimTimings`."""
    return declaration(claim_id).timed


def measure_claims(timed: bool) -> dict[str, dict]:
    """claim ID -> its headline figure (`measure_headline`), for every loaded experiment whose `timed`
    declaration equals `timed`."""
    return {claim_id: measure_headline(fn, claim_id, _HEADLINES.get(claim_id, {}).get("exact", False))
            for claim_id, fn in sorted(load_experiments().items()) if is_timed(claim_id) == timed}


class Claims:
    """One track per claim not declared timed: the headline estimate's point (full size when exact)."""

    timeout = 600

    # asv keys a setup_cache by its source line: each class defines its own.
    def setup_cache(self):
        return measure_claims(timed=False)

    setup_cache.timeout = 3600


class ClaimTimings:
    """One track per claim declared timed: the headline estimate's point (quick sizes unless exact)."""

    timeout = 600

    def setup_cache(self):
        return measure_claims(timed=True)

    setup_cache.timeout = 3600


def add_tracks(claim_ids, headlines: dict[str, dict]) -> None:
    """Give `Claims` or `ClaimTimings` (as each claim is declared) one track per claim ID."""
    for claim_id in claim_ids:
        track = _make_track(claim_id, headlines.get(claim_id))
        suite = ClaimTimings if is_timed(claim_id) else Claims
        track.__qualname__ = f"{suite.__name__}.{track.__name__}"
        setattr(suite, track.__name__, track)


_HEADLINES = reported_headlines()
CLAIM_IDS = sorted(load_experiments())
add_tracks(CLAIM_IDS, _HEADLINES)
