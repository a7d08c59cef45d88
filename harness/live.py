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

Your own flow (`harness live --flow`) gets the same items
a replay with `--clock recorded` gives it: `Received` payload dicts, one
partition's worth per key in arrival order, and its `RecordedClock`s decide
by their receive times. Idle closes go through `IdleTime` (the harness
cannot put ticks into your flow's items), which uses a quiet time only once
the events received before it have had `grace` seconds to reach your
windows, and counts any event that took longer.
"""

from __future__ import annotations

import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from harness.eventstreams.client import EventStream, ReceivedEvent, public_url
from harness.files import named
from harness.flows.contract import CHUNKS, FlowOutput
from harness.flows.job import FlowJob, ReadOptions
from harness.process import keep_thread_state
from harness.recording.envelope import encode_envelope
from harness.recording.lanes import DEFAULT_LANES, Chunk, lane_for
from harness.recording.slice import Slice
from harness.recording.upload import open_writer
from harness.recording.writer import RecordingWriter
from harness.run.member import run_member
from harness.source.clock import IdleTime, closing_when_idle
from harness.source.keys import Payload
from harness.source.replay import PayloadReader, SourcePosition, SourceReport
from harness.store.location import BucketPath

__all__ = ["LIVE", "LiveFeed", "LiveFlowSource", "LiveResult", "LiveSource", "live_job",
           "run_live"]

_POLL = 0.05
TICK_EVERY = 1.0  # seconds of quiet between ticks

Line = tuple[int, bytes, Any]  # seq, recording line, parsed payload (None: not JSON)


@dataclass
class LiveFeed:
    """The stream as recording lines, in arrival order (recorded too, with `writer`).

    Ends after `max_events` events or `duration` seconds, if given. No
    resume state: a live stream is not replayable (record it for that).
    """

    stream: EventStream
    lanes: int = DEFAULT_LANES
    writer: RecordingWriter | None = None
    max_events: int | None = None
    duration: float | None = None
    recording_failed: OSError | None = None  # and the run ended there (see `record`)
    received: int = 0  # events handed to the flow

    def open(self) -> _FeedReader:
        return _FeedReader(self)

    def record(self, item: ReceivedEvent) -> Line | None:
        """`item` as its recording line, once the writer took it; None if the recording
        cannot be written (a full disk, say). Then the stream ends, and the run with it,
        as if it had ended there: the flow decides on no event the recording lacks
        beyond those already buffered, and its outputs are still written."""
        writer = self.writer
        assert writer is not None
        if self.recording_failed is not None:
            return None
        try:
            return writer.append(item.data, item.sse_id, item.received)
        except OSError as exc:
            self._failed(exc)
            return None

    def flush_if_due(self) -> None:
        if self.writer is not None and self.recording_failed is None:
            try:
                self.writer.flush_if_due()
            except OSError as exc:
                self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        assert self.writer is not None
        self.recording_failed = named(exc, self.writer.directory)
        self.stream.stop()


class _FeedReader:
    """Reads the stream on a thread of its own; `take()` returns what has arrived."""

    def __init__(self, feed: LiveFeed) -> None:
        self._feed = feed
        self._inbox: queue.Queue[ReceivedEvent | None] = queue.Queue()
        self._deadline = (time.monotonic() + feed.duration
                          if feed.duration is not None else None)
        self._reader = threading.Thread(target=self._read, daemon=True, name="live-stream")
        self._reader.start()

    def _read(self) -> None:
        try:
            for item in self._feed.stream.events():
                if item is not None:
                    self._inbox.put(item)
        finally:
            self._inbox.put(None)

    def take(self) -> tuple[list[Line], float | None]:
        """The lines that have arrived, and a time before which every event received is
        among them or earlier ones (None if that cannot be said: the stream is busy, or
        it ends after these). StopIteration once the stream has ended."""
        feed = self._feed
        if self._deadline is not None and time.monotonic() >= self._deadline:
            feed.stream.stop()
        # Before draining: every event received before `quiet` is in the inbox by now.
        quiet = feed.stream.arrivals.quiet_since()
        lines: list[Line] = []
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is None:
                if not lines:
                    raise StopIteration
                self._inbox.put(None)  # end after this batch
                quiet = None
                break
            if feed.max_events is not None and feed.received >= feed.max_events:
                continue
            if feed.writer is not None:  # recording: the flow sees the very lines written
                line = feed.record(item)
                if line is None:
                    continue
                lines.append(line)
            else:
                lines.append((feed.received + 1, *encode_envelope(
                    feed.received + 1, item.sse_id, item.received, item.data)))
            feed.received += 1
            if feed.max_events is not None and feed.received >= feed.max_events:
                feed.stream.stop()
        feed.flush_if_due()
        return lines, quiet

    def next_awake(self) -> datetime | None:
        if self._inbox.empty():
            return datetime.now(tz=timezone.utc) + timedelta(seconds=_POLL)
        return None

    def close(self) -> None:
        self._feed.stream.stop()
        self._reader.join(timeout=2)


class _LivePartition(StatefulSourcePartition[Any, None]):
    """One partition over a `_FeedReader`; subclasses turn its lines into items."""

    def __init__(self, feed: LiveFeed) -> None:
        self._reader = feed.open()

    def next_awake(self) -> datetime | None:
        return self._reader.next_awake()

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self._reader.close()


@dataclass
class LiveSource(FixedPartitionedSource[Chunk, None]):
    """The bot-detection flow's live source: lane `Chunk`s, and idle ticks."""

    feed: LiveFeed

    def list_parts(self) -> list[str]:
        keep_thread_state()  # list_parts runs on every worker thread
        return ["live"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _LaneChunks:
        return _LaneChunks(self.feed)


class _LaneChunks(_LivePartition):
    def __init__(self, feed: LiveFeed) -> None:
        super().__init__(feed)
        self._lanes = feed.lanes
        self._ticked: float | None = None

    def next_batch(self) -> list[Chunk]:
        lines, quiet = self._reader.take()
        by_lane: dict[int, list[bytes]] = {}
        for seq, line, value in lines:
            by_lane.setdefault(lane_for(value, seq, self._lanes), []).append(line)
        chunks = [Chunk(lane, b"\n".join(run) + b"\n") for lane, run in by_lane.items()]
        if quiet is not None and (self._ticked is None or quiet - self._ticked >= TICK_EVERY):
            self._ticked = quiet  # after the events: each lane sees them before the tick
            chunks += [Chunk(lane, b"", tick=quiet) for lane in range(self._lanes)]
        return chunks


@dataclass
class LiveFlowSource(FixedPartitionedSource[Payload, None]):
    """Your flow's live source: the items `ReplaySource(..., received=True)` gives it
    (`Received` payloads; dead letters counted, and kept in `report_dir`), from one
    partition in arrival order, so each key's events stay in order."""

    feed: LiveFeed
    key: str = "user"
    report_dir: Path | None = None
    idle: IdleTime = field(default_factory=IdleTime)

    def list_parts(self) -> list[str]:
        keep_thread_state()  # list_parts runs on every worker thread
        return ["live"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _LivePayloads:
        return _LivePayloads(self, step_id)


class _LivePayloads(_LivePartition):
    def __init__(self, source: LiveFlowSource, step_id: str) -> None:
        super().__init__(source.feed)
        self._payloads = PayloadReader(source.key, Slice(), received=True)
        self._report = SourceReport(source.report_dir, "live", SourcePosition(), step_id)
        self._idle = source.idle

    def next_batch(self) -> list[Payload]:
        lines, quiet = self._reader.take()
        out: list[Payload] = []
        if lines:  # the very lines a replay of the recording will read
            chunk = Chunk(0, b"\n".join(line for _, line, _ in lines) + b"\n")
            out = self._payloads.read(chunk, self._report)
        self._report.progressed()
        if quiet is not None:
            self._idle.observe(quiet)  # these payloads are handed on as this returns
        return out

    def close(self) -> None:
        super().close()
        self._idle.end()
        self._report.close()


@contextmanager
def _live_run(feed: LiveFeed, record_to: Path | BucketPath | None) -> Iterator[Path]:
    """A run directory, with `feed.writer` recording (if `record_to`). SIGINT and
    SIGTERM end the stream, so the run finishes as if it had ended: windows close,
    outputs and the recording are kept (`stream.stopped_by` says so). The writer is
    closed complete only if the run ends cleanly, left as it is (resumable) if it
    failed, and the stream is stopped in any case."""
    stream = feed.stream
    if record_to is not None:
        feed.writer = open_writer(record_to, source=public_url(stream.url), lanes=feed.lanes,
                                  fresh=True)
    clean = False
    try:
        with tempfile.TemporaryDirectory(prefix="harness-live-") as tmp, \
                stream.stopped_by_signals():
            yield Path(tmp)
        clean = True
    finally:
        stream.stop()
        if feed.writer is not None:
            if feed.recording_failed is not None:
                feed.writer.abandon()
            else:
                feed.writer.close(complete=clean)


LIVE: Final = Path("<live>")  # what a live job's ReadOptions name as its recording


@dataclass
class LiveResult:
    """What a flow wrote live, how long it ran, and events an idle close overtook."""

    output: FlowOutput
    wall_seconds: float
    overtaken: int = 0
    recording_failed: OSError | None = None  # the run ended there (see LiveFeed.record)
    received: int = 0  # events the flow decided on
    recorded: int = 0  # of them, the first this many are in the recording


def live_job(flow: str = "bots", *, workers: int = 1, key: str = "user",
             params: dict[str, Any] | None = None, console: bool = False,
             search: tuple[str, ...] = ()) -> FlowJob:
    """The job a live run runs: `flow` on `workers` workers, fed by the stream."""
    return FlowJob(ReadOptions(LIVE, workers), flow, key, params=params or {},
                   console=console, search=search or (str(Path.cwd()),))


def run_live(
    stream: EventStream,
    job: FlowJob | None = None,
    *,
    record_to: Path | BucketPath | None = None,
    max_events: int | None = None,
    duration: float | None = None,
    lanes: int = DEFAULT_LANES,
    grace: float = 1.0,
) -> LiveResult:
    """Run a flow (default: bot detection) on a live stream, deciding by the recorded
    clock; optionally record what it sees (`record_to`), so that `harness replay
    --clock recorded` of that recording writes what this run wrote (see the module
    doc). A flow of payloads gets `Received` items and its idle closes through
    `IdleTime(grace)`; a flow of chunks gets ticks."""
    job = job or live_job()
    flow = job.plugin
    started = time.perf_counter()
    idle = IdleTime(grace)
    feed = LiveFeed(stream, lanes, None, max_events, duration)
    with _live_run(feed, record_to) as run_dir:
        source: FixedPartitionedSource[Any, None] = (
            LiveSource(feed) if flow.input == CHUNKS
            else LiveFlowSource(feed, job.key, run_dir, idle))
        dataflow = flow.build(job, source, run_dir, live_lanes=lanes)
        if flow.input != CHUNKS:  # your flow's windows close while the stream is idle
            dataflow = closing_when_idle(dataflow, idle)
        run_member(job, run_dir, flow=dataflow)  # as every run's member runs its share
        output = flow.collect(job, run_dir)
    return LiveResult(output, time.perf_counter() - started, idle.overtaken,
                      feed.recording_failed, feed.received,
                      feed.writer.manifest.events if feed.writer is not None else 0)
