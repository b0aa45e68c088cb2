"""Write reports/claims.json, reports/claims.md and reports/figures/ atomically; read them back.

Every file is written to a temporary name in the same directory and moved into place with
os.replace, and the JSON (the source of truth) is replaced last, so an interrupted run leaves the
last good report. A partial run (`--only`) merges into the existing report: each claim keeps the
provenance of the run that measured it, and the header lists the runs the report is made of.

claims.json (schema 2): {schema, generated_at, merged, runs: [{run, generated_at, commit, dirty,
quick, device, environment}], environment (the newest run's), quick, claims: [{id, verdict, claimed,
measured, decisions: [{quantity, estimate, low, high, confidence, samples, threshold, direction,
outcome, ...}], headline, rule, evidence, figures, deviations, source, seconds, provenance}]}.
"""
from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

from reprobench.claims.experiment import VERDICTS

SCHEMA = 2


from reprobench.io import atomic_write_text  # noqa: E402,F401  (writers import it from here too)


class ReportError(ValueError):
    """A report that cannot be read: the message is one line a user can act on."""



def report_path(location: Path) -> Path:
    """A report directory or its claims.json."""
    location = Path(location)
    return location / "claims.json" if location.is_dir() or location.suffix != ".json" else location


def load_report(location: Path) -> dict | None:
    """The report at a directory or claims.json path; None when there is none; ReportError when it is
    unreadable, so no run silently replaces or merges into a file it could not understand."""
    path = report_path(location)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path} is not a readable claims report ({type(exc).__name__}: {exc}); "
                          "move it away or choose another --out") from None
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise ReportError(f"{path} is not a claims report (no 'claims' list); move it away or choose another --out")
    return data


def merge_entries(previous: dict | None, new_entries: list[dict]) -> list[dict]:
    """New entries replace old ones by ID; claims of the previous report that were not rerun stay as they
    were (with their own provenance). Sorted by ID."""
    by_id = {e["id"]: e for e in (previous or {}).get("claims", [])}
    by_id.update({e["id"]: e for e in new_entries})
    return [by_id[k] for k in sorted(by_id)]


def build_report(new_entries: list[dict], *, previous: dict | None, environment: dict, quick: bool,
                 run_id: str, generated_at: str) -> dict:
    """The report of this run, merged into `previous` when given (an `--only` run)."""
    from reprobench.claims.runner import provenance

    stamp = provenance(environment=environment, quick=quick, run_id=run_id)
    for e in new_entries:
        e["provenance"] = stamp
    this_run = {"run": run_id, "generated_at": generated_at, "commit": stamp["commit"], "dirty": stamp["dirty"],
                "quick": quick, "device": stamp["device"], "environment": stamp["environment"],
                "claims": [e["id"] for e in new_entries]}
    claims = merge_entries(previous, new_entries)
    runs = [this_run]
    if previous is not None:
        kept_runs = {c.get("provenance", {}).get("run") for c in claims}
        runs = [r for r in previous.get("runs", []) if r.get("run") in kept_runs and r.get("run") != run_id] + runs
    return {"schema": SCHEMA, "generated_at": generated_at, "merged": len(runs) > 1, "runs": runs,
            "quick": quick, "environment": environment, "claims": claims}


# --- markdown --------------------------------------------------------------------------------------

