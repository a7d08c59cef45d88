"""The sections of the report page, each `Inputs` -> an HTML fragment.

The header (recording, parameters, the tally), the timeline of edits per
second with flagged windows shaded, the flagged-accounts table, the window
rate histogram, the dead letters, and the recording's health. Every chart is
`chart.chart`; every user-controlled string passes through `html.escape`.
The numbers come from `analysis`, their wording from `formats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any, Final

from harness.flows.bots.semantics import BAD_TIMESTAMP, BAD_USER, LATE, TIMESTAMP_RANGE
from harness.recording.envelope import DAMAGED, NOT_JSON, NOT_OBJECT
from harness.report.analysis import (
    BINS_PER_OCTAVE,
    first_seqs,
    flagged_spans,
    late_users,
    rate_histogram,
    reason_counts,
)
from harness.report.chart import Axis, Band, Bar, Rule, chart, count_ticks, time_ticks
from harness.report.formats import day, duration, iso, num, per, size, span, time_range, when
from harness.report.inputs import Inputs
from harness.report.scan import GAP_SECONDS, Account, Series

__all__ = ["MAX_ACCOUNTS", "dead_letters", "flagged_table", "header", "health", "rates",
           "section", "timeline"]

MAX_ACCOUNTS: Final = 100  # rows of the flagged-accounts table
# Tally counts in the order shown: (label, CSS kind); keys not listed follow, by name.
_TILES: Final = {
    "events": ("events", ""), "windows": ("windows", ""),
    "malicious": ("malicious windows", "bad"), "late": ("late", "warn"),
    "invalid": ("invalid", "warn"), "canary": ("canary", ""), "counted": ("counted", ""),
    "outside": ("outside the slice", ""), "skipped": ("skipped (damaged)", ""),
}
_IF_ANY: Final = ("outside", "skipped")  # counts shown only when not 0
# Dead-letter reasons in the order listed, with what each means.
_REASONS: Final = {
    LATE: "older than its account's newest event minus the lateness",
    BAD_USER: "no string user",
    BAD_TIMESTAMP: "timestamp missing or not an integer",
    NOT_JSON: "payload is not JSON",
    NOT_OBJECT: "payload is JSON but not an object",
    TIMESTAMP_RANGE: "timestamp is not a date in years 1..9999",
    DAMAGED: "recording lines that could not be read (--skip-damaged)",
}
_NOT_SCANNED: Final = (LATE, DAMAGED)  # reasons the recording scan cannot judge


def section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{content}</section>'


def header(inputs: Inputs) -> str:
    m, p, t = inputs.manifest, inputs.params, inputs.tally
    state = ('<span class="pill ok">complete</span>' if m.complete
             else '<span class="pill warn">not complete</span>')
    params = (f"window {p.window} s · lateness {p.lateness} s · min count {p.min_count}"
              f" · threshold {num(p.threshold)} edits/s · align {iso(p.align)}")
    if not inputs.params_given:
        params += " (defaults)"
    facts = [
        ("source", escape(m.source)), ("created", escape(m.created)),
        ("closed", escape(m.closed) if m.closed else "not closed"), ("state", state),
        ("events", f"{m.events:,}"), ("lanes", str(m.lanes)),
        ("segments", str(len(m.segments))), ("detection", escape(params)),
        ("results", escape(inputs.results)),
    ]
    shown = [key for key in _TILES if key in t or key in ("events", "windows", "malicious")]
    shown += sorted(set(t) - set(shown))
    shown = [key for key in shown if key not in _IF_ANY or t.get(key)]
    parts: list[str] = [k for k in ("canary", "invalid", "late", "counted") if k in t]
    parts += [k for k in _IF_ANY if k != "skipped" and t.get(k)]  # outside: not events
    terms = " + ".join(parts)
    if t.get("events", 0) == sum(t[k] for k in parts):
        check = f'<p class="note ok">events = {terms} ✓</p>'
    else:
        check = f'<p class="note bad">events ≠ {terms}: the tally does not add up</p>'
    if m.complete and t.get("events", 0) != m.events:
        check += (f'<p class="note bad">the manifest lists {m.events:,} events, the tally'
                  f" {t.get('events', 0):,}</p>")
    return (f'<header><h1>{escape(inputs.title)}</h1><p class="path">recording'
            f" <code>{escape(str(inputs.recording))}</code></p>"
            f'<dl class="facts">{"".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)}'
            f'</dl><div class="tiles">{_tiles(t, shown)}</div>{check}</header>'
            '<nav><a href="#timeline">Timeline</a><a href="#flagged">Flagged accounts</a>'
            '<a href="#rates">Rates</a><a href="#dead-letters">Late / invalid</a>'
            '<a href="#health">Recording health</a></nav>')


def timeline(inputs: Inputs) -> str:
    """Countable events per second of their own timestamp; malicious windows shaded."""
    series = inputs.facts.event_time
    malicious = [s for s in inputs.summaries if s.get("malicious")]
    bands = _flag_bands(malicious, series.width if series else 1)
    if series is None:
        text = "<p>The recording holds no countable event.</p>"
    else:
        text = (f"<p>Each bar is the mean number of countable edits per second (by the event's"
                f" own <code>timestamp</code>) over {per(series)}. Shaded spans are the"
                f" {len(malicious):,} malicious windows of {len(inputs.flagged):,} account(s);"
                " hover for who.</p>")
    if series is not None and series.outside:
        text += (f'<p class="note warn">{series.outside:,} event(s) with timestamps far from'
                 f" the rest ({when(series.earliest)} .. {when(series.latest)}) are not"
                 " plotted.</p>")
    figure = _time_chart("timeline", "Edits per second by event time", series, "edits",
                         "edits", "event time", bands,
                         [("edits", "edits per second"), ("flagged", "flagged window")])
    return text + figure


def flagged_table(inputs: Inputs, one_day: bool) -> str:
    """One row per flagged account, with what the recording says about it."""
    flagged = inputs.flagged
    if not flagged:
        return f"<p>No account had a window above {num(inputs.params.threshold)} edits/s.</p>"
    rows = []
    sep = " " if one_day else "<br>"  # a span with dates takes two lines
    for rank, a in enumerate(flagged[:MAX_ACCOUNTS], start=1):
        facts = inputs.facts.accounts.get(a.user, Account())
        wikis = " ".join(f'<span class="chip">{escape(w)} <small>&times;{n:,}</small></span>'
                         for w, n in facts.wikis.most_common(3))
        if len(facts.wikis) > 3:
            wikis += f' <small class="more">+{len(facts.wikis) - 3} more</small>'
        bot = ("yes" if facts.bot == facts.events else "no" if facts.bot == 0
               else f"mixed ({facts.bot:,} of {facts.events:,})") if facts.events else "?"
        rows.append(
            f'<tr data-user="{escape(a.user)}" data-windows="{a.windows}"'
            f' data-peak="{a.peak_rate!r}"><td class="n rank">{rank}</td>'
            f'<td class="user">{escape(a.user)}</td><td class="n windows">{a.windows:,}</td>'
            f'<td class="n peak"><b>{num(a.peak_rate)}</b></td>'
            f'<td class="n edits">{a.edits:,}</td>'
            f'<td class="when">{time_range(a.first, a.last, one_day, sep)}</td>'
            f'<td class="wikis">{wikis or "?"}</td><td class="bot">{bot}</td>'
            f'<td class="n events">{facts.events:,}</td></tr>')
    more = (f'<p class="note">… and {len(flagged) - MAX_ACCOUNTS:,} more flagged accounts not'
            " shown.</p>" if len(flagged) > MAX_ACCOUNTS else "")
    zone = "UTC" if not one_day or inputs.facts.event_time is None else (
        "UTC, " + day(inputs.facts.event_time.start))
    return (f"<p>{len(flagged):,} account(s) had at least one window above"
            f" {num(inputs.params.threshold)} edits/s. Peak rate is the highest window rate;"
            " the flagged span runs from the start of the earliest to the end of the latest"
            " flagged window; wikis (most edited first) and the bot flag are from the"
            " account's events in the recording.</p>"
            '<div class="scroll"><table class="accounts"><thead><tr><th class="n">#</th>'
            '<th>Account</th><th class="n">Flagged windows</th>'
            '<th class="n">Peak rate (edits/s)</th><th class="n">Edits in flagged windows</th>'
            f"<th>Flagged span ({zone})</th><th>Wikis</th>"
            '<th>Bot flag</th><th class="n">Events in recording</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>{more}")


def rates(inputs: Inputs) -> str:
    """Histogram of window rates in log bins (`analysis.RateHistogram`), threshold on an edge.

    Bar heights are on a log scale (0, 1, 10, 100, ...) so that a handful of
    malicious windows stays visible next to thousands of others.
    """
    threshold, min_count = inputs.params.threshold, inputs.params.min_count
    h = rate_histogram(inputs.summaries, threshold)

    def height(n: int) -> float:
        return 1 + math.log10(n) if n > 0 else 0.0

    bars = [Bar(i, i + 1, height(n), "flagged" if h.edge(i) >= threshold else "ok",
                f"{n:,} window(s) with rate in ({num(h.edge(i))}, {num(h.edge(i + 1))}] edits/s")
            for i, n in sorted(h.bins.items())]
    top = max(1, math.ceil(max((b.y for b in bars), default=1)))
    y = Axis(0, top, [(0, "0"), *((k, f"{10 ** (k - 1):,}") for k in range(1, top + 1))],
             "windows (log scale)")
    x = Axis(h.lo, h.hi, [(i, num(h.edge(i))) for i in range(h.lo, h.hi + 1)
                          if i % BINS_PER_OCTAVE == 0], "window rate, edits per second"
             f" (log scale, {BINS_PER_OCTAVE} bins per doubling)")
    rules = [Rule(0, "threshold", f"threshold {num(threshold)}/s")] if threshold > 0 else []
    text = (f"<p>No window closed with at least {min_count} events.</p>" if not h.rates else
            f"<p>{len(h.rates):,} window(s) of at least {min_count} events;"
            f" median rate {num(h.median)} edits/s, highest {num(max(h.rates, default=0))};"
            f" {h.above:,} above the threshold of {num(threshold)} edits/s (red). A window's"
            " rate is its count divided by the seconds between its first and last event"
            " (the count itself when they are in the same second).</p>")
    return text + chart("rates", "Windows by rate", x, y, bars=bars, rules=rules,
                        legend=[("ok", "windows at or below the threshold"),
                                ("flagged", "malicious windows")], empty="no windows")


def dead_letters(inputs: Inputs) -> str:
    """Tally counts, then the dead letters by reason next to what the scan found."""
    facts = inputs.facts
    reasons = reason_counts(inputs.dead_letters)
    examples = first_seqs(inputs.dead_letters)
    order = [r for r in _REASONS if r in reasons or r in facts.invalid]
    order += sorted(set(reasons) - set(order))
    rows = "".join(
        f'<tr data-reason="{escape(r)}" data-count="{reasons[r]}"><td><code>{escape(r)}</code>'
        f'</td><td>{escape(_REASONS.get(r, ""))}</td><td class="n"><b>{reasons[r]:,}</b></td>'
        f'<td class="n">{"—" if r in _NOT_SCANNED else f"{facts.invalid[r]:,}"}</td>'
        f'<td>{", ".join(str(s) for s in examples.get(r, [])) or "—"}</td></tr>'
        for r in order)
    most_late = ", ".join(f"{escape(u)} ({n:,})"
                          for u, n in late_users(inputs.dead_letters).most_common(5))
    table = ("<table><thead><tr><th>Reason</th><th>Meaning</th>"
             '<th class="n">Dead letters</th><th class="n">In recording (scan)</th>'
             f"<th>First seqs</th></tr></thead><tbody>{rows}</tbody></table>"
             if order else "<p>No dead letters.</p>")
    return (f'<div class="tiles">{_tiles(inputs.tally, ("late", "invalid", "canary"))}</div>'
            f"<p>Canary events (<code>meta.domain</code> = canary) are dropped by design and"
            f" only counted. Invalid events are dead-lettered with a reason; late events are"
            f" more than {inputs.params.lateness} s behind their account's newest event."
            " The scan column re-judges every recording line with the detector's own rules,"
            " as a cross-check of the results.</p>" + table
            + (f"<p>Most late events: {most_late}.</p>" if most_late else ""))


def health(inputs: Inputs) -> str:
    """Arrivals per second by receive time with gaps, reconnects and the segments."""
    m, facts = inputs.manifest, inputs.facts
    stream = getattr(m, "stream", None)
    if isinstance(stream, dict) and "reconnects" in stream:
        reconnects = escape(str(stream["reconnects"]))
    else:
        reconnects = "not recorded"
    counters = ""
    if isinstance(stream, dict) and stream:
        counters = " · ".join(f"{escape(str(k))} {escape(str(v))}" for k, v in stream.items())
    parts = []
    if not m.has_receive_times:
        parts.append('<p class="note warn">Receive times are not known: this recording was'
                     " imported from a dump, so each event's receive time is only its own"
                     " timestamp. Arrival rate and gaps cannot be shown.</p>")
    elif facts.first_received is not None and facts.last_received is not None:
        received = facts.last_received - facts.first_received
        mean = facts.events / received if received > 0 else float(facts.events)
        gaps = (f"{facts.gap_count:,} ({duration(facts.gap_seconds)} in all; largest"
                f" {duration(facts.gaps[0].seconds)})" if facts.gaps else "none")
        parts.append(
            f'<dl class="facts"><div class="wide"><dt>received (UTC)</dt><dd>'
            f"{time_range(facts.first_received, facts.last_received)}"
            f" ({duration(received)})</dd></div>"
            f"<div><dt>mean arrival rate</dt><dd>{num(mean)} events/s</dd></div>"
            f"<div><dt>gaps &gt; {num(GAP_SECONDS)} s</dt><dd>{gaps}</dd></div>"
            f"<div><dt>reconnects</dt><dd>{reconnects}</dd></div></dl>")
        bands = [Band(g.start, g.start + g.seconds, "gap",
                      f"no event received for {duration(g.seconds)} from {when(g.start)}"
                      f" (between seq {g.after_seq} and {g.before_seq})") for g in facts.gaps]
        parts.append(_time_chart("arrivals", "Events received per second", facts.receive_time,
                                 "arrivals", "events", "receive time", bands,
                                 [("arrivals", "events received per second"),
                                  ("gap", f"gap > {num(GAP_SECONDS)} s")]))
        if facts.gaps:
            rows = "".join(f'<tr><td>{when(g.start)}</td><td class="n">{duration(g.seconds)}'
                           f'</td><td class="n">{g.after_seq:,}</td><td class="n">'
                           f"{g.before_seq:,}</td></tr>" for g in facts.gaps[:5])
            parts.append("<h3>Largest gaps</h3><table><thead><tr><th>From (UTC)</th>"
                         '<th class="n">Length</th><th class="n">After seq</th>'
                         f'<th class="n">Before seq</th></tr></thead><tbody>{rows}</tbody>'
                         "</table>")
    if not m.has_receive_times or facts.first_received is None:
        parts.append(f'<dl class="facts"><div><dt>reconnects</dt><dd>{reconnects}</dd></div>'
                     "</dl>")
    if counters:
        parts.append(f'<p class="note">Recorder counters: {counters}</p>')
    for where in facts.damage:
        parts.append(f'<p class="note bad">Damage: {escape(where)}</p>')
    seg_rows = "".join(
        f"<tr><td><code>{escape(s.file)}</code></td><td>{'yes' if s.complete else 'no'}</td>"
        f'<td class="n">{s.events:,}</td><td class="n">{size(s.bytes)}</td>'
        f"<td>{time_range(s.first_received, s.last_received)}</td>"
        f"<td>{time_range(s.min_timestamp, s.max_timestamp)}</td></tr>"
        for s in m.segments)
    parts.append("<h3>Segments</h3><table><thead><tr><th>File</th><th>Complete</th>"
                 '<th class="n">Events</th><th class="n">Size</th><th>Received (UTC)</th>'
                 f"<th>Event timestamps (UTC)</th></tr></thead><tbody>{seg_rows}</tbody></table>"
                 if m.segments else "<p>No segments.</p>")
    return "".join(parts)


# ---------------------------------------------------------------- pieces


def _tiles(tally: dict[str, int], keys: Sequence[str]) -> str:
    """One count tile per key of the tally (0 where it has none)."""
    tiles = []
    for key in keys:
        label, kind = _TILES.get(key, (key, ""))
        tiles.append(f'<div class="tile {kind}" data-count="{escape(key)}">'
                     f"<b>{tally.get(key, 0):,}</b><span>{escape(label)}</span></div>")
    return "".join(tiles)


def _time_chart(name: str, caption: str, series: Series | None, kind: str, noun: str,
                clock: str, bands: Sequence[Band], legend: Sequence[tuple[str, str]]) -> str:
    """A per-second rate over a time axis: bucket counts divided by the bucket width."""
    if series is None:
        return chart(name, caption, Axis(0, 1, [], clock), Axis(0, 1, [(0, "0")], "per second"),
                     legend=legend, empty="no events")
    w = series.width
    bars = [Bar(series.start + i * w, series.start + (i + 1) * w, n / w, kind,
                f"{span(series.start + i * w, w)}: {n:,} {noun}"
                + (f", {num(n / w)}/s" if w > 1 else ""))
            for i, n in enumerate(series.counts) if n]
    top, yticks = count_ticks(max((b.y for b in bars), default=1.0))
    xticks, days = time_ticks(series.start, series.end)
    x = Axis(series.start, series.end, xticks, f"{clock} (UTC, {days}); one bar = {per(series)}")
    y = Axis(0, top, yticks, f"{noun} per second")
    return chart(name, caption, x, y, bars=bars, bands=bands, legend=legend)


def _flag_bands(malicious: Sequence[dict[str, Any]], join: int) -> list[Band]:
    """Malicious windows as bands (`analysis.flagged_spans`), titled with who, top 4 first."""
    bands = []
    for s in flagged_spans(malicious, join):
        who = "; ".join(f"{u} ({n} window(s), peak {num(p)}/s)" for u, n, p in s.users[:4])
        if len(s.users) > 4:
            who += f"; and {len(s.users) - 4} more"
        bands.append(Band(s.start, s.end, "flagged",
                          f"flagged {span(s.start, s.end - s.start)}: {who}"))
    return bands
