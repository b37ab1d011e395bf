"""The SLO pages' pictures as inline SVG drawn on the server: the burn-down chart of the error
budget over the window, and the small budget meter of the list.

They follow the toil charts (:mod:`lamplighter.tickets.charts`) and share their frame, colours
and text helpers: no JavaScript and no inline styles (the Content-Security-Policy forbids both),
every piece of text escaped, ``role="img"`` with a ``<title>``, and the page puts the same
numbers in a table next to the picture::

    svg = burndown_chart(
        [(start + dt.timedelta(hours=1), 0.99), (start + dt.timedelta(hours=2), 0.97)],
        window_start=start,
        window_end=start + dt.timedelta(days=30),
        now=start + dt.timedelta(hours=2),
        title="Error budget left, availability of checkout",
    )
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import markupsafe

from lamplighter.core import timefmt
from lamplighter.tickets.charts import (
    AXIS,
    BAR,
    GRID,
    MUTED,
    SHARE,
    TRACK,
    markup,
    svg_open,
)

WIDTH = 860
HEIGHT = 300
PAD_LEFT = 52
PAD_RIGHT = 16
PAD_TOP = 16
PAD_BOTTOM = 36
X_LABELS = 6
DANGER = "#b42318"  # the spent-budget line and an overspent meter, as app.css's --danger
WARNING = "#b54708"
# An overspent budget can fall far below zero; the axis stops here and lower points sit on it.
LOWEST_PERCENT = -100


def percent_tick(value: float) -> str:
    return f"{value:g} %"


def _axis_bottom(lowest_percent: float) -> int:
    """The y axis' lowest tick: 0, or the overspent lowest point rounded down to 25 %."""
    if lowest_percent >= 0:
        return 0
    return max(LOWEST_PERCENT, math.floor(lowest_percent / 25) * 25)


def burndown_chart(
    points: Sequence[tuple[dt.datetime, float]],
    *,
    window_start: dt.datetime,
    window_end: dt.datetime,
    now: dt.datetime,
    title: str,
    time_zone: str = "UTC",
    description: str = "",
) -> markupsafe.Markup:
    """The error budget left (``points``: time, ratio of the budget) across the window, from
    100 % at its start; the 0 % line is where the budget is spent, the dashed line is now."""
    esc = markupsafe.escape
    plot_left, plot_right = PAD_LEFT, WIDTH - PAD_RIGHT
    plot_top, plot_bottom = PAD_TOP, HEIGHT - PAD_BOTTOM
    values = [ratio * 100 for _, ratio in points]
    bottom = _axis_bottom(min(values, default=0.0))
    span_s = max((window_end - window_start).total_seconds(), 1.0)

    def x_of(at: dt.datetime) -> float:
        share = min(max((at - window_start).total_seconds() / span_s, 0.0), 1.0)
        return plot_left + (plot_right - plot_left) * share

    def y_of(value: float) -> float:
        value = min(max(value, bottom), 100.0)
        return plot_bottom - (plot_bottom - plot_top) * (value - bottom) / (100 - bottom)

    out = svg_open("slo-burndown", WIDTH, HEIGHT, title, description)
    for tick in range(bottom, 101, 25):
        y = y_of(tick)
        zero = tick == 0
        out.append(
            f'<line class="{"slo-zero-line" if zero else "tk-chart-grid"}" x1="{plot_left}"'
            f' y1="{y:.1f}" x2="{plot_right}" y2="{y:.1f}" stroke="{DANGER if zero else GRID}"'
            f' stroke-width="{2 if zero else 1}"/>'
            f'<text class="tk-chart-tick" x="{plot_left - 6}" y="{y + 4:.1f}" text-anchor="end"'
            f' font-size="12" fill="{DANGER if zero else MUTED}">{percent_tick(tick)}</text>'
        )
    out.append(
        f'<text class="slo-zero-label" x="{plot_right - 4}" y="{y_of(0) - 5:.1f}"'
        f' text-anchor="end" font-size="11" fill="{DANGER}">budget spent</text>'
    )
    out.append(
        f'<line x1="{plot_left}" y1="{plot_top}" x2="{plot_left}" y2="{plot_bottom}"'
        f' stroke="{AXIS}" stroke-width="1"/>'
    )
    for index in range(X_LABELS + 1):
        at = window_start + (window_end - window_start) * index / X_LABELS
        anchor = "start" if index == 0 else "end" if index == X_LABELS else "middle"
        out.append(
            f'<text class="tk-chart-tick" x="{x_of(at):.1f}" y="{plot_bottom + 18}"'
            f' text-anchor="{anchor}" font-size="12" fill="{MUTED}">'
            f"{esc(timefmt.readable(at, time_zone, short=True))}</text>"
        )
    if window_start <= now <= window_end:
        x = x_of(now)
        out.append(
            f'<line class="slo-now" x1="{x:.1f}" y1="{plot_top}" x2="{x:.1f}" y2="{plot_bottom}"'
            f' stroke="{MUTED}" stroke-width="1" stroke-dasharray="4 3"/>'
            f'<text x="{x - 4:.1f}" y="{plot_top + 10}" text-anchor="end" font-size="11"'
            f' fill="{MUTED}">now</text>'
        )
    if not points:
        out.append(
            f'<text x="{WIDTH // 2}" y="{(plot_top + plot_bottom) // 2}" text-anchor="middle"'
            f' font-size="13" fill="{MUTED}">No events in this window yet</text>'
        )
    else:
        # The window starts with its whole budget; the line falls from there.
        coordinates = [(x_of(window_start), y_of(100.0))]
        coordinates += [
            (x_of(at), y_of(value)) for (at, _), value in zip(points, values, strict=True)
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coordinates)
        last_at, last_value = points[-1][0], values[-1]
        colour = DANGER if last_value <= 0 else BAR
        out.append(
            f'<g class="tk-chart-series slo-budget-line"><polyline points="{path}" fill="none"'
            f' stroke="{colour}" stroke-width="2.5" stroke-linejoin="round"/>'
            f'<circle cx="{x_of(last_at):.1f}" cy="{y_of(last_value):.1f}" r="4" fill="{colour}">'
            f"<title>{esc(timefmt.readable(last_at, time_zone))}:"
            f" {last_value:.1f} % of the budget left</title></circle></g>"
        )
    out.append("</svg>")
    return markup(out)


METER_W = 96
METER_H = 8


def budget_meter(remaining: float | None) -> markupsafe.Markup:
    """A small bar of the budget left (a ratio; None draws an empty track). Decorative: the
    page writes the figure next to it."""
    out = [
        f'<svg class="slo-meter" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {METER_W}'
        f' {METER_H}" width="{METER_W}" height="{METER_H}" aria-hidden="true" focusable="false">',
        f'<rect width="{METER_W}" height="{METER_H}" rx="2" fill="{TRACK}"/>',
    ]
    if remaining is not None:
        share = min(max(remaining, 0.0), 1.0)
        colour = SHARE if share >= 0.5 else WARNING if share >= 0.25 else DANGER
        if share > 0:
            out.append(
                f'<rect class="slo-meter-fill" width="{METER_W * share:.1f}" height="{METER_H}"'
                f' rx="2" fill="{colour}"/>'
            )
        else:
            out.append(
                f'<rect width="{METER_W}" height="{METER_H}" rx="2" fill="none"'
                f' stroke="{DANGER}" stroke-width="2"/>'
            )
    out.append("</svg>")
    return markup(out)
