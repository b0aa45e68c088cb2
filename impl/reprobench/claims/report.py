"""Write reports/claims.json, reports/claims.md and reports/figures/ atomically.

Every file is written to a temporary name in the same directory and moved into place with
os.replace, and the JSON (the source of truth) is replaced last, so an interrupted run leaves the
last good report. A partial run (`--only`) merges into the existing report instead of dropping
the claims it did not run.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from reprobench.claims.experiment import VERDICTS
from reprobench.claims.ledger import CLAIM_TEXTS


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_report(out_dir: Path) -> dict | None:
    path = out_dir / "claims.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def merge_entries(previous: dict | None, new_entries: list[dict]) -> list[dict]:
    """New entries replace old ones by ID; every CLAIMS.md ID appears exactly once, sorted."""
    by_id = {e["id"]: e for e in (previous or {}).get("claims", []) if e["id"] in CLAIM_TEXTS}
    by_id.update({e["id"]: e for e in new_entries})
    for claim_id, (source, text) in CLAIM_TEXTS.items():
        by_id.setdefault(claim_id, {
            "id": claim_id, "verdict": "not-implemented", "claimed": text, "measured": {}, "rule": "",
            "evidence": "No experiment for this claim yet.", "figures": [], "deviations": [], "source": source,
        })
    return [by_id[k] for k in sorted(by_id)]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _shorten(text: str, limit: int = 160) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _format_measured(measured: dict, limit: int = 6) -> str:
    items = []
    for key, value in list(measured.items())[:limit]:
        if isinstance(value, float):
            value = f"{value:.4g}"
        items.append(f"{key}={value}")
    more = len(measured) - limit
    return "; ".join(items) + (f"; … (+{more} in claims.json)" if more > 0 else "")


def _threads(env: dict) -> str:
    if "measurement_threads" in env:
        return f"{env['measurement_threads']} of {env.get('threads', '?')} threads used for measurement"
    return f"{env.get('threads', '?')} threads available"


def render_markdown(report: dict) -> str:
    claims = report["claims"]
    env = report["environment"]
    counts = Counter(c["verdict"] for c in claims)
    lines = [
        "# reprobench — claims report",
        "",
        f"{len(claims)} claims: " + ", ".join(f"**{counts.get(v, 0)} {v}**" for v in VERDICTS if counts.get(v)),
        "",
        f"Measured on {env.get('cpu_model', '?')} ({env.get('device', '?')}, {_threads(env)}), "
        f"torch {env.get('torch_version', '?')}, commit {env.get('git_commit', '?')}"
        f"{' (dirty)' if env.get('git_dirty') else ''}, {report.get('generated_at', '')}"
        f"{' — quick run' if report.get('quick') else ''}.",
        "Machine-readable: `claims.json`. Verdicts are computed by the stated rule from the measured values.",
        "",
        "| ID | verdict | claimed | measured | rule | evidence |",
        "|---|---|---|---|---|---|",
    ]
    for c in claims:
        lines.append(f"| {c['id']} | {c['verdict']} | {_cell(_shorten(c['claimed']))} | "
                     f"{_cell(_format_measured(c['measured']))} | {_cell(c['rule'])} | {_cell(c['evidence'])} |")
    figure_claims = [c for c in claims if c.get("figures")]
    if figure_claims:
        lines += ["", "## Figures", ""]
        for c in figure_claims:
            for fig in c["figures"]:
                lines.append(f"**{c['id']}** — ![{c['id']}]({fig})")
                lines.append("")
    deviation_claims = [c for c in claims if c.get("deviations")]
    if deviation_claims:
        lines += ["", "## Deviations from the documents", ""]
        for c in deviation_claims:
            for d in c["deviations"]:
                lines.append(f"- **{c['id']}**: {d}")
    return "\n".join(lines) + "\n"


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
