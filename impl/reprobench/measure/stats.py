"""The one statistics module: every judged number is an `Estimate`, every verdict part a `Decision`.

Anchors: criterion.rs reports ``[low estimate high]`` and says "within noise" when it cannot decide;
asv's compare refuses to call a change whose intervals overlap; MLPerf's convergence checker judges
with a one-sided t-test. reprobench applies the same idea to *claims*:

- a rule is a threshold and a direction (``at_least``, ``at_most`` or ``between``);
- the decision is ``holds`` when the whole interval is on the passing side, ``fails`` when the whole
  interval is on the failing side, and ``inconclusive`` otherwise;
- deterministic quantities (FLOPs, tensor bytes, counts, exact errors) are estimates with a
  zero-width interval, so they are decided exactly as a plain comparison would;
- timed ratios come from paired, interleaved rounds (each round's ratio is one sample: A and B ran
  back to back, so a slow moment of the machine hits both), with a distribution-free interval for
  the median from order statistics, and are sampled until decided (`sample_ratio_until_decided`);
- fitted log-log exponents carry a t interval for the slope and their r²; a fit under the stated
  r² floor is inconclusive, not a verdict.

Defaults are few and written down (criterion: 95%, 100 samples; asv: 99%): confidence 0.95, at
least 7 paired rounds, at most three looks at the data with each look's interval at 1 - α/3
(Bonferroni), so peeking while sampling cannot raise the overall error rate above α.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from scipy import stats as scipy_stats

CONFIDENCE = 0.95  # default level of every interval
MIN_ROUNDS = 7  # paired rounds before the first look: 7 is the smallest n whose (min, max) covers the median at 98.3%
MAX_LOOKS = 3  # looks at a sequentially sampled ratio (7, 14, 28 rounds): each at 1 - α/MAX_LOOKS
MIN_R2 = 0.9  # a log-log fit below this r² does not decide an exponent
NOISY_IQR_OVER_MEDIAN = 0.10  # a timing whose IQR exceeds 10% of its median is flagged in the evidence
OUTCOMES = ("holds", "fails", "inconclusive")

__all__ = ["CONFIDENCE", "MIN_ROUNDS", "MAX_LOOKS", "MIN_R2", "NOISY_IQR_OVER_MEDIAN", "OUTCOMES", "Estimate", "exact",
           "median_interval", "mean_interval", "proportion_estimate", "min_estimate", "max_estimate",
           "ratio_from_rounds", "ExponentFit", "fit_exponent_estimate", "fit_exponent", "Decision", "decide",
           "combine_outcomes", "sample_ratio_until_decided", "flag_noisy", "sample_mean_until_decided",
           "sample_means_until_decided"]


@dataclass(frozen=True)
class Estimate:
    """A measured quantity with its interval: ``point [low, high]`` at ``confidence``."""

    point: float  # the estimate itself (a median ratio, a fitted slope, a count)
    low: float  # lower end of the interval (== point for deterministic quantities)
    high: float  # upper end of the interval
    confidence: float  # coverage of [low, high]; 1.0 for deterministic quantities
    samples: int  # how many samples the interval rests on (1 for a deterministic measure)
    method: str  # how the interval was made, in words a reader can check
    r_squared: float | None = None  # fits only: quality of the log-log fit

    def __post_init__(self):
        for name in ("point", "low", "high"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or math.isnan(value):
                raise ValueError(f"Estimate.{name} must be a real number, got {value!r}")
        if not self.low <= self.point <= self.high:
            raise ValueError(f"Estimate: need low <= point <= high, got {self.low} <= {self.point} <= {self.high}")
        if not 0.0 < self.confidence <= 1.0:
            raise ValueError(f"Estimate.confidence must be in (0, 1], got {self.confidence}")

    @property
    def exact(self) -> bool:
        return self.low == self.high

    def overlaps(self, other: "Estimate") -> bool:
        return self.low <= other.high and other.low <= self.high

    def __str__(self) -> str:
        if self.exact:
            return f"{self.point:.4g}"
        return f"{self.point:.4g} [{self.low:.4g}, {self.high:.4g}]"

    def to_json(self) -> dict:
        data = {"estimate": self.point, "low": self.low, "high": self.high, "confidence": self.confidence,
                "samples": self.samples, "method": self.method}
        if self.r_squared is not None:
            data["r_squared"] = self.r_squared
        return data


# --- making estimates -------------------------------------------------------------------------------

def exact(value: float, method: str = "deterministic measure (zero-width interval)") -> Estimate:
    """A deterministic quantity: FLOPs, tensor bytes, a count, an exact error."""
    value = float(value)
    return Estimate(point=value, low=value, high=value, confidence=1.0, samples=1, method=method)


def _clean(values: Sequence[float], name: str) -> list[float]:
    values = [float(v) for v in values]
    if not values:
        raise ValueError(f"{name}: need at least one sample")
    if any(math.isnan(v) or math.isinf(v) for v in values):
        raise ValueError(f"{name}: samples must be finite, got {values}")
    return values


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Median with a distribution-free interval from order statistics.

    [x_(k), x_(n+1-k)] covers the population median with probability 1 - 2·P(Binom(n, ½) < k); k is
    the largest index that keeps that coverage >= `confidence`. With too few samples even (min, max)
    covers less: the interval is then (min, max) and `confidence` records the coverage it really has.
    """
    xs = sorted(_clean(values, "median_interval"))
    n = len(xs)
    best_k, coverage = 1, 1.0 - 2.0 * 0.5 ** n
    for k in range(1, n // 2 + 1):
        cover = 1.0 - 2.0 * float(scipy_stats.binom.cdf(k - 1, n, 0.5))
        if cover >= confidence:
            best_k, coverage = k, cover
        else:
            break
    if n == 1:
        coverage = 0.0
    low, high = xs[best_k - 1], xs[n - best_k]
    median = statistics.median(xs)
    return Estimate(point=median, low=low, high=high, confidence=max(coverage, 1e-12), samples=n,
                    method=f"median, order-statistic interval (x_({best_k}), x_({n + 1 - best_k}))")


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean with a Student-t interval (seeds of a training run, repeated accuracy measurements)."""
    xs = _clean(values, "mean_interval")
    n = len(xs)
    mean = statistics.fmean(xs)
    if n == 1:
        return Estimate(point=mean, low=mean, high=mean, confidence=1e-12, samples=1,
                        method="mean of one sample (no interval)")
    sem = statistics.stdev(xs) / math.sqrt(n)
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return Estimate(point=mean, low=mean - half, high=mean + half, confidence=confidence, samples=n,
                    method=f"mean, Student-t interval (df={n - 1})")


def proportion_estimate(successes: int, trials: int, confidence: float = CONFIDENCE) -> Estimate:
    """successes / trials with the exact (Clopper-Pearson) binomial interval, for 0/1 outcomes of independent
    runs (learners, seeds): a Student-t interval of 0/1 values collapses to a point when all agree."""
    if not 0 <= successes <= trials or trials < 1:
        raise ValueError(f"proportion_estimate: need 0 <= successes <= trials and trials >= 1, got {successes}/{trials}")
    interval = scipy_stats.binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="exact")
    return Estimate(point=successes / trials, low=float(interval.low), high=float(interval.high), confidence=confidence,
                    samples=trials, method="proportion, exact (Clopper-Pearson) binomial interval")


def min_estimate(estimates: Sequence[Estimate]) -> Estimate:
    """The smallest of several quantities ("all of these ratios are >= 1" is "their minimum is >= 1")."""
    return _extreme(estimates, min, "minimum")


def max_estimate(estimates: Sequence[Estimate]) -> Estimate:
    """The largest of several quantities ("one of these mechanisms reaches X" is "their maximum reaches X")."""
    return _extreme(estimates, max, "maximum")


def _extreme(estimates: Sequence[Estimate], pick, name: str) -> Estimate:
    """min and max are increasing in each argument, so [pick of the lows, pick of the highs] covers the true
    extreme whenever every interval covers its own quantity: by Bonferroni, with probability at least
    1 - Σ(1 - confidence_i)."""
    if not estimates:
        raise ValueError(f"{'min' if pick is min else 'max'}_estimate: need at least one estimate")
    if len(estimates) == 1:
        return estimates[0]
    confidence = max(1.0 - sum(1.0 - e.confidence for e in estimates), 1e-12)
    return Estimate(point=pick(e.point for e in estimates), low=pick(e.low for e in estimates),
                    high=pick(e.high for e in estimates), confidence=confidence,
                    samples=min(e.samples for e in estimates),
                    method=f"{name} of {len(estimates)} estimates, Bonferroni coverage")


def ratio_from_rounds(baseline_rounds: Sequence[float], candidate_rounds: Sequence[float],
                      confidence: float = CONFIDENCE) -> Estimate:
    """baseline / candidate from paired rounds: each round's ratio is one sample, the estimate is their
    median with its order-statistic interval. > 1 means the candidate is faster."""
    base = _clean(baseline_rounds, "baseline_rounds")
    cand = _clean(candidate_rounds, "candidate_rounds")
    if len(base) != len(cand):
        raise ValueError(f"baseline_rounds ({len(base)}) and candidate_rounds ({len(cand)}) must pair up")
    if any(c <= 0 for c in cand) or any(b <= 0 for b in base):
        raise ValueError("round times must be positive")
    estimate = median_interval([b / c for b, c in zip(base, cand)], confidence)
    return Estimate(point=estimate.point, low=estimate.low, high=estimate.high, confidence=estimate.confidence,
                    samples=estimate.samples, method="median of paired round ratios, " + estimate.method.split(", ", 1)[1])


@dataclass(frozen=True)
class ExponentFit:
    """A log-log fit: the exponent as an Estimate, plus what a figure needs to draw the line."""

    estimate: Estimate
    intercept: float  # log(y) at log(n) = 0
    sizes: tuple[float, ...]
    values: tuple[float, ...]

    @property
    def exponent(self) -> float:
        return self.estimate.point

    @property
    def r_squared(self) -> float:
        return self.estimate.r_squared if self.estimate.r_squared is not None else 1.0

    def predict(self, n: float) -> float:
        return math.exp(self.intercept) * n ** self.exponent


def fit_exponent_estimate(sizes: Sequence[float], values: Sequence[float], *, deterministic: bool = False,
                          confidence: float = CONFIDENCE) -> ExponentFit:
    """Least-squares slope of log(value) on log(size), with a t interval (df = points - 2) and r².

    Repeated measurements at one size are separate points (pass the size once per measurement), so
    noise between rounds widens the interval. `deterministic=True` is for tensor bytes or FLOPs: the
    slope is exact (zero width) and the r² says how well a single power law describes the sweep.
    """
    if len(sizes) != len(values):
        raise ValueError(f"sizes ({len(sizes)}) and values ({len(values)}) must have the same length")
    if len(sizes) < 2:
        raise ValueError("sizes: need at least two points to fit an exponent")
    if any(s <= 0 for s in sizes) or any(v <= 0 for v in values):
        raise ValueError("sizes and values must be positive to fit in log-log space")
    xs = [math.log(s) for s in sizes]
    ys = [math.log(v) for v in values]
    if len(set(xs)) < 2:
        raise ValueError("sizes: all equal; need at least two distinct sizes")
    result = scipy_stats.linregress(xs, ys)
    slope, r2 = float(result.slope), float(result.rvalue) ** 2 if not math.isnan(result.rvalue) else 1.0
    points = len(xs)
    if deterministic or points < 3:
        method = ("log-log least-squares slope of a deterministic measure (exact)" if deterministic
                  else "log-log slope through two points (no interval: needs >= 3 points)")
        confidence_used = 1.0 if deterministic else 1e-12
        estimate = Estimate(point=slope, low=slope, high=slope, confidence=confidence_used, samples=points,
                            method=method, r_squared=r2)
    else:
        half = float(scipy_stats.t.ppf(0.5 + confidence / 2, points - 2)) * float(result.stderr)
        estimate = Estimate(point=slope, low=slope - half, high=slope + half, confidence=confidence,
                            samples=points, method=f"log-log least-squares slope, Student-t interval (df={points - 2})",
                            r_squared=r2)
    return ExponentFit(estimate=estimate, intercept=float(result.intercept), sizes=tuple(map(float, sizes)),
                       values=tuple(map(float, values)))


def fit_exponent(sizes: Sequence[float], values: Sequence[float]) -> ExponentFit:
    """A sweep's log-log slope and r² reported as supporting evidence (no interval, never judged): figures
    and measured values. A judged exponent uses fit_exponent_estimate and decide(..., min_r2=MIN_R2)."""
    fit = fit_exponent_estimate(sizes, values, deterministic=True)
    estimate = fit.estimate
    return ExponentFit(estimate=Estimate(point=estimate.point, low=estimate.low, high=estimate.high, confidence=1.0,
                                         samples=estimate.samples, method="log-log least-squares slope (not judged)",
                                         r_squared=estimate.r_squared),
                       intercept=fit.intercept, sizes=fit.sizes, values=fit.values)


# --- decisions --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """One judged quantity: an estimate against a threshold in a direction, and the outcome."""

    quantity: str  # what was judged, e.g. "speedup_vs_dense_sdpa_s4"
    estimate: Estimate
    threshold: float | tuple[float, float]  # a bound, or (low, high) for "between"
    direction: str  # "at_least", "at_most" or "between"
    outcome: str  # holds | fails | inconclusive
    note: str = ""  # why an outcome is inconclusive, or a noisy-measurement flag
    extra: dict = field(default_factory=dict)  # rounds used, seconds used, budget (sequential sampling)

    def to_json(self) -> dict:
        threshold = list(self.threshold) if isinstance(self.threshold, tuple) else self.threshold
        data = {"quantity": self.quantity, **self.estimate.to_json(), "threshold": threshold,
                "direction": self.direction, "outcome": self.outcome}
        if self.note:
            data["note"] = self.note
        data.update(self.extra)
        return data

    def describe(self) -> str:
        """`name = estimate [low, high] (rule)`, for evidence and the summary table."""
        symbol = {"at_least": ">=", "at_most": "<="}.get(self.direction)
        rule = (f"{symbol} {self.threshold:.4g}" if symbol else
                f"in [{self.threshold[0]:.4g}, {self.threshold[1]:.4g}]")
        return f"{self.quantity} = {self.estimate} ({rule}: {self.outcome})"


def _outcome(estimate: Estimate, direction: str, threshold) -> str:
    low, high = estimate.low, estimate.high
    if direction == "at_least":
        return "holds" if low >= threshold else "fails" if high < threshold else "inconclusive"
    if direction == "at_most":
        return "holds" if high <= threshold else "fails" if low > threshold else "inconclusive"
    lo, hi = threshold
    if lo <= low and high <= hi:
        return "holds"
    if high < lo or low > hi:
        return "fails"
    return "inconclusive"


def decide(quantity: str, estimate: Estimate | float | int | bool, *, at_least: float | None = None,
           at_most: float | None = None, between: tuple[float, float] | None = None,
           min_r2: float | None = None, note: str = "", extra: dict | None = None) -> Decision:
    """Judge one quantity. A bare number is a deterministic measure (zero-width interval).

    holds when the whole interval passes, fails when the whole interval fails, inconclusive otherwise;
    a fit whose r² is under `min_r2` is inconclusive whatever its interval says.
    """
    if not isinstance(estimate, Estimate):
        if isinstance(estimate, bool):
            estimate = int(estimate)
        if not isinstance(estimate, (int, float)):
            raise TypeError(f"decide({quantity!r}): estimate must be an Estimate or a number, got {type(estimate).__name__}")
        estimate = exact(estimate)
    given = [(name, value) for name, value in (("at_least", at_least), ("at_most", at_most), ("between", between))
             if value is not None]
    if len(given) != 1:
        raise ValueError(f"decide({quantity!r}): give exactly one of at_least, at_most, between; got {[n for n, _ in given]}")
    direction, threshold = given[0]
    if direction == "between":
        threshold = tuple(float(t) for t in threshold)
        if len(threshold) != 2 or threshold[0] > threshold[1]:
            raise ValueError(f"decide({quantity!r}): between must be (low, high) with low <= high, got {between}")
    else:
        threshold = float(threshold)
    outcome = _outcome(estimate, direction, threshold)
    notes = [note] if note else []
    if min_r2 is not None and estimate.r_squared is not None and estimate.r_squared < min_r2:
        outcome = "inconclusive"
        notes.append(f"fit r²={estimate.r_squared:.3f} under the floor {min_r2}: a power law does not describe the sweep")
    return Decision(quantity=quantity, estimate=estimate, threshold=threshold, direction=direction, outcome=outcome,
                    note="; ".join(notes), extra=dict(extra or {}))


def combine_outcomes(outcomes: Sequence[str], logic: str = "separate") -> str:
    """A claim's verdict from its parts' outcomes (holds / fails / partial / inconclusive).

    logic="separate" (the claim makes several statements): all hold -> holds, all fail -> fails, a mix
    -> partial. An inconclusive part keeps the claim from `holds` (all decisive parts hold ->
    inconclusive), but not from `fails`/`partial`: a decisive failure is a failure whatever the
    undecided parts would say.
    logic="all-of" (the parts together define one property: "a rotation" keeps norms and angles, "exact
    for any n" holds at every n): any decisive failure fails the claim; otherwise an undecided part
    leaves it inconclusive; it holds only when every part holds.
    """
    if logic not in ("separate", "all-of"):
        raise ValueError(f"combine_outcomes: logic must be 'separate' or 'all-of', got {logic!r}")
    parts = [o for o in outcomes if o in ("holds", "fails", "partial", "inconclusive")]
    if not parts:
        return "inconclusive"
    if logic == "all-of":
        if any(o in ("fails", "partial") for o in parts):
            return "fails"
        return "holds" if all(o == "holds" for o in parts) else "inconclusive"
    decisive = [o for o in parts if o != "inconclusive"]
    if not decisive:
        return "inconclusive"
    if all(o == "holds" for o in decisive):
        return "inconclusive" if len(decisive) < len(parts) else "holds"
    if all(o == "fails" for o in decisive):
        return "fails"
    return "partial"


# --- sampling until decided -------------------------------------------------------------------------

def _looks(min_rounds: int, max_looks: int) -> list[int]:
    return [min_rounds * 2 ** i for i in range(max_looks)]  # 7, 14, 28


def sample_ratio_until_decided(measure_round: Callable[[], tuple[float, float]], *, quantity: str,
                               at_least: float | None = None, at_most: float | None = None,
                               between: tuple[float, float] | None = None, confidence: float = CONFIDENCE,
                               min_rounds: int = MIN_ROUNDS, max_looks: int = MAX_LOOKS,
                               budget_s: float = 30.0, clock: Callable[[], float] = time.perf_counter,
                               rounds_in: str = ""
                               ) -> tuple[Decision, list[tuple[float, float]]]:
    """Decide baseline/candidate from paired rounds, adding rounds while the interval straddles the rule.

    `measure_round()` times baseline then candidate once, back to back, and returns (baseline_s,
    candidate_s). Looks happen at 7, 14 and 28 rounds; each look's interval is at 1 - α/looks
    (Bonferroni), so stopping at the first decisive look keeps the error rate at most α overall.
    Rounds stop early when `budget_s` is spent (the last look is then taken on what was measured).
    Returns the decision (rounds, seconds and budget recorded in `extra`) and every round's times.

    The rounds must be independent samples of what a rerun would measure: `rounds_in` says how they ran
    (timing.decide_speedup runs each in a fresh worker process) and is recorded with the decision.
    """
    if min_rounds < 2:
        raise ValueError(f"min_rounds must be >= 2, got {min_rounds}")
    if max_looks < 1:
        raise ValueError(f"max_looks must be >= 1, got {max_looks}")
    if budget_s <= 0:
        raise ValueError(f"budget_s must be > 0, got {budget_s}")
    per_look = 1.0 - (1.0 - confidence) / max_looks
    rounds: list[tuple[float, float]] = []
    start = clock()
    decision = None
    looks = _looks(min_rounds, max_looks)
    for look, target in enumerate(looks, start=1):
        out_of_budget = False
        while len(rounds) < target:
            rounds.append(tuple(float(t) for t in measure_round()))
            if clock() - start > budget_s and len(rounds) >= min_rounds:
                out_of_budget = True
                break
        estimate = ratio_from_rounds([b for b, _ in rounds], [c for _, c in rounds], per_look)
        extra = {"rounds": len(rounds), "looks": look, "seconds": round(clock() - start, 3), "budget_s": budget_s}
        if rounds_in:
            extra["rounds_in"] = rounds_in
        decision = decide(quantity, estimate, at_least=at_least, at_most=at_most, between=between, extra=extra)
        if decision.outcome != "inconclusive" or out_of_budget:
            if decision.outcome == "inconclusive":
                decision = _with_note(decision, f"undecided after {len(rounds)} rounds: time budget "
                                                f"{budget_s:g} s spent")
            break
    else:
        if decision is not None and decision.outcome == "inconclusive":
            decision = _with_note(decision, f"undecided after {len(rounds)} rounds ({max_looks} looks)")
    return decision, rounds


def _with_note(decision: Decision, note: str) -> Decision:
    joined = "; ".join(n for n in (decision.note, note) if n)
    return Decision(quantity=decision.quantity, estimate=decision.estimate, threshold=decision.threshold,
                    direction=decision.direction, outcome=decision.outcome, note=joined, extra=decision.extra)


def flag_noisy(decision: Decision, timings: dict) -> Decision:
    """Add a note for every timing (name -> object with median_s and iqr_s) whose IQR/median > 10%."""
    noisy = [f"{name} IQR/median={t.iqr_s / t.median_s:.0%}" for name, t in timings.items()
             if t.median_s > 0 and t.iqr_s / t.median_s > NOISY_IQR_OVER_MEDIAN]
    if not noisy:
        return decision
    return _with_note(decision, "noisy: " + ", ".join(noisy))


# --- samples that are whole runs (seeds, training runs) -------------------------------------------------

def sample_mean_until_decided(draw: Callable[[int], float], *, quantity: str, at_least: float | None = None,
                              at_most: float | None = None, between: tuple[float, float] | None = None,
                              confidence: float = CONFIDENCE, min_samples: int = 3, max_looks: int = MAX_LOOKS,
                              budget_s: float = 60.0, clock: Callable[[], float] = time.perf_counter
                              ) -> tuple[Decision, list[float]]:
    """Decide the mean of independent runs (`draw(i)` runs seed i and returns its value), adding runs while
    the Student-t interval straddles the rule (one rule; see sample_means_until_decided)."""
    rule = {"at_least": at_least, "at_most": at_most, "between": between}
    decisions, values = sample_means_until_decided(draw, {quantity: rule}, confidence=confidence,
                                                   min_samples=min_samples, max_looks=max_looks, budget_s=budget_s,
                                                   clock=clock)
    return decisions[0], values


def sample_means_until_decided(draw: Callable[[int], float], rules: dict[str, dict], *,
                               confidence: float = CONFIDENCE, min_samples: int = 3, max_looks: int = MAX_LOOKS,
                               budget_s: float = 60.0, clock: Callable[[], float] = time.perf_counter
                               ) -> tuple[list[Decision], list[float]]:
    """Decide the mean of independent runs against one or more rules (quantity -> decide() keywords),
    adding runs while any decision is inconclusive.

    A seed is a sample like a worker process is: a fixed seed count leaves a claim near its rule
    inconclusive for want of runs, not of evidence. Looks happen at min_samples, 2x, 4x runs, each at
    1 - α/looks (Bonferroni); runs stop early when `budget_s` is spent (the look is then taken on what
    was run). Each decision records the runs used and the budget.
    """
    if not rules:
        raise ValueError("rules: need at least one quantity to decide")
    if min_samples < 2:
        raise ValueError(f"min_samples must be >= 2 (a t interval needs two runs), got {min_samples}")
    if max_looks < 1:
        raise ValueError(f"max_looks must be >= 1, got {max_looks}")
    if budget_s <= 0:
        raise ValueError(f"budget_s must be > 0, got {budget_s}")
    per_look = 1.0 - (1.0 - confidence) / max_looks
    values: list[float] = []
    start = clock()
    decisions: list[Decision] = []
    for look, target in enumerate(_looks(min_samples, max_looks), start=1):
        out_of_budget = False
        while len(values) < target:
            values.append(float(draw(len(values))))
            if clock() - start > budget_s and len(values) >= min_samples:
                out_of_budget = True
                break
        estimate = mean_interval(values, per_look)
        extra = {"runs": len(values), "looks": look, "seconds": round(clock() - start, 3), "budget_s": budget_s}
        decisions = [decide(quantity, estimate, extra=extra, **rule) for quantity, rule in rules.items()]
        undecided = any(d.outcome == "inconclusive" for d in decisions)
        if not undecided:
            break
        if out_of_budget or look == max_looks:
            why = (f"time budget {budget_s:g} s spent" if out_of_budget else f"{max_looks} looks: run budget spent")
            decisions = [_with_note(d, f"undecided after {len(values)} runs: {why}") if d.outcome == "inconclusive"
                         else d for d in decisions]
            break
    return decisions, values
