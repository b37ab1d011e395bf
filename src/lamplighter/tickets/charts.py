"""Charts for the toil analytics page as inline SVG, drawn on the server.

Two shapes cover the page: a line chart of weekly counts (one line per series, the total drawn
heavier) and a horizontal bar chart whose bars can carry a highlighted part (out-of-hours work)
and a thin share meter under them (hands-off share). Both are pure functions of their numbers, so
they are tested without a database::

    svg = bar_chart(
        [Bar("Database", 300, "5.0 h", share=0.25), Bar("Access grant", 100, "1.7 h", share=0.8)],
        title="Effort per request type",
        share_name="hands-off share of tickets",
    )

No JavaScript and no inline styles (the pages' Content-Security-Policy forbids both): colours
are presentation attributes, and app.css adds the rest through classes. Every piece of text goes
through ``markupsafe.escape``. A chart is ``role="img"`` with a ``<title>`` and an
``aria-label``; the page puts the same numbers in a table next to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import markupsafe

LABEL_CHARS = 24
LEGEND_CHARS = 22
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif"
# Colours from app.css, repeated because CSS variables do not reach presentation attributes.
TEXT = "#18202b"
MUTED = "#545e6c"
GRID = "#dde2e8"
AXIS = "#b8c0cb"
BAR = "#1849c9"
BAR_PART = "#b54708"  # out-of-hours part: darker and warmer than the rest of the bar
BAR_REST = "#8da7ea"
SHARE = "#05603a"
TRACK = "#e6e9ee"
# Series colours and dash patterns: a line stays distinguishable without its colour.
SERIES_STYLES: tuple[tuple[str, str], ...] = (
    ("#1849c9", ""),
    ("#b54708", "7 4"),
    ("#05603a", "2 3"),
    ("#7a2e98", "9 3 2 3"),
    ("#0e7490", "4 4"),
    ("#6b7685", "1 3"),
)
TOTAL_COLOUR = TEXT


@dataclass(frozen=True)
class Bar:
    """One row of a bar chart: ``part`` of ``value`` is highlighted, ``share`` (0-1) gets a meter."""

    label: str
    value: float
    value_text: str
    part: float = 0.0
    share: float | None = None


@dataclass(frozen=True)
class Series:
    """One line of a line chart; values are aligned with the chart's x labels."""

    name: str
    values: Sequence[float]
    total: bool = False  # drawn heavier, in the text colour


def format_count(value: float) -> str:
    """A count with thousands separators: 12345 → "12,345"."""
    return f"{round(value):,}"


