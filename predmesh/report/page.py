"""The report page: one self-contained HTML document (inline CSS, SVG and a few lines of JS).

Sections (each an element with an id, each chart an <svg class="chart"> from `svg`):
`#scores` score distribution per version/arm, `#drift` PSI per version and feature (alert line),
`#canary` stable vs canary (rate, p99 latency, error+degraded rate, AUC) with a table,
`#rollout` the canary weight over the rollout decisions with a table of their reasons,
`#webhooks` the drift monitor's retraining-webhook calls (table: PSI, attempts, final status).
The inline script only reads the laid-out geometry back into `data-rendered-h` attributes
(what a browser drew, for tests and debugging); nothing is loaded from anywhere.
"""

from __future__ import annotations

import time
from html import escape

from predmesh.report import svg
from predmesh.report.data import SCORE_BINS, ReportData

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 6px;border-bottom:1px solid #ddd}
.meta,.note{color:#555} .charts{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{background:#fafafa;border:1px solid #e4e4e4} svg text{font-size:11px;fill:#333}
svg text.title{font-size:13px;font-weight:600} table{border-collapse:collapse;margin-top:8px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right} th{background:#f2f2f2}
td.l,th.l{text-align:left} .rollback{color:#d62728} .promote{color:#2ca02c}
"""

_JS = """
(function(){var n=0;document.querySelectorAll('svg [data-value]').forEach(function(e){
var b=e.getBBox();e.setAttribute('data-rendered-h',b.height.toFixed(2));n++;});
document.body.setAttribute('data-rendered',String(n));})();
"""


def _bins() -> list[str]:
    return [f"{i / SCORE_BINS:.1f}" for i in range(SCORE_BINS)]


def _pct(v: float) -> str:
    return f"{v * 100:.2f}%"


def _colors(data: ReportData) -> dict[str, str]:
    keys = sorted({a.key for a in data.arms} | {s.key for s in data.scores})
    return {k: svg.color_of(i) for i, k in enumerate(keys)}


def scores_section(data: ReportData, colors: dict[str, str]) -> str:
    if not data.scores:
        return '<p class="note">No scores in the store for this window.</p>'
    bins = _bins()
    series = [s.key for s in data.scores]
    values: dict[tuple[str, str], float | None] = {}
    for s in data.scores:
        for b, n in zip(bins, s.counts, strict=True):
            if n:
                values[(b, s.key)] = float(n)
    chart = svg.bar_chart(
        "chart-scores",
        "Predictions per score bin (lower edge), per version/arm",
        bins,
        series,
        values,
        fmt=lambda v: f"{v:.0f}",
        colors=colors,
        width=900,
        value_labels=False,
    )
    totals = ", ".join(f"{escape(s.key)}: {sum(s.counts)}" for s in data.scores)
    return f'{chart}<p class="meta">Predictions: {totals}.</p>'


def drift_section(data: ReportData) -> str:
    if not data.drift:
        return '<p class="note">No drift numbers available (see the notes above).</p>'
    names = list(dict.fromkeys(d.name for d in data.drift))
    series = list(dict.fromkeys(f"{d.version} ({d.source})" for d in data.drift))
    values: dict[tuple[str, str], float | None] = {(d.name, f"{d.version} ({d.source})"): d.psi for d in data.drift}
    return svg.bar_chart(
        "chart-drift",
        "PSI against the version's reference (score and features)",
        names,
        series,
        values,
        fmt=lambda v: f"{v:.3f}",
        threshold=data.psi_alert,
        width=max(640, 120 + 90 * len(names) * max(1, len(series) // 2)),
    )


def canary_section(data: ReportData, colors: dict[str, str]) -> str:
    if not data.arms:
        return '<p class="note">No predictions in the store for this window.</p>'
    keys = [a.key for a in data.arms]
    metrics = (
        ("chart-rate", "Request rate (/s)", "rate", lambda a: a.rate_per_s, lambda v: f"{v:.1f}"),
        ("chart-p99", "p99 latency (ms)", "p99", lambda a: a.p99_ms, lambda v: f"{v:.1f}"),
        ("chart-bad", "Error+degraded rate", "bad", lambda a: a.bad_rate, _pct),
        ("chart-auc", "AUC (predictions with outcomes)", "auc", lambda a: a.auc, lambda v: f"{v:.3f}"),
    )
    charts = []
    for chart_id, title, group, get, fmt in metrics:
        values = {(group, a.key): get(a) for a in data.arms}
        charts.append(svg.bar_chart(chart_id, title, [group], keys, values, fmt=fmt, colors=colors, width=320))
    rows = "".join(
        f'<tr><td class="l">{escape(a.version)}</td><td class="l">{escape(a.arm)}</td><td>{a.n}</td>'
        f"<td>{a.rate_per_s:.2f}</td><td>{a.p50_ms:.2f}</td><td>{a.p99_ms:.2f}</td><td>{_pct(a.bad_rate)}</td>"
        f"<td>{a.mean_score:.4f}</td><td>{a.outcomes}</td><td>{'n/a' if a.auc is None else f'{a.auc:.4f}'}</td></tr>"
        for a in data.arms
    )
    table = (
        '<table id="table-arms"><tr><th class="l">version</th><th class="l">arm</th><th>predictions</th>'
        "<th>rate /s</th><th>p50 ms</th><th>p99 ms</th><th>error+degraded</th><th>mean score</th>"
        f"<th>outcomes</th><th>AUC</th></tr>{rows}</table>"
    )
    return f'<div class="charts">{"".join(charts)}</div>{table}'


def rollout_section(data: ReportData) -> str:
    if not data.decisions:
        return '<p class="note">No rollout decisions recorded for this model.</p>'
    first = data.decisions[0].ts_s
    points = [
        (
            d.ts_s - first,
            d.weight_after,
            d.action,
            f"{d.action} {d.canary_version}: {d.weight:g}% -> {d.weight_after:g}% ({d.reason})",
        )
        for d in data.decisions
    ]
    chart = svg.step_chart("chart-rollout", "Canary weight (%) after each rollout decision", points, width=900)
    rows = "".join(
        f'<tr class="{escape(d.action)}"><td class="l">{_when(d.ts_s)}</td><td class="l">{escape(d.action)}</td>'
        f'<td class="l">{escape(d.stable_version)} → {escape(d.canary_version)}</td><td>{d.step}</td>'
        f'<td>{d.weight:g}%</td><td>{d.weight_after:g}%</td><td class="l">{escape(d.reason)}</td></tr>'
        for d in data.decisions
    )
    table = (
        '<table id="table-decisions"><tr><th class="l">time (UTC)</th><th class="l">action</th>'
        '<th class="l">stable → canary</th><th>step</th><th>weight</th><th>after</th><th class="l">reason</th></tr>'
        f"{rows}</table>"
    )
    return chart + table


def webhooks_section(data: ReportData) -> str:
    if not data.webhooks:
        return '<p class="note">No retraining webhook calls recorded for this model.</p>'

    def psi(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    rows = "".join(
        f'<tr class="webhook {escape(w.status)}"><td class="l">{_when(w.ts_s)}</td>'
        f'<td class="l">{escape(w.version)}</td>'
        f'<td>{psi(w.score_psi)}</td><td>{psi(w.max_feature_psi)}</td><td class="l">{escape(w.drifted)}</td>'
        f'<td>{w.attempts}</td><td class="l">{escape(w.status)}</td><td>{w.http_status or ""}</td>'
        f'<td class="l">{escape(w.error)}</td></tr>'
        for w in data.webhooks
    )
    return (
        '<table id="table-webhooks"><tr><th class="l">ended (UTC)</th><th class="l">version</th><th>score PSI</th>'
        '<th>max feature PSI</th><th class="l">drifted</th><th>attempts</th><th class="l">status</th><th>HTTP</th>'
        f'<th class="l">last error</th></tr>{rows}</table>'
    )


def _when(ts_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_s))


def render(data: ReportData) -> str:
    colors = _colors(data)
    window = f"since {_when(data.since_s)} UTC" if data.since_s else "all stored predictions"
    notes = "".join(f"<li>{escape(n)}</li>" for n in data.notes)
    sections = (
        ("scores", "Score distribution", scores_section(data, colors)),
        ("drift", "Drift", drift_section(data)),
        ("canary", "Canary vs stable", canary_section(data, colors)),
        ("rollout", "Rollout history", rollout_section(data)),
        ("webhooks", "Retraining webhook calls", webhooks_section(data)),
    )
    body = "".join(f'<section id="{sid}"><h2>{title}</h2>{html}</section>' for sid, title, html in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>predmesh report: {escape(data.model)}</title><style>{_CSS}</style></head>"
        f'<body data-model="{escape(data.model, quote=True)}"><h1>Model {escape(data.model)}</h1>'
        f'<p class="meta">Generated {_when(data.generated_s)} UTC from the analytics store; {window}.</p>'
        f'<ul class="note">{notes}</ul>{body}<script>{_JS}</script></body></html>\n'
    )
