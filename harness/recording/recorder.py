"""`harness record`: capture an EventStreams endpoint into a recording.

The stream (`harness.eventstreams.client.EventStream`) delivers each event once, in order;
the writer (`RecordingWriter`) makes it durable, one block
at least every second. SIGINT and SIGTERM stop cleanly: the last block is
written, the segment finished and the manifest marked complete. A recorder
killed outright leaves an unfinished recording that the next
`harness record --out SAME_DIR` resumes from its last stored SSE id (the
same goes for `--out s3://bucket/prefix`: see `harness.recording.upload`);
`max_events` counts the whole recording, so a resumed run stops at the
same total as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.eventstreams.client import EventStream, StreamStats, check_url, public_url
from harness.eventstreams.ids import DEFAULT_URL, USER_AGENT
from harness.progress import Progress
from harness.recording.lanes import DEFAULT_LANES
from harness.recording.upload import open_writer
from harness.recording.writer import RecordingWriter
from harness.store.location import BucketPath, Location, location


@dataclass
class RecordReport:
    """What a recording session did."""

    directory: Location
    events: int = 0
    received_bytes: int = 0
    written_bytes: int = 0
    seconds: float = 0.0
    stopped_by: str = ""
    resumed_after: int | None = None
    complete: bool = False
    stream: StreamStats = field(default_factory=StreamStats)
    last_event_time: int | None = None

    @property
    def ratio(self) -> float:
        return self.received_bytes / self.written_bytes if self.written_bytes else 0.0

    def line(self) -> str:
        s = self.stream
        last = (datetime.fromtimestamp(self.last_event_time, tz=timezone.utc).isoformat()
                if self.last_event_time is not None else "-")
        rate = self.events / self.seconds if self.seconds > 0 else 0.0
        oversized = f" oversized={s.oversized}" if s.oversized else ""
        return (f"events={self.events} events/s={rate:.1f} bytes={self.written_bytes}"
                f" compression={self.ratio:.1f}x reconnects={s.reconnects}"
                f" duplicates={s.duplicates} server_errors={s.errors}{oversized}"
                f" last_event={last}")


def record(
    out: str | Path | BucketPath,
    *,
    url: str = DEFAULT_URL,
    duration: float | None = None,
    max_events: int | None = None,
    since: str | None = None,
    user_agent: str = USER_AGENT,
    lanes: int = DEFAULT_LANES,
    progress: bool | None = None,
    segment_seconds: float | None = 3600.0,
    stream_options: dict[str, Any] | None = None,
    problems: Callable[[str], None] | None = None,
) -> RecordReport:
    """Record `url` into `out` until `duration`, `max_events`, a signal, or a fatal error.

    An unfinished recording in `out` is resumed; a complete one, or any other
    non-empty directory, is refused. `max_events` is the recording's total
    (events kept from before a resume included), not this session's. Each new
    connection problem is passed to `problems` (e.g. printed) as it happens.
    """
    check_url(url)
    directory = location(out)
    writer = open_writer(directory, source=public_url(url), lanes=lanes,
                         segment_seconds=segment_seconds)
    resume, point = writer.resumed, writer.resume_point
    stream = EventStream(url=url, user_agent=user_agent, since=None if resume else since,
                         last_id=point.last_id, seen=point.recent_event_ids,
                         **(stream_options or {}))
    report = RecordReport(directory, stream=stream.stats,
                          resumed_after=point.last_seq if resume else None)
    meter = Progress(f"record {directory}", enabled=progress)
    told = None  # the last problem reported to `problems`
    started = time.monotonic()
    clean = False
    try:
        with stream.stopped_by_signals():
            if max_events is not None and writer.events >= max_events:
                report.stopped_by = "max-events"
                stream.stop()
            for item in stream.events():
                if item is not None:
                    writer.append(item.data, item.sse_id, item.received)
                    report.events += 1
                    report.received_bytes += len(item.data)
                    if max_events is not None and writer.events >= max_events:
                        report.stopped_by = "max-events"
                        stream.stop()
                else:
                    writer.flush_if_due()
                if duration is not None and time.monotonic() - started >= duration:
                    report.stopped_by = report.stopped_by or "duration"
                    stream.stop()
                meter.update(report.events, _status(writer, stream.stats))
                problem = stream.stats.last_problem
                if problems is not None and problem and problem != told:
                    told = problem
                    problems(problem)
        clean = True
    finally:
        report.stopped_by = stream.stopped_by or report.stopped_by
        report.seconds = time.monotonic() - started
        meter.done()
        if not writer.closed:
            _add_counters(writer.manifest.stream, stream.stats)
            try:
                writer.close(complete=clean)
            except OSError:
                if clean:
                    raise  # otherwise the error already on its way says what went wrong
        report.complete = writer.manifest.complete
        report.written_bytes = writer.bytes_written
        segment = writer.manifest.segments[-1] if writer.manifest.segments else None
        report.last_event_time = segment.max_timestamp if segment else None
    return report


def _add_counters(kept: dict[str, int], stats: StreamStats) -> None:
    """Add a session's stream counters to those the manifest keeps."""
    for name, value in dataclasses.asdict(stats).items():
        if type(value) is int:
            kept[name] = kept.get(name, 0) + value


def _status(writer: RecordingWriter, stats: StreamStats) -> str:
    """The progress line's tail: what is stored, and while the stream waits to retry,
    why and for how long ("cannot connect to host:443 (Connection refused); retry in 8 s")."""
    status = (f"{writer.bytes_written / 1e6:,.1f} MB, {stats.reconnects} reconnects,"
              f" {stats.duplicates} dup")
    retry_at = stats.next_retry_at
    if retry_at is not None and stats.last_problem:
        wait = max(retry_at - time.monotonic(), 0.0)
        status += f"; {stats.last_problem}; retry in {math.ceil(wait)} s"
    return status
