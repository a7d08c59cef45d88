"""The report page: `render(Inputs)` -> one self-contained HTML document.

Sections, in order: header (recording, parameters, the tally), edits per
second over event time with flagged windows shaded, the flagged accounts,
the distribution of window rates, dead letters, and recording health. Every
chart is `chart.chart`; every user-controlled string passes through
`html.escape`, and the JSON embedded in a `<script>` has `<`, `>` and `&`
escaped so that no value can end the script element.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any, Final

import orjson

from harness.errors import HarnessError
from harness.flows.bots.semantics import DetectionParams
from harness.recording import Manifest
from harness.report.chart import Axis, Band, Bar, Rule, chart, count_ticks, time_ticks
from harness.report.scan import GAP_SECONDS, Account, RecordingFacts, Series

__all__ = ["MAX_ACCOUNTS", "FlaggedAccount", "Inputs", "flagged_accounts", "render",
           "window_bounds"]

MAX_ACCOUNTS: Final = 100  # rows of the flagged-accounts table
_BINS_PER_OCTAVE: Final = 3
# Tally counts in the order shown: (label, CSS kind); keys not listed follow, by name.
_TILES: Final = {
    "events": ("events", ""), "windows": ("windows", ""),
    "malicious": ("malicious windows", "bad"), "late": ("late", "warn"),
    "invalid": ("invalid", "warn"), "canary": ("canary", ""), "counted": ("counted", ""),
    "outside": ("outside the slice", ""), "skipped": ("skipped (damaged)", ""),
}
_IF_ANY: Final = ("outside", "skipped")  # counts shown only when not 0
_REASONS: Final = {
    "late": "older than its account's newest event minus the lateness",
    "bad-user": "no string user",
    "bad-timestamp": "timestamp missing or not an integer",
    "not-json": "payload is not JSON",
    "not-object": "payload is JSON but not an object",
    "timestamp-out-of-range": "timestamp is not a date in years 1..9999",
    "damaged": "recording lines that could not be read (--skip-damaged)",
}


@dataclass(frozen=True, slots=True)
class FlaggedAccount:
    """An account with at least one malicious window, from the window summaries."""

    user: str
    windows: int  # malicious windows
    peak_rate: float  # max rate over them
    edits: int  # events in them
    first: float  # start of the earliest malicious window (unix s)
    last: float  # end of the latest malicious window (unix s)


@dataclass(frozen=True, slots=True)
class Inputs:
    """Everything the page shows."""

    title: str
    recording: Path
    manifest: Manifest
    params: DetectionParams
    params_given: bool
    results: str  # where summaries/dead letters/tally came from, in words
    summaries: Sequence[dict[str, Any]]
    dead_letters: Sequence[dict[str, Any]]
    tally: dict[str, int]
    facts: RecordingFacts
    flagged: Sequence[FlaggedAccount]


def window_bounds(summary: dict[str, Any]) -> tuple[float, float]:
    """A summary's window start and end as unix seconds (they are ISO strings)."""
    try:
        return (datetime.fromisoformat(summary["window_start"]).timestamp(),
                datetime.fromisoformat(summary["window_end"]).timestamp())
    except (KeyError, TypeError, ValueError) as exc:
        raise HarnessError(f"window summary {summary!r:.200}: no ISO window_start/window_end"
                           f" ({exc})") from None


def flagged_accounts(summaries: Iterable[dict[str, Any]]) -> list[FlaggedAccount]:
    """Accounts with a malicious window: most flagged windows first, then highest peak."""
    seen: dict[str, list[float]] = {}  # user -> [windows, peak, edits, first, last]
    for s in summaries:
        if not s.get("malicious"):
            continue
        start, end = window_bounds(s)
        rate, count = float(s["rate"]), int(s["count"])
        row = seen.get(s["user"])
        if row is None:
            seen[s["user"]] = [1, rate, count, start, end]
        else:
            row[0] += 1
            row[1], row[2] = max(row[1], rate), row[2] + count
            row[3], row[4] = min(row[3], start), max(row[4], end)
    accounts = [FlaggedAccount(user, int(w), peak, int(edits), first, last)
                for user, (w, peak, edits, first, last) in seen.items()]
    accounts.sort(key=lambda a: (-a.windows, -a.peak_rate, a.user))
    return accounts


