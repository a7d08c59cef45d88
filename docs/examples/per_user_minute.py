"""Edits per user per minute on Wikipedia's live stream: a plain Bytewax flow.

In production: `python -m bytewax.run per_user_minute:flow` (it reads
stream.wikimedia.org and prints to stdout). Replayed from a recording, unchanged:
`harness replay RECORDING --flow per_user_minute:flow --out items.jsonl`.
"""

import json
import os
import queue
import threading
import urllib.request
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
import sseclient
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.operators.windowing import EventClock, TumblingWindower, count_window

STREAM = os.environ.get("RECENTCHANGE_URL",
                        "https://stream.wikimedia.org/v2/stream/recentchange")


class RecentChanges(DynamicSource):
    """Every recentchange event, parsed into a dict (read by the first worker)."""

    def build(self, step_id, worker_index, worker_count):
        return _Events() if worker_index == 0 else _Nothing()


class _Events(StatelessSourcePartition):
    """The stream read by a thread of its own; each batch is what arrived since the last."""

    def __init__(self):
        self._queue = queue.Queue()
        self._empty = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        request = urllib.request.Request(STREAM, headers={
            "Accept": "text/event-stream", "User-Agent": "per-user-minute/1.0 (example)"})
        try:
            for event in sseclient.SSEClient(urllib.request.urlopen(request)).events():
                if event.event == "message":
                    self._queue.put(event.data)
        finally:
            self._queue.put(None)  # the stream ended

    def next_batch(self):
        batch = []
        while True:
            try:
                data = self._queue.get_nowait()
            except queue.Empty:
                break
            if data is None:
                if batch:
                    self._queue.put(None)
                    break
                raise StopIteration
            try:
                edit = json.loads(data)
            except ValueError:
                continue  # a malformed frame
            if isinstance(edit, dict):
                batch.append(edit)
        self._empty = not batch
        return batch

    def next_awake(self):
        if self._empty:  # nothing came: look again in a moment
            return datetime.now(timezone.utc) + timedelta(milliseconds=50)
        return None


class _Nothing(StatelessSourcePartition):
    def next_batch(self):
        raise StopIteration


def edit_time(edit):
    return datetime.fromtimestamp(edit["timestamp"], tz=timezone.utc)


flow = Dataflow("per_user_minute")
edits = op.input("edits", flow, RecentChanges())
edits = op.filter("timed", edits,
                  lambda e: "user" in e and isinstance(e.get("timestamp"), int))
per_minute = count_window(
    "per_minute", edits,
    EventClock(edit_time, wait_for_system_duration=timedelta(seconds=10)),
    TumblingWindower(length=timedelta(minutes=1),
                     align_to=datetime(2024, 1, 1, tzinfo=timezone.utc)),
    lambda e: str(e["user"]),
)
op.output("counts", per_minute.down, StdOutSink())