def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _shorten(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_decision(d: dict, *, with_name: bool = True) -> str:
    """`name: 3.1 [2.9, 3.3] vs ≥ 3` — the estimate with its interval against the rule's threshold."""
    est, low, high = d["estimate"], d["low"], d["high"]
    figure = _number(est) if low == high else f"{_number(est)} [{_number(low)}, {_number(high)}]"
    threshold = d["threshold"]
    rule = {"at_least": f"≥ {_number(threshold)}", "at_most": f"≤ {_number(threshold)}"}.get(
        d["direction"], f"in [{_number(threshold[0])}, {_number(threshold[1])}]" if isinstance(threshold, list) else "")
    return (f"{d['quantity']}: " if with_name else "") + f"{figure} vs {rule}"


def _headline(claim: dict) -> str:
    decisions = claim.get("decisions") or []
    if not decisions:
        return "—"
    wanted = claim.get("headline")
    chosen = next((d for d in decisions if d["quantity"] == wanted), decisions[0])
    more = f" (+{len(decisions) - 1})" if len(decisions) > 1 else ""
    return format_decision(chosen) + more


def _threads(env: dict) -> str:
    if "measurement_threads" in env:
        return f"{env['measurement_threads']} of {env.get('threads', '?')} threads used for measurement"
    return f"{env.get('threads', '?')} threads available"


def _anchor(claim_id: str) -> str:
    return claim_id.lower()


def render_markdown(report: dict) -> str:
    claims = report["claims"]
    env = report["environment"]
    counts = Counter(c["verdict"] for c in claims)
    order = list(VERDICTS) + sorted(set(counts) - set(VERDICTS))
    lines = [
        "# reprobench — claims report",
        "",
        f"{len(claims)} claims: " + ", ".join(f"**{counts[v]} {v}**" for v in order if counts.get(v)),
        "",
        f"Measured on {env.get('cpu_model', '?')} ({env.get('device', '?')}, {_threads(env)}), "
        f"torch {env.get('torch_version', '?')}, commit {str(env.get('git_commit', '?'))[:12]}"
        f"{' (dirty)' if env.get('git_dirty') else ''}, {report.get('generated_at', '')}"
        f"{' — quick run' if report.get('quick') else ''}.",
    ]
    runs = report.get("runs", [])
    if report.get("merged"):
        lines += ["", f"**Merged report** from {len(runs)} runs (each claim's own run is in its section):"]
        for r in runs:
            lines.append(f"- {r['run']}: commit {str(r['commit'])[:12]}{' (dirty)' if r.get('dirty') else ''}, "
                         f"{r['generated_at']}, {r['device']}{', quick' if r.get('quick') else ''}, machine "
                         f"{r.get('environment', '?')}: {len(r.get('claims', []))} claims")
    lines += [
        "",
        "A verdict comes from decisions: each judged quantity is an estimate with its interval (95% unless "
        "stated); `holds` when the whole interval passes the rule, `fails` when it is wholly on the failing side, "
        "`inconclusive` when the interval straddles the threshold. Machine-readable: `claims.json`.",
        "",
        "| ID | verdict | headline figure `estimate [low, high]` vs rule | claim |",
        "|---|---|---|---|",
    ]
    for c in claims:
        lines.append(f"| [{c['id']}](#{_anchor(c['id'])}) | {c['verdict']} | {_cell(_headline(c))} | "
                     f"{_cell(_shorten(c['claimed'], 70))} |")
    lines += ["", "## Evidence per claim", ""]
    for c in claims:
        lines += _claim_section(c)
    return "\n".join(lines) + "\n"


def _claim_section(c: dict) -> list[str]:
    lines = [f"### {c['id']}", "", f"**{c['verdict']}** — {c['claimed']}", ""]
    if c.get("rule"):
        lines += [f"*Rule:* {c['rule']}", ""]
    decisions = c.get("decisions") or []
    if decisions:
        lines += ["| quantity | estimate [low, high] vs rule | outcome | samples, method | note |",
                  "|---|---|---|---|---|"]
        for d in decisions:
            lines.append(f"| {_cell(d['quantity'])} | {_cell(format_decision(d, with_name=False))} | {d['outcome']} | "
                         f"{d['samples']}, {_cell(d.get('method', ''))} | {_cell(d.get('note', ''))} |")
        lines.append("")
    lines += [f"*Evidence:* {c['evidence']}", ""]
    if c.get("measured"):
        lines.append("*Measured:* " + "; ".join(f"{k} = {_number(v)}" for k, v in c["measured"].items()))
        lines.append("")
    for fig in c.get("figures", []):
        lines += [f"![{c['id']}]({fig})", ""]
    for d in c.get("deviations", []):
        lines.append(f"- deviation from the document: {d}")
    if c.get("deviations"):
        lines.append("")
    prov = c.get("provenance")
    if prov:
        lines += [f"<sub>run {prov['run']}, commit {str(prov['commit'])[:12]}{' (dirty)' if prov.get('dirty') else ''}, "
                  f"{prov['generated_at']}, {prov['device']}{', quick' if prov.get('quick') else ''}, "
                  f"{c.get('seconds', '?')} s</sub>", ""]
    return lines


def write_report(out_dir: Path, report: dict, scratch_figures: Path | None) -> None:
    """Move new figures into place, then write claims.md, then claims.json (last: it commits the run)."""
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    if scratch_figures is not None and scratch_figures.exists():
        for fig in scratch_figures.iterdir():
            os.replace(fig, figures / fig.name)
        shutil.rmtree(scratch_figures, ignore_errors=True)
    atomic_write_text(out_dir / "claims.md", render_markdown(report))
    atomic_write_text(out_dir / "claims.json", json.dumps(report, indent=2, sort_keys=False) + "\n")