def render(inputs: Inputs) -> str:
    """The whole page."""
    one_day = _one_day(inputs.facts.event_time)
    body = [
        _header(inputs),
        _section("timeline", "Edits per second over time", _timeline(inputs)),
        _section("flagged", "Top flagged accounts", _flagged_table(inputs, one_day)),
        _section("rates", "Window rate distribution", _rates(inputs)),
        _section("dead-letters", "Late, invalid and canary events", _dead_letters(inputs)),
        _section("health", "Recording health", _health(inputs)),
    ]
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(inputs.title)}</title><style>{_CSS}</style></head>"
            f'<body><main>{"".join(body)}<footer>Made by <code>harness.report</code> from'
            f" the recording and the detection results; times are UTC. Hover a bar for its"
            f" numbers.</footer></main>"
            f'<script type="application/json" id="report-data">{_script_json(_data(inputs))}'
            f"</script><script>{_SELF_CHECK}</script></body></html>\n")


# ---------------------------------------------------------------- sections


def _header(inputs: Inputs) -> str:
    m, p, t = inputs.manifest, inputs.params, inputs.tally
    state = ('<span class="pill ok">complete</span>' if m.complete
             else '<span class="pill warn">not complete</span>')
    params = (f"window {p.window} s · lateness {p.lateness} s · min count {p.min_count}"
              f" · threshold {_num(p.threshold)} edits/s · align {_iso(p.align)}")
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
            f'</dl><div class="tiles">'
            + "".join(_tile(key, *_TILES.get(key, (key, "")), t.get(key, 0))
                      for key in shown)
            + f"</div>{check}</header>"
            '<nav><a href="#timeline">Timeline</a><a href="#flagged">Flagged accounts</a>'
            '<a href="#rates">Rates</a><a href="#dead-letters">Late / invalid</a>'
            '<a href="#health">Recording health</a></nav>')


def _timeline(inputs: Inputs) -> str:
    """Countable events per second of their own timestamp; malicious windows shaded."""
    series = inputs.facts.event_time
    malicious = [s for s in inputs.summaries if s.get("malicious")]
    bands = _flag_bands(malicious, series.width if series else 1)
    if series is None:
        text = "<p>The recording holds no countable event.</p>"
    else:
        text = (f"<p>Each bar is the mean number of countable edits per second (by the event's"
                f" own <code>timestamp</code>) over {_per(series)}. Shaded spans are the"
                f" {len(malicious):,} malicious windows of {len(inputs.flagged):,} account(s);"
                " hover for who.</p>")
    if series is not None and series.outside:
        text += (f'<p class="note warn">{series.outside:,} event(s) with timestamps far from'
                 f" the rest ({_when(series.earliest)} .. {_when(series.latest)}) are not"
                 " plotted.</p>")
    figure = _time_chart("timeline", "Edits per second by event time", series, "edits",
                         "edits", "event time", bands,
                         [("edits", "edits per second"), ("flagged", "flagged window")])
    return text + figure


