"""Edits per user per 10-second window, with 2 s allowed lateness by receive time.

`RecordedClock` is Bytewax's `EventClock` with "now" read from each edit's
receive time instead of the wall clock. Replayed as usual, items carry no
receive time and windows close by event time alone; live
(`harness live --flow edit_bursts:edit_bursts`) and in
`harness replay --flow edit_bursts:edit_bursts --clock recorded`, an edit is
late when its user's receive clock has moved on by more than the lateness,
so the replay decides exactly what the live run decided.
"""

from datetime import datetime, timedelta, timezone

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import TumblingWindower, count_window

from harness import RecordedClock

ALIGN = datetime(2023, 1, 1, tzinfo=timezone.utc)
WINDOW = timedelta(seconds=10)
LATENESS = timedelta(seconds=2)


def event_time(edit):
    return datetime.fromtimestamp(edit["timestamp"], tz=timezone.utc)


def edit_bursts(source, sink):
    flow = Dataflow("edit_bursts")
    edits = op.input("edits", flow, source)
    timed = op.filter("has_time", edits, lambda e: type(e.get("timestamp")) is int)
    clock = RecordedClock(event_time, wait_for_system_duration=LATENESS)
    counts = count_window("per_user", timed, clock, TumblingWindower(WINDOW, ALIGN),
                          key=lambda e: str(e["user"]))  # the source's key (--key user)

    def window_row(item):
        user, (window_id, edits) = item
        start = ALIGN + window_id * WINDOW
        return {"user": user, "window_start": start.isoformat(), "edits": edits}

    def late_row(item):
        user, (_, edit) = item
        return {"user": user, "late": edit["meta"]["id"]}

    op.output("windows", op.map("window_rows", counts.down, window_row), sink)
    op.output("late", op.map("late_rows", counts.late, late_row), sink)
    return flow
