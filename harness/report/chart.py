"""The one chart helper of the report: a bar chart as inline SVG, and its axis ticks.

Every chart in the page is `chart(...)`: bars standing on the x axis, optional
shaded bands spanning the plot height (flagged windows, receive gaps), optional
vertical rules (the threshold), labelled axes with ticks, a caption and a
legend. Coordinates are data units on both axes and are mapped linearly;
a caller wanting a log axis passes transformed values and tick positions.
Every bar and band carries a `<title>`, the browser's native tooltip.

The returned `<figure class="chart">` carries `data-expected`, the number of
`.mark` elements (bars and band markers) drawn; the page's self-check script
sets `data-drawn` to how many of them the browser laid out with a non-empty box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

from harness.report.formats import day, num, utc

__all__ = ["Axis", "Band", "Bar", "Rule", "chart", "count_ticks", "time_ticks"]

WIDTH: Final = 1000  # viewBox units; the page shows charts about this many CSS pixels wide
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 18, 14, 46
_NICE_STEPS: Final = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                      21600, 43200, 86400, 172800, 604800)


@dataclass(frozen=True, slots=True)
class Axis:
    """A linear axis from `lo` to `hi` with `(position, label)` ticks and a title."""

    lo: float
    hi: float
    ticks: Sequence[tuple[float, str]]
    label: str


@dataclass(frozen=True, slots=True)
class Bar:
    """A bar from `x0` to `x1`, from the x axis up to `y`; `kind` selects its CSS class."""

    x0: float
    x1: float
    y: float
    kind: str
    title: str


@dataclass(frozen=True, slots=True)
class Band:
    """A shaded span `x0`..`x1` over the full plot height, with a solid marker on top."""

    x0: float
    x1: float
    kind: str
    title: str


@dataclass(frozen=True, slots=True)
class Rule:
    """A labelled vertical line at `x`."""

    x: float
    kind: str
    label: str


def chart(
    name: str, caption: str, x: Axis, y: Axis, *, bars: Sequence[Bar] = (),
    bands: Sequence[Band] = (), rules: Sequence[Rule] = (),
    legend: Sequence[tuple[str, str]] = (), empty: str = "no data", height: int = 250,
) -> str:
    """A `<figure>` holding one bar chart as inline SVG.

    `legend` is `(kind, text)` pairs shown as swatches above the plot; `empty`
    is written across the plot when there are no bars. Everything outside
    the axis ranges is clipped; bands are widened to at least 2 units so a
    short span stays visible on a long axis.
    """
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, height - _TOP - _BOTTOM
    bottom = _TOP + plot_h

    def px(value: float) -> float:
        span = x.hi - x.lo
        frac = (min(max(value, x.lo), x.hi) - x.lo) / span if span > 0 else 0.0
        return round(_LEFT + frac * plot_w, 2)

    def py(value: float) -> float:
        span = y.hi - y.lo
        frac = (min(max(value, y.lo), y.hi) - y.lo) / span if span > 0 else 0.0
        return round(bottom - frac * plot_h, 2)

    out = [f'<svg viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(caption)}"'
           ' xmlns="http://www.w3.org/2000/svg">']
    # Grid and y ticks.
    for value, label in y.ticks:
        gy = py(value)
        out.append(f'<line class="grid" x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{gy}" y2="{gy}"/>'
                   f'<text class="tick" x="{_LEFT - 6}" y="{gy}" text-anchor="end"'
                   f' dominant-baseline="middle">{escape(label)}</text>')
    marks = 0
    for band in bands:
        if band.x1 < x.lo or band.x0 > x.hi:
            continue
        x0, x1 = px(band.x0), px(band.x1)
        if x1 - x0 < 2:
            x0 = min(x0, _LEFT + plot_w - 2)
            x1 = x0 + 2
        out.append(f'<g class="band {band.kind}"><title>{escape(band.title)}</title>'
                   f'<rect x="{x0}" y="{_TOP}" width="{x1 - x0:.2f}" height="{plot_h}"/>'
                   f'<rect class="mark" x="{x0}" y="{_TOP}" width="{x1 - x0:.2f}"'
                   ' height="5"/></g>')
        marks += 1
    gap = 0.0
    if bars:
        narrowest = min(px(b.x1) - px(b.x0) for b in bars)
        gap = 1.0 if narrowest > 4 else 0.0
    for bar in bars:
        if bar.x1 < x.lo or bar.x0 > x.hi or bar.y <= y.lo:
            continue
        x0, x1, top = px(bar.x0), px(bar.x1), py(bar.y)
        width = max(x1 - x0 - gap, 0.8)
        out.append(f'<rect class="mark {bar.kind}" x="{x0}" y="{top}" width="{width:.2f}"'
                   f' height="{bottom - top:.2f}"><title>{escape(bar.title)}</title></rect>')
        marks += 1
    if marks == 0:
        out.append(f'<text class="empty" x="{_LEFT + plot_w / 2}" y="{_TOP + plot_h / 2}"'
                   f' text-anchor="middle">{escape(empty)}</text>')
    for rule in rules:
        if x.lo <= rule.x <= x.hi:
            rx = px(rule.x)
            anchor = "end" if rx > _LEFT + plot_w * 0.8 else "start"
            dx = -5 if anchor == "end" else 5
            out.append(f'<line class="rule {rule.kind}" x1="{rx}" x2="{rx}" y1="{_TOP}"'
                       f' y2="{bottom}"/><text class="rule-label {rule.kind}" x="{rx + dx}"'
                       f' y="{_TOP + 14}" text-anchor="{anchor}">{escape(rule.label)}</text>')
    # Axes, x ticks and axis titles, drawn last so that nothing covers them.
    out.append(f'<line class="axis" x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{bottom}"'
               f' y2="{bottom}"/><line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}"'
               f' y2="{bottom}"/>')
    for value, label in x.ticks:
        if x.lo <= value <= x.hi:
            tx = px(value)
            out.append(f'<line class="axis" x1="{tx}" x2="{tx}" y1="{bottom}"'
                       f' y2="{bottom + 5}"/><text class="tick" x="{tx}" y="{bottom + 18}"'
                       f' text-anchor="middle">{escape(label)}</text>')
    out.append(f'<text class="axis-label" x="{_LEFT + plot_w / 2}" y="{height - 6}"'
               f' text-anchor="middle">{escape(x.label)}</text>'
               f'<text class="axis-label" transform="translate(16 {_TOP + plot_h / 2})'
               f' rotate(-90)" text-anchor="middle">{escape(y.label)}</text></svg>')
    keys = "".join(f'<span class="key"><i class="swatch {kind}"></i>{escape(text)}</span>'
                   for kind, text in legend)
    return (f'<figure class="chart" id="chart-{escape(name)}" data-expected="{marks}">'
            f'<figcaption>{escape(caption)}</figcaption>'
            + (f'<div class="legend">{keys}</div>' if keys else "")
            + "".join(out) + "</figure>")


def count_ticks(top: float, *, target: int = 5) -> tuple[float, list[tuple[float, str]]]:
    """A rounded-up axis top and ticks at 1-2-5 steps from 0 (about `target` of them)."""
    if top <= 0:
        return 1.0, [(0.0, "0"), (1.0, "1")]
    raw = top / target
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    hi = math.ceil(top / step - 1e-9) * step
    ticks = [(i * step, num(i * step)) for i in range(round(hi / step) + 1)]
    return hi, ticks


def time_ticks(lo: float, hi: float, *, target: int = 8) -> tuple[list[tuple[float, str]], str]:
    """Ticks on a unix-seconds axis at round UTC times, and the axis's date caption."""
    span = max(hi - lo, 1.0)
    step = next((s for s in _NICE_STEPS if span / s <= target),
                math.ceil(span / target / 86400) * 86400)
    first = math.ceil(lo / step) * step
    fmt = "%H:%M:%S" if step < 60 else "%H:%M" if step < 86400 else "%m-%d"
    if step < 86400 and span > 86400:
        fmt = "%m-%d %H:%M"
    ticks: list[tuple[float, str]] = [
        (t, utc(t, fmt)) for t in range(int(first), int(hi) + 1, int(step))]
    day_lo, day_hi = day(lo), day(hi)
    days = day_lo if day_lo == day_hi else f"{day_lo} .. {day_hi}"
    return ticks, days
