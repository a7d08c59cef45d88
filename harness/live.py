"""`harness live`: the detection flow fed straight from the stream.

Only the source and the clock differ from replay. `LiveSource` turns
server-sent events into the same envelope `Chunk`s a recording holds
(optionally recording them at the same time), and the flow decides with
the *recorded clock*: each event's receive time, stamped when the SSE
client parsed it and kept in the recording as `recv`.

Why that makes live decisions a function of the recording: whether an
event is late, and which window it counts in, depends only on its
timestamp, its receive time, and those of its user's earlier events, all
of which the recording holds. It does not depend on when the process got
round to the event (a slow batch, a backlog). While the stream is idle the
source sends *ticks*, so that windows still close and their summaries come
out; a tick carries a time no later than the receive time of any event not
yet handed to the flow (see `Arrivals`), so an event it overtakes would be
late against that time anyway, and a tick changes only *when* a summary is
emitted, never what it says. `harness replay --clock recorded` therefore
writes exactly what the live run wrote.
"""

from __future__ import annotations

import queue
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from harness.eventstreams.client import EventStream, ReceivedEvent, public_url
from harness.flows.bots.flow import build_flow
from harness.flows.bots.replay import ReplayResult
from harness.flows.bots.routing import LanePlan
from harness.flows.bots.semantics import DetectionParams
from harness.flows.bots.sinks import LaneFileSink, collect
from harness.recording.envelope import encode_envelope
from harness.recording.lanes import DEFAULT_LANES, Chunk, lane_for
from harness.recording.writer import RecordingWriter
from harness.replay.cluster import execute

_POLL = 0.05
TICK_EVERY = 1.0  # seconds of quiet between ticks


@dataclass
class LiveSource(FixedPartitionedSource[Chunk, None]):
    """One partition reading an `EventStream`, sharded into lanes by user.

    Ends after `max_events` events or `duration` seconds, if given. No
    resume state: a live stream is not replayable (record it for that).
    """

    stream: EventStream
    lanes: int = DEFAULT_LANES
    writer: RecordingWriter | None = None
    max_events: int | None = None
    duration: float | None = None

    def list_parts(self) -> list[str]:
        return ["live"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _LivePartition:
        return _LivePartition(self)


class _LivePartition(StatefulSourcePartition[Chunk, None]):
    def __init__(self, source: LiveSource) -> None:
        self._source = source
        self._inbox: queue.Queue[ReceivedEvent | None] = queue.Queue()
        self._deadline = (time.monotonic() + source.duration
                          if source.duration is not None else None)
        self._received = 0
        self._ticked: float | None = None
        self._reader = threading.Thread(target=self._read, daemon=True, name="live-stream")
        self._reader.start()

    def _read(self) -> None:
        try:
            for item in self._source.stream.events():
                if item is not None:
                    self._inbox.put(item)
        finally:
            self._inbox.put(None)

    def next_batch(self) -> list[Chunk]:
        src = self._source
        if self._deadline is not None and time.monotonic() >= self._deadline:
            src.stream.stop()
        # Before draining: every event received before `quiet` is in the inbox by now.
        quiet = src.stream.arrivals.quiet_since()
        by_lane: dict[int, list[bytes]] = {}
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is None:
                if not by_lane:
                    raise StopIteration
                self._inbox.put(None)  # end after this batch
                quiet = None
                break
            if src.max_events is not None and self._received >= src.max_events:
                continue
            self._received += 1
            if src.writer is not None:  # recording: the flow sees the very lines written
                seq, line, value = src.writer.append(item.data, item.sse_id, item.received)
            else:
                seq = self._received
                line, value = encode_envelope(seq, item.sse_id, item.received, item.data)
            by_lane.setdefault(lane_for(value, seq, src.lanes), []).append(line)
            if src.max_events is not None and self._received >= src.max_events:
                src.stream.stop()
        if src.writer is not None:
            src.writer.flush_if_due()
        chunks = [Chunk(lane, b"\n".join(lines) + b"\n") for lane, lines in by_lane.items()]
        if quiet is not None and (self._ticked is None or quiet - self._ticked >= TICK_EVERY):
            self._ticked = quiet  # after the events: each lane sees them before the tick
            chunks += [Chunk(lane, b"", tick=quiet) for lane in range(src.lanes)]
        return chunks

    def next_awake(self) -> datetime | None:
        if self._inbox.empty():
            return datetime.now(tz=timezone.utc) + timedelta(seconds=_POLL)
        return None

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self._source.stream.stop()
        self._reader.join(timeout=2)


def run_live(
    stream: EventStream,
    *,
    params: DetectionParams | None = None,
    workers: int = 1,
    record_to: Path | None = None,
    max_events: int | None = None,
    duration: float | None = None,
    console: bool = True,
    lanes: int = DEFAULT_LANES,
) -> ReplayResult:
    """Run the detection flow on a live stream, deciding by the recorded clock;
    optionally record what it sees (`record_to`), so that `harness replay
    --clock recorded` of that recording reproduces the run's output."""
    writer = (RecordingWriter(record_to, source=public_url(stream.url), lanes=lanes)
              if record_to is not None else None)
    source = LiveSource(stream, lanes, writer, max_events, duration)
    started = time.perf_counter()
    clean = False
    try:
        with tempfile.TemporaryDirectory(prefix="harness-live-") as tmp:
            run_dir = Path(tmp)
            plan = LanePlan.dealt(tuple(range(lanes)), workers)
            flow = build_flow(source, LaneFileSink(run_dir, plan, console), params,
                              recorded=True, plan=plan)
            execute(flow, run_dir, workers)
            output = collect(run_dir)
        clean = True
    finally:
        stream.stop()
        if writer is not None:
            writer.close(complete=clean)
    return ReplayResult(output, time.perf_counter() - started)
