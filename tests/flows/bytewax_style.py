"""A flow written the way Bytewax's documentation writes one, run by `python -m bytewax.run
bytewax_style:flow` in production: a module-level `Dataflow` over a stream source of its
own, real sinks, the default `EventClock` and a `SystemClock`, `stateful_map`, `join`,
`branch` with two outputs, and tuple, `datetime` and window-metadata items.

The harness must run it unchanged: its source and sinks below fail loudly if opened.
"""

import time
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
import bytewax.operators.windowing as win
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource
from bytewax.operators.windowing import EventClock, SystemClock, TumblingWindower
from bytewax.outputs import DynamicSink


class RecentChangeStream(DynamicSource):
    """Production's input: Wikimedia's EventStreams, each event parsed into a dict."""

    def build(self, step_id, worker_index, worker_count):
        raise RuntimeError("the real EventStreams source was opened during a replay")


class AlertSink(DynamicSink):
    """Production's output: an alerting service."""

    def build(self, step_id, worker_index, worker_count):
        raise RuntimeError("the real alert sink was opened during a replay")


def event_time(edit):
    return datetime.fromtimestamp(edit["timestamp"], tz=timezone.utc)


ALIGN = datetime(2024, 1, 1, tzinfo=timezone.utc)

flow = Dataflow("wiki_edits")
edits = op.input("inp", flow, RecentChangeStream())
edits = op.filter("well_formed", edits,
                  lambda e: "user" in e and type(e.get("timestamp")) in (int, float))

# Edits per user per minute, by event time on the default (wall-clock) EventClock.
per_minute = win.count_window(
    "per_minute", edits,
    EventClock(event_time, wait_for_system_duration=timedelta(seconds=30)),
    TumblingWindower(length=timedelta(minutes=1), align_to=ALIGN),
    lambda e: str(e["user"]),
)
op.output("minute_counts", per_minute.down, AlertSink())
op.output("minute_windows", per_minute.meta, AlertSink())

# Edits per user per 10 s of processing time.
by_user = op.key_on("by_user", edits, lambda e: str(e["user"]))
per_ten_s = win.collect_window(
    "per_ten_s", by_user, SystemClock(), TumblingWindower(timedelta(seconds=10), ALIGN))
op.output("ten_second_batches",
          op.map("sizes", per_ten_s.down, lambda kv: (kv[0], kv[1][0], len(kv[1][1]))),
          AlertSink())

# Per user: the edit count joined with the latest edit time, once the stream ends.
running = op.stateful_map("running", by_user, lambda n, e: ((n or 0) + 1, (n or 0) + 1))
latest = op.map_value("when", by_user, event_time)
joined = op.join("joined", running, latest, emit_mode="final")
op.output("running_counts", joined, AlertSink())
# Each user's count after each edit: 1, 2, 3, ... in the order emitted.
op.output("edit_numbers", op.filter_value("counted", running, lambda n: n > 0), AlertSink())

# Bots and humans to two outputs.
kinds = op.branch("is_bot", edits, lambda e: bool(e.get("bot")))
op.output("bot_edits", op.map("bot_row", kinds.trues,
                              lambda e: (str(e["user"]), event_time(e))), AlertSink())
op.output("human_edits", op.map("human_row", kinds.falses,
                                lambda e: {"user": str(e["user"]), "title": e.get("title")}),
          AlertSink())


def get_flow(only_bots=False):
    """The same idea as a factory, as `python -m bytewax.run "bytewax_style:get_flow()"`
    runs it."""
    made = Dataflow("factory_edits")
    stream = op.input("inp", made, RecentChangeStream())
    if only_bots:
        stream = op.filter("bots", stream, lambda e: bool(e.get("bot")))
    op.output("out", op.map("row", stream, lambda e: (e.get("title"), e.get("bot"))),
              AlertSink())
    return made


two_inputs = Dataflow("two_inputs")
op.output("out", op.merge("both", op.input("a", two_inputs, RecentChangeStream()),
                          op.input("b", two_inputs, RecentChangeStream())), AlertSink())


wall_clock = Dataflow("wall_clock")
op.output("out", op.map("stamp", op.input("inp", wall_clock, RecentChangeStream()),
                        lambda e: {"title": e.get("title"), "seen_ns": time.time_ns()}),
          AlertSink())
