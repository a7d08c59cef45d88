"""A user flow for the live tests: per-user counts in 2-second windows by the recorded
clock, each window row also stamped with the wall time it came out (when
HARNESS_TEST_STAMPS names a file), so a test can see windows close while the stream
is idle."""

import os
import time
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import TumblingWindower, count_window

from harness.source.clock import RecordedClock

ALIGN = datetime(2023, 1, 1, tzinfo=timezone.utc)
WINDOW = timedelta(seconds=2)


def _stamp(step_id, row):
    path = os.environ.get("HARNESS_TEST_STAMPS")
    if path:
        with open(path, "ab") as f:
            f.write(orjson.dumps({"at": time.time(), **row}) + b"\n")


def user_windows(source, sink):
    flow = Dataflow("user_windows")
    edits = op.input("edits", flow, source)
    timed = op.filter("has_time", edits, lambda e: type(e.get("timestamp")) is int)
    clock = RecordedClock(lambda e: datetime.fromtimestamp(e["timestamp"], tz=timezone.utc),
                          wait_for_system_duration=timedelta(seconds=1))
    counts = count_window("per_user", timed, clock, TumblingWindower(WINDOW, ALIGN),
                          key=lambda e: str(e["user"]))

    def row(item):
        user, (window_id, edits) = item
        return {"user": user, "window": window_id, "edits": edits}

    rows = op.map("rows", counts.down, row)
    op.inspect("stamp", rows, _stamp)
    op.output("windows", rows, sink)
    op.output("late", op.map("late_rows", counts.late, lambda kv: {"late": kv[1][1]["meta"]["id"]}),
              sink)
    return flow


def slow_steps(source, sink):
    """Each item takes 50 ms in a step, so a live run has a backlog to finish after the
    stream ends, and a second Ctrl-C lands inside the step."""
    flow = Dataflow("slow_steps")
    edits = op.input("edits", flow, source)
    op.output("out", op.map("slow", edits, lambda e: time.sleep(0.05) or {"seq": e.seq}),
              sink)
    return flow
