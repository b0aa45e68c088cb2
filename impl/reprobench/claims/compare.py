"""`reprobench compare OLD NEW`: what changed between two reports (two runs, commits or machines).

Like asv's compare, a change in a measured quantity is only called when the two intervals do not
overlap; a verdict change is always shown. The exit code gates CI: 1 when a claim that held no
longer does (holds -> fails/partial), 0 otherwise (holds -> inconclusive is shown, not gated: the
data could not decide, which is not a regression).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from reprobench.claims.report import format_decision
from reprobench.measure.environment import MACHINE_KEYS

REGRESSIONS = {("holds", "fails"), ("holds", "partial")}


@dataclass
class ReportDiff:
    verdict_changes: list[tuple[str, str, str]] = field(default_factory=list)  # (id, old, new)
    interval_changes: list[tuple[str, dict, dict]] = field(default_factory=list)  # (id, old decision, new)
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
            if previous is not None and (d["low"] > previous["high"] or previous["low"] > d["high"]):
                diff.interval_changes.append((claim_id, previous, d))
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
        lines += ["", "measured quantities whose intervals do not overlap:"]
        for claim_id, before, after in diff.interval_changes:
            lines.append(f"  {claim_id} {format_decision(before)}  ->  {format_decision(after, with_name=False)}")
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