def _flagged_table(inputs: Inputs, one_day: bool) -> str:
    """One row per flagged account, with what the recording says about it."""
    flagged = inputs.flagged
    if not flagged:
        return f"<p>No account had a window above {_num(inputs.params.threshold)} edits/s.</p>"
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
            f'<td class="n peak"><b>{_num(a.peak_rate)}</b></td>'
            f'<td class="n edits">{a.edits:,}</td>'
            f'<td class="when">{_range(a.first, a.last, one_day, sep)}</td>'
            f'<td class="wikis">{wikis or "?"}</td><td class="bot">{bot}</td>'
            f'<td class="n events">{facts.events:,}</td></tr>')
    more = (f'<p class="note">… and {len(flagged) - MAX_ACCOUNTS:,} more flagged accounts not'
            " shown.</p>" if len(flagged) > MAX_ACCOUNTS else "")
    day = "UTC" if not one_day or inputs.facts.event_time is None else (
        "UTC, " + _day(inputs.facts.event_time.start))
    return (f"<p>{len(flagged):,} account(s) had at least one window above"
            f" {_num(inputs.params.threshold)} edits/s. Peak rate is the highest window rate;"
            " the flagged span runs from the start of the earliest to the end of the latest"
            " flagged window; wikis (most edited first) and the bot flag are from the"
            " account's events in the recording.</p>"
            '<div class="scroll"><table class="accounts"><thead><tr><th class="n">#</th>'
            '<th>Account</th><th class="n">Flagged windows</th>'
            '<th class="n">Peak rate (edits/s)</th><th class="n">Edits in flagged windows</th>'
            f"<th>Flagged span ({day})</th><th>Wikis</th>"
            '<th>Bot flag</th><th class="n">Events in recording</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>{more}")


def _rates(inputs: Inputs) -> str:
    """Histogram of window rates in log bins, 3 per doubling, with the threshold on an edge.

    Bin i holds rates in (anchor·2^(i/3), anchor·2^((i+1)/3)], anchor being the
    threshold, so bins right of the threshold line hold exactly the malicious
    windows. Bar heights are on a log scale (0, 1, 10, 100, ...) so that a
    handful of malicious windows stays visible next to thousands of others.
    """
    threshold = inputs.params.threshold
    anchor = threshold if threshold > 0 else 1.0
    rates = [float(s["rate"]) for s in inputs.summaries]
    bins: Counter[int] = Counter(_rate_bin(r, anchor) for r in rates if r > 0)
    lo, hi = (min(min(bins), -1), max(max(bins), 0) + 1) if bins else (-3, 3)

    def edge(i: int) -> float:
        return anchor * 2 ** (i / _BINS_PER_OCTAVE)

    def height(n: int) -> float:
        return 1 + math.log10(n) if n > 0 else 0.0

    bars = [Bar(i, i + 1, height(n), "flagged" if edge(i) >= threshold else "ok",
                f"{n:,} window(s) with rate in ({_num(edge(i))}, {_num(edge(i + 1))}] edits/s")
            for i, n in sorted(bins.items())]
    top = max(1, math.ceil(max((b.y for b in bars), default=1)))
    y = Axis(0, top, [(0, "0"), *((k, f"{10 ** (k - 1):,}") for k in range(1, top + 1))],
             "windows (log scale)")
    x = Axis(lo, hi, [(i, _num(edge(i))) for i in range(lo, hi + 1)
                      if i % _BINS_PER_OCTAVE == 0], "window rate, edits per second"
             f" (log scale, {_BINS_PER_OCTAVE} bins per doubling)")
    rules = [Rule(0, "threshold", f"threshold {_num(threshold)}/s")] if threshold > 0 else []
    above = sum(1 for r in rates if r > threshold)
    median = sorted(rates)[len(rates) // 2] if rates else 0.0
    text = (f"<p>No window closed with at least {inputs.params.min_count} events.</p>"
            if not rates else
            f"<p>{len(rates):,} window(s) of at least {inputs.params.min_count} events;"
            f" median rate {_num(median)} edits/s, highest {_num(max(rates, default=0))};"
            f" {above:,} above the threshold of {_num(threshold)} edits/s (red). A window's"
            " rate is its count divided by the seconds between its first and last event"
            " (the count itself when they are in the same second).</p>")
    return text + chart("rates", "Windows by rate", x, y, bars=bars, rules=rules,
                        legend=[("ok", "windows at or below the threshold"),
                                ("flagged", "malicious windows")], empty="no windows")


def _dead_letters(inputs: Inputs) -> str:
    """Tally counts, then the dead letters by reason next to what the scan found."""
    t, facts = inputs.tally, inputs.facts
    reasons: Counter[str] = Counter(str(d.get("reason", "?")) for d in inputs.dead_letters)
    examples: dict[str, list[int]] = {}
    for d in inputs.dead_letters:
        seqs = examples.setdefault(str(d.get("reason", "?")), [])
        if len(seqs) < 5 and isinstance(d.get("seq"), int) and d["seq"] >= 0:
            seqs.append(d["seq"])
    order = [r for r in _REASONS if r in reasons or r in facts.invalid]
    order += sorted(set(reasons) - set(order))
    rows = "".join(
        f'<tr data-reason="{escape(r)}" data-count="{reasons[r]}"><td><code>{escape(r)}</code>'
        f'</td><td>{escape(_REASONS.get(r, ""))}</td><td class="n"><b>{reasons[r]:,}</b></td>'
        f'<td class="n">{"—" if r in ("late", "damaged") else f"{facts.invalid[r]:,}"}</td>'
        f'<td>{", ".join(str(s) for s in examples.get(r, [])) or "—"}</td></tr>'
        for r in order)
    late_users = Counter(d.get("user") for d in inputs.dead_letters
                         if d.get("reason") == "late" and isinstance(d.get("user"), str))
    most_late = ", ".join(f"{escape(str(u))} ({n:,})" for u, n in late_users.most_common(5))
    tiles = "".join(_tile(k, *_TILES[k], t.get(k, 0)) for k in ("late", "invalid", "canary"))
    table = ("<table><thead><tr><th>Reason</th><th>Meaning</th>"
             '<th class="n">Dead letters</th><th class="n">In recording (scan)</th>'
             f"<th>First seqs</th></tr></thead><tbody>{rows}</tbody></table>"
             if order else "<p>No dead letters.</p>")
    return (f'<div class="tiles">{tiles}</div>'
            f"<p>Canary events (<code>meta.domain</code> = canary) are dropped by design and"
            f" only counted. Invalid events are dead-lettered with a reason; late events are"
            f" more than {inputs.params.lateness} s behind their account's newest event."
            " The scan column re-judges every recording line with the detector's own rules,"
            " as a cross-check of the results.</p>" + table
            + (f"<p>Most late events: {most_late}.</p>" if most_late else ""))


def _health(inputs: Inputs) -> str:
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
        span = facts.last_received - facts.first_received
        mean = facts.events / span if span > 0 else float(facts.events)
        gaps = (f"{facts.gap_count:,} ({_duration(facts.gap_seconds)} in all; largest"
                f" {_duration(facts.gaps[0].seconds)})" if facts.gaps else "none")
        parts.append(
            f'<dl class="facts"><div class="wide"><dt>received (UTC)</dt><dd>'
            f"{_range(facts.first_received, facts.last_received)} ({_duration(span)})</dd></div>"
            f"<div><dt>mean arrival rate</dt><dd>{_num(mean)} events/s</dd></div>"
            f"<div><dt>gaps &gt; {_num(GAP_SECONDS)} s</dt><dd>{gaps}</dd></div>"
            f"<div><dt>reconnects</dt><dd>{reconnects}</dd></div></dl>")
        bands = [Band(g.start, g.start + g.seconds, "gap",
                      f"no event received for {_duration(g.seconds)} from {_when(g.start)}"
                      f" (between seq {g.after_seq} and {g.before_seq})") for g in facts.gaps]
        parts.append(_time_chart("arrivals", "Events received per second", facts.receive_time,
                                 "arrivals", "events", "receive time", bands,
                                 [("arrivals", "events received per second"),
                                  ("gap", f"gap > {_num(GAP_SECONDS)} s")]))
        if facts.gaps:
            rows = "".join(f'<tr><td>{_when(g.start)}</td><td class="n">{_duration(g.seconds)}'
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
        f'<td class="n">{s.events:,}</td><td class="n">{_bytes(s.bytes)}</td>'
        f"<td>{_range(s.first_received, s.last_received)}</td>"
        f"<td>{_range(s.min_timestamp, s.max_timestamp)}</td></tr>"
        for s in m.segments)
    parts.append("<h3>Segments</h3><table><thead><tr><th>File</th><th>Complete</th>"
                 '<th class="n">Events</th><th class="n">Size</th><th>Received (UTC)</th>'
                 f"<th>Event timestamps (UTC)</th></tr></thead><tbody>{seg_rows}</tbody></table>"
                 if m.segments else "<p>No segments.</p>")
    return "".join(parts)


# ---------------------------------------------------------------- pieces


def _time_chart(name: str, caption: str, series: Series | None, kind: str, noun: str,
                clock: str, bands: Sequence[Band], legend: Sequence[tuple[str, str]]) -> str:
    """A per-second rate over a time axis: bucket counts divided by the bucket width."""
    if series is None:
        return chart(name, caption, Axis(0, 1, [], clock), Axis(0, 1, [(0, "0")], "per second"),
                     legend=legend, empty="no events")
    w = series.width
    bars = [Bar(series.start + i * w, series.start + (i + 1) * w, n / w, kind,
                f"{_span(series.start + i * w, w)}: {n:,} {noun}"
                + (f", {_num(n / w)}/s" if w > 1 else ""))
            for i, n in enumerate(series.counts) if n]
    top, yticks = count_ticks(max((b.y for b in bars), default=1.0))
    xticks, days = time_ticks(series.start, series.end)
    x = Axis(series.start, series.end, xticks, f"{clock} (UTC, {days}); one bar = {_per(series)}")
    y = Axis(0, top, yticks, f"{noun} per second")
    return chart(name, caption, x, y, bars=bars, bands=bands, legend=legend)


def _flag_bands(malicious: Sequence[dict[str, Any]], join: int) -> list[Band]:
    """Malicious windows as bands; windows closer than `join` seconds share one band."""
    spans = sorted((*window_bounds(s), str(s["user"]), float(s["rate"])) for s in malicious)
    merged: list[tuple[float, float, dict[str, list[float]]]] = []
    for start, end, user, rate in spans:
        if merged and start <= merged[-1][1] + join:
            lo, hi, users = merged[-1]
            merged[-1] = (lo, max(hi, end), users)
        else:
            users = {}
            merged.append((start, end, users))
        entry = users.setdefault(user, [0, 0.0])
        entry[0], entry[1] = entry[0] + 1, max(entry[1], rate)
    bands = []
    for lo, hi, users in merged:
        ranked = sorted(users.items(), key=lambda kv: (-kv[1][1], kv[0]))
        who = "; ".join(f"{u} ({int(n)} window(s), peak {_num(p)}/s)" for u, (n, p) in ranked[:4])
        if len(ranked) > 4:
            who += f"; and {len(ranked) - 4} more"
        bands.append(Band(lo, hi, "flagged", f"flagged {_span(lo, hi - lo)}: {who}"))
    return bands


def _rate_bin(rate: float, anchor: float) -> int:
    """The bin i with anchor·2^(i/3) < rate <= anchor·2^((i+1)/3)."""
    i = math.ceil(_BINS_PER_OCTAVE * math.log2(rate / anchor)) - 1
    while rate <= anchor * 2 ** (i / _BINS_PER_OCTAVE):
        i -= 1
    while rate > anchor * 2 ** ((i + 1) / _BINS_PER_OCTAVE):
        i += 1
    return i


def _section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{content}</section>'


def _tile(key: str, label: str, kind: str, value: int) -> str:
    return (f'<div class="tile {kind}" data-count="{escape(key)}"><b>{value:,}</b>'
            f"<span>{escape(label)}</span></div>")


def _data(inputs: Inputs) -> dict[str, Any]:
    """The machine-readable gist of the page, embedded as JSON."""
    facts = inputs.facts
    return {
        "recording": str(inputs.recording), "title": inputs.title, "tally": inputs.tally,
        "params": asdict(inputs.params), "results": inputs.results,
        "flagged": [{"user": a.user, "windows": a.windows, "peak_rate": a.peak_rate,
                     "edits": a.edits, "first": _iso(a.first), "last": _iso(a.last),
                     "wikis": facts.accounts.get(a.user, Account()).wikis.most_common()}
                    for a in inputs.flagged[:MAX_ACCOUNTS]],
        "dead_letters": dict(Counter(str(d.get("reason", "?")) for d in inputs.dead_letters)),
        "event_bucket_seconds": facts.event_time.width if facts.event_time else None,
        "receive_bucket_seconds": facts.receive_time.width if facts.receive_time else None,
        "gaps": facts.gap_count,
    }


def _script_json(value: Any) -> str:
    """JSON safe inside a `<script>` element: nothing in it can close the element."""
    text = orjson.dumps(value).decode()
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                       ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, code)
    return text


def _one_day(series: Series | None) -> bool:
    return series is not None and _day(series.start) == _day(series.end - 1)


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d")


def _when(t: float, time_only: bool = False) -> str:
    """A time to the nearest second, UTC."""
    return datetime.fromtimestamp(round(t), tz=timezone.utc).strftime("%H:%M:%S" if time_only
                                                      else "%Y-%m-%d %H:%M:%S")


def _range(lo: float | None, hi: float | None, time_only: bool = False, sep: str = " ") -> str:
    """`2023-11-14 22:13:21 .. 22:19:50`: the date once when both ends share it."""
    if lo is None or hi is None:
        return "—"
    if time_only or _day(lo) != _day(hi):
        return f"{_when(lo, time_only)}{sep}.. {_when(hi, time_only)}"
    return f"{_when(lo)}{sep}.. {_when(hi, True)}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat()


def _span(start: float, seconds: float) -> str:
    """`22:13:30 UTC` for one second, `22:13:30-22:13:35 UTC` (en dash) for longer."""
    first = datetime.fromtimestamp(start, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    if seconds <= 1:
        return f"{first} UTC"
    return f"{first}\u2013{datetime.fromtimestamp(start + seconds, tz=timezone.utc):%H:%M:%S} UTC"


def _per(series: Series | None) -> str:
    if series is None:
        return "a bucket"
    return "1 second" if series.width == 1 else f"{_duration(series.width)}"


def _duration(seconds: float) -> str:
    if seconds < 59.95:
        return f"{seconds:.1f}".removesuffix(".0") + " s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d {hours % 24} h"


def _bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    raise AssertionError("unreachable")


def _num(value: float) -> str:
    """A rate or count as a person writes it: 45, 12.2, 1.25, 0.667, 1,234."""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


# ---------------------------------------------------------------- style and self-check

_CSS: Final = """
:root{--bg:#f4f5f8;--card:#fff;--ink:#1c2230;--muted:#5d6678;--line:#e2e5ec;--grid:#eef0f4;
--accent:#3867d6;--arrivals:#4c8dae;--bad:#d6336c;--warn:#e8590c;--ok:#2b8a3e;--chip:#eef2fb}
@media (prefers-color-scheme:dark){:root{--bg:#12151c;--card:#1b1f29;--ink:#e6e9f0;
--muted:#9aa3b5;--line:#2d3342;--grid:#252a36;--accent:#6f95f0;--arrivals:#6fb3d2;
--bad:#f06595;--warn:#ff922b;--ok:#51cf66;--chip:#262c3b}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px 20px 40px}
h1{font-size:24px;margin:0 0 2px}h2{font-size:18px;margin:0 0 10px}
h3{font-size:15px;margin:18px 0 6px}
code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
overflow-wrap:anywhere}
.path{margin:0 0 12px;color:var(--muted)}
header,section{background:var(--card);border:1px solid var(--line);border-radius:12px;
padding:18px 22px;margin:0 0 16px;box-shadow:0 1px 2px rgba(0,0,0,.04)}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:6px 20px;
margin:0 0 14px}
.facts div{min-width:0}.facts dt{font-size:11px;text-transform:uppercase;letter-spacing:.05em;
color:var(--muted)}.facts dd{margin:0;overflow-wrap:anywhere}
header .facts div:nth-last-child(-n+2){grid-column:1/-1}.facts .wide{grid-column:span 2}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(118px,1fr));gap:8px;
margin:6px 0}
.tile{border:1px solid var(--line);border-radius:10px;padding:8px 12px;background:var(--bg)}
.tile b{display:block;font-size:21px;font-variant-numeric:tabular-nums}
.tile span{font-size:12px;color:var(--muted)}
.tile.bad b{color:var(--bad)}.tile.warn b{color:var(--warn)}
.pill{display:inline-block;padding:0 8px;border-radius:99px;font-size:12px;font-weight:600;
color:#fff}.pill.ok{background:var(--ok)}.pill.warn{background:var(--warn)}
.note{margin:6px 0;font-size:13px;color:var(--muted)}.note.ok{color:var(--ok)}
.note.bad{color:var(--bad)}.note.warn{color:var(--warn)}
nav{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 16px}
nav a{padding:4px 12px;border-radius:99px;background:var(--card);border:1px solid var(--line);
color:var(--ink);text-decoration:none;font-size:13px}nav a:hover{border-color:var(--accent)}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
th{text-align:left;font-weight:600;color:var(--muted);font-size:12px;
border-bottom:2px solid var(--line);padding:6px 8px;vertical-align:bottom}
td{border-bottom:1px solid var(--line);padding:5px 8px;vertical-align:top}
.n{text-align:right}tbody tr:hover{background:var(--bg)}
td.user{font-weight:600;overflow-wrap:break-word;max-width:280px}
td.when{white-space:nowrap}td.wikis{min-width:220px}
.scroll{overflow-x:auto}small.more{white-space:nowrap;color:var(--muted)}
.chip{display:inline-block;background:var(--chip);border-radius:6px;padding:0 6px;
margin:1px 2px 1px 0;white-space:nowrap}.chip small{color:var(--muted)}
figure.chart{margin:10px 0 4px}
figcaption{font-weight:600;font-size:13px;margin:0 0 2px}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px;color:var(--muted);
margin:0 0 4px}
.key{display:inline-flex;align-items:center;gap:6px}
.swatch{display:inline-block;width:12px;height:12px;border-radius:3px}
.chart svg{display:block;width:100%;height:auto;overflow:visible}
.chart text{font-family:inherit}
.chart .grid{stroke:var(--grid)}.chart .axis{stroke:var(--muted);stroke-width:1}
.chart .tick{font-size:11px;fill:var(--muted)}
.chart .axis-label{font-size:12px;fill:var(--ink)}
.chart .empty{font-size:14px;fill:var(--muted)}
.chart rect.mark{shape-rendering:crispEdges}.chart rect.mark:hover{opacity:.65}
.swatch.edits,.mark.edits,.swatch.ok,.mark.ok{background:var(--accent);fill:var(--accent)}
.swatch.arrivals,.mark.arrivals{background:var(--arrivals);fill:var(--arrivals)}
.swatch.flagged,.mark.flagged,.band.flagged rect{background:var(--bad);fill:var(--bad)}
.swatch.gap,.band.gap rect{background:var(--warn);fill:var(--warn)}
.band rect{opacity:.16}.band rect.mark{opacity:.9}
.swatch.flagged,.swatch.gap{opacity:.6}
.rule{stroke:var(--bad);stroke-width:1.5;stroke-dasharray:5 4}
.rule-label{fill:var(--bad);font-size:12px;font-weight:600}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:8px}
"""

# Self-check, run once the page is laid out: each chart's figure gets data-drawn
# (marks with a non-empty box) and data-rect (its SVG's page box); any script error
# lands in <body data-error>. The report works without it; tests read it.
_SELF_CHECK: Final = """
(function () {
  window.addEventListener("error", function (e) { document.body.dataset.error = e.message; });
  try {
    document.querySelectorAll("figure.chart").forEach(function (fig) {
      var drawn = 0;
      fig.querySelectorAll(".mark").forEach(function (m) {
        var r = m.getBoundingClientRect();
        if (r.width > 0 && r.height > 0) { drawn += 1; }
      });
      var box = fig.querySelector("svg").getBoundingClientRect();
      fig.dataset.drawn = String(drawn);
      fig.dataset.rect = [box.left + window.scrollX, box.top + window.scrollY, box.width,
                          box.height].map(Math.round).join(",");
    });
    document.body.dataset.height = String(document.documentElement.scrollHeight);
    document.body.dataset.ready = "1";
  } catch (e) {
    document.body.dataset.error = String(e);
  }
})();
"""
