"""Inline SVG charts as strings: grouped bars and a step line. Pure; escaping done here.

Every drawn value carries its number for readers and tests: a bar is
`<rect class="bar" data-chart=ID data-group=G data-series=S data-value=V>` with a `<title>`
tooltip, a line point is `<circle class="point" data-chart=ID data-x=X data-value=V ...>`.
A missing value (None) draws no bar, only an "n/a" mark.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
ACTION_COLORS = {"start": "#1f77b4", "promote": "#2ca02c", "rollback": "#d62728"}

Fmt = Callable[[float], str]


def color_of(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _a(value: object) -> str:
    return escape(str(value), quote=True)


def _num(value: float) -> str:
    return repr(float(value))


def _top(values: Sequence[float], threshold: float | None) -> float:
    top = max([*values, threshold or 0.0, 0.0])
    return top * 1.1 if top > 0 else 1.0


def _legend(series: Sequence[str], colors: Mapping[str, str], x: float, y: float) -> list[str]:
    out = []
    for i, name in enumerate(series):
        yy = y + i * 16
        out.append(f'<rect x="{x:.1f}" y="{yy - 9:.1f}" width="10" height="10" fill="{colors[name]}"/>')
        out.append(f'<text class="legend" x="{x + 14:.1f}" y="{yy:.1f}">{escape(name)}</text>')
    return out


def bar_chart(
    chart_id: str,
    title: str,
    groups: Sequence[str],
    series: Sequence[str],
    values: Mapping[tuple[str, str], float | None],
    fmt: Fmt = lambda v: f"{v:g}",
    colors: Mapping[str, str] | None = None,
    threshold: float | None = None,
    width: int = 640,
    height: int = 260,
    value_labels: bool = True,
) -> str:
    """Grouped vertical bars: one group per `groups` entry, one bar per series in each group."""
    colors = colors or {s: color_of(i) for i, s in enumerate(series)}
    left, right, top, bottom = 48, 150, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    present = [v for v in values.values() if v is not None]
    ymax = _top(present, threshold)
    base = top + plot_h
    out = [
        f'<svg class="chart" id="{_a(chart_id)}" data-chart="{_a(chart_id)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_a(title)}">',
        f'<text class="title" x="{left}" y="16">{escape(title)}</text>',
        f'<line class="axis" x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#444"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="#444"/>',
    ]
    for tick in (0.0, ymax / 2, ymax):
        y = base - tick / ymax * plot_h
        out.append(f'<text class="tick" x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(tick))}</text>')
    slot = plot_w / max(1, len(groups))
    bar_w = max(2.0, min(40.0, (slot * 0.8) / max(1, len(series))))
    for gi, group in enumerate(groups):
        x0 = left + gi * slot + (slot - bar_w * len(series)) / 2
        out.append(
            f'<text class="group" x="{left + gi * slot + slot / 2:.1f}" y="{base + 14}" '
            f'text-anchor="middle">{escape(group)}</text>'
        )
        for si, name in enumerate(series):
            x = x0 + si * bar_w
            value = values.get((group, name))
            if value is None:
                if (group, name) in values:
                    out.append(
                        f'<text class="na" x="{x + bar_w / 2:.1f}" y="{base - 3}" text-anchor="middle">n/a</text>'
                    )
                continue
            h = max(0.0, value) / ymax * plot_h
            tip = f"{name} · {group}: {fmt(value)}"
            out.append(
                f'<rect class="bar" data-chart="{_a(chart_id)}" data-group="{_a(group)}" data-series="{_a(name)}" '
                f'data-value="{_num(value)}" x="{x:.1f}" y="{base - h:.2f}" width="{bar_w - 1:.1f}" '
                f'height="{h:.2f}" fill="{colors[name]}"><title>{escape(tip)}</title></rect>'
            )
            if value_labels:
                out.append(
                    f'<text class="value" x="{x + bar_w / 2:.1f}" y="{base - h - 3:.1f}" '
                    f'text-anchor="middle">{escape(fmt(value))}</text>'
                )
    if threshold is not None:
        y = base - threshold / ymax * plot_h
        out.append(
            f'<line class="threshold" data-value="{_num(threshold)}" x1="{left}" y1="{y:.2f}" '
            f'x2="{left + plot_w}" y2="{y:.2f}" stroke="#d62728" stroke-dasharray="4 3"/>'
        )
        out.append(f'<text class="tick" x="{left + plot_w + 2}" y="{y + 4:.1f}">alert {escape(fmt(threshold))}</text>')
    out += _legend(series, colors, left + plot_w + 12, top + 24 if threshold is not None else top + 8)
    out.append("</svg>")
    return "\n".join(out)


def step_chart(
    chart_id: str,
    title: str,
    points: Sequence[tuple[float, float, str, str]],
    y_max: float = 100.0,
    x_label: str = "seconds since the first decision",
    width: int = 640,
    height: int = 240,
) -> str:
    """A value held between points (x, y, kind, tooltip), one marker per point colored by kind."""
    left, right, top, bottom = 48, 110, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    base = top + plot_h
    xs = [p[0] for p in points]
    x0 = min(xs, default=0.0)
    span = max(1e-9, max(xs, default=0.0) - x0)

    def px(x: float) -> float:
        return left + (x - x0) / span * plot_w if len(points) > 1 else left + plot_w / 2

    def py(y: float) -> float:
        return base - max(0.0, min(y, y_max)) / y_max * plot_h

    out = [
        f'<svg class="chart" id="{_a(chart_id)}" data-chart="{_a(chart_id)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_a(title)}">',
        f'<text class="title" x="{left}" y="16">{escape(title)}</text>',
        f'<line class="axis" x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#444"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="#444"/>',
        f'<text class="tick" x="{left + plot_w / 2:.1f}" y="{base + 28}" text-anchor="middle">{escape(x_label)}</text>',
    ]
    for tick in (0.0, y_max / 2, y_max):
        out.append(f'<text class="tick" x="{left - 4}" y="{py(tick) + 4:.1f}" text-anchor="end">{tick:g}%</text>')
    if points:
        path = []
        for i, (x, y, _kind, _tip) in enumerate(points):
            if i:
                path.append(f"{px(x):.2f},{py(points[i - 1][1]):.2f}")
            path.append(f"{px(x):.2f},{py(y):.2f}")
        out.append(f'<polyline class="line" points="{" ".join(path)}" fill="none" stroke="#555" stroke-width="2"/>')
        shown = span if len(points) > 1 else 0.0
        out.append(
            f'<text class="tick" x="{left + plot_w:.1f}" y="{base + 14}" text-anchor="end">+{shown:.0f} s</text>'
        )
    for x, y, kind, tip in points:
        color = ACTION_COLORS.get(kind, "#7f7f7f")
        out.append(
            f'<circle class="point" data-chart="{_a(chart_id)}" data-kind="{_a(kind)}" data-x="{_num(x)}" '
            f'data-value="{_num(y)}" cx="{px(x):.2f}" cy="{py(y):.2f}" r="5" fill="{color}">'
            f"<title>{escape(tip)}</title></circle>"
        )
    kinds = [k for k in ACTION_COLORS if any(p[2] == k for p in points)]
    out += _legend(kinds, ACTION_COLORS, left + plot_w + 12, top + 8)
    out.append("</svg>")
    return "\n".join(out)