def cut(text: str, limit: int) -> str:
    """Shorten a label to ``limit`` characters, with an ellipsis when something was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def nice_ticks(highest: float, count: int = 4) -> list[int]:
    """Whole-number axis ticks from 0 covering ``highest``, in steps of 1, 2 or 5 x 10^n."""
    if highest <= 0:
        return [0, 1]
    raw = highest / count
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    top = math.ceil(highest / step) * step
    return list(range(0, int(top) + 1, int(step)))


def svg_open(css_class: str, width: int, height: int, title: str, description: str) -> list[str]:
    esc = markupsafe.escape
    return [
        f'<svg class="tk-chart {css_class}" xmlns="http://www.w3.org/2000/svg"'
        f' viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img"'
        f' aria-label="{esc(title)}" font-family="{esc(FONT)}">',
        f"<title>{esc(title)}</title>",
        f"<desc>{esc(description)}</desc>" if description else "",
    ]


def markup(parts: Sequence[str]) -> markupsafe.Markup:
    # Safe: every piece of text and every attribute value in ``parts`` went through escape().
    return markupsafe.Markup("".join(parts))  # noqa: S704


# -- bars ------------------------------------------------------------------------------------
BAR_W = 760
BAR_LABEL_W = 200
BAR_VALUE_W = 200
BAR_ROW_H = 30
BAR_THICK = 16
METER_THICK = 4
LEGEND_H = 24


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    description: str = "",
    value_name: str | None = None,
    part_name: str | None = None,
    rest_name: str | None = None,
    share_name: str | None = None,
) -> markupsafe.Markup:
    """Horizontal bars scaled to the largest value, labelled with their value text.

    The legend names the bars (``value_name``), or their highlighted part (``part_name``) and
    the rest (``rest_name``), and the meter drawn under each bar (``share_name``).
    """
    esc = markupsafe.escape
    named = [(BAR_REST, rest_name), (BAR_PART, part_name)] if part_name else [(BAR, value_name)]
    legend = [(colour, name) for colour, name in [*named, (SHARE, share_name)] if name]
    top = LEGEND_H if legend else 4
    row_h = BAR_ROW_H + (METER_THICK + 4 if share_name else 0)
    height = top + max(len(bars), 1) * row_h + 4
    area = BAR_W - BAR_LABEL_W - BAR_VALUE_W
    highest = max((max(b.value, 0.0) for b in bars), default=0.0)
    out = svg_open("tk-bar-chart", BAR_W, height, title, description)
    x = 0
    for colour, name in legend:
        out.append(
            f'<g class="tk-chart-legend"><rect x="{x}" y="4" width="12" height="12" rx="2"'
            f' fill="{colour}"/><text x="{x + 17}" y="14" font-size="12" fill="{MUTED}">'
            f"{esc(cut(name, 60))}</text></g>"
        )
        x += 24 + 7 * min(len(name), 60)
    if not bars:
        out.append(
            f'<text x="{BAR_W // 2}" y="{top + 20}" text-anchor="middle" font-size="13"'
            f' fill="{MUTED}">No data</text>'
        )
    for index, bar in enumerate(bars):
        y = top + index * row_h
        value = max(bar.value, 0.0)
        width = area * value / highest if highest > 0 else 0.0
        part = min(max(bar.part, 0.0), value)
        part_w = area * part / highest if highest > 0 else 0.0
        middle = y + 5 + BAR_THICK / 2 + 4.5  # the baseline that centres 12-13 px text on the bar
        label = cut(bar.label, LABEL_CHARS)
        out.append(
            f'<g class="tk-chart-row"><title>{esc(bar.label)}: {esc(bar.value_text)}</title>'
        )
        out.append(
            f'<text class="tk-chart-label" x="{BAR_LABEL_W - 8}" y="{middle:.1f}"'
            f' text-anchor="end" font-size="13" fill="{TEXT}">{esc(label)}</text>'
        )
        out.append(
            f'<rect class="tk-chart-bar" x="{BAR_LABEL_W}" y="{y + 5}" width="{width:.1f}"'
            f' height="{BAR_THICK}" fill="{BAR_REST if part_name else BAR}"/>'
        )
        if part_name and part_w > 0:
            out.append(
                f'<rect class="tk-chart-bar-part" x="{BAR_LABEL_W + width - part_w:.1f}"'
                f' y="{y + 5}" width="{part_w:.1f}" height="{BAR_THICK}" fill="{BAR_PART}"/>'
            )
        out.append(
            f'<text class="tk-chart-value" x="{BAR_LABEL_W + width + 6:.1f}" y="{middle:.1f}"'
            f' font-size="12" fill="{TEXT}">{esc(bar.value_text)}</text>'
        )
        if share_name and bar.share is not None:
            share = min(max(bar.share, 0.0), 1.0)
            meter_y = y + 5 + BAR_THICK + 3
            out.append(
                f'<rect class="tk-chart-track" x="{BAR_LABEL_W}" y="{meter_y}" width="{area}"'
                f' height="{METER_THICK}" fill="{TRACK}"/>'
                f'<rect class="tk-chart-share" x="{BAR_LABEL_W}" y="{meter_y}"'
                f' width="{area * share:.1f}" height="{METER_THICK}" fill="{SHARE}"/>'
            )
        out.append("</g>")
    out.append("</svg>")
    return markup(out)


# -- lines -----------------------------------------------------------------------------------
LINE_W = 860
LINE_H = 300
PAD_LEFT = 48
PAD_RIGHT = 16
PAD_TOP = 12
PAD_BOTTOM = 36
LEGEND_ITEM_W = 176
MAX_X_LABELS = 8


def line_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    description: str = "",
    y_name: str = "",
) -> markupsafe.Markup:
    """One line per series over ``labels`` (weeks), with a whole-number y axis from zero."""
    esc = markupsafe.escape
    per_row = (LINE_W - PAD_LEFT) // LEGEND_ITEM_W
    legend_rows = math.ceil(len(series) / per_row) if series else 0
    legend_h = legend_rows * 20 + (6 if legend_rows else 0)
    name_h = 16 if y_name else 0
    height = LINE_H + legend_h + name_h
    plot_top, plot_bottom = PAD_TOP + legend_h + name_h, height - PAD_BOTTOM
    plot_left, plot_right = PAD_LEFT, LINE_W - PAD_RIGHT
    highest = max((v for s in series for v in s.values), default=0)
    ticks = nice_ticks(highest)
    top_value = ticks[-1]
    out = svg_open("tk-line-chart", LINE_W, height, title, description)

    def x_of(index: int) -> float:
        if len(labels) <= 1:
            return (plot_left + plot_right) / 2
        return plot_left + 8 + (plot_right - plot_left - 16) * index / (len(labels) - 1)

    def y_of(value: float) -> float:
        return plot_bottom - (plot_bottom - plot_top) * value / top_value

    styles = _series_styles(series)
    for index, (one, (colour, dash)) in enumerate(zip(series, styles, strict=True)):
        lx = PAD_LEFT + (index % per_row) * LEGEND_ITEM_W
        ly = PAD_TOP + (index // per_row) * 20
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<g class="tk-chart-legend"><line x1="{lx}" y1="{ly + 6}" x2="{lx + 22}" y2="{ly + 6}"'
            f' stroke="{colour}" stroke-width="{3 if one.total else 2}"{dashes}/>'
            f'<text x="{lx + 28}" y="{ly + 10}" font-size="12" fill="{TEXT}">'
            f"{esc(cut(one.name, LEGEND_CHARS))}</text></g>"
        )
    if y_name:
        out.append(
            f'<text class="tk-chart-axis-name" x="{plot_left - 40}" y="{plot_top - 10}"'
            f' font-size="11" fill="{MUTED}">{esc(y_name)}</text>'
        )
    for tick in ticks:
        y = y_of(tick)
        out.append(
            f'<line class="tk-chart-grid" x1="{plot_left}" y1="{y:.1f}" x2="{plot_right}"'
            f' y2="{y:.1f}" stroke="{GRID if tick else AXIS}" stroke-width="1"/>'
            f'<text class="tk-chart-tick" x="{plot_left - 6}" y="{y + 4:.1f}" text-anchor="end"'
            f' font-size="12" fill="{MUTED}">{format_count(tick)}</text>'
        )
    step = max(1, math.ceil(len(labels) / MAX_X_LABELS))
    for index, label in enumerate(labels):
        if index % step and index != len(labels) - 1:
            continue
        if index != len(labels) - 1 and len(labels) - 1 - index < step / 2:
            continue  # too close to the last label, which is always shown
        out.append(
            f'<text class="tk-chart-tick" x="{x_of(index):.1f}" y="{plot_bottom + 18}"'
            f' text-anchor="middle" font-size="12" fill="{MUTED}">{esc(label)}</text>'
        )
    if not labels:
        out.append(
            f'<text x="{LINE_W // 2}" y="{(plot_top + plot_bottom) // 2}" text-anchor="middle"'
            f' font-size="13" fill="{MUTED}">No data</text>'
        )
    # The total last, so that it is drawn on top of the lines it sums.
    order = sorted(range(len(series)), key=lambda i: series[i].total)
    for index in order:
        one, (colour, dash) = series[index], styles[index]
        points = [(x_of(i), y_of(v)) for i, v in enumerate(one.values[: len(labels)])]
        width = 3 if one.total else 2
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<g class="tk-chart-series{" tk-chart-total" if one.total else ""}">')
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}"'
                f' stroke-width="{width}" stroke-linejoin="round"{dashes}/>'
            )
        for i, (x, y) in enumerate(points):
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{3.5 if one.total else 3}"'
                f' fill="{colour}"><title>{esc(one.name)}, {esc(labels[i])}:'
                f" {format_count(one.values[i])}</title></circle>"
            )
        out.append("</g>")
    out.append("</svg>")
    return markup(out)


def _series_styles(series: Sequence[Series]) -> list[tuple[str, str]]:
    styles = []
    index = 0
    for one in series:
        if one.total:
            styles.append((TOTAL_COLOUR, ""))
        else:
            styles.append(SERIES_STYLES[index % len(SERIES_STYLES)])
            index += 1
    return styles
