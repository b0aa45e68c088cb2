"""`reprobench compare OLD NEW`: what changed between two reports (two runs, commits or machines).

A measured quantity is called changed only when the two runs' uncertainty says it changed, as asv's
compare does with its factor: the interval on the ratio new/old (from each run's interval, at
CHANGE_CONFIDENCE) must exclude 1 AND the ratio itself must move by more than the noise floor
(NOISE_FLOOR, asv's default factor). Two runs of the same commit on the same machine then report
no change beyond the nominal rate; non-overlapping intervals alone are not enough (two 95% intervals
of one quantity miss each other in about 0.6% of pairs even when calibrated, far more when not).
A deterministic quantity (zero-width interval: FLOPs, bytes, counts) changed when its value moved by
more than a millionth of itself and more than a thousandth of its rule's threshold.
A verdict change is always shown. The exit code gates CI: 1 when a claim that held no
longer does (holds -> fails/partial), 0 otherwise (holds -> inconclusive is shown, not gated: the
data could not decide, which is not a regression).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from scipy import stats as scipy_stats

from reprobench.claims.report import format_decision
from reprobench.measure.environment import MACHINE_KEYS

REGRESSIONS = {("holds", "fails"), ("holds", "partial")}
CHANGE_CONFIDENCE = 0.99  # level of the interval on new/old (asv's compare uses p < 0.002 for its test)
NOISE_FLOOR = 0.10  # a ratio within [1/1.1, 1.1] is never called a change (asv's default factor)
EXACT_RELATIVE = 1e-6  # deterministic values differing by less than this share of their value are equal
THRESHOLD_SHARE = 1e-3  # ...or by less than this share of their rule's threshold (float errors far below it)


def _half_width_se(low: float, high: float, confidence: float) -> float | None:
    """Standard error implied by a two-sided interval at `confidence`, or None when it carries none."""
    if not 0.5 <= confidence < 1.0:
        return None
    return (high - low) / (2.0 * float(scipy_stats.norm.ppf(0.5 + confidence / 2.0)))


def quantity_change(old: dict, new: dict) -> tuple[bool, str]:
    """(changed, how): whether one judged quantity changed between two runs, and the figure that says so.

    Positive quantities compare as a ratio in log space; others (slopes, differences) as a difference.
    Each run's interval gives its standard error; the two combine as independent. Changed when the
    CHANGE_CONFIDENCE interval excludes no change and the point moves past the noise floor.
    """
    p1, l1, h1, c1 = old["estimate"], old["low"], old["high"], old.get("confidence", 0.95)
    p2, l2, h2, c2 = new["estimate"], new["low"], new["high"], new.get("confidence", 0.95)
    if l1 == h1 and l2 == h2:
        # FLOPs and bytes change when the code does; a float64 error of 2e-16 judged against 1e-10 moves with
        # the BLAS build and says nothing about the claim, so a move must also be a visible share of the rule.
        thresholds = new.get("threshold", old.get("threshold"))
        bounds = thresholds if isinstance(thresholds, (list, tuple)) else [thresholds]
        threshold_scale = max([0.0] + [abs(t) for t in bounds if isinstance(t, (int, float))])
        delta = abs(p2 - p1)
        changed = delta > EXACT_RELATIVE * max(abs(p1), abs(p2), 1e-300) and delta > THRESHOLD_SHARE * threshold_scale
        return changed, f"{p1:.4g} -> {p2:.4g} (deterministic)"
    positive = min(l1, l2, p1, p2) > 0
    if positive:
        a, b = math.log(p1), math.log(p2)
        se1 = _half_width_se(math.log(l1), math.log(h1), c1) if l1 < h1 else 0.0
        se2 = _half_width_se(math.log(l2), math.log(h2), c2) if l2 < h2 else 0.0
    else:
        a, b = p1, p2
        se1 = _half_width_se(l1, h1, c1) if l1 < h1 else 0.0
        se2 = _half_width_se(l2, h2, c2) if l2 < h2 else 0.0
    if se1 is None or se2 is None:
        return False, "not compared (an interval below 50% confidence carries no error estimate)"
    z = float(scipy_stats.norm.ppf(0.5 + CHANGE_CONFIDENCE / 2.0))
    half = z * math.sqrt(se1 ** 2 + se2 ** 2)
    delta = b - a
    excludes_none = delta - half > 0 or delta + half < 0
    if positive:
        ratio = math.exp(delta)
        past_floor = ratio > 1.0 + NOISE_FLOOR or ratio < 1.0 / (1.0 + NOISE_FLOOR)
        how = f"new/old = {ratio:.3g} [{math.exp(delta - half):.3g}, {math.exp(delta + half):.3g}]"
    else:
        past_floor = abs(delta) > NOISE_FLOOR * max(abs(a), abs(b))
        how = f"new - old = {delta:.3g} [{delta - half:.3g}, {delta + half:.3g}]"
    return excludes_none and past_floor, how


@dataclass
class ReportDiff:
    verdict_changes: list[tuple[str, str, str]] = field(default_factory=list)  # (id, old, new)
    interval_changes: list[tuple[str, dict, dict, str]] = field(default_factory=list)  # (id, old, new, how)
    type_changes: list[tuple[str, str, str, str]] = field(default_factory=list)  # (id, key, old type, new type)
    only_old: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)
    environment_changes: list[tuple[str, object, object]] = field(default_factory=list)

    @property
    def regressions(self) -> list[tuple[str, str, str]]:
        return [c for c in self.verdict_changes if (c[1], c[2]) in REGRESSIONS]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0


def _json_type(value) -> str:
    return "null" if value is None else {bool: "bool", int: "number", float: "number", str: "string"}.get(
        type(value), type(value).__name__)


def diff_reports(old: dict, new: dict) -> ReportDiff:
    diff = ReportDiff()
    old_claims = {c["id"]: c for c in old.get("claims", [])}
    new_claims = {c["id"]: c for c in new.get("claims", [])}
    diff.only_old = sorted(set(old_claims) - set(new_claims))
    diff.only_new = sorted(set(new_claims) - set(old_claims))
    for claim_id in sorted(set(old_claims) & set(new_claims)):
        before, after = old_claims[claim_id], new_claims[claim_id]
        if before["verdict"] != after["verdict"]:
            diff.verdict_changes.append((claim_id, before["verdict"], after["verdict"]))
        old_decisions = {d["quantity"]: d for d in before.get("decisions") or []}
        for d in after.get("decisions") or []:
            previous = old_decisions.get(d["quantity"])
            if previous is None:
                continue
            changed, how = quantity_change(previous, d)
            if changed:
                diff.interval_changes.append((claim_id, previous, d, how))
        for key in sorted(set(before.get("measured", {})) & set(after.get("measured", {}))):
            old_type, new_type = _json_type(before["measured"][key]), _json_type(after["measured"][key])
            if old_type != new_type and "null" not in (old_type, new_type):
                diff.type_changes.append((claim_id, key, old_type, new_type))
    old_env, new_env = old.get("environment", {}), new.get("environment", {})
    diff.environment_changes = [(k, old_env.get(k), new_env.get(k)) for k in MACHINE_KEYS
                                if old_env.get(k) != new_env.get(k)]
    return diff


def _describe_env(report: dict) -> str:
    env = report.get("environment", {})
    return (f"commit {str(env.get('git_commit', '?'))[:12]}{' (dirty)' if env.get('git_dirty') else ''}, "
            f"{report.get('generated_at', '?')}{', quick' if report.get('quick') else ''}, torch "
            f"{env.get('torch_version', '?')}, {env.get('cpu_model', '?')}, {env.get('device', '?')}, "
            f"{env.get('measurement_threads', '?')} thread(s), machine {env.get('fingerprint', '?')}")


def format_diff(diff: ReportDiff, old: dict, new: dict, *, old_name: str = "OLD", new_name: str = "NEW") -> str:
    lines = [f"{old_name}: {_describe_env(old)}", f"{new_name}: {_describe_env(new)}"]
    if diff.environment_changes:
        lines.append("environments differ (figures are not comparable one to one): " + "; ".join(
            f"{k}: {a!r} -> {b!r}" for k, a, b in diff.environment_changes))
    else:
        lines.append("same environment fingerprint")
    if diff.verdict_changes:
        lines += ["", "verdict changes:"]
        width = max(len(c[0]) for c in diff.verdict_changes)
        for claim_id, before, after in diff.verdict_changes:
            flag = "  REGRESSION" if (before, after) in REGRESSIONS else ""
            lines.append(f"  {claim_id:<{width}}  {before} -> {after}{flag}")
    else:
        lines += ["", "no verdict changes"]
    if diff.interval_changes:
        lines += ["", f"measured quantities that changed (the {CHANGE_CONFIDENCE:.0%} interval on the change excludes "
                      f"none, and it exceeds the {NOISE_FLOOR:.0%} noise floor):"]
        for claim_id, before, after, how in diff.interval_changes:
            lines.append(f"  {claim_id} {format_decision(before)}  ->  {format_decision(after, with_name=False)}"
                         f"  ({how})")
    else:
        lines += [f"no measured quantity changed beyond the noise (ratio interval at {CHANGE_CONFIDENCE:.0%}, "
                  f"floor {NOISE_FLOOR:.0%})"]
    if diff.type_changes:
        lines += ["", "measured values that changed JSON type:"]
        lines += [f"  {c} {k}: {a} -> {b}" for c, k, a, b in diff.type_changes]
    if diff.only_old:
        lines.append(f"\nonly in {old_name}: {', '.join(diff.only_old)}")
    if diff.only_new:
        lines.append(f"only in {new_name}: {', '.join(diff.only_new)}")
    if diff.regressions:
        lines.append(f"\n{len(diff.regressions)} claim(s) no longer hold: exit 1")
    return "\n".join(lines)
