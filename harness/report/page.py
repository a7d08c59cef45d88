"""The report page: `render(Inputs)` -> one self-contained HTML document.

Sections, in order (`harness.report.sections`): header (recording, parameters,
the tally), edits per second over event time with flagged windows shaded, the
flagged accounts, the distribution of window rates, dead letters, and
recording health. The style sheet and the self-check script are the package's
`assets/page.css` and `assets/page.js`, inlined here so the page needs
nothing beside itself. The JSON embedded in a `<script>` has `<`, `>` and `&`
escaped so that no value can end the script element.

The page's self-check script runs once the page is laid out: each chart's
figure gets `data-drawn` (marks with a non-empty box) and `data-rect` (its
SVG's page box); any script error lands in `<body data-error>`. The report
works without it; tests read it.
"""

from __future__ import annotations

import functools
from dataclasses import asdict
from html import escape
from importlib import resources
from typing import Any

import orjson

from harness.report import sections
from harness.report.analysis import FlaggedAccount, flagged_accounts, reason_counts, window_bounds
from harness.report.formats import iso, one_day
from harness.report.inputs import Inputs
from harness.report.scan import Account
from harness.report.sections import MAX_ACCOUNTS

__all__ = ["MAX_ACCOUNTS", "FlaggedAccount", "Inputs", "flagged_accounts", "render",
           "window_bounds"]


def render(inputs: Inputs) -> str:
    """The whole page."""
    body = [
        sections.header(inputs),
        sections.section("timeline", "Edits per second over time", sections.timeline(inputs)),
        sections.section("flagged", "Top flagged accounts",
                         sections.flagged_table(inputs, one_day(inputs.facts.event_time))),
        sections.section("rates", "Window rate distribution", sections.rates(inputs)),
        sections.section("dead-letters", "Late, invalid and canary events",
                         sections.dead_letters(inputs)),
        sections.section("health", "Recording health", sections.health(inputs)),
    ]
    # Each asset goes in on a line of its own, after its opening tag.
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(inputs.title)}</title><style>\n{_asset('page.css')}</style>"
            f'</head><body><main>{"".join(body)}<footer>Made by <code>harness.report</code>'
            f" from the recording and the detection results; times are UTC. Hover a bar for"
            f" its numbers.</footer></main>"
            f'<script type="application/json" id="report-data">{_script_json(_data(inputs))}'
            f"</script><script>\n{_asset('page.js')}</script></body></html>\n")


@functools.cache
def _asset(name: str) -> str:
    """The text of `harness/report/assets/<name>`, installed with the package."""
    return (resources.files("harness.report") / "assets" / name).read_text(encoding="utf-8")


def _data(inputs: Inputs) -> dict[str, Any]:
    """The machine-readable gist of the page, embedded as JSON."""
    facts = inputs.facts
    return {
        "recording": str(inputs.recording), "title": inputs.title, "tally": inputs.tally,
        "params": asdict(inputs.params), "results": inputs.results,
        "flagged": [{"user": a.user, "windows": a.windows, "peak_rate": a.peak_rate,
                     "edits": a.edits, "first": iso(a.first), "last": iso(a.last),
                     "wikis": facts.accounts.get(a.user, Account()).wikis.most_common()}
                    for a in inputs.flagged[:MAX_ACCOUNTS]],
        "dead_letters": dict(reason_counts(inputs.dead_letters)),
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
