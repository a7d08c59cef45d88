"""Edits per wiki per one-minute event-time window, with 10 s allowed lateness.

Written only against Bytewax 0.21's public API; run it with
`harness replay --flow wiki_counts:wiki_counts --key wiki`.
"""

from datetime import datetime, timedelta, timezone

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower, count_window

ALIGN = datetime(2023, 1, 1, tzinfo=timezone.utc)
WINDOW = timedelta(minutes=1)
# Replay decides by event time alone: a clock whose "system time" never moves.
FROZEN = datetime(2000, 1, 1, tzinfo=timezone.utc)


def event_time(edit):
    return datetime.fromtimestamp(edit["timestamp"], tz=timezone.utc)


def wiki_counts(source, sink):
    flow = Dataflow("wiki_counts")
    edits = op.input("edits", flow, source)
    timed = op.filter("has_time", edits, lambda e: type(e.get("timestamp")) is int)
    clock = EventClock(event_time, wait_for_system_duration=timedelta(seconds=10),
                       now_getter=lambda: FROZEN, to_system_utc=lambda t: None)
    counts = count_window("per_minute", timed, clock, TumblingWindower(WINDOW, ALIGN),
                          key=lambda e: str(e["wiki"]))  # the same key as --key wiki

    def window_row(item):
        wiki, (window_id, edits) = item
        start = ALIGN + window_id * WINDOW
        return {"wiki": wiki, "window_start": start.isoformat(), "edits": edits}

    def late_row(item):
        wiki, (_, edit) = item
        return {"wiki": wiki, "late": edit["meta"]["id"]}

    op.output("windows", op.map("window_rows", counts.down, window_row), sink)
    op.output("late", op.map("late_rows", counts.late, late_row), sink)
    return flow
