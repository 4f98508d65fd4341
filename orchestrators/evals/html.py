"""The eval report as one self-contained HTML page: inline CSS and SVG, no scripts, no network."""

from __future__ import annotations

from html import escape
from typing import Any

from orchestrators.evals.results import CaseReport, PathSummary

COLORS = {"llm": "#7b61ff", "workflow": "#1f9d55"}
BAR_W = 360
HEAD = ("case", "path", "pass", "tool sequences", "misuse", "model calls", "tokens in / out", "cost / run")
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:13px}
th{background:#f3f3f3}.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}
svg{display:block;margin:1.5em 0}"""


def _bars(title: str, rows: list[tuple[str, str, float | None]], unit: str) -> str:
    """A horizontal bar chart: one bar per (case, path); None is drawn as "unknown"."""
    known = [v for _, _, v in rows if v is not None]
    top = max(known, default=0) or 1
    h = 22 * len(rows) + 30
    out = [f'<svg width="{BAR_W + 330}" height="{h}" role="img" aria-label="{escape(title)}">']
    out.append(f'<text x="0" y="14" font-weight="bold">{escape(title)}</text>')
    for i, (case, path, value) in enumerate(rows):
        y = 26 + 22 * i
        out.append(f'<text x="0" y="{y + 13}" font-size="12">{escape(case[:28])} · {path}</text>')
        if value is None:
            out.append(f'<text x="200" y="{y + 13}" font-size="12" fill="#b00">price unknown</text>')
            continue
        w = max(1.0, BAR_W * value / top)
        out.append(f'<rect x="200" y="{y}" width="{w:.1f}" height="16" fill="{COLORS[path]}"/>')
        out.append(f'<text x="{205 + w:.1f}" y="{y + 13}" font-size="12">{value:.6g} {unit}</text>')
    out.append("</svg>")
    return "".join(out)


def _row(r: CaseReport, path: str, s: PathSummary) -> str:
    seqs = "<br>".join(f"{n}× {escape(q)}" for q, n in s.sequences.items())
    misuse = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s.misuse.items() if v) or "0"
    if s.replay_misses:
        misuse += f"; replay misses {s.replay_misses}"
    cost = "price unknown" if s.cost_usd is None else f"${s.cost_usd:.6f}"
    cells = [
        escape(r.case.name),
        path,
        f"{s.passed}/{s.runs}",
        seqs,
        escape(misuse),
        f"{s.llm_calls:.1f}",
        f"{s.prompt_tokens:.0f} / {s.completion_tokens:.0f}",
        cost,
        f"{s.latency_p50_ms:.0f} / {s.latency_p95_ms:.0f} ms",
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def render_html(reports: list[CaseReport], meta: dict[str, Any]) -> str:
    runs = [(r, p, s) for r in reports for p, s in r.paths.items()]
    rows = "".join(_row(r, p, s) for r, p, s in runs)
    skipped = "".join(
        f"<li>{escape(r.case.name)}: {escape(r.case.skip)}</li>" for r in reports if r.case.skip
    )
    verdicts = "".join(
        f"<li><b>{escape(r.case.name)}</b>: {escape(r.verdict)}</li>" for r in reports if r.verdict
    )
    charts = [
        _bars("Cost per run (USD)", [(r.case.name, p, s.cost_usd) for r, p, s in runs], "$"),
        _bars("Latency p50 (ms)", [(r.case.name, p, s.latency_p50_ms) for r, p, s in runs], "ms"),
        _bars("Distinct tool sequences", [(r.case.name, p, float(len(s.sequences))) for r, p, s in runs], ""),
        _bars("Pass rate", [(r.case.name, p, s.pass_rate) for r, p, s in runs], ""),
    ]
    about = escape(", ".join(f"{k}: {v}" for k, v in meta.items()))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Switchboard eval: LLM or code?</title>
<style>
{STYLE}
</style></head><body>
<h1>LLM or code?</h1><p>{about}</p>
<h2>Verdicts</h2><ul>{verdicts or "<li>no case ran through both paths</li>"}</ul>
<h2>Per case and path</h2>
<table><tr>{"".join(f"<th>{h}</th>" for h in (*HEAD, "latency p50 / p95"))}</tr>{rows}</table>
{f"<h2>Skipped</h2><ul>{skipped}</ul>" if skipped else ""}
<h2>Charts</h2><p class="legend"><span style="background:{COLORS["llm"]}"></span>llm
<span style="background:{COLORS["workflow"]}"></span>workflow</p>
{"".join(charts)}
</body></html>
"""
